-- One row per ingested trace: rows, time span and token statistics.
CREATE OR REPLACE VIEW trace_summaries AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
