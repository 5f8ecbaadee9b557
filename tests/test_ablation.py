"""The ablations of torta-horizon (issue 18 item 5): each registered variant changes one setting and its
run's recorded params say so; a short replay of each through the experiment's cell runner conserves
requests; the ablation experiment's definition; ABLATIONS.md's paired differences from a hand-made frame;
`torta experiment ablation` end to end into a tmp warehouse, resumed from its exported rows."""

from __future__ import annotations

import ast

import dagster as dg
import polars as pl
import pytest

import torta.planner.register  # noqa: F401  (registers the planner-layer policies)
from torta.policy import list_policies
from torta.runs.experiment.ablation import paired_rows, render_ablations, setting
from torta.runs.experiment.definition import (ABLATION_REFERENCE, ABLATIONS, Cell, Experiment,
                                              ablation_experiment)

# What each variant changes (everything else is torta-horizon's: H = 8, the forecast, pre-loading on).
EXPECTED = {"torta-horizon": (8, "forecast", True), "torta-horizon-h1": (1, "forecast", True),
            "torta-horizon-h4": (4, "forecast", True), "torta-horizon-h12": (12, "forecast", True),
            "torta-horizon-oracle": (8, "oracle", True), "torta-horizon-last": (8, "last", True),
            "torta-horizon-no-preload": (8, "forecast", False)}
CELL = Cell("abilene", "servegen-mix-14d", 0, 12)


def test_every_ablation_is_registered_with_a_description():
    names = dict(list_policies())
    assert set(ABLATIONS) | {ABLATION_REFERENCE} == set(EXPECTED)
    assert all(names.get(p) for p in EXPECTED)


@pytest.fixture(scope="module")
def short_cell():
    """Six minutes of test day 12 on abilene after 15 minutes of warm-up: the protocol's input, cut short."""
    from torta.runs.experiment.runner import cell_input

    return cell_input(CELL, 0.1, 1.0, warmup_h=0.25)


def test_a_short_replay_of_each_variant_records_the_setting_it_changes(short_cell):
    from torta.runs.experiment.runner import run_cell

    res = run_cell(CELL, tuple(EXPECTED), hours=0.1, trace_hours=1.0, inp=short_cell, state_refresh_s=5.0,
                   log=lambda m: None)
    rows = {r["policy"]: r for r in res.runs}
    assert set(rows) == set(EXPECTED)
    for pol, (h, src, preload) in EXPECTED.items():
        r = rows[pol]
        p = ast.literal_eval(r["policy_params"])
        assert (p["horizon_slots"], p["demand_source"], p["preload"]) == (h, src, preload), pol
        assert r["completed"] + r["dropped"] == r["requests"] == short_cell.requests.height - r["warmup_requests"]
        assert r["completed"] > 0 and p["lp_failures"] == 0
        assert setting(r["policy_params"]) == f"H = {h}, {src}, pre-load {'on' if preload else 'off'}"
    assert ast.literal_eval(rows["torta-horizon-no-preload"]["policy_params"])["preloads"] == 0
    # the settings change what happens, not only the labels: the oracle and persistence plans differ
    digest = {p: (r["response_mean_s"], r["cost_usd"], r["switches"]) for p, r in rows.items()}
    assert len(set(digest.values())) > 1


def test_the_ablation_experiment_is_the_protocol_on_the_multiday_test_cells():
    exp = ablation_experiment()
    assert exp.name == "ablation" and exp.traces == () and exp.baselines == () and exp.references == ()
    assert exp.policies == (ABLATION_REFERENCE, *ABLATIONS) and exp.paired_against == ABLATION_REFERENCE
    assert (exp.hours, exp.warmup_h, exp.state_refresh_s, exp.test_days) == (24.0, 2.0, 5.0, (12, 13, 14))
    cells = exp.test_cells()
    assert [c.key for c in cells[:3]] == [f"abilene|servegen-mix-14d|0|{d}" for d in (12, 13, 14)]
    assert len(cells) == 9 and exp.validation_cells() == [] and exp.reference_policies() == ()
    small = ablation_experiment(scenarios=("geant",), days=1, policies=("torta-horizon-h1", ABLATION_REFERENCE))
    assert small.policies == (ABLATION_REFERENCE, "torta-horizon-h1") and len(small.test_cells()) == 1
    with pytest.raises(ValueError, match="unknown ablation policies"):
        ablation_experiment(policies=(ABLATION_REFERENCE, "least-loaded"))
    with pytest.raises(ValueError, match="must include 'torta-horizon'"):
        ablation_experiment(policies=("torta-horizon-h1",))
    with pytest.raises(ValueError, match="paired_against"):
        Experiment(paired_against="torta-horizon", torta=("torta-ot",))


def _frame() -> pl.DataFrame:
    """2 topologies x 3 days: h1 responds 10 % slower than torta-horizon every day and switches 24 more
    per day; no-preload costs 5 % less on abilene and 15 % less on geant."""
    rows = []
    for sc, cost_cut in (("abilene", 0.05), ("geant", 0.15)):
        for d in (12, 13, 14):
            base = {"scenario": sc, "day": d, "response_mean_s": 10.0 + d, "cost_usd": 100.0, "switches": 100}
            rows.append({**base, "policy": ABLATION_REFERENCE,
                         "policy_params": str({"horizon_slots": 8, "demand_source": "forecast", "preload": True})})
            rows.append({**base, "policy": "torta-horizon-h1", "response_mean_s": (10.0 + d) * 1.1,
                         "switches": 124,
                         "policy_params": str({"horizon_slots": 1, "demand_source": "forecast", "preload": True})})
            rows.append({**base, "policy": "torta-horizon-no-preload", "cost_usd": 100.0 * (1 - cost_cut),
                         "policy_params": str({"horizon_slots": 8, "demand_source": "forecast", "preload": False})})
    return pl.DataFrame(rows).with_columns(
        workload=pl.lit("servegen-mix-14d"), seed=pl.lit(0), role=pl.lit("test"), experiment=pl.lit("ablation"),
        batch=pl.lit("ablation-x"), hours=pl.lit(24.0), warmup_h=pl.lit(2.0), protocol_state_refresh_s=pl.lit(5.0),
        completed=pl.lit(1000))


def test_paired_rows_per_topology_and_pooled():
    rows = {(r["scope"], r["policy"]): r for r in
            paired_rows(_frame(), ABLATION_REFERENCE, ("torta-horizon-h1", "torta-horizon-no-preload"))}
    h1 = rows[("all / all", "torta-horizon-h1")]
    assert h1["pairs"] == 6 and h1["response_mean_s_pct"] == pytest.approx(10.0)
    assert h1["switches_per_day_diff"] == pytest.approx(24.0) and h1["switches_per_day_diff_ci95"] == pytest.approx(0.0)
    assert rows[("abilene / servegen-mix-14d", "torta-horizon-no-preload")]["cost_usd_pct"] == pytest.approx(-5.0)
    pooled = rows[("all / all", "torta-horizon-no-preload")]
    assert pooled["cost_usd_pct"] == pytest.approx(-10.0) and pooled["cost_usd_pct_ci95"] > 0  # 5 % vs 15 %
    ref = rows[("geant / servegen-mix-14d", ABLATION_REFERENCE)]
    assert ref["pairs"] == 0 and ref["response_mean_s"] == pytest.approx(23.0) and ref["setting"].startswith("H = 8")
    assert setting(str({"demand_source": "last", "checkpoint": "abilene-torta.pt"})) == "PPO"  # plans on its own
    assert setting("not a dict {") == "" and setting(None) == ""


def test_ablations_markdown(tmp_path):
    runs = _frame()
    paper = pl.concat([runs.filter(pl.col("policy") == ABLATION_REFERENCE),
                       runs.filter(pl.col("policy") == ABLATION_REFERENCE).with_columns(
                           policy=pl.lit("torta-ot"), response_mean_s=pl.lit(20.0)),
                       runs.filter(pl.col("policy") == ABLATION_REFERENCE).with_columns(
                           policy=pl.lit("torta"), response_mean_s=pl.lit(25.0))]).with_columns(
        experiment=pl.lit("paper"), batch=pl.lit("paper-y"))
    planned = [Cell(sc, "servegen-mix-14d", 0, d).key for sc in ("abilene", "geant", "chinanet") for d in (12, 13, 14)]
    md = render_ablations(runs, batch="ablation-x", paper_runs=paper, planned_cells=planned)
    assert "Partial results: 6 of the 9 test cells" in md and "`torta experiment ablation` resumes" in md
    h1 = next(ln for ln in md.splitlines() if ln.startswith("| all / all | `torta-horizon-h1`"))
    assert "+10.0 [+10.0, +10.0] (6)" in h1 and "+24.0 [+24.0, +24.0] (6)" in h1 and "H = 1, forecast" in h1
    assert "## Demand source" in md and "No runs of `torta-horizon-oracle`, `torta-horizon-last`" in md
    ppo = next(ln for ln in md.splitlines() if ln.startswith("| all / all | `torta` |"))
    assert "+25.0 [+25.0, +25.0] (6)" in ppo  # 25 s against torta-ot's 20 s, every day
    assert "batch `paper-y`" in md and "6 of 6 cells identical" in md
    whole = render_ablations(runs, batch="ablation-x", planned_cells=planned[:6])
    assert "Partial results" not in whole and "No paper experiment rows" in whole
    with pytest.raises(ValueError, match="no test runs of 'torta-horizon'"):
        render_ablations(runs.filter(pl.col("policy") != ABLATION_REFERENCE), batch="b")


def test_ablation_command_end_to_end_and_resumed_from_its_export(tmp_path, monkeypatch):
    """`torta experiment ablation` on one short cell (two policies) into a tmp warehouse, rows exported,
    ABLATIONS.md written; a second warehouse resumes from the export and replays nothing."""
    import json

    from click.testing import CliRunner

    from pipelines.commands.experiment import cli

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    export, out = tmp_path / "export", tmp_path / "ABLATIONS.md"
    args = ["ablation", "--scenarios", "abilene", "--days", "1", "--hours", "0.05", "--warmup-hours", "0.25",
            "--policies", "torta-horizon,torta-horizon-no-preload", "--export", str(export), "--out", str(out),
            "--paper-export", "", "--json"]
    res = CliRunner().invoke(cli, [*args, "--warehouse", str(tmp_path / "a" / "torta.duckdb")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["experiment"] == "ablation" and doc["cells"] == 1 and doc["validation_cells"] == 0
    assert doc["policies"] == ["torta-horizon", "torta-horizon-no-preload"]
    rows = pl.read_parquet(export / "runs" / "abilene__servegen-mix-14d__s0__d12__test.parquet")
    assert sorted(rows["policy"].to_list()) == ["torta-horizon", "torta-horizon-no-preload"]
    md = out.read_text()
    assert "## Pre-loading" in md and "`torta-horizon-no-preload`" in md and "Partial results: 1 of the 9" in md
    again = CliRunner().invoke(cli, [*args, "--warehouse", str(tmp_path / "b" / "torta.duckdb")])
    assert again.exit_code == 0, again.output
    doc2 = json.loads(again.stdout.strip().splitlines()[-1])
    assert doc2["cells"] == 0 and doc2["skipped_cells"] == 1 and doc2["batch"] == doc["batch"]
    res3 = CliRunner().invoke(cli, ["results", "--experiment", "ablation", "--out", str(tmp_path / "B.md"),
                                    "--warehouse", str(tmp_path / "c" / "torta.duckdb"), "--export", str(export),
                                    "--paper-export", ""])  # a fresh warehouse: rendered from the export alone
    assert res3.exit_code == 0, res3.output
    section = lambda text: text.split("## Pre-loading", 1)[1].split("\n## ", 1)[0]  # noqa: E731
    assert section((tmp_path / "B.md").read_text()) == section(md)
