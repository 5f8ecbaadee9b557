-- Bad rows of ingested files (traces/incoming/), with their line, field and reason.
CREATE OR REPLACE VIEW quarantine AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
