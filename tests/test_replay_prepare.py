"""`torta replay` prepares a policy the one way every runner does (torta.runs.execute)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from torta.cli import main


def _replay(*args: str):
    return CliRunner().invoke(main, ["replay", "--scenario", "abilene", "--json", "--no-progress", *args])


def test_forecasting_policy_on_a_trace_without_history_exits_2_naming_it():
    r = _replay("--trace", "azure-2023-conv", "--policy", "torta-ot")
    assert r.exit_code == 2
    assert "azure-2023-conv" in r.stderr and "history" in r.stderr and "torta-ot" in r.stderr
    assert r.stdout == ""


def test_forecasting_policy_on_a_multiday_workload_plans_on_the_forecast():
    r = _replay("--trace", "servegen-mix-14d", "--hours", "0.05", "--policy", "torta-ot")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["demand_source"] == "forecast"
    assert doc["requests"] > 1000 and doc["completed"] + doc["dropped"] == doc["requests"]


def test_replay_and_compare_give_a_policy_the_same_context():
    """Same input, same seed: `torta replay` and `torta compare` replay identically (myopic-ot reads the
    input's mean token lengths through `prepare`, which `torta replay` used to skip)."""
    from torta.runs.compare import run_compare

    r = _replay("--trace", "azure-2023-code", "--hours", "0.05", "--policy", "myopic-ot", "--seed", "1")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["demand_source"] == "last"
    res = run_compare("abilene", "azure-2023-code", ["myopic-ot"], 2, hours=0.05, log=lambda m: None)
    mine = res.runs[1]
    for k in ("requests", "completed", "response_mean_s", "response_p95_s", "cost_usd", "switches"):
        assert doc[k] == mine[k], k


def test_a_run_parses_its_scenario_once(monkeypatch):
    """A multi-day run spec loads the scenario TOML once (the workload's requests and rates share it)."""
    import torta.fleet.scenario as scenario
    from torta.runs.spec import RunSpec, execute

    calls = []
    real = scenario.load_scenario

    def counting(name_or_path, *args, **kwargs):
        calls.append(name_or_path)
        return real(name_or_path, *args, **kwargs)

    monkeypatch.setattr(scenario, "load_scenario", counting)
    res = execute(RunSpec("abilene", "servegen-mix-14d", "myopic-ot", 0, hours=0.02))
    assert res.summary["requests"] > 0
    assert calls == ["abilene"]
