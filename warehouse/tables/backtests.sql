-- Table `backtests` per workload (pipelines/assets/forecast.py).
-- empty: workload VARCHAR, horizon BIGINT, hours DOUBLE, model VARCHAR, mase DOUBLE, ratio_naive DOUBLE, ratio_seasonal_naive DOUBLE, smape DOUBLE, coverage_80 DOUBLE, coverage_95 DOUBLE, n_points BIGINT, fit_s DOUBLE
CREATE OR REPLACE VIEW backtests AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
