"""Training on the toy surge: the learned plan improves on the untrained one and on the reactive
myopic OT; same seed, same weights; the CLI writes a checkpoint the policies can load."""

from __future__ import annotations

import json

import numpy as np
import torch

from rl_toy import toy_demand, toy_fleet
from torta.rl.ppo import PPOConfig
from torta.rl.train import TrainConfig, train_on

TOY = dict(n_envs=8, train_days=(2, 3, 4, 5), val_day=6, eval_every=5, demand_noise=0.0,
           ppo=PPOConfig(hidden=32, minibatch=64, epochs=4, lr=1e-3))


def test_ppo_learns_the_surge_better_than_untrained_and_reactive_ot():
    sd, curves = train_on(toy_fleet(), toy_demand(), 0, TrainConfig(variant="ppo-only", updates=15, **TOY),
                          progress=False)
    val = curves.filter(curves["val_return"].is_not_nan())
    untrained = float(val["val_return"][0]) if int(val["update"][0]) == 0 else None
    best = float(val["val_return"].max())
    ref = float(curves["val_ref_return"][0])  # myopic OT (reacts to the slot just observed)
    assert best > ref + 5.0, (best, ref)
    from torta.rl.env import SurrogateEnv
    from torta.rl.ppo import Agent
    from torta.rl.train import evaluate

    env = SurrogateEnv(toy_fleet(), toy_demand(), [6], 1, TrainConfig(variant="ppo-only", **TOY).env_config())
    trained = evaluate(Agent.from_state_dict(sd), env, [0], [6])["return"]
    torch.manual_seed(0)
    fresh = Agent(env.obs_dim, 3, 32)
    fresh.load_state_dict({**fresh.state_dict(), "obs_mean": sd["obs_mean"], "obs_std": sd["obs_std"]})
    before = evaluate(fresh, env, [0], [6])["return"]
    assert trained == best and trained > before + 20.0, (trained, before, untrained)
    assert {"update", "episode_return", "kl_to_ot", "value_loss", "entropy", "val_return"} <= set(curves.columns)


def test_same_seed_same_weights_and_kl_schedule():
    cfg = TrainConfig(variant="torta", updates=2, **{**TOY, "eval_every": 1})
    a, ca = train_on(toy_fleet(), toy_demand(), 3, cfg, progress=False)
    b, cb = train_on(toy_fleet(), toy_demand(), 3, cfg, progress=False)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ca.drop("wall_s").equals(cb.drop("wall_s"))
    c, _ = train_on(toy_fleet(), toy_demand(), 4, cfg, progress=False)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    s = TrainConfig(variant="torta", updates=100)
    assert s.kl_coef(0) == s.kl_coef(9) == 1.0 and abs(s.kl_coef(100) - 0.05) < 1e-9 and s.kl_coef(50) < 1.0
    assert TrainConfig(variant="ppo-only").kl_coef(0) == 0.0


def test_train_cli_writes_checkpoint_and_policy_plans(tmp_path, monkeypatch):
    """`torta train` through its click object on a small world, then the `torta` policy loads the
    checkpoint and replays a few requests."""
    import polars as pl
    from click.testing import CliRunner

    import torta.rl.train as tr
    from torta.sim.testing import make_world

    world = make_world((2, 1, 1), hop_ms=10.0, slot_s=3600.0, name="tiny")
    n_slots = 24 * 12  # days 2-10 train, 11 selects
    demand = np.zeros((1, n_slots, 3, 1))
    demand[0, :, :, 0] = [40.0, 20.0, 10.0]
    monkeypatch.setattr("torta.fleet.scenario.load_scenario", lambda name: world)
    monkeypatch.setattr(tr, "load_demand", lambda *a, **k: demand)
    monkeypatch.setattr(tr, "_lengths", lambda *a: (100.0, 20.0))
    from torta.commands.train import cli

    res = CliRunner().invoke(cli, ["--scenario", "tiny", "--workload", "x", "--updates", "1", "--n-envs", "2",
                                   "--out-dir", str(tmp_path), "--json", "--no-progress"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out[0]["variant"] == "torta" and (tmp_path / "tiny-torta.pt").is_file()
    meta = json.loads((tmp_path / "tiny-torta.json").read_text())
    assert meta["seed"] == 0 and meta["git_commit"] and "days" in meta["data"]
    assert meta["config"]["env"]["base_eps"] == 0.02 and "--base-eps" not in meta["command"]
    alt = tmp_path / "alt"
    res = CliRunner().invoke(cli, ["--scenario", "tiny", "--workload", "x", "--updates", "1", "--n-envs", "2",
                                   "--out-dir", str(alt), "--base-eps", "0.005", "--no-progress"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    alt_meta = json.loads((alt / "tiny-torta.json").read_text())
    assert alt_meta["config"]["env"]["base_eps"] == 0.005 and alt_meta["command"].endswith("--base-eps 0.005")
    # the replay policy on that checkpoint
    from torta.rl.learned import RLPolicy, TortaNoMicro
    from torta.sim.replay import replay

    n = 300
    rng = np.random.default_rng(0)
    req = pl.DataFrame({"request_id": np.arange(n), "arrival_s": np.sort(rng.uniform(0, 7200, n)),
                        "prompt_tokens": rng.integers(10, 200, n), "output_tokens": rng.integers(5, 50, n),
                        "model": ["m"] * n, "origin_region": [f"r{i}" for i in rng.integers(0, 3, n)],
                        "source": ["test"] * n})
    for cls in (RLPolicy, TortaNoMicro):
        pol = cls(checkpoint=tmp_path / "tiny-torta.pt")
        r = replay(world, req, pol, seed=0)
        assert r.summary["requests"] == n and r.summary["completed"] == n
        assert pol.last_plans.shape == (1, 3, 3)
        np.testing.assert_allclose(pol.last_plans.sum(-1), 1.0)
