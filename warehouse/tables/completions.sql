-- One row per request of a run: timings, serving region and server, dropped reason.
-- Only rows of runs that finished (have a `runs` row) are visible: no partial rows.
CREATE OR REPLACE VIEW completions AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true)
WHERE (key, run_uid) IN (SELECT key, run_uid FROM runs);
