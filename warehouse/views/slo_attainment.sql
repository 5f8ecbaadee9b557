-- Share of requests per run that completed within the SLO: TTFT <= 2 s and time per output token
-- <= 0.2 s (TORTA's own choice of SLO for interactive chat; dropped requests count as misses).
-- goodput_per_s = SLO-meeting requests per second of trace.
CREATE OR REPLACE VIEW slo_attainment AS
SELECT key, scenario, workload, policy, seed, max(batch) AS batch, count(*) AS requests,
       avg(CASE WHEN dropped_reason IS NULL AND ttft_s <= 2.0 AND coalesce(tpot_s, 0) <= 0.2 THEN 1.0 ELSE 0.0 END)
           AS slo_attainment,
       sum(CASE WHEN dropped_reason IS NULL AND ttft_s <= 2.0 AND coalesce(tpot_s, 0) <= 0.2 THEN 1 ELSE 0 END)
           / greatest(max(arrival_s) - min(arrival_s), 1.0) AS goodput_per_s
FROM completions
GROUP BY key, scenario, workload, policy, seed
ORDER BY scenario, workload, policy, seed;
