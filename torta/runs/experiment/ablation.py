"""ABLATIONS.md from the ablation experiment's runs (a polars frame, one row per (cell, policy); issue 18
item 5): each one-setting variant of `torta-horizon` paired against it per (topology, workload, seed,
day), per topology and pooled over all of them, with 95 % t-intervals; the PPO on / off pair from the
paper experiment's rows (`torta` against `torta-ot`). Every number is computed here from the frames."""

from __future__ import annotations

import ast

import polars as pl

from torta.runs.experiment.aggregate import UNIT
from torta.runs.experiment.definition import ABLATION_REFERENCE, ABLATIONS, ABLATIONS_OPTIONAL, TRACE_DAY
from torta.runs.experiment.render import _f, _first_str, _md_table, _partial_lines, run_parts
from torta.runs.stats import t_interval

# (section title, what it varies, its policies in table order, the reference among them): every variant is
# paired against torta-horizon
GROUPS = (
    ("Planning horizon H", "H = 1 (myopic), 4, 8 (torta-horizon), 12 slots of 15 min",
     ("torta-horizon-h1", "torta-horizon-h4", ABLATION_REFERENCE, "torta-horizon-h12")),
    ("Demand source", "the plan's demand: the oracle (true demand), the forecast (torta-horizon) or "
     "persistence (the slot just observed, repeated over the horizon)",
     ("torta-horizon-oracle", ABLATION_REFERENCE, "torta-horizon-last")),
    ("Pre-loading", "with (torta-horizon) and without pre-loading to the plan's placement "
     "(TargetConfig.preload)", (ABLATION_REFERENCE, "torta-horizon-no-preload")),
    ("PPO on the horizon planner", "PPO acting on the horizon planner's decision (torta-horizon-ppo) against "
     "the planner alone",
     (ABLATION_REFERENCE, *ABLATIONS_OPTIONAL)),
)
HORIZON_PPO_PAIR = ("torta-horizon-ppo", "torta-horizon")  # PPO on / off, every other setting the same
HORIZON_PPO_NOTE = ("One setting: the PPO actor's offsets to the horizon LP's routing shares, on or off; the same "
                    "planner, forecast, placement and micro allocator.")
PPO_PAIR = ("torta", "torta-ot")  # PPO + OT against OT alone, from the paper experiment (same micro allocator)
PPO_PAIR_CAVEAT = ("Not a one-setting ablation: `torta` plans OT on a seasonal-naive forecast of the coming slot "
                   "(`torta.rl.fleet.seasonal_forecast`) and applies the PPO actor's per-origin adjustment to the "
                   "plan; `torta-ot` plans OT on the day-ahead forecaster's demand, corrected online. Both use "
                   "TORTA's micro allocator. The difference is PPO plus the forecast it plans on.")
DIFF_HEADER = ["scope", "policy", "setting", "days", "resp mean s", "cost $", "switches / day",
               "Δ resp % [95 % CI]", "Δ cost % [95 % CI]", "Δ switches / day [95 % CI]"]


def setting(params: str | None) -> str:
    """The settings an ablation varies, read from a run's recorded `policy_params` (str of a dict)."""
    try:
        p = ast.literal_eval(params) if params else {}
    except (ValueError, SyntaxError):
        return ""
    if not isinstance(p, dict):
        return ""
    if "checkpoint" in p:  # a learned policy: its OTConfig's demand_source is not what it plans on
        return "PPO"
    parts = []
    if "horizon_slots" in p:
        parts.append(f"H = {p['horizon_slots']}")
    if "demand_source" in p:
        parts.append(str(p["demand_source"]))
    if "preload" in p:
        parts.append("pre-load " + ("on" if p["preload"] else "off"))
    return ", ".join(parts)


def _per_day(frame: pl.DataFrame) -> pl.DataFrame:
    hours = pl.col("hours").cast(pl.Float64) if "hours" in frame.columns else pl.lit(24.0)
    return frame.with_columns(switches_per_day=pl.col("switches").cast(pl.Float64) * 24.0 / hours)


def _ci(mean: float, half: float, n: int, fmt: str = "{:+.1f}") -> str:
    if n == 0:
        return "-"
    if n < 2:
        return fmt.format(mean) + " (one pair)"
    return f"{fmt.format(mean)} [{fmt.format(mean - half)}, {fmt.format(mean + half)}] ({n})"


def paired_rows(test: pl.DataFrame, reference: str, policies: tuple[str, ...]) -> list[dict]:
    """Per scope (each topology / workload, then 'all / all' pooled over every pair) and policy (`policies`
    in their order, `reference` first unless among them): the
    policy's mean response, cost and switches per day over its units, and its paired differences against
    `reference` on the units both ran: relative (percent of the reference) for response and cost, absolute
    for switches per day; mean and 95 % half-width."""
    test = _per_day(test)
    scopes = [(f"{sc} / {wl}", g) for (sc, wl), g in test.group_by("scenario", "workload", maintain_order=True)]
    if len(scopes) > 1:
        scopes.append(("all / all", test))
    out = []
    for scope, g in scopes:
        ref = g.filter(pl.col("policy") == reference)
        for pol in (policies if reference in policies else (reference, *policies)):
            mine = g.filter(pl.col("policy") == pol)
            if not mine.height:
                continue
            params = mine["policy_params"][0] if "policy_params" in mine.columns else None
            row = {"scope": scope, "policy": pol, "units": mine.height, "setting": setting(params)}
            for m in ("response_mean_s", "cost_usd", "switches_per_day"):
                row[m], row[m + "_ci95"] = t_interval(mine[m].cast(pl.Float64).to_numpy())
            j = mine.join(ref, on=list(UNIT), suffix="_ref")
            j = j if pol != reference else j.head(0)  # no differences of the reference with itself
            row["pairs"] = j.height
            for m in ("response_mean_s", "cost_usd"):
                a, b = j[m].cast(pl.Float64), j[m + "_ref"].cast(pl.Float64)
                rel = ((a - b) / b * 100.0).filter(b.abs() > 1e-12).to_numpy()
                row[m + "_pct"], row[m + "_pct_ci95"] = t_interval(rel)
                row[m + "_pct_pairs"] = len(rel)
            d = (j["switches_per_day"] - j["switches_per_day_ref"]).to_numpy()
            row["switches_per_day_diff"], row["switches_per_day_diff_ci95"] = t_interval(d)
            out.append(row)
    return out


def _diff_table(rows: list[dict], reference: str) -> str:
    body = []
    for r in rows:
        ref = r["policy"] == reference
        body.append([r["scope"], f"`{r['policy']}`" + (" (reference)" if ref else ""), r["setting"], str(r["units"]),
                     f"{_f(r['response_mean_s'])} ± {_f(r['response_mean_s_ci95'])}",
                     f"{_f(r['cost_usd'], 2)} ± {_f(r['cost_usd_ci95'], 2)}",
                     f"{_f(r['switches_per_day'], 1)} ± {_f(r['switches_per_day_ci95'], 1)}",
                     "-" if ref else _ci(r["response_mean_s_pct"], r["response_mean_s_pct_ci95"],
                                         r["response_mean_s_pct_pairs"]),
                     "-" if ref else _ci(r["cost_usd_pct"], r["cost_usd_pct_ci95"], r["cost_usd_pct_pairs"]),
                     "-" if ref else _ci(r["switches_per_day_diff"], r["switches_per_day_diff_ci95"], r["pairs"])])
    return _md_table(DIFF_HEADER, body)


def _reproduced_lines(test: pl.DataFrame, paper: pl.DataFrame | None) -> list[str]:
    """The ablation's torta-horizon rows against the paper experiment's on the same cells: a replay is
    deterministic, so equal numbers say both ran the same code and inputs."""
    if paper is None or not paper.height:
        return []
    a = test.filter(pl.col("policy") == ABLATION_REFERENCE)
    b = paper.filter((pl.col("policy") == ABLATION_REFERENCE) & (pl.col("role") == "test"))
    j = a.join(b, on=list(UNIT), suffix="_paper")
    if not j.height:
        return []
    cols = ("response_mean_s", "cost_usd", "switches", "completed")
    same = j.filter(pl.all_horizontal([pl.col(c) == pl.col(c + "_paper") for c in cols]))
    worst = max(float((j["response_mean_s"] - j["response_mean_s_paper"]).abs().max()), 0.0)
    return ["## The reference against the paper experiment", "",
            f"`{ABLATION_REFERENCE}` replayed in this batch against its rows in the paper experiment on the same "
            f"cells: {same.height} of {j.height} cells identical in mean response, cost, switches and completed "
            f"requests (largest mean-response difference {_f(worst, 6)} s). Replays are deterministic on one "
            "installation: a difference means the code, the inputs or the installed numerical libraries changed "
            "between the two batches (benchmarks/parity_ref.json: newer wheels change the engine's last bits and "
            "planner policies then diverge). The variants here are paired against this batch's own rows.", ""]


def _ppo_lines(runs: pl.DataFrame, paper: pl.DataFrame | None) -> list[str]:
    L = ["## PPO on / off (the paper experiment's pair)", ""]
    have = [p for p in ABLATIONS_OPTIONAL if p in set(runs["policy"].to_list())]
    if not have:
        L += [f"`{ABLATIONS_OPTIONAL[0]}` (PPO acting on the horizon planner's decision, issue 18 item 3) is not "
              "in this batch (it is replayed here only when asked for with `--policies`). The PPO on / off pairs "
              "below come from the paper experiment, on the same protocol and cells: `torta-horizon-ppo` against "
              "`torta-horizon` (one setting), and `torta` (the PPO macro policy with OT supervision) against "
              "`torta-ot` (the OT macro layer alone).", ""]
    if paper is None or not paper.height:
        return L + ["No paper experiment rows were found (docs/data/paper), so that pair is not shown.", ""]
    base = paper.filter((pl.col("role") == "test") & (pl.col("day") != TRACE_DAY))
    for on, off, what in (HORIZON_PPO_PAIR + (HORIZON_PPO_NOTE,), PPO_PAIR + (PPO_PAIR_CAVEAT,)):
        t = base.filter(pl.col("policy").is_in([on, off]))
        if t.filter(pl.col("policy") == on).height == 0 or t.filter(pl.col("policy") == off).height == 0:
            L += [f"The paper experiment's rows have no `{on}` / `{off}` pair.", ""]
            continue
        L += [f"From the paper experiment (batch `{_first_str(t, 'batch')}`, `docs/data/paper`), its multi-day test "
              f"cells; differences `{on}` - `{off}`, the reference here being `{off}`. " + what, "",
              _diff_table(paired_rows(t, off, (on,)), off), ""]
    return L


def _speed_lines(test: pl.DataFrame) -> list[str]:
    if "wall_s" not in test.columns:
        return []
    g = (test.group_by("scenario", "policy", maintain_order=True)
         .agg(pl.len().alias("runs"), pl.col("wall_s").mean(), pl.col("requests_per_s").mean()
              if "requests_per_s" in test.columns else pl.lit(None).alias("requests_per_s"))
         .sort("scenario", "policy"))
    rows = [[r["scenario"], f"`{r['policy']}`", str(r["runs"]), _f(r["wall_s"], 0),
             _f(r["requests_per_s"], 0) if r["requests_per_s"] is not None else "-"] for r in g.iter_rows(named=True)]
    return ["## Replay time", "",
            "Replay wall time per test day (warm-up included, the replay call only), mean over the days run, on the "
            "machine and load the batch ran on: what the run-time estimate of the next cells should use.", "",
            _md_table(["topology", "policy", "days", "replay s / day", "requests / s"], rows), ""]


def render_ablations(runs: pl.DataFrame, *, batch: str, paper_runs: pl.DataFrame | None = None,
                     planned_cells: list[str] | None = None, wall_s: float | None = None) -> str:
    """ABLATIONS.md's text. `paper_runs`: the paper experiment's rows (the PPO on / off pair and the
    reference's reproduction); `planned_cells`: the ablation's test cells (`Cell.key`): a banner says which
    have not run yet."""
    if runs.height == 0:
        raise ValueError("no ablation runs to render")
    test = runs.filter((pl.col("role") == "test") & (pl.col("day") != TRACE_DAY))
    if test.filter(pl.col("policy") == ABLATION_REFERENCE).height == 0:
        raise ValueError(f"batch {batch!r} has no test runs of {ABLATION_REFERENCE!r} (every ablation is paired "
                         "against it)")
    L = ["# Ablations of torta-horizon (issue 18, item 5)", "",
         "Generated by `torta experiment ablation` (or `torta experiment results --experiment ablation`) from the "
         f"warehouse (`runs` rows of experiment `{runs['experiment'][0]}`, batch `{batch}`). Do not edit by hand: "
         "rerun the command.", ""]
    L += _partial_lines(test, planned_cells, command="torta experiment ablation")
    S = sorted(set(test["protocol_state_refresh_s"].to_list())) if "protocol_state_refresh_s" in test.columns else []
    warm = sorted(set(test["warmup_h"].to_list())) if "warmup_h" in test.columns else []
    hours = sorted(set(test["hours"].to_list())) if "hours" in test.columns else []
    parts = [f"**Protocol** (the paper experiment's, RESULTS.md). Window: {', '.join(_f(h, 2) for h in hours) or '-'} h "
             f"of each test day after {', '.join(_f(h, 2) for h in warm) or '0'} h of unscored warm-up through the "
             f"same policy; load reports every {', '.join(_f(x, 1) for x in S) or '0'} s; seeds per test day: "
             f"{test['seed'].n_unique()}", *run_parts(runs, hours_digits=2)]
    if wall_s is not None:
        parts.append(f"this invocation: {wall_s / 60:.1f} min")
    ran = (test.group_by("scenario", "workload", maintain_order=True)
           .agg(pl.col("day").unique().sort().alias("days")))
    L += ["; ".join(parts) + ".", "",
          f"Each variant changes one setting of `{ABLATION_REFERENCE}` (H = 8 slots of 15 min, the day-ahead "
          "forecast corrected online, pre-loading on) and keeps every other; nothing was tuned on the test days. "
          "Paired per (topology, workload, seed, test day): the variant minus "
          f"`{ABLATION_REFERENCE}` on the identical requests, in percent of `{ABLATION_REFERENCE}` for mean response "
          "and cost (energy + transfer + switching), in model switches per day for switches; mean over the pairs "
          "[95 % t-interval] (pairs). `all / all` pools every pair of every topology. Absolute columns: mean ± 95 % "
          "half-width over the days. The setting column is read from each run's recorded parameters.", "",
          "Cells that ran: " + "; ".join(f"{r['scenario']}/{r['workload']} days {','.join(map(str, r['days']))}"
                                        for r in ran.iter_rows(named=True)) + ".", ""]
    present = set(test["policy"].to_list())
    for title, what, pols in GROUPS:
        have = tuple(p for p in pols if p in present)
        variants = [p for p in pols if p != ABLATION_REFERENCE]
        if not set(variants) & present:
            if not set(variants) <= set(ABLATIONS_OPTIONAL):
                L += [f"## {title}", "", f"No runs of {', '.join(f'`{p}`' for p in variants)} in this batch.", ""]
            continue
        L += [f"## {title}", "", f"Varies {what}.", "",
              _diff_table(paired_rows(test, ABLATION_REFERENCE, have), ABLATION_REFERENCE), ""]
    L += _ppo_lines(test, paper_runs)
    L += _reproduced_lines(test, paper_runs)
    L += _speed_lines(test)
    extra = sorted(present - {ABLATION_REFERENCE, *ABLATIONS, *ABLATIONS_OPTIONAL})
    if extra:
        L += [f"Also in the batch (not an ablation of `{ABLATION_REFERENCE}`): {', '.join(extra)}.", ""]
    return "\n".join(L)


__all__ = ["GROUPS", "PPO_PAIR", "paired_rows", "render_ablations", "setting"]
