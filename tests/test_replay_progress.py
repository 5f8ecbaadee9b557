"""The replay's progress bar moves during the run with an honest rate, set-up stages are named, and
outputs do not depend on it; every long command has the same --progress/--no-progress."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest
from click.testing import CliRunner

from torta.cli import main
from torta.fleet.scenario import load_scenario
from torta.sim.replay import replay
from torta.traces import load_trace


@pytest.fixture(scope="module")
def world_and_requests():
    return load_scenario("abilene"), load_trace("azure-2023-code")


def test_outputs_identical_with_and_without_progress(tmp_path, world_and_requests, capsys, monkeypatch):
    import torta.sim.progress as prog

    world, req = world_and_requests
    handed = []  # completions per hand-over to the bar
    real_sink = prog.ReplayProgress.sink

    def counting_sink(self, inner):
        counted = real_sink(self, inner)
        return lambda batch: (handed.append(len(batch["index"])), counted(batch))
    monkeypatch.setattr(prog.ReplayProgress, "sink", counting_sink)
    # replicate x8: about 70,000 requests, so the completions span two row groups
    a = replay(world, req, "least-loaded", seed=3, out_dir=tmp_path / "a", load_factor=8, load_mode="replicate")
    b = replay(world, req, "least-loaded", seed=3, out_dir=tmp_path / "b", load_factor=8, load_mode="replicate",
               progress=True)
    assert a.summary["requests"] > 65536
    for f in ("completions.parquet", "slots.parquet"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    drop = {"wall_s", "requests_per_s"}
    assert {k: v for k, v in a.summary.items() if k not in drop} == {k: v for k, v in b.summary.items()
                                                                       if k not in drop}
    err = capsys.readouterr().err
    frames = [f for f in re.split(r"[\r\n]", err) if "replay least-loaded" in f]
    assert any("fleet tables" in f for f in frames) and any("request arrays" in f for f in frames)
    # the bar is fed about 100 times during the run (tqdm redraws at most every 0.25 s, so the
    # rendered positions depend on the machine's speed; several lie between 0 and 100 %)
    assert len(handed) >= 20 and sum(handed) == b.summary["requests"], len(handed)
    percents = sorted({int(m) for f in frames for m in re.findall(r"(\d+)%\|", f)})
    assert percents[0] == 0 and percents[-1] == 100 and len(percents) >= 3, percents  # one frame between
    last = [f for f in frames if "100%" in f][-1]
    rate = re.search(r"([\d.]+)(k?)req/s", last)
    bar_rate = float(rate.group(1)) * (1000 if rate.group(2) else 1)
    engine_rate = b.summary["requests"] / b.summary["wall_s"]
    # the bar's clock starts after set-up: a bit faster than requests / whole wall, same order
    assert 0.5 * engine_rate <= bar_rate <= 3.0 * engine_rate, (bar_rate, engine_rate)


def test_replay_hours(world_and_requests):
    _, req = world_and_requests
    expect = req.filter(pl.col("arrival_s") < 0.25 * 3600).height
    r = CliRunner().invoke(main, ["replay", "--scenario", "abilene", "--trace", "azure-2023-code",
                                  "--policy", "least-loaded", "--hours", "0.25", "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["requests"] == expect < req.height


@pytest.mark.parametrize("argv", [["replay"], ["compare"], ["train"], ["traces", "fetch"], ["run"],
                                  ["experiment", "paper"]])
def test_same_progress_option_everywhere(argv):
    r = CliRunner().invoke(main, [*argv, "--help"])
    assert r.exit_code == 0, r.output
    assert "--progress / --no-progress" in r.output
    assert "on when stderr is a terminal" in " ".join(r.output.split())
