-- PPO training curves per scenario and variant (one row per update).
CREATE OR REPLACE VIEW training_curves AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
