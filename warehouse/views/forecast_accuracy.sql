-- Backtest accuracy per workload, reporting horizon (hours; `horizon` in slots, each pooled over
-- steps 1..horizon) and forecaster (the last 3 days held out), with the per-series and per-step
-- selection (reconciled) as model 'selected': MASE and its ratios against Naive and
-- SeasonalNaive; coverage of the selected forecast's 80 % and 95 % intervals.
CREATE OR REPLACE VIEW forecast_accuracy AS
SELECT workload, horizon, hours, model, mase, ratio_naive, ratio_seasonal_naive, smape,
       coverage_80, coverage_95, fit_s
FROM backtests
ORDER BY workload, horizon, mase;
