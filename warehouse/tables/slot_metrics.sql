-- Per slot and server: utilisation, batch, energy by state, model switches. Finished runs only.
CREATE OR REPLACE VIEW slot_metrics AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true)
WHERE (key, run_uid) IN (SELECT key, run_uid FROM runs);
