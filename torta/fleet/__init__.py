"""The modeled world: topologies, GPU/model catalog, latency model, prices and scenarios.

Entry points: `torta.fleet.scenario.load_scenario`, `list_scenarios`, `fleet_tables`,
`capacity_requests_per_s`; `torta.fleet.perf.default_perf_model`.
"""
