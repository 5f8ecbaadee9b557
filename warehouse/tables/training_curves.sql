-- PPO training curves per scenario and variant (one row per update).
-- empty: scenario VARCHAR, variant VARCHAR, workload VARCHAR, seed BIGINT, update BIGINT, episodes BIGINT, episode_return DOUBLE, rt_s DOUBLE, load_std DOUBLE, cost_usd DOUBLE, churn DOUBLE, kl_coef DOUBLE, std DOUBLE, val_return DOUBLE, val_ref_return DOUBLE, val_rt_s DOUBLE, wall_s DOUBLE
CREATE OR REPLACE VIEW training_curves AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
