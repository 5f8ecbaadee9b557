"""Issue 17 item 5: the backlog a server reports sees its queue at the throughput it really reaches.

One A10G server running llama2-7b under the fitted latency model (`torta.fleet.scenario`'s default
PerfModel): it runs out of KV memory long before its batch cap, so N queued requests drain at the
KV-bound batch, not the reference batch. With N requests queued at t < 1 s, the backlog the server
reports at t = 2 s (busy-until minus now, what every allocator and gateway report reads) must be within
20 % of the wait that a request arriving then experiences (its admission minus its arrival). H100 is the counter-case: not KV-bound at these sizes.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from torta.fleet.scenario import load_scenario
from torta.policy import get_policy
from torta.sim.replay import ReplayRun
from torta.sim.testing import make_requests, make_world

PROBE_AT_S = 2.0


def _backlog_and_wait(tmp_path, n_queued: int, gpu: str, seed: int = 0) -> tuple[float, float]:
    perf = load_scenario("abilene").perf
    world = make_world((1,), perf=perf, models=("llama2-7b",), gpus=[gpu])
    rng = np.random.default_rng(seed)
    prompts = rng.integers(200, 2001, n_queued + 1)
    outputs = rng.integers(50, 601, n_queued + 1)
    arrivals = np.concatenate([np.sort(rng.uniform(0.0, 1.0, n_queued)), [PROBE_AT_S]])
    reqs = make_requests(arrivals, prompts, outputs, model="llama2-7b")
    run = ReplayRun(world, reqs, get_policy("least-loaded")(), seed=seed, out_dir=tmp_path / f"{gpu}-{n_queued}")
    run.advance(PROBE_AT_S)  # every event before the probe request arrives
    backlog_s = run.engine.fleet.busy_until_s[0] - PROBE_AT_S
    run.advance()
    done = pl.read_parquet(run.result().completions_path).sort("arrival_s")
    probe = done.row(-1, named=True)
    assert probe["arrival_s"] == pytest.approx(PROBE_AT_S)
    return backlog_s, probe["admitted_s"] - probe["arrival_s"]


@pytest.mark.parametrize("gpu,n_queued", [("A10G", 100), ("A10G", 300), ("A10G", 600), ("L4", 200),
                                           ("H100", 300)])
def test_reported_backlog_matches_the_next_requests_wait(tmp_path, gpu, n_queued):
    backlog_s, wait_s = _backlog_and_wait(tmp_path, n_queued, gpu)
    assert wait_s > 1.0, "the probe request must actually wait behind the queue"
    assert backlog_s == pytest.approx(wait_s, rel=0.20), (gpu, n_queued, backlog_s, wait_s)
