-- One row per replay run (key = scenario|workload|policy|seed): the run summary of `torta replay --json`.
CREATE OR REPLACE VIEW runs AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
