-- Canonical requests per shipped trace (one Parquet file per trace partition).
CREATE OR REPLACE VIEW requests AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
