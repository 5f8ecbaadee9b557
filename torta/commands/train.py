"""`torta train`: train the learned macro policy (PPO + OT supervision) on the slot-level surrogate and
save its checkpoint (a state dict, loaded with weights_only=True) with a JSON sidecar recording the
command, seed, data, settings and git commit."""

from __future__ import annotations

import json
import time

import click

from torta.commands.options import progress_option, want_progress

VARIANT_CHOICES = ("torta", "torta-no-forecast", "ppo-only", "torta-horizon-ppo", "ppo-only-warm", "all")


@click.command()
@click.option("--scenario", default="abilene", show_default=True, help="Shipped scenario name.")
@click.option("--workload", default="servegen-mix-14d", show_default=True, help="Multi-day workload name.")
@click.option("--variant", type=click.Choice(VARIANT_CHOICES), default="torta", show_default=True,
              help="Which policy to train (`torta-no-micro` uses the `torta` checkpoint; `torta-horizon-ppo` and "
                   "`ppo-only-warm` train on the surrogate with warm-model state; `ppo-only` and `ppo-only-warm` are not "
                   "registered policies: they reproduce the negative result in checkpoints/README.md); all: torta "
                   "and torta-no-forecast.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--updates", default=None, type=int, help="PPO updates (default: TrainConfig.updates).")
@click.option("--n-envs", default=None, type=int, help="Parallel surrogate environments (episodes per update).")
@click.option("--out-dir", default=None, type=click.Path(file_okay=False),
              help="Checkpoint folder (default: TORTA_CHECKPOINTS or the repository's checkpoints/).")
@click.option("--curves", "curves_dir", default=None, type=click.Path(file_okay=False),
              help="Also write the training curves as <dir>/<scenario>-<variant>-curves.parquet.")
@click.option("--base-eps", default=None, type=click.FloatRange(min=0.0),
              help="EnvConfig.base_eps, the floor added to the planner's shares before the actor's offsets (default: "
                   "EnvConfig's 0.02; torta-horizon-ppo: HORIZON_BASE_EPS, 0.001, tuned on day 11).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (array of per-variant summaries).")
@progress_option
def cli(scenario, workload, variant, seed, updates, n_envs, out_dir, curves_dir, base_eps, as_json, progress):
    """Train the TORTA macro policy for SCENARIO on WORKLOAD days 2-10 (day 11 selects the checkpoint)."""
    from dataclasses import replace
    from pathlib import Path

    from torta.rl.train import (HORIZON_BASE_EPS, VARIANTS, TrainConfig, checkpoint_dir, config_meta, git_commit,
                                save_checkpoint, train)

    variants = ["torta", "torta-no-forecast"] if variant == "all" else [variant]
    folder = Path(out_dir) if out_dir else checkpoint_dir()
    out = []
    for v in variants:
        cfg = TrainConfig(variant=v)
        if VARIANTS[v].get("warm") == "horizon":  # one cached LP decision per (series, day, slot): no demand noise
            cfg = replace(cfg, demand_noise=0.0, env=replace(cfg.env, base_eps=HORIZON_BASE_EPS))
        if base_eps is not None:
            cfg = replace(cfg, env=replace(cfg.env, base_eps=float(base_eps)))
        if updates is not None:
            cfg = replace(cfg, updates=int(updates))
        if n_envs is not None:
            cfg = replace(cfg, n_envs=int(n_envs))
        commit = git_commit()  # the code that trains: HEAD when training starts, not when it ends
        t0 = time.perf_counter()
        sd, curves = train(scenario, workload, seed, cfg, progress=want_progress(progress))
        wall = time.perf_counter() - t0
        val = curves["val_return"].drop_nans()
        meta = {"variant": v, "scenario": scenario, "workload": workload, "seed": seed,
                "data": f"{workload} demand seeds {list(cfg.demand_seeds)}, days {min(cfg.train_days)}-"
                        f"{max(cfg.train_days)} train, day {cfg.val_day} selection",
                "command": f"torta train --scenario {scenario} --workload {workload} --variant {v} --seed {seed}"
                           + (f" --updates {updates}" if updates is not None else "")
                           + (f" --n-envs {n_envs}" if n_envs is not None else "")
                           + (f" --base-eps {base_eps:g}" if base_eps is not None else ""),
                "git_commit": commit, "train_wall_s": round(wall, 1), "config": config_meta(cfg),
                "best_val_return": float(val.max()) if val.len() else float("nan"),
                "val_ref_return": float(curves["val_ref_return"][0]) if "val_ref_return" in curves.columns else 0.0,
                "val_base_return": float(curves["val_base_return"][0]) if "val_base_return" in curves.columns
                else float("nan")}
        path = save_checkpoint(sd, folder / f"{scenario}-{v}.pt", meta)
        if curves_dir:
            from torta.fileio import atomic_file

            with atomic_file(Path(curves_dir) / f"{scenario}-{v}-curves.parquet") as tmp:
                curves.write_parquet(tmp)
        click.echo(f"{v}: checkpoint {path} ({wall:.0f} s); best validation return {meta['best_val_return']:.2f} "
                   f"vs myopic-OT {meta['val_ref_return']:.2f}", err=True)
        out.append({"variant": v, "checkpoint": str(path), "train_wall_s": meta["train_wall_s"],
                    "best_val_return": meta["best_val_return"], "val_ref_return": meta["val_ref_return"],
                    "updates": cfg.updates})
    if as_json:
        click.echo(json.dumps(out))


if __name__ == "__main__":  # `python -m torta.commands.train` until `train` is registered in torta/cli.py
    cli()
