-- Table `backtest_choices` per workload (pipelines/assets/forecast.py).
CREATE OR REPLACE VIEW backtest_choices AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
