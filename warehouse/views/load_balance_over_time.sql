-- Per run and slot: mean and spread of server utilisation (std, CV) and Jain's fairness index.
CREATE OR REPLACE VIEW load_balance_over_time AS
SELECT key, scenario, workload, policy, seed, slot, min(t_start_s) AS t_start_s,
       avg(utilisation) AS util_mean, coalesce(stddev_pop(utilisation), 0) AS util_std,
       CASE WHEN avg(utilisation) > 0 THEN coalesce(stddev_pop(utilisation), 0) / avg(utilisation) ELSE 0 END AS util_cv,
       CASE WHEN sum(utilisation * utilisation) > 0
            THEN sum(utilisation) * sum(utilisation) / (count(*) * sum(utilisation * utilisation)) ELSE 1 END AS jain_index,
       sum(switches) AS switches, sum(energy_kwh) AS energy_kwh
FROM slot_metrics
GROUP BY key, scenario, workload, policy, seed, slot
ORDER BY key, slot;
