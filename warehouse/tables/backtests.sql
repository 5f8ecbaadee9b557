-- Table `backtests` per workload (pipelines/assets/forecast.py).
-- empty: workload VARCHAR, horizon BIGINT, model VARCHAR, mase DOUBLE, smape DOUBLE, coverage_80 DOUBLE, coverage_95 DOUBLE, n_points BIGINT, fit_s DOUBLE, val_mase DOUBLE, val_coverage_80 DOUBLE, val_coverage_95 DOUBLE
CREATE OR REPLACE VIEW backtests AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
