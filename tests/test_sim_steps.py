"""The engine runs in steps: `run(until_s=...)` resumes exactly where it stopped."""

from __future__ import annotations

import numpy as np
import pytest

from torta.policy.base import BasePolicy
from torta.sim.engine import EngineConfig
from torta.sim.replay import ReplayRun, replay
from torta.sim.testing import make_requests, make_world

DEBUG = EngineConfig(debug=True, chunk_requests=97)  # small chunks: steps also cross chunk edges


class _Alternating(BasePolicy):
    """No plan in even slots, a plan in odd ones (both arrival paths, the heaps of both scopes)."""

    name = "test-alternating"

    def __init__(self, seen=None):
        super().__init__()
        self.seen = seen

    def plan(self, state):
        if self.seen is not None:
            self.seen.append(state)
        return None if state.slot % 2 == 0 else np.array([[0.2, 0.8], [0.5, 0.5]])


def _inputs():
    rng = np.random.default_rng(5)
    n = 1500
    w = make_world((2, 1), models=("a", "b"), hop_ms=20.0, slot_s=7.0)
    reqs = make_requests(np.sort(rng.uniform(0, 60, n)), rng.integers(20, 400, n), rng.integers(0, 40, n),
                         origin=rng.choice(["r0", "r1"], n), model=rng.choice(["a", "b"], n, p=[0.7, 0.3]))
    return w, reqs


@pytest.mark.parametrize("policy", ["least-loaded", "round-robin", "alternating"])
def test_running_in_steps_is_byte_identical_to_one_call(tmp_path, policy):
    w, reqs = _inputs()

    def pol():
        return _Alternating() if policy == "alternating" else policy
    replay(w, reqs, pol(), seed=1, out_dir=tmp_path / "one", config=DEBUG)
    run = ReplayRun(w, reqs, pol(), seed=1, out_dir=tmp_path / "steps", config=DEBUG)
    # stops at arbitrary times, at exact slot boundaries (7 s), twice at one time, and past the end
    stops = [0.0, 0.0, 0.3, 6.999, 7.0, 7.0, 13.5, 14.0, 20.0, 21.0, 33.3333, 49.0, 56.0, 58.9]
    for t in stops:
        assert not run.advance(until_s=t)
        assert run.engine.now_s <= t
    k = 63.0
    while not run.advance(until_s=k):
        k += 7.0
    assert run.advance(until_s=k + 100.0)  # finished: further calls are no-ops
    res = run.result()
    assert res.summary["requests"] == len(reqs)
    for f in ("completions.parquet", "slots.parquet"):
        assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "steps" / f).read_bytes(), f


def test_pending_slot_state_is_what_the_policy_sees_next():
    w, reqs = _inputs()
    seen = []
    run = ReplayRun(w, reqs, _Alternating(seen), seed=1, config=DEBUG)
    for slot in range(5):
        run.advance(until_s=slot * 7.0)
        pending = run.engine.pending_slot_state()
        assert len(seen) == slot and pending.slot == slot
        run.advance(until_s=slot * 7.0 + 1e-9)  # just past the boundary: the policy planned it
        got = seen[-1]
        assert got.slot == slot and got.t_start_s == pending.t_start_s
        for f in ("demand_requests", "demand_tokens", "backlog_s", "queue_len", "busy_servers", "warm_servers"):
            np.testing.assert_array_equal(getattr(got, f), getattr(pending, f), err_msg=f)
    run.abort()


def test_engine_run_needs_requests_and_runs_once():
    from torta.sim.cluster import build_tables
    from torta.sim.engine import Engine

    w, _ = _inputs()
    e = Engine(w, build_tables(w), _Alternating(), seed=0, sink=lambda b: None, slot_sink=lambda *a: None)
    with pytest.raises(RuntimeError, match="no requests"):
        e.run(until_s=1.0)
