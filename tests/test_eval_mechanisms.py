"""Issue 17's mechanisms: the unscored warm-up (torta.sim.accounting, torta.runs.inputs) and the
control-plane information model (torta.sim.infomodel). Off (warm-up 0, refresh 0) they are no-ops:
byte-identical to the reference engine (benchmarks/parity_ref.json) and to a run without them."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import polars as pl
import pytest

from benchmarks.parity import DEFAULT_REF, cases, compare, environment_differences, run_case
from torta.errors import InputError
from torta.sim.replay import replay
from torta.sim.testing import LinearPerf, make_requests, make_world

REF_DOC = json.loads(DEFAULT_REF.read_text())
REF = REF_DOC["cases"]
# byte parity holds on the package versions the reference was recorded with (benchmarks/parity.py)
SAME_ENV = pytest.mark.skipif(bool(environment_differences(REF_DOC)),
                              reason="benchmarks/parity_ref.json was recorded on other package versions: "
                                     + ", ".join(environment_differences(REF_DOC)))


@SAME_ENV
@pytest.mark.parametrize("case", [c for c in cases("quick") if c["kind"] == "day" and not c.get("state_refresh_s")], ids=lambda c: c["name"])
def test_mechanisms_off_reproduce_the_reference_engine(case):
    got = run_case(case, warmup_s=0.0, state_refresh_s=0.0)
    assert not compare(REF, {case["name"]: got}), case["name"]


@pytest.fixture(scope="module")
def day_slice():
    from torta.fleet.scenario import load_scenario
    from torta.runs.inputs import multiday_input

    world = load_scenario("abilene")
    return multiday_input("servegen-mix-14d", "abilene", world, 0, 1, 0.03, 12)


def _digest(tmp_path, name, inp, policy, **kw):
    from torta.runs.execute import run_policy

    out = tmp_path / name
    run = run_policy(policy, inp, skylb_threshold=2.0 if policy == "skylb" else None, out_dir=out, **kw)
    return hashlib.sha256((out / "completions.parquet").read_bytes()).hexdigest(), run.result.summary


def _policies():
    from torta.planner import register  # noqa: F401  (registers the planner-layer policies)
    from torta.policy import list_policies

    names = [p if isinstance(p, str) else p[0] for p in list_policies()]
    return [n for n in names if not n.startswith("torta-rl")]  # the RL policy needs a checkpoint


@pytest.mark.parametrize("policy", _policies())
def test_refresh_zero_and_warmup_zero_are_no_ops_for_every_policy(tmp_path, day_slice, policy):
    plain, s0 = _digest(tmp_path, "plain", day_slice, policy)
    off, s1 = _digest(tmp_path, "off", day_slice, policy, state_refresh_s=0.0, warmup_s=0.0)
    assert plain == off
    assert s1["warmup_s"] == 0.0 and s1["state_refresh_s"] == 0.0 and s1["warmup_requests"] == 0
    if policy in ("least-loaded", "least-loaded-d2", "skylb", "acs", "torta"):  # they read remote live state
        stale, s2 = _digest(tmp_path, "stale", day_slice, policy, state_refresh_s=5.0)
        assert stale != plain and s2["state_refresh_s"] == 5.0


def _regions(tmp_path, world, reqs, refresh):
    out = tmp_path / f"r{refresh}"
    replay(world, reqs, "least-loaded", seed=0, out_dir=out, state_refresh_s=refresh)
    return pl.read_parquet(out / "completions.parquet").sort("request_id")["serving_region"].to_list()


def test_a_burst_makes_gateways_herd_on_old_information(tmp_path):
    world = make_world((0, 0, 0, 0, 1, 1), hop_ms=10.0)
    reqs = make_requests([10.0, 10.0001, 10.0002, 10.0003], 200, 50, origin=["r0", "r1", "r2", "r3"])
    live = _regions(tmp_path, world, reqs, 0.0)
    old = _regions(tmp_path, world, reqs, 5.0)
    assert sorted(live) == ["r4", "r4", "r5", "r5"]  # instant global state spreads the burst
    assert old == ["r4"] * 4  # each gateway saw both servers idle in the last report and counted only its own
    # a gateway's own assignments are counted: one gateway's burst spreads even on old information
    one = make_requests([10.0, 10.0001, 10.0002, 10.0003], 200, 50, origin="r0")
    assert sorted(_regions(tmp_path / "one", world, one, 5.0)) == ["r4", "r4", "r5", "r5"]


def test_warmup_requests_are_simulated_but_never_scored(tmp_path):
    # one server whose KV holds one of these requests at a time: the scored request (t = 60.5) waits for
    # the warm-up one (t = 1, 2,000 output tokens) that is still decoding when the window starts at 60 s
    world = make_world((1,), perf=LinearPerf(kv_tokens={"G": 2150}), slot_s=60.0)
    reqs = make_requests([1.0, 60.5], [100, 100], [3000, 10], origin="r0")
    out = tmp_path / "warm"
    res = replay(world, reqs, "least-loaded", seed=0, out_dir=out, warmup_s=60.0)
    s = res.summary
    assert s["requests"] == 1 and s["completed"] == 1 and s["warmup_requests"] == 1 and s["warmup_s"] == 60.0
    done = pl.read_parquet(out / "completions.parquet")
    assert done["request_id"].to_list() == [1]  # the warm-up request is in no completion row
    assert res.slots["t_start_s"].min() >= 60.0  # slot metrics, energy and cost only from the window
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["warmup_s"] == 60.0 and manifest["state_refresh_s"] == 0.0
    # the backlog carried over: without the warm-up request the scored one is served at once
    alone = replay(world, reqs.filter(pl.col("request_id") == 1), "least-loaded", seed=0, warmup_s=60.0)
    assert s["response_mean_s"] > alone.summary["response_mean_s"] + 1.0  # waited for the KV to free
    assert s["energy_kwh"] < replay(world, reqs, "least-loaded", seed=0).summary["energy_kwh"]


def test_warmup_must_be_whole_slots():
    world = make_world((1,), slot_s=60.0)
    with pytest.raises(InputError, match="whole number of slots"):
        replay(world, make_requests([1.0]), "least-loaded", seed=0, warmup_s=30.0)
    with pytest.raises(InputError, match="state_refresh_s"):
        replay(world, make_requests([1.0]), "least-loaded", seed=0, state_refresh_s=-1.0)


def _slot_means(tmp_path, warmup_h):
    from torta.fleet.scenario import load_scenario
    from torta.runs.execute import run_policy
    from torta.runs.inputs import multiday_input

    world = load_scenario("abilene")
    inp = multiday_input("servegen-mix-14d", "abilene", world, 0, 1, 1.0, 12, warmup_h=warmup_h)
    out = tmp_path / f"w{warmup_h}"
    run_policy("least-loaded", inp, out_dir=out)
    c = pl.read_parquet(out / "completions.parquet").drop_nulls("response_s")
    assert c["arrival_s"].min() >= inp.warmup_s
    slot = ((c["arrival_s"] - inp.warmup_s) // 900).cast(pl.Int64)
    per = c.with_columns(slot.alias("slot")).group_by("slot").agg(pl.col("response_s").mean()).sort("slot")
    return per["response_s"].to_numpy(), float(c["response_s"].mean())


@pytest.mark.slow
def test_after_a_warmup_the_first_slot_is_like_the_window(tmp_path):
    warm, warm_mean = _slot_means(tmp_path, 1.0)
    cold, _ = _slot_means(tmp_path, 0.0)
    assert abs(warm[0] - warm_mean) <= 0.3 * warm_mean, (warm, warm_mean)
    assert cold[0] > 1.3 * warm_mean, (cold, warm_mean)  # the start-up transient the warm-up removes
    assert np.isfinite(warm).all()


def test_region_state_is_exactly_the_per_server_perception(tmp_path):
    """`GatewayView.region_state(r)` (one report lookup per region, cached per report and own assignment
    count; the allocators' fast read) equals what the per-server sequences say, for every region, at
    every decision of a replay with old information: before and after the gateway's own assignments and
    across reports."""
    from torta.allocator.greedy import TortaAllocator
    from torta.policy.base import BasePolicy

    checked = {"decisions": 0, "remote": 0}

    class Checking:
        def __init__(self):
            self.inner = TortaAllocator()

        def choose(self, view, request, region):
            assert getattr(view, "per_gateway", False)
            for r in range(view.tables.n_regions):
                bu, tail, nact = view.region_state(r)
                for s in view.tables.servers_in_region[r]:
                    assert bu[s] == view.busy_until_s[s] and tail[s] == view.tail_models[s]
                    assert nact[s] == view.batch_sizes[s]
                    checked["remote"] += view.tables.region[s] != request.origin
            checked["decisions"] += 1
            return self.inner.choose(view, request, region)

    class P(BasePolicy):
        name = "checking"

        def __init__(self):
            super().__init__()
            self.allocator = Checking()

    world = make_world((2, 1, 2, 1), hop_ms=10.0)
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0.0, 40.0, 400))
    reqs = make_requests(t, 300, 60, origin=[f"r{i % 4}" for i in range(400)])
    res = replay(world, reqs, P(), seed=0, out_dir=tmp_path, state_refresh_s=2.0)
    assert res.summary["completed"] == 400
    assert checked["decisions"] == 400 and checked["remote"] > 1000
