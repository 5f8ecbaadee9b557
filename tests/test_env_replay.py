"""The environment over the real replay: reset/step per slot on a small world; registration."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from torta.rl.env import EnvConfig, obs_dim
from torta.rl.replay_env import ReplayEnv
from torta.sim.testing import make_world


def _requests(n: int = 400, span_s: float = 3 * 3600.0) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({"request_id": np.arange(n), "arrival_s": np.sort(rng.uniform(0, span_s, n)),
                         "prompt_tokens": rng.integers(10, 200, n), "output_tokens": rng.integers(5, 50, n),
                         "model": ["m"] * n, "origin_region": [f"r{i}" for i in rng.integers(0, 3, n)],
                         "source": ["test"] * n})


def test_replay_env_steps_per_slot_and_reports_slot_metrics():
    world = make_world((2, 1, 1), slot_s=3600.0)
    env = ReplayEnv(world, _requests(), seed=0)
    obs = env.reset()
    assert obs.shape == (1, obs_dim(3, EnvConfig())) and np.isfinite(obs).all()
    steps, done, info = 0, False, {}
    local = np.eye(3)
    while not done:
        obs, rew, done, info = env.step(plan=local)
        steps += 1
        assert rew == 0.0 or done
    assert steps == 3  # one plan per slot of the 3-hour trace
    m = info["slot_metrics"]
    assert m["slot"].to_list() == [0, 1, 2] and int(m["requests"].sum()) == 400
    assert np.isfinite(info["rewards"]).all() and (info["rewards"] < 0).all()
    with pytest.raises(RuntimeError):
        env.step(plan=local)


def test_replay_env_close_mid_episode_and_bad_action():
    world = make_world((2, 1, 1), slot_s=3600.0)
    env = ReplayEnv(world, _requests(), seed=0)
    env.reset()
    with pytest.raises(ValueError):
        env.step()
    env.step(delta=np.zeros((3, 3)))
    env.close()
    assert env._run is None and env._tmp is None


def test_learned_policies_registered():
    import torta.rl.learned  # noqa: F401
    from torta.policy import get_policy, list_policies

    names = {n for n, _ in list_policies()}
    assert {"torta", "torta-no-forecast", "torta-no-micro"} <= names
    assert "ppo-only" not in names  # left the registry: it never learned (checkpoints/README.md)
    assert get_policy("torta-no-micro").round_robin


def test_committed_abilene_checkpoints_plan_valid_slots():
    """The committed checkpoints fit the shipped abilene scenario and give valid per-model plans."""
    from torta.fleet.scenario import load_scenario
    from torta.policy.base import SlotState
    from torta.rl.learned import RLPolicy, TortaNoForecast, TortaNoMicro

    world = load_scenario("abilene")
    r, m = world.n_regions, len(world.models)
    for cls in (RLPolicy, TortaNoForecast, TortaNoMicro):
        pol = cls()
        pol.reset(world, 0)
        for slot in range(3):
            st = SlotState(slot=slot, t_start_s=slot * 900.0, slot_s=900.0, demand_requests=np.full(r, 100.0),
                           demand_tokens=np.full(r, 1e5), backlog_s=np.full(r, 50.0), queue_len=np.zeros(r),
                           busy_servers=np.ones(r), servers=np.array([4.0] * r), warm_servers=np.ones((r, m)),
                           price_usd_per_mwh=np.full(r, 40.0), carbon_g_per_kwh=np.full(r, 300.0),
                           latency_ms=np.asarray(world.latency_ms), prev_plan=None)
            assert pol.plan(st) is None
            p = pol.last_plans
            assert p.shape == (m, r, r) and np.isfinite(p).all() and (p >= 0).all()
            np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-9)
        assert pol.params()["checkpoint"].endswith(f"abilene-{cls.checkpoint_variant}.pt")
