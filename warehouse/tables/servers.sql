-- Fleet table `servers` per scenario (pipelines/assets/fleet.py; torta.fleet.scenario.fleet_tables).
CREATE OR REPLACE VIEW servers AS
SELECT * FROM read_parquet('{parquet_glob}', union_by_name => true);
