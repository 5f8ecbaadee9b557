-- Backtest accuracy per workload, horizon and forecaster (the last 3 days held out), with the
-- per-series selection as model 'selected'.
CREATE OR REPLACE VIEW forecast_accuracy AS
SELECT workload, horizon, model, mase, smape, coverage_80, coverage_95, fit_s
FROM backtests
ORDER BY workload, horizon, mase;
