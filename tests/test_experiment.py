"""The paper experiment: definition invariants, the claims' verdict logic and RESULTS.md rendering from
a small hand-made frame, and the reduced experiment end to end into a tmp warehouse."""

import dagster as dg
import polars as pl
import pytest

from torta.runs.experiment.aggregate import claims_table, paired_table, strongest_baselines, verdict
from torta.runs.experiment.definition import TRACE_DAY, Cell, Experiment, paper_experiment
from torta.runs.experiment.render import render_results


def test_full_definition_meets_the_protocol():
    exp = paper_experiment()
    assert len(exp.scenarios) >= 3 and {"abilene", "geant"} <= set(exp.scenarios)
    assert exp.seeds >= 1 and exp.test_days == (12, 13, 14) and exp.tune_day == 11
    assert exp.hours == 24.0 and exp.tune_hours == 24.0  # whole days (issue 17)
    assert exp.warmup_h == 2.0 and exp.state_refresh_s == 5.0 and exp.reference_policies() == ("least-loaded@S0",)
    assert {"azure-2023-conv", "azure-2023-code"} <= set(exp.traces) and "servegen-mix-14d" in exp.workloads
    assert {"round-robin", "local-only", "least-loaded", "least-loaded-d2", "skylb", "myopic-ot", "acs"} <= set(exp.policies)
    assert {"torta", "torta-no-forecast", "torta-no-micro", "torta-ot", "torta-horizon", "torta-horizon-ppo"} <= set(exp.policies)
    assert "ppo-only" not in exp.policies
    cells = exp.test_cells()
    assert len(cells) == 3 * (3 + 2) * exp.seeds and len(set(c.key for c in cells)) == len(cells)
    assert all(c.day in (12, 13, 14) for c in cells if c.day != TRACE_DAY)
    val = exp.validation_cells()  # per topology AND workload (the hour traces' first 15 minutes)
    assert [c.day for c in val] == [11] * 9 and len({(c.scenario, c.workload) for c in val}) == 9
    assert not {c.key for c in val} & {c.key for c in cells}


def test_windows_must_be_disjoint_and_sizes_valid():
    with pytest.raises(ValueError, match="overlaps"):
        Experiment(test_days=(11, 12))
    with pytest.raises(ValueError, match="training days"):
        Experiment(train_days=(1, 12))
    with pytest.raises(ValueError, match="seeds"):
        Experiment(seeds=0)
    with pytest.raises(ValueError, match="unknown experiment policies"):
        paper_experiment(policies=("nope",))
    with pytest.raises(ValueError, match="expected"):
        Cell.from_key("abilene|x|0")


def test_reduced_is_small_and_unavailable_policies_drop_out():
    r = paper_experiment(reduced=True)
    assert len(r.scenarios) == 1 and r.seeds == 2 and len(r.policies) == 3 and r.hours <= 0.1
    e = paper_experiment().with_policies({"least-loaded", "torta-ot"})
    assert e.baselines == ("least-loaded",) and e.torta == ("torta-ot",) and e.claim_policy() == "torta-ot"


@pytest.mark.parametrize("mean,half,n,expected", [
    (-5.0, 2.0, 5, "reproduced"), (5.0, 2.0, 5, "not reproduced"), (-1.0, 2.0, 5, "inconclusive"),
    (0.0, 0.0, 5, "not reproduced"), (-5.0, 0.0, 1, "inconclusive")])
def test_verdict(mean, half, n, expected):
    assert verdict(mean, half, n) == expected


def _frame():
    """3 seeds x 1 day on one scenario; torta-ot: response 10 % lower than least-loaded (clear), load_std
    up by 10 % (clear loss), cost noisy around zero (inconclusive). round-robin is worse on validation."""
    rows = []
    noise = [-3.0, 4.0, -1.5]
    for s in range(3):
        base = {"response_mean_s": 10.0 + s, "response_p95_s": 20.0, "load_std": 0.2, "cost_usd": 1.0,
                "energy_usd": 0.9, "transfer_usd": 0.1, "switching_usd": 0.0, "switches": 2, "requests": 100}
        rows.append({**base, "policy": "least-loaded", "seed": s})
        rows.append({**base, "policy": "round-robin", "seed": s, "response_mean_s": 30.0})
        rows.append({**base, "policy": "torta-ot", "seed": s, "response_mean_s": (10.0 + s) * 0.9,
                     "load_std": 0.22, "cost_usd": 1.0 + noise[s] / 100})
    test = pl.DataFrame(rows).with_columns(scenario=pl.lit("abilene"), workload=pl.lit("servegen-mix-14d"),
                                           day=pl.lit(12), role=pl.lit("test"), experiment=pl.lit("paper"),
                                           hours=pl.lit(0.25), trace_hours=pl.lit(1.0),
                                           skylb_threshold=pl.lit(0.0))
    val = test.filter(pl.col("seed") == 0).with_columns(day=pl.lit(11), role=pl.lit("validation"))
    return pl.concat([test, val])


def test_claims_and_paired_differences_from_a_small_frame():
    runs = _frame()
    test, val = runs.filter(pl.col("role") == "test"), runs.filter(pl.col("role") == "validation")
    best = strongest_baselines(val, test, ("least-loaded", "round-robin"))
    k = ("abilene", "servegen-mix-14d")
    assert best[k][0] == "least-loaded" and "validation" in best[k][1]
    claims = claims_table(test, best, "torta-ot")
    assert set(claims.filter(pl.col("scenario") == "abilene")["workload"]) == {"servegen-mix-14d", "all"}
    c = claims.filter(pl.col("scenario") == "abilene", pl.col("workload") == "servegen-mix-14d")
    by = {r["claim"]: r for r in c.iter_rows(named=True)}
    assert by["response time"]["verdict"] == "reproduced"
    assert by["response time"]["diff_pct"] == pytest.approx(-10.0)
    assert by["response time"]["magnitude"] == "within the claimed range"
    assert by["load balance"]["verdict"] == "not reproduced"
    assert by["load balance"]["diff_pct"] == pytest.approx(10.0)
    assert by["operational cost"]["verdict"] == "inconclusive"
    p = paired_table(test, best).filter(pl.col("policy") == "round-robin")
    assert p["pairs"][0] == 3 and p["response_mean_s_diff"][0] == pytest.approx(30.0 - 11.0)


def test_results_markdown_states_each_claim(tmp_path):
    md = render_results(_frame(), batch="paper-x", figures_dir=tmp_path / "figures", md_dir=tmp_path)
    assert "batch `paper-x`" in md and "abilene/servegen-mix-14d: `least-loaded`" in md
    for claim, v in (("response time", "reproduced"), ("load balance", "not reproduced"),
                     ("operational cost", "inconclusive")):
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {claim} |") and "abilene /" in ln)
        assert f"**{v}**" in line
    assert "-10.0 %" in md and "+10.0 %" in md
    assert "abilene/servegen-mix-14d 3 (seeds 0,1,2, days 12; 9 runs)" in md
    assert (tmp_path / "figures" / "claims.png").stat().st_size > 1000
    assert "(figures/claims.png)" in md
    assert "Partial results" not in md
    with pytest.raises(ValueError, match="no runs"):
        render_results(_frame().head(0), batch="b")


def test_results_of_a_batch_missing_planned_cells_say_so_at_the_top(tmp_path):
    ran = [f"abilene|servegen-mix-14d|{s}|12" for s in range(3)]
    whole = render_results(_frame(), batch="b", planned_cells=ran)
    assert "Partial results" not in whole
    md = render_results(_frame(), batch="b", planned_cells=[*ran, "geant|servegen-mix-14d|0|12"])
    banner = next(i for i, ln in enumerate(md.splitlines()) if "Partial results: 3 of the 4 test cells" in ln)
    assert banner < 6 and "`geant|servegen-mix-14d|0|12`" in md.splitlines()[banner]


def test_reduced_experiment_end_to_end(warehouse_db, tmp_path):
    """The reduced experiment with one seed (3 materializations) through Dagster into a tmp warehouse;
    torta-ot-last (no forecaster fit) keeps it fast; the slow test below runs `--reduced` as is."""
    from pipelines.experiment import load_runs, run_paper, write_results

    exp = paper_experiment(reduced=True, hours=0.02, seeds=1, policies=("least-loaded", "skylb", "torta-ot-last"))
    logs = []
    with dg.DagsterInstance.ephemeral() as inst:
        out = run_paper(exp, str(warehouse_db), batch="paper-reduced-test", log=logs.append, instance=inst)
    assert "estimated run time" in "\n".join(logs[:8])
    assert out["cells"] == 2 and out["validation_cells"] == 2
    runs, batch = load_runs(str(warehouse_db), "paper-reduced")
    assert batch == "paper-reduced-test"
    assert set(runs.filter(pl.col("role") == "validation")["policy"]) == {"least-loaded", "skylb"}
    test = runs.filter(pl.col("role") == "test")
    assert test.height == 2 * 4 and set(test["policy"]) == {"least-loaded", "skylb", "torta-ot-last",
                                                             "least-loaded@S0"}
    assert set(test["warmup_s"].to_list()) == {900.0} and set(test["state_refresh_s"]) == {5.0, 0.0}
    assert set(test.filter(pl.col("policy") == "least-loaded@S0")["state_refresh_s"]) == {0.0}
    assert ((test["completed"] + test["dropped"]) == test["requests"]).all()
    # every policy of a cell saw the identical requests
    assert test.group_by("cell").agg(pl.col("requests").n_unique())["requests"].max() == 1
    th = runs.filter(pl.col("policy") == "skylb")["skylb_threshold"].unique().to_list()
    assert len(th) == 1 and th[0] in exp.skylb_candidates
    r = write_results(str(warehouse_db), "paper-reduced", None, tmp_path / "RESULTS.md", tmp_path / "fig")
    text = (tmp_path / "RESULTS.md").read_text()
    assert r["runs"] == runs.height and "## The paper's claims" in text
    assert "No TORTA policy in this batch" in text  # torta-ot-last is an ablation, not TORTA


def _assert_sweep_backfill(inst, out: dict, keys: set[str]) -> None:
    """The sweep is a finished asset backfill of `experiment_cell` over its cells, in the UI's Backfills,
    and each of its runs is tagged with it and placed under code location `torta` (the Timeline)."""
    from dagster._core.execution.backfill import BulkActionStatus

    bf = inst.get_backfill(out["backfill"])
    assert bf is not None and bf.status == BulkActionStatus.COMPLETED_SUCCESS and bf.is_asset_backfill
    assert bf.tags["batch"] == out["batch"] and bf.tags["torta/sweep"] == out["sweep"]
    assert bf.asset_selection == [dg.AssetKey("experiment_cell")]
    data = bf.asset_backfill_data
    done = data.materialized_subset.get_partitions_subset(dg.AssetKey("experiment_cell")).get_partition_keys()
    assert set(data.target_subset.get_partitions_subset(dg.AssetKey("experiment_cell")).get_partition_keys()) \
        == set(done) == keys
    runs = inst.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": out["backfill"]}))
    assert len(runs) == out["cells"] + out["validation_cells"]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS and r.job_name == "experiment_paper" for r in runs)
    assert {r.tags["dagster/partition"] for r in runs} == keys
    assert {r.remote_job_origin.location_name for r in runs} == {"torta"}
    assert inst.get_materialized_partitions(dg.AssetKey("experiment_cell")) >= keys


def test_a_failed_cell_fails_the_sweeps_backfill(warehouse_db, monkeypatch):
    """A cell that fails stops the sweep; its backfill record ends FAILED with the cell's error, the
    cell in the failed subset."""
    import click
    from dagster._core.execution.backfill import BulkActionStatus

    import torta.runs.experiment.runner as runner
    from pipelines.experiment import run_paper

    def broken(*args, **kwargs):
        raise RuntimeError("the replay broke")

    monkeypatch.setattr(runner, "run_cell", broken)
    exp = paper_experiment(reduced=True, hours=0.02, seeds=1, traces=(), policies=("least-loaded", "torta-ot-last"))
    with dg.DagsterInstance.ephemeral() as inst:
        with pytest.raises(click.ClickException, match="the replay broke"):
            run_paper(exp, str(warehouse_db), log=lambda m: None, instance=inst)
        (bf,) = inst.get_backfills()
        assert bf.status == BulkActionStatus.FAILED and "the replay broke" in bf.error.message
        failed = bf.asset_backfill_data.failed_and_downstream_subset
        assert set(failed.get_partitions_subset(dg.AssetKey("experiment_cell")).get_partition_keys()) == \
            {exp.validation_cells()[0].key}
        (run,) = inst.get_runs()
        assert run.status == dg.DagsterRunStatus.FAILURE and run.tags["dagster/backfill"] == bf.backfill_id


def test_cancel_on_the_backfill_page_stops_the_sweep(warehouse_db, monkeypatch):
    """Cancel on the sweep's backfill page (the UI's mutation sets the record CANCELING) stops the sweep
    before its next cell; the record ends CANCELED with the cells that finished."""
    from dagster._core.execution.backfill import BulkActionStatus

    import pipelines.backfills as pb
    from pipelines.experiment import run_paper

    finished = pb.SweepBackfill.finished

    def finished_then_cancel(self, key, ok):
        finished(self, key, ok)
        self.instance.update_backfill(self.record().with_status(BulkActionStatus.CANCELING))  # as the UI does

    monkeypatch.setattr(pb.SweepBackfill, "finished", finished_then_cancel)
    exp = paper_experiment(reduced=True, hours=0.02, seeds=1, traces=(), policies=("least-loaded", "torta-ot-last"))
    with dg.DagsterInstance.ephemeral() as inst:
        with pytest.raises(pb.SweepCanceled, match="canceled from the Dagster UI"):
            run_paper(exp, str(warehouse_db), log=lambda m: None, instance=inst)
        (bf,) = inst.get_backfills()
        assert bf.status == BulkActionStatus.CANCELED
        done = bf.asset_backfill_data.materialized_subset.get_partitions_subset(dg.AssetKey("experiment_cell"))
        assert set(done.get_partition_keys()) == {exp.validation_cells()[0].key}  # the test cell never ran
        assert [r.status for r in inst.get_runs()] == [dg.DagsterRunStatus.SUCCESS]


def test_a_resumed_experiment_skips_finished_cells_and_imports_exported_rows(warehouse_db, tmp_path):
    """Resumable (issue 17 item 8): a second run materializes nothing; a new warehouse resumes from the
    rows a first run exported (what a later session finds committed under docs/data/)."""
    from pipelines.experiment import load_runs, run_paper

    exp = paper_experiment(reduced=True, hours=0.02, seeds=1, traces=(), policies=("least-loaded", "torta-ot-last"))
    export = tmp_path / "export"
    with dg.DagsterInstance.ephemeral() as inst:
        first = run_paper(exp, str(warehouse_db), log=lambda m: None, instance=inst, export_dir=export)
        _assert_sweep_backfill(inst, first, {c.key for c in exp.validation_cells() + exp.test_cells()})
        logs = []
        again = run_paper(exp, str(warehouse_db), log=logs.append, instance=inst, export_dir=export)
        assert again["backfill"] is None and len(inst.get_backfills()) == 1  # nothing to run: no new record
    assert first["cells"] == 1 and first["validation_cells"] == 1
    assert len(list((export / "runs").glob("*.parquet"))) == 2
    assert again["cells"] == 0 and again["validation_cells"] == 0 and again["skipped_cells"] == 2
    assert again["batch"] == first["batch"] and any("already in the warehouse" in m for m in logs)
    other = tmp_path / "other" / "torta.duckdb"
    with dg.DagsterInstance.ephemeral() as inst:
        moved = run_paper(exp, str(other), log=lambda m: None, instance=inst, export_dir=export)
    assert moved["cells"] == 0 and moved["skipped_cells"] == 2
    a, _ = load_runs(str(warehouse_db), "paper-reduced")
    b, _ = load_runs(str(other), "paper-reduced")
    cols = ["key", "response_mean_s", "requests", "switches"]
    assert a.select(cols).sort("key").equals(b.select(cols).sort("key"))


@pytest.mark.slow
def test_reduced_command_end_to_end(tmp_path, monkeypatch):
    """`torta experiment paper --reduced` exactly as CI-sized: 2 seeds, 3 policies, one topology."""
    import json

    from click.testing import CliRunner

    from pipelines.commands.experiment import cli

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    db = tmp_path / "wh" / "torta.duckdb"
    res = CliRunner().invoke(cli, ["paper", "--reduced", "--warehouse", str(db), "--json",
                                   "--out", str(tmp_path / "R.md"), "--figures", str(tmp_path / "f")])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout.strip().splitlines()[-1])
    assert doc["cells"] == 4 and doc["experiment"] == "paper-reduced" and doc["wall_s"] > 0
    assert "reproduced" in (tmp_path / "R.md").read_text()


def test_job_definition_resolves_with_the_project_definitions():
    """The experiment's asset and job are part of the project's definitions and resolve together."""
    from pipelines.definitions import defs

    job = defs.resolve_job_def("experiment_paper")
    assert job.partitions_def is not None and job.partitions_def.name == "experiment_cells"


@pytest.mark.slow
def test_workers_run_cells_in_parallel_processes_with_the_same_results(warehouse_db, tmp_path, monkeypatch):
    """`workers=2`: cells materialize in two spawned worker processes on the DAGSTER_HOME instance;
    the rows equal those of the one-process run (same cells, same numbers), the command and the
    worker count are recorded and stated in RESULTS.md."""
    from pipelines.experiment import load_runs, run_paper, write_results

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    (tmp_path / "dh").mkdir()
    exp = paper_experiment(reduced=True, hours=0.02, seeds=1,
                           policies=("least-loaded", "skylb", "torta-ot-last"))
    with pytest.raises(ValueError, match="pass no instance"):
        with dg.DagsterInstance.ephemeral() as inst:
            run_paper(exp, str(warehouse_db), batch="x", log=lambda m: None, instance=inst, workers=2)
    logs = []
    out = run_paper(exp, str(warehouse_db), batch="two", log=logs.append, workers=2,
                    command="torta experiment paper --workers 2")
    assert out["workers"] == 2 and out["cells"] == 2
    assert any("2 workers" in m for m in logs)
    db1 = tmp_path / "wh1" / "torta.duckdb"  # run keys do not carry the batch: another warehouse
    with dg.DagsterInstance.ephemeral() as inst:
        run_paper(exp, str(db1), batch="one", log=lambda m: None, instance=inst)
    two, _ = load_runs(str(warehouse_db), "paper-reduced", "two")
    one, _ = load_runs(str(db1), "paper-reduced", "one")
    assert two.height == one.height == 2 * 2 + 2 * 4  # validation: 2 cells x 2 baselines; 2 test cells x 4
    assert set(two["workers"].to_list()) == {2}
    assert set(two["run_command"].to_list()) == {"torta experiment paper --workers 2"}
    cols = ["cell", "role", "policy", "requests", "completed", "dropped", "response_mean_s", "cost_usd", "switches"]
    assert two.select(cols).sort("cell", "role", "policy").equals(one.select(cols).sort("cell", "role", "policy"))
    write_results(str(warehouse_db), "paper-reduced", "two", tmp_path / "R.md", tmp_path / "f", wall_s=out["wall_s"])
    text = (tmp_path / "R.md").read_text()
    assert "One command ran the whole batch: `torta experiment paper --workers 2`" in text
    assert "cells ran 2 at a time in 2 worker processes" in text


def test_paper_command_passes_workers_and_the_command_line(monkeypatch):
    import json

    from click.testing import CliRunner

    import pipelines.experiment as pe
    from pipelines.commands.experiment import cli

    seen = {}

    def fake_run_paper(exp, database, batch, workers=1, command="", progress=False, export_dir=None, resume=True,
                       redo=()):
        seen.update(workers=workers, command=command, seeds=exp.seeds, export_dir=export_dir, resume=resume)
        if redo:
            seen["redo"] = redo
        return {"batch": "b", "cells": 1, "wall_s": 1.0, "workers": workers}

    monkeypatch.setattr(pe, "run_paper", fake_run_paper)
    r = CliRunner().invoke(cli, ["paper", "--workers", "2", "--seeds", "3", "--no-results", "--json"])
    assert r.exit_code == 0, r.output
    # rebuilt from the options given (`torta experiment paper ...` under the torta CLI; `cli` here)
    assert seen == {"workers": 2, "command": "cli paper --seeds 3 --no-results --workers 2 --json", "seeds": 3,
                    "export_dir": "docs/data/paper", "resume": True}  # resumable, rows exported by default
    assert json.loads(r.stdout)["workers"] == 2
    r = CliRunner().invoke(cli, ["paper", "--redo-policies", "torta-ot,torta-horizon", "--no-results"])
    assert r.exit_code == 0, r.output
    assert seen["redo"] == ("torta-ot", "torta-horizon")
    r = CliRunner().invoke(cli, ["paper", "--workers", "0"])
    assert r.exit_code != 0 and "--workers" in r.output


def test_adding_a_policy_to_a_finished_experiment_runs_only_it_and_merges(warehouse_db, tmp_path):
    """Incremental per policy: a finished reduced experiment given one more TORTA policy replays only
    that policy in each test cell (validation cells run baselines only: nothing to do there), with the
    cell's recorded run_uid and SkyLB threshold; the other policies' runs rows stay byte-identical, and
    the per-cell partitions (slot_metrics, slot_response) and exported files hold both."""
    from pipelines import warehouse as wh
    from pipelines.experiment import _file_key, load_runs, run_paper

    pols = ("least-loaded", "skylb", "torta-ot-last")
    exp = paper_experiment(reduced=True, hours=0.02, seeds=1, traces=(), policies=pols)
    export = tmp_path / "export"
    cell = exp.test_cells()[0]
    with dg.DagsterInstance.ephemeral() as inst:
        first = run_paper(exp, str(warehouse_db), log=lambda m: None, instance=inst, export_dir=export)
        before, _ = load_runs(str(warehouse_db), "paper-reduced")
        files = {k: wh.partition_files(warehouse_db, "runs", k)[0].read_bytes() for k in before["key"]}
        logs = []
        more = paper_experiment(reduced=True, hours=0.02, seeds=1, traces=(), policies=(*pols, "torta-ot-oracle"))
        second = run_paper(more, str(warehouse_db), log=logs.append, instance=inst, export_dir=export)
        assert second["cells"] == 1 and second["validation_cells"] == 0 and second["skipped_cells"] == 1
        assert second["partial_cells"] == {f"{cell.key}|test": ["torta-ot-oracle"]}
        assert second["batch"] == first["batch"]
        assert any("only the missing ones run" in m and "torta-ot-oracle" in m for m in logs)
        (bf,) = [b for b in inst.get_backfills() if b.backfill_id == second["backfill"]]
        (run,) = inst.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": bf.backfill_id}))
        assert run.run_config["ops"]["experiment_cell"]["config"]["policies"] == ["torta-ot-oracle"]
        again = run_paper(more, str(warehouse_db), log=lambda m: None, instance=inst, export_dir=export)
        assert again["cells"] == 0 and again["backfill"] is None  # now complete
    after, _ = load_runs(str(warehouse_db), "paper-reduced")
    assert after.height == before.height + 1
    for k, blob in files.items():  # nothing rewritten, nothing dropped
        assert wh.partition_files(warehouse_db, "runs", k)[0].read_bytes() == blob
    new = after.filter(pl.col("policy") == "torta-ot-oracle")
    old_test = before.filter((pl.col("cell") == cell.key) & (pl.col("role") == "test"))
    assert new["run_uid"][0] == old_test["run_uid"][0]  # the cell keeps one run_uid
    assert new["skylb_threshold"][0] == old_test["skylb_threshold"][0]
    assert new["requests"][0] == old_test["requests"][0]  # the same requests
    part = f"paper-reduced|{cell.key}"
    for table in ("slot_metrics", "slot_response"):
        got = set(wh.read_table(warehouse_db, table, part)["policy"])
        assert got == {*pols, "least-loaded@S0", "torta-ot-oracle"}
    view = wh.query(warehouse_db, "select distinct policy from slot_metrics where key like $k", {"k": f"%{cell.key}%"})
    assert set(view["policy"]) == {*pols, "least-loaded@S0", "torta-ot-oracle"}
    ex = pl.read_parquet(export / "runs" / f"{_file_key(cell)}.parquet")
    assert set(ex["policy"]) == {*pols, "least-loaded@S0", "torta-ot-oracle"}
    old_ex = ex.filter(pl.col("policy") != "torta-ot-oracle").sort("key")
    assert old_ex.select(before.columns).equals(old_test.sort("key").select(before.columns))
    resp = pl.read_parquet(export / "slot_response" / f"{_file_key(cell)}.parquet")
    assert set(resp["policy"]) == {*pols, "least-loaded@S0", "torta-ot-oracle"}


def test_results_check_the_claims_and_switches_of_torta_horizon_too(tmp_path):
    """RESULTS.md keeps the claims of the claims' policy and adds the same tables (pooled and per
    topology) for `torta-horizon`, and switches per day of both against the strongest baseline."""
    from torta.runs.experiment.render import switches_table

    runs = _frame()
    hz = runs.filter((pl.col("policy") == "least-loaded") & (pl.col("role") == "test")).with_columns(
        policy=pl.lit("torta-horizon"), response_mean_s=pl.col("response_mean_s") * 0.8, switches=pl.lit(3))
    runs = pl.concat([runs, hz], how="diagonal_relaxed")
    md = render_results(runs, batch="b", figures_dir=tmp_path / "f", md_dir=tmp_path)
    assert "### Pooled over every topology and workload" in md  # torta-ot's (the claims' policy) stay
    assert "### The same claims for `torta-horizon`" in md and "also for `torta-horizon`" in md
    sec = md[md.index("### The same claims for `torta-horizon`"):]
    line = next(ln for ln in sec.splitlines() if ln.startswith("| response time |") and "all / all" in ln)
    assert "-20.0 %" in line and "**reproduced**" in line
    assert any(ln.startswith("| response time |") and "abilene / servegen-mix-14d" in ln for ln in sec.splitlines())
    rows = {r["policy"]: r for r in switches_table(runs.filter(pl.col("role") == "test"),
                                                    {("abilene", "servegen-mix-14d"): ("least-loaded", "")},
                                                    ["torta-ot", "torta-horizon"])}
    assert rows["torta-horizon"]["per_day"] == 3 * 96 and rows["torta-horizon"]["baseline_per_day"] == 2 * 96
    assert rows["torta-horizon"]["ratio"] == 1.5 and rows["torta-ot"]["ratio"] == 1.0
    assert "### Model switches per day against the strongest baseline" in md
    sw = next(ln for ln in md.splitlines() if ln.startswith("| abilene / servegen-mix-14d | `torta-horizon` |"))
    assert "1.50" in sw and "**yes**" in sw


def test_cell_wall_time_sums_the_runs_that_wrote_a_cell():
    from torta.runs.experiment.render import _cell_walls

    runs = pl.DataFrame({"cell": ["c"] * 3, "role": ["test"] * 3, "dagster_run_id": ["r1", "r1", "r2"],
                         "cell_wall_s": [100.0, 100.0, 30.0]})
    assert _cell_walls(runs)["cell_wall_s"].to_list() == [130.0]


@pytest.mark.slow
def test_redo_policies_replays_only_them_and_keeps_the_other_rows(warehouse_db, tmp_path):
    """`--redo-policies` (a policy whose code changed): its rows are deleted from the warehouse and the
    exported files first, so each cell replays only it; the other policies' runs rows stay byte-identical,
    the redone rows replace the old ones (same requests, same result: the code did not change here), and
    an unknown policy is refused before anything is deleted."""
    from pipelines import warehouse as wh
    from pipelines.experiment import _file_key, load_runs, run_paper

    pols = ("least-loaded", "torta-ot-last")
    exp = paper_experiment(reduced=True, hours=0.02, seeds=1, traces=(), policies=pols)
    export = tmp_path / "export"
    cell = exp.test_cells()[0]
    with dg.DagsterInstance.ephemeral() as inst:
        run_paper(exp, str(warehouse_db), log=lambda m: None, instance=inst, export_dir=export)
        before, _ = load_runs(str(warehouse_db), "paper-reduced")
        keep = before.filter(pl.col("policy") != "torta-ot-last")
        files = {k: wh.partition_files(warehouse_db, "runs", k)[0].read_bytes() for k in keep["key"]}
        with pytest.raises(ValueError, match="skylb"):
            run_paper(exp, str(warehouse_db), log=lambda m: None, instance=inst, export_dir=export, redo=("skylb",))
        assert load_runs(str(warehouse_db), "paper-reduced")[0].height == before.height  # nothing deleted
        logs = []
        redo = run_paper(exp, str(warehouse_db), log=logs.append, instance=inst, export_dir=export,
                         redo=("torta-ot-last",))
    assert redo["cells"] == 1 and redo["validation_cells"] == 0
    assert redo["partial_cells"] == {f"{cell.key}|test": ["torta-ot-last"]}
    assert any("forgot torta-ot-last: 1 runs rows" in m for m in logs)
    after, _ = load_runs(str(warehouse_db), "paper-reduced")
    assert after.height == before.height
    for k, blob in files.items():
        assert wh.partition_files(warehouse_db, "runs", k)[0].read_bytes() == blob
    old = before.filter(pl.col("policy") == "torta-ot-last")
    new = after.filter(pl.col("policy") == "torta-ot-last")
    assert new["finished_at"][0] > old["finished_at"][0]  # replayed again
    for col in ("requests", "response_mean_s", "switches", "run_uid"):
        assert new[col][0] == old[col][0]
    ex = pl.read_parquet(export / "runs" / f"{_file_key(cell)}.parquet")
    assert sorted(ex["policy"]) == sorted({*pols, "least-loaded@S0"})  # one row each, none lost
    resp = pl.read_parquet(export / "slot_response" / f"{_file_key(cell)}.parquet")
    assert resp.filter(pl.col("policy") == "torta-ot-last")["batch"].n_unique() == 1
    assert set(resp["policy"]) == {*pols, "least-loaded@S0"}


def test_value_of_foresight_pools_the_pairs_over_topologies():
    """Issue 18's acceptance reads torta-ot-oracle against torta-ot-last paired and pooled over the
    topologies: a pooled row per workload holds every pair of every topology, with its interval."""
    from torta.runs.experiment.render import _foresight_lines

    rows = []
    for sc, base in (("abilene", 10.0), ("geant", 20.0)):
        for day in (12, 13):
            for pol, f in (("torta-ot-oracle", 0.8), ("torta-ot", 0.9), ("torta-ot-last", 1.0)):
                rows.append({"scenario": sc, "workload": "w", "seed": 0, "day": day, "policy": pol,
                             "response_mean_s": base * f * (1.0 + 0.1 * (day - 12))})
    md = "\n".join(_foresight_lines(pl.DataFrame(rows)))
    line = next(ln for ln in md.splitlines() if ln.startswith("| all / w | `torta-ot-oracle` vs `torta-ot-last`"))
    assert "-20.0 [-20.0, -20.0] (4)" in line  # 4 pairs: 2 topologies x 2 days, each -20 %
    assert "| abilene / w | `torta-ot` vs `torta-ot-last` | -10.0 [-10.0, -10.0] (2)" in md
    assert "all / all" not in md  # one workload: the per-workload pool is the whole pool
    assert "the oracle at most persistence; the forecast between them." in md


def test_results_say_which_policies_lack_rows_in_some_cells(tmp_path):
    """A sweep in progress (incremental, or --redo-policies): a policy with rows in fewer cells than ran
    is named at the top with its count; a complete frame has no such banner."""
    runs = _frame()
    md = render_results(runs, batch="b")
    assert "Partial results per policy" not in md
    test = runs.filter(pl.col("role") == "test")
    first = test.filter(pl.col("policy") == "torta-ot").sort("seed", "day").head(1)
    drop = first.select("scenario", "workload", "seed", "day", "policy")
    fewer = runs.join(drop, on=["scenario", "workload", "seed", "day", "policy"], how="anti")
    cells = test.select(pl.concat_str("scenario", "workload", "seed", "day", separator="|").n_unique()).item()
    md = render_results(fewer, batch="b")
    assert f"> **Partial results per policy: of the {cells} test cells that ran,** `torta-ot` has rows in {cells - 1}" in md
