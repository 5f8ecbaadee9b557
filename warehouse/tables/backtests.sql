-- Table `backtests` per workload (pipelines/assets/forecast.py).
CREATE OR REPLACE VIEW backtests AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
