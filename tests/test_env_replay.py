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
    assert env._thread is None


def test_learned_policies_registered():
    import torta.rl.policies  # noqa: F401
    from torta.policy import get_policy, list_policies

    names = {n for n, _ in list_policies()}
    assert {"torta", "torta-no-forecast", "ppo-only", "torta-no-micro"} <= names
    assert get_policy("torta-no-micro").round_robin
