"""A replay's outputs are one unit: built in a unique temporary folder beside `--out`, swapped in whole,
with a manifest that matches its files; concurrent replays into one `--out` never mix files (one wins,
the other exits 2); a killed replay leaves the previous run in place and its temporary is cleaned up by
the next one. Real `torta replay` subprocesses on a real trace."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from torta.fileio import OutputBusyError, leftovers, run_dir
from torta.sim.replay import OUTPUT_FILES, replay
from torta.sim.testing import make_requests, make_world

REPO = Path(__file__).resolve().parents[1]
TORTA = Path(sys.executable).with_name("torta")


def _cmd() -> list[str]:
    return [str(TORTA)] if TORTA.exists() else [sys.executable, "-m", "torta.cli"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def check_unit(out: Path, clean: bool = True) -> dict:
    """The folder holds exactly one complete, readable run whose manifest matches its files."""
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    man = json.loads((out / "manifest.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    for name, meta in man["files"].items():
        data = (out / name).read_bytes()
        assert len(data) == meta["bytes"] and hashlib.sha256(data).hexdigest() == meta["sha256"], name
    n = pl.read_parquet(out / "completions.parquet").height
    assert n == man["files"]["completions.parquet"]["rows"] == summary["requests"] == man["requests"]
    assert pl.read_parquet(out / "slots.parquet").height == man["files"]["slots.parquet"]["rows"]
    assert summary["policy"] == man["policy"] and summary["seed"] == man["seed"]
    for k in ("seed", "scenario", "scenario_sha256", "requests_sha256", "policy_params", "git_commit", "warmup_s",
              "finished_at", "inputs"):
        assert k in man, k
    if clean:
        assert not leftovers(out), leftovers(out)
    return man


def _replay_cmd(out: Path, seed: int) -> list[str]:
    return _cmd() + ["replay", "--scenario", "single-region", "--trace", "azure-2023-code", "--policy",
                     "least-loaded", "--seed", str(seed), "--no-progress", "--out", str(out), "--json"]


def _race(out: Path, seeds=(0, 1)) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen(_replay_cmd(out, s), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env()) for s in seeds]
    res = []
    for p in procs:
        so, se = p.communicate(timeout=300)
        res.append(subprocess.CompletedProcess(p.args, p.returncode, so, se))
    return res


def _check_race(out: Path, res) -> str:
    rcs = [r.returncode for r in res]
    assert set(rcs) <= {0, 2} and 0 in rcs, [(r.returncode, r.stderr[-500:]) for r in res]
    for r in res:
        if r.returncode == 2:
            assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "another run is writing" in r.stderr
    man = check_unit(out)
    winners = [json.loads(r.stdout)["seed"] for r in res if r.returncode == 0]
    assert man["seed"] in winners  # what is in place is one of the runs that succeeded, whole
    return "".join("W" if rc == 0 else "R" for rc in rcs)


def test_two_replays_into_one_out_never_mix(tmp_path):
    out = tmp_path / "out"
    _check_race(out, _race(out))


@pytest.mark.slow
def test_two_replays_into_one_out_ten_times(tmp_path):
    """The acceptance check: ten races of two `torta replay --out SAME`; each time one complete run."""
    out = tmp_path / "out"
    outcomes = [_check_race(out, _race(out, (2 * i, 2 * i + 1))) for i in range(10)]
    print("race outcomes (W = exit 0, R = refused, exit 2):", outcomes)
    (tmp_path / "outcomes.json").write_text(json.dumps(outcomes))
    if os.environ.get("TORTA_RACE_LOG"):
        Path(os.environ["TORTA_RACE_LOG"]).write_text(json.dumps(outcomes))


@pytest.mark.slow
def test_a_killed_replay_keeps_the_previous_run_and_the_next_cleans_up(tmp_path):
    out = tmp_path / "out"
    first = subprocess.run(_replay_cmd(out, 0), capture_output=True, text=True, env=_env(), timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    before = check_unit(out)
    cmd = _cmd() + ["replay", "--scenario", "single-region", "--trace", "azure-2023-conv", "--policy", "least-loaded",
                    "--seed", "5", "--no-progress", "--out", str(out)]
    victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and not list(tmp_path.glob(".out.tmp-*/completions.parquet*")):
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert time.monotonic() - t0 < 120, "the replay never started writing"
    assert leftovers(out)  # the killed run's temporary folder
    assert check_unit(out, clean=False) == before  # the previous run, whole
    again = subprocess.run(_replay_cmd(out, 1), capture_output=True, text=True, env=_env(), timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert check_unit(out)["seed"] == 1
    assert not leftovers(out) and not list(tmp_path.glob(".out.*"))


def test_run_dir_refuses_a_second_writer_and_keeps_modes(tmp_path):
    target = tmp_path / "unit"
    with run_dir(target, ["a.txt"]) as tmp:
        (tmp / "a.txt").write_text("1")
        with pytest.raises(OutputBusyError, match="another run is writing"):
            with run_dir(target, ["a.txt"]):
                pass
    assert (target / "a.txt").read_text() == "1"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o777 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_replay_outputs_follow_the_umask(tmp_path):
    w = make_world((2,))
    replay(w, make_requests(np.arange(20) * 0.5, 100, 10), "least-loaded", seed=0, out_dir=tmp_path / "o")
    umask = os.umask(0)
    os.umask(umask)
    for name in OUTPUT_FILES:
        assert (tmp_path / "o" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_ingest_output_follows_the_umask(tmp_path):
    r = subprocess.run(_cmd() + ["ingest", "azure-2023", str(REPO / "traces/azure-2023/AzureLLMInferenceTrace_code.csv"),
                                 "--out", str(tmp_path / "c.parquet")], capture_output=True, text=True, env=_env())
    assert r.returncode == 0, r.stderr[-2000:]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "c.parquet").stat().st_mode & 0o777 == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
