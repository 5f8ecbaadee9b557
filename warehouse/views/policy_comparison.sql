-- Policies of the latest batch of runs (the last `torta run` or job invocation), per scenario and
-- workload: mean over seeds and the half-width of the 95 % t-interval (<metric>_ci95).
CREATE OR REPLACE VIEW policy_comparison AS
WITH latest AS (SELECT batch FROM runs ORDER BY finished_at DESC LIMIT 1)
SELECT scenario, workload, policy, count(*) AS seeds, avg(requests) AS requests,
  avg(response_mean_s) AS response_mean_s, coalesce((CASE count(*) WHEN 1 THEN 0 WHEN 2 THEN 12.706 WHEN 3 THEN 4.303 WHEN 4 THEN 3.182 WHEN 5 THEN 2.776 WHEN 6 THEN 2.571 WHEN 7 THEN 2.447 WHEN 8 THEN 2.365 WHEN 9 THEN 2.306 WHEN 10 THEN 2.262 ELSE 1.96 END) * stddev_samp(response_mean_s) / sqrt(count(*)), 0) AS response_mean_s_ci95,
  avg(response_p95_s) AS response_p95_s, coalesce((CASE count(*) WHEN 1 THEN 0 WHEN 2 THEN 12.706 WHEN 3 THEN 4.303 WHEN 4 THEN 3.182 WHEN 5 THEN 2.776 WHEN 6 THEN 2.571 WHEN 7 THEN 2.447 WHEN 8 THEN 2.365 WHEN 9 THEN 2.306 WHEN 10 THEN 2.262 ELSE 1.96 END) * stddev_samp(response_p95_s) / sqrt(count(*)), 0) AS response_p95_s_ci95,
  avg(load_std) AS load_std, coalesce((CASE count(*) WHEN 1 THEN 0 WHEN 2 THEN 12.706 WHEN 3 THEN 4.303 WHEN 4 THEN 3.182 WHEN 5 THEN 2.776 WHEN 6 THEN 2.571 WHEN 7 THEN 2.447 WHEN 8 THEN 2.365 WHEN 9 THEN 2.306 WHEN 10 THEN 2.262 ELSE 1.96 END) * stddev_samp(load_std) / sqrt(count(*)), 0) AS load_std_ci95,
  avg(cost_usd) AS cost_usd, coalesce((CASE count(*) WHEN 1 THEN 0 WHEN 2 THEN 12.706 WHEN 3 THEN 4.303 WHEN 4 THEN 3.182 WHEN 5 THEN 2.776 WHEN 6 THEN 2.571 WHEN 7 THEN 2.447 WHEN 8 THEN 2.365 WHEN 9 THEN 2.306 WHEN 10 THEN 2.262 ELSE 1.96 END) * stddev_samp(cost_usd) / sqrt(count(*)), 0) AS cost_usd_ci95,
  avg(energy_usd) AS energy_usd, coalesce((CASE count(*) WHEN 1 THEN 0 WHEN 2 THEN 12.706 WHEN 3 THEN 4.303 WHEN 4 THEN 3.182 WHEN 5 THEN 2.776 WHEN 6 THEN 2.571 WHEN 7 THEN 2.447 WHEN 8 THEN 2.365 WHEN 9 THEN 2.306 WHEN 10 THEN 2.262 ELSE 1.96 END) * stddev_samp(energy_usd) / sqrt(count(*)), 0) AS energy_usd_ci95,
  avg(transfer_usd) AS transfer_usd, coalesce((CASE count(*) WHEN 1 THEN 0 WHEN 2 THEN 12.706 WHEN 3 THEN 4.303 WHEN 4 THEN 3.182 WHEN 5 THEN 2.776 WHEN 6 THEN 2.571 WHEN 7 THEN 2.447 WHEN 8 THEN 2.365 WHEN 9 THEN 2.306 WHEN 10 THEN 2.262 ELSE 1.96 END) * stddev_samp(transfer_usd) / sqrt(count(*)), 0) AS transfer_usd_ci95,
  avg(switching_usd) AS switching_usd, coalesce((CASE count(*) WHEN 1 THEN 0 WHEN 2 THEN 12.706 WHEN 3 THEN 4.303 WHEN 4 THEN 3.182 WHEN 5 THEN 2.776 WHEN 6 THEN 2.571 WHEN 7 THEN 2.447 WHEN 8 THEN 2.365 WHEN 9 THEN 2.306 WHEN 10 THEN 2.262 ELSE 1.96 END) * stddev_samp(switching_usd) / sqrt(count(*)), 0) AS switching_usd_ci95,
  avg(switches) AS switches, coalesce((CASE count(*) WHEN 1 THEN 0 WHEN 2 THEN 12.706 WHEN 3 THEN 4.303 WHEN 4 THEN 3.182 WHEN 5 THEN 2.776 WHEN 6 THEN 2.571 WHEN 7 THEN 2.447 WHEN 8 THEN 2.365 WHEN 9 THEN 2.306 WHEN 10 THEN 2.262 ELSE 1.96 END) * stddev_samp(switches) / sqrt(count(*)), 0) AS switches_ci95,
  avg(planner_ms_per_slot) AS planner_ms_per_slot, coalesce((CASE count(*) WHEN 1 THEN 0 WHEN 2 THEN 12.706 WHEN 3 THEN 4.303 WHEN 4 THEN 3.182 WHEN 5 THEN 2.776 WHEN 6 THEN 2.571 WHEN 7 THEN 2.447 WHEN 8 THEN 2.365 WHEN 9 THEN 2.306 WHEN 10 THEN 2.262 ELSE 1.96 END) * stddev_samp(planner_ms_per_slot) / sqrt(count(*)), 0) AS planner_ms_per_slot_ci95,
  avg(dropped) AS dropped, max(batch) AS batch
FROM runs WHERE batch = (SELECT batch FROM latest)
GROUP BY scenario, workload, policy
ORDER BY scenario, workload, response_mean_s;
