-- Macro plans per run: share of an origin's demand (of one model, or '*' for all models) served in
-- each region, per slot. Finished runs only.
CREATE OR REPLACE VIEW plans AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true)
WHERE (key, run_uid) IN (SELECT key, run_uid FROM runs);
