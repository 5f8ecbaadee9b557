-- Fleet table `regions` per scenario (pipelines/assets/fleet.py; torta.fleet.scenario.fleet_tables).
CREATE OR REPLACE VIEW regions AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
