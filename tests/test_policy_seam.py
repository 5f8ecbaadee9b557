"""The policy seam: registry, plan validation, baselines' routing, custom allocators."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from torta.errors import UnknownNameError
from torta.policy import (BasePolicy, RequestInfo, get_policy, list_policies, register, validate_plan)
from torta.sim.engine import EngineConfig
from torta.sim.replay import replay
from torta.sim.testing import make_requests, make_world

DEBUG = EngineConfig(debug=True)


def test_registry_lists_and_resolves_builtins():
    names = dict(list_policies())
    for n in ("round-robin", "local-only", "least-loaded"):
        assert n in names and names[n]
        assert get_policy(n)().name == n


def test_unknown_policy_lists_valid_names():
    with pytest.raises(UnknownNameError) as e:
        get_policy("nope")
    assert "least-loaded" in str(e.value) and "round-robin" in str(e.value)


def test_register_rejects_conflicting_names():
    class A(BasePolicy):
        name = "test-a"

    register("test-a", A, "a test policy")
    register("test-a", A, "again: same class is fine")
    with pytest.raises(ValueError):
        register("test-a", type("B", (BasePolicy,), {}), "other class")


@pytest.mark.parametrize("plan,msg", [
    (np.ones((2, 3)) / 3, "shape"),
    (np.array([[0.5, 0.4], [0.0, 1.0]]), "sums"),
    (np.array([[1.5, -0.5], [0.0, 1.0]]), ">= 0"),
    (np.ones((3, 2, 3)) / 3, "shape"),
    (np.stack([np.eye(2), np.array([[0.5, 0.4], [0.0, 1.0]])]), "model 1 row 0 sums"),
])
def test_validate_plan_errors(plan, msg):
    with pytest.raises(ValueError, match=msg):
        validate_plan(plan, 2)


def test_validate_plan_accepts_per_model_plans_and_checks_their_count():
    p = np.stack([np.eye(2), np.full((2, 2), 0.5)])
    np.testing.assert_array_equal(validate_plan(p, 2, 2), p)
    with pytest.raises(ValueError, match=r"expected \(2, 2\) or \(3, 2, 2\)"):
        validate_plan(p, 2, 3)


class _FixedPlan(BasePolicy):
    name = "fixed-plan"

    def __init__(self, plan):
        super().__init__()
        self._plan = plan

    def plan(self, state):
        return self._plan


def _two_model_run(tmp_path, plan, sink=None):
    w = make_world((1, 1), models=("a", "b"), hop_ms=5.0, slot_s=20.0)
    n = 200
    reqs = make_requests(np.arange(n) * 0.2, 50, 8, origin=["r0", "r1"] * (n // 2), model=["a", "b", "b", "a"] * (n // 4))
    res = replay(w, reqs, _FixedPlan(plan), seed=3, out_dir=tmp_path, config=DEBUG, plan_sink=sink)
    return pl.read_parquet(res.completions_path)


def test_per_model_plans_route_each_model_by_its_own_plan(tmp_path):
    # model a is served in r0, model b in r1, from both origins
    c = _two_model_run(tmp_path, np.stack([np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0], [0.0, 1.0]])]))
    assert dict(c.group_by("model").agg(pl.col("serving_region").unique()).iter_rows()) == {"a": ["r0"], "b": ["r1"]}


def test_one_plan_for_all_models_equals_the_same_plan_per_model(tmp_path):
    p = np.array([[0.3, 0.7], [0.6, 0.4]])
    one = _two_model_run(tmp_path / "one", p)
    per = _two_model_run(tmp_path / "per", np.stack([p, p]))
    assert one.equals(per)


def test_plan_sink_receives_every_applied_plan(tmp_path):
    got = []
    p = np.array([[0.3, 0.7], [0.6, 0.4]])
    _two_model_run(tmp_path, p, sink=lambda state, plan: got.append((state.slot, plan)))
    assert [s for s, _ in got] == list(range(len(got))) and len(got) >= 2
    assert all(np.array_equal(plan, p) for _, plan in got)


def test_local_only_serves_at_origin_or_nearest_dc(tmp_path):
    w = make_world((1, 0, 0, 2), hop_ms=5.0)
    origins = ["r0", "r1", "r2", "r3"] * 25
    res = replay(w, make_requests(np.arange(100) * 0.5, 100, 5, origin=origins), "local-only", seed=0,
                 out_dir=tmp_path, config=DEBUG)
    c = pl.read_parquet(res.completions_path)
    pairs = dict(zip(c["origin_region"], c["serving_region"]))
    assert pairs == {"r0": "r0", "r1": "r0", "r2": "r3", "r3": "r3"}


def test_round_robin_cycles_over_servers(tmp_path):
    w = make_world((2, 1))
    res = replay(w, make_requests(np.arange(30) * 10.0, 100, 5), "round-robin", seed=0, out_dir=tmp_path)
    c = pl.read_parquet(res.completions_path).sort("request_id")
    assert c["server_id"].to_list()[:6] == [0, 1, 2, 0, 1, 2]


def test_least_loaded_prefers_idle_nearby_then_least_backlog(tmp_path):
    w = make_world((1, 1, 1), hop_ms=10.0)
    # three simultaneous long requests from r2: first goes to the idle local server, then the others
    df = make_requests([0.0, 0.0, 0.0], 1000, 500, origin="r2")
    res = replay(w, df, "least-loaded", seed=0, out_dir=tmp_path, config=DEBUG)
    c = pl.read_parquet(res.completions_path).sort("request_id")
    assert c["serving_region"].to_list() == ["r2", "r1", "r0"]


def test_custom_micro_allocator_is_called_with_a_view(tmp_path):
    calls = []

    class LastServer:
        def choose(self, view, request: RequestInfo, region):
            calls.append((request.request_id, region, view.queue_len(view.n_servers - 1)))
            return view.n_servers - 1

    class P(BasePolicy):
        name = "last"

        def __init__(self):
            super().__init__()
            self.allocator = LastServer()

    w = make_world((2, 2))
    res = replay(w, make_requests(np.arange(10) * 1.0, 100, 5), P(), seed=0, out_dir=tmp_path, config=DEBUG)
    assert len(calls) == 10 and all(r is None for _, r, _ in calls)
    assert set(pl.read_parquet(res.completions_path)["server_id"]) == {3}


def test_custom_allocator_bad_choice_is_an_error():
    class Bad:
        def choose(self, view, request, region):
            return 0  # server 0 is in r0, but the plan routes to r1

    class P(BasePolicy):
        name = "bad"

        def __init__(self):
            super().__init__()
            self.allocator = Bad()

        def plan(self, state):
            return np.array([[0.0, 1.0], [0.0, 1.0]])

    with pytest.raises(ValueError, match="allocator Bad chose server 0"):
        replay(make_world((1, 1), hop_ms=0.0), make_requests([0.0], 10, 5), P(), seed=0)


def test_planner_sees_slot_state():
    seen = []

    class Spy(BasePolicy):
        name = "spy"
        has_planner = True

        def plan(self, state):
            seen.append(state)
            return None

    w = make_world((1, 2), slot_s=10.0)
    res = replay(w, make_requests(np.arange(0, 30, 0.1), 100, 20, origin="r0"), Spy(), seed=0)
    assert [s.slot for s in seen] == list(range(len(seen))) and len(seen) >= 3
    assert seen[0].demand_requests.sum() == 0
    assert seen[1].demand_requests.tolist() == [100, 0]
    assert seen[1].servers.tolist() == [1, 2]
    assert seen[1].warm_servers.shape == (2, 1)
    assert seen[1].price_usd_per_mwh.shape == (2,)
    assert res.summary["planner_ms_per_slot"] >= 0.0


def test_policies_cli_json():
    from torta.commands.policies import cli

    r = CliRunner().invoke(cli, ["--json"])
    assert r.exit_code == 0, r.output
    doc = __import__("json").loads(r.output)
    assert {"round-robin", "local-only", "least-loaded"} <= {d["name"] for d in doc}


def test_plan_recorder_records_through_the_seam(tmp_path):
    from torta.runs.planlog import PlanRecorder, row_sums_ok

    rec = PlanRecorder(["r0", "r1"], ["a", "b"])
    per = np.stack([np.eye(2), np.array([[0.5, 0.5], [0.0, 1.0]])])
    _two_model_run(tmp_path, per, sink=rec.sink)
    f = rec.frame()
    assert set(f["model"]) == {"a", "b"} and row_sums_ok(f)[0]
    first = f.filter(pl.col("slot") == 0).sort("model", "origin_region", "serving_region")
    assert first.select("model", "origin_region", "serving_region", "share").rows() == [
        ("a", "r0", "r0", 1.0), ("a", "r1", "r1", 1.0), ("b", "r0", "r0", 0.5), ("b", "r0", "r1", 0.5),
        ("b", "r1", "r1", 1.0)]


def test_fleet_view_gives_the_live_per_server_state_as_read_only_attributes():
    seen = []

    class Spy:
        def choose(self, view, request, region):
            n = view.n_servers
            assert len(view.busy_until_s) == len(view.loaded_models) == len(view.queue_lengths) == n
            for s in range(n):
                assert view.backlog_s(s) == max(0.0, view.busy_until_s[s] - view.now_s)
                assert view.loaded_model(s) == view.loaded_models[s] and view.tail_model(s) == view.tail_models[s]
                assert view.batch(s) == view.batch_sizes[s] and view.queue_len(s) == view.queue_lengths[s]
                assert view.kv_used_tokens(s) == view.kv_reserved_tokens[s]
            seen.append((list(view.batch_sizes), [view.queue_lengths[s] for s in range(n)]))
            return 0

    class P(BasePolicy):
        name = "spy-view"

        def __init__(self):
            super().__init__()
            self.allocator = Spy()

    replay(make_world((1,)), make_requests(np.zeros(30), 400, 50), P(), seed=0, config=DEBUG)
    assert max(b[0] for b, _ in seen) > 0 and max(q[0] for _, q in seen) > 0  # the view is live
    from torta.sim.engine import FleetView

    with pytest.raises(AttributeError):
        FleetView.busy_until_s.__set__(object.__new__(FleetView), [])


def test_a_python_least_loaded_matches_the_built_in_one(tmp_path):
    """One way into a queue for every allocator: a Python allocator whose choice at the origin is the
    built-in warm least-loaded rule (least busy-until, ties by server id; one model, no nearest-idle
    tie-break) gets completions identical to the built-in. Its request joins the queue when it is routed,
    as the built-in's does, so a server does not drain (and drop the work booked for it) while the
    request travels."""
    from torta.policy.base import WarmLeastLoaded

    class ScanLeastLoaded:
        def choose(self, view, request, region):
            assert region is None
            return min(range(view.n_servers), key=lambda s: (view.busy_until_s[s], s))

    class Builtin(BasePolicy):
        name = "ll-builtin"

        def __init__(self):
            super().__init__()
            self.allocator = WarmLeastLoaded(latency_aware=False)

    class Python(BasePolicy):
        name = "ll-python"

        def __init__(self):
            super().__init__()
            self.allocator = ScanLeastLoaded()

    rng = np.random.default_rng(2)
    n = 3000
    w = make_world((2, 0, 1), hop_ms=40.0)
    reqs = make_requests(np.sort(rng.uniform(0, 120, n)), rng.integers(20, 300, n), rng.integers(1, 30, n),
                         origin=rng.choice(["r0", "r1", "r2"], n))
    a = replay(w, reqs, Builtin(), seed=0, out_dir=tmp_path / "a", config=DEBUG)
    b = replay(w, reqs, Python(), seed=0, out_dir=tmp_path / "b", config=DEBUG)
    ca, cb = pl.read_parquet(a.completions_path), pl.read_parquet(b.completions_path)
    assert ca["server_id"].n_unique() == 3 and (ca["serving_region"] != ca["origin_region"]).any()
    assert ca.equals(cb)


def test_ablation_variants_and_prefix_hash_stay_out_of_the_main_jobs_default_set():
    from pipelines.main import all_policies
    from torta.policy import get_policy, list_policies

    default, every = set(all_policies()), {n for n, _ in list_policies()}
    hidden = {"torta-horizon-h1", "torta-horizon-h4", "torta-horizon-h12", "torta-horizon-oracle",
              "torta-horizon-last", "torta-horizon-no-preload", "prefix-hash"}
    assert hidden <= every and not hidden & default
    assert {"torta-horizon", "torta-horizon-ppo", "least-loaded"} <= default
    assert get_policy("torta-horizon-h1") is not None  # still usable by name
