-- Bad rows of ingested files (traces/incoming/), with their line, field and reason.
-- empty: trace VARCHAR, _line VARCHAR, reason VARCHAR, field VARCHAR, expected VARCHAR
CREATE OR REPLACE VIEW quarantine AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
