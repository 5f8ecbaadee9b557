-- Table `backtest_choices` per workload (pipelines/assets/forecast.py).
-- empty: workload VARCHAR, series VARCHAR, model VARCHAR, mase DOUBLE, coverage_80 DOUBLE, scale DOUBLE, val_mae DOUBLE, val_points BIGINT
CREATE OR REPLACE VIEW backtest_choices AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
