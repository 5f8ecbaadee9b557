-- Operational cost per policy (mean over seeds, all batches): energy, inter-region transfer and
-- model switching, with kWh and kg CO2.
CREATE OR REPLACE VIEW cost_breakdown AS
SELECT scenario, workload, policy, count(*) AS runs,
       avg(energy_usd) AS energy_usd, avg(transfer_usd) AS transfer_usd, avg(switching_usd) AS switching_usd,
       avg(cost_usd) AS cost_usd, avg(energy_kwh) AS energy_kwh, avg(co2_kg) AS co2_kg, avg(switches) AS switches
FROM runs
GROUP BY scenario, workload, policy
ORDER BY scenario, workload, cost_usd;
