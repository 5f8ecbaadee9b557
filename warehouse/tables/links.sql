-- Physical topology links between a scenario's regions (src_name, dst_name, km), for maps.
CREATE OR REPLACE VIEW links AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
