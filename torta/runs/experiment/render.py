"""RESULTS.md from the experiment's runs (a polars frame, one row per (cell, policy)) and its figures.
Every number in the text is computed here from the frame; nothing is typed by hand."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import polars as pl

from torta.runs.experiment.aggregate import (CLAIMS, METRICS, claims_table, paired_table, policy_table,
                                        strongest_baselines)
from torta.runs.experiment.definition import BASELINES, CLAIM_CANDIDATES, TORTA_FAMILY, TRACE_DAY

SHORT = {"response_mean_s": "resp mean s", "response_p95_s": "resp p95 s", "load_std": "load std",
         "cost_usd": "cost $", "energy_usd": "energy $", "transfer_usd": "transfer $",
         "switching_usd": "switching $", "switches": "switches"}


def _f(x: float, digits: int = 3) -> str:
    ax = abs(x)
    if ax != 0 and (ax < 10 ** -digits or ax >= 1e6):
        return f"{x:.2e}"
    return f"{x:.{digits}f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _claim_policy(test: pl.DataFrame) -> str | None:
    present = set(test["policy"].to_list())
    return next((p for p in CLAIM_CANDIDATES if p in present), None)


def _first_str(runs: pl.DataFrame, col: str) -> str:
    if col not in runs.columns:
        return ""
    vals = [v for v in runs[col].unique().to_list() if isinstance(v, str) and v]
    return vals[0] if len(vals) == 1 else ""


def _cell_walls(runs: pl.DataFrame) -> pl.DataFrame:
    """Wall time per (cell, role): the sum over the Dagster runs that wrote its rows (a cell re-run for a
    policy it lacked adds that run's time; rows of one run share its `cell_wall_s`)."""
    by = ["cell", "role"] + (["dagster_run_id"] if "dagster_run_id" in runs.columns else [])
    return (runs.group_by(by).agg(pl.col("cell_wall_s").first())
            .group_by("cell", "role").agg(pl.col("cell_wall_s").sum()))


# Policies whose claims get a table of their own after the claims' policy: the receding-horizon planner
# (issue 18), with and without the PPO actor acting on its decision.
EXTRA_CLAIMS = ("torta", "torta-horizon")
EXTRA_WHAT = {"torta": "the paper's single-slot design: the PPO macro policy with OT supervision, one slot at a time, "
                       "and TORTA's micro allocator",
              "torta-horizon": "the receding-horizon LP macro planner, issue 18",
              "torta-horizon-ppo": "the receding-horizon LP macro planner with the PPO actor offsetting its routing "
                                   "shares, trained on the surrogate with warm-model state, issue 18"}


def _claims_rows(claims: pl.DataFrame) -> list[list[str]]:
    rows = []
    for r in claims.iter_rows(named=True):
        rows.append([r["claim"], r["paper"], f"{r['scenario']} / {r['workload']}", str(r["pairs"]),
                     f"{r['diff_pct']:+.1f} % [{r['lo_pct']:+.1f}, {r['hi_pct']:+.1f}]" if r["pairs"] >= 2
                     else f"{r['diff_pct']:+.1f} % (one pair)",
                     f"**{r['verdict']}**", r["magnitude"]])
    return rows


CLAIM_HEADER = ["claim", "paper (abstract)", "scope", "pairs", "measured diff [95 % CI]", "verdict", "magnitude"]


def switches_table(test: pl.DataFrame, best: dict, policies: list[str]) -> list[dict]:
    """Model switches per day of each of `policies` and of the strongest baseline, per topology and
    multi-day workload (mean over test days; a window of `hours` h scaled to 24 h), and their ratio
    (issue 18's acceptance: at most 2)."""
    out = []
    multi = test.filter(pl.col("day") != TRACE_DAY)
    for (sc, wl), g in multi.group_by("scenario", "workload", maintain_order=True):
        b = best.get((sc, wl), (None, ""))[0]
        if b is None:
            continue
        h = g["hours"] if "hours" in g.columns else pl.Series([24.0] * g.height)
        g = g.with_columns(per_day=pl.col("switches").cast(pl.Float64) * 24.0 / pl.Series(h).cast(pl.Float64))
        gb = g.filter(pl.col("policy") == b)
        for p in policies:
            gp = g.filter(pl.col("policy") == p)
            if not gp.height or not gb.height:
                continue
            j = gp.join(gb, on=["seed", "day"], suffix="_b")
            sp, sb = float(j["per_day"].mean()), float(j["per_day_b"].mean())
            out.append({"scenario": sc, "workload": wl, "policy": p, "baseline": b, "units": j.height,
                        "per_day": sp, "baseline_per_day": sb,
                        "ratio": sp / sb if sb > 0 else (0.0 if sp == 0 else float("inf"))})
    return out


def _switches_lines(test: pl.DataFrame, best: dict, policies: list[str]) -> list[str]:
    rows = switches_table(test, best, policies)
    if not rows:
        return []
    L = ["### Model switches per day against the strongest baseline", "",
         "Model loads (switches) per test day, mean over the paired test days of the multi-day workload, for "
         "each TORTA planner and the strongest deployable baseline of its topology. Issue 18's acceptance: "
         "at most twice the baseline's.", ""]
    L.append(_md_table(["scope", "policy", "days", "switches / day", "strongest baseline", "its switches / day",
                        "ratio", "at most 2x"],
                       [[f"{r['scenario']} / {r['workload']}", f"`{r['policy']}`", str(r["units"]), _f(r["per_day"], 1),
                         f"`{r['baseline']}`", _f(r["baseline_per_day"], 1),
                         "inf" if r["ratio"] == float("inf") else f"{r['ratio']:.2f}",
                         "**yes**" if r["ratio"] <= 2.0 else "**no**"] for r in rows]))
    return L + [""]


FORESIGHT = ("torta-ot-oracle", "torta-ot", "torta-ot-last")  # perfect, forecast, persistence


def run_parts(runs: pl.DataFrame, hours_digits: int = 1) -> list[str]:
    """The protocol line's last parts: the command the batch ran with, its wall time summed over cells."""
    parts = []
    cmd = _first_str(runs, "run_command")
    if cmd:
        parts.append(f"command: `{cmd}`")
    if "cell_wall_s" in runs.columns and runs["cell_wall_s"].null_count() == 0:
        per_cell = _cell_walls(runs)
        parts.append(f"measured wall time: {float(per_cell['cell_wall_s'].sum()) / 3600:.{hours_digits}f} h summed "
                     f"over {per_cell.height} cells")
    return parts


def _protocol_lines(test: pl.DataFrame, runs: pl.DataFrame) -> list[str]:
    """The protocol at the top of the file: warm-up, window, S, seeds, command, wall time."""
    def vals(col, frame=test):
        return sorted({v for v in frame[col].to_list() if v is not None}) if col in frame.columns else []

    multi = test.filter(pl.col("day") != TRACE_DAY)
    trace = test.filter(pl.col("day") == TRACE_DAY)
    warm = vals("warmup_h", multi)
    S = vals("protocol_state_refresh_s")
    parts = [f"**Protocol.** Window: {', '.join(_f(h, 2) for h in vals('hours', multi)) or '-'} h of each test day"
             f" after {', '.join(_f(h, 2) for h in warm) or '0'} h of unscored warm-up through the same policy"]
    if trace.height:
        parts.append(f"hour traces: {', '.join(_f(h, 2) for h in vals('trace_hours', trace))} h, the first "
                     f"{', '.join(_f(h, 2) for h in vals('trace_warmup_h', trace)) or '0'} h unscored")
    parts.append(f"load reports every {', '.join(_f(x, 1) for x in S) or '0'} s (each origin's gateway sees "
                 "other regions as of the last report; `torta/sim/infomodel.py`)")
    parts.append(f"seeds per test day: {test['seed'].n_unique()}")
    parts += run_parts(runs)
    return ["; ".join(parts) + ".", "",
            "**Definitions changed (issue 17).** Compared with RESULTS.md before December 2026: whole test days "
            "after a warm-up instead of the first 15 minutes after a cold start; every routing decision on "
            "the control-plane information model (stale remote state) instead of free instant global state; "
            "`round-robin`, `local-only` and `torta-no-micro` prefer warm servers (a model is loaded only "
            "when no server holding it can start the request within the load time, and each model keeps its "
            "last warm server in a scope); the backlog every policy reads counts queued work at the batch "
            "KV memory really allows; the herd-robust `least-loaded-d2` (power of two choices) joined the "
            "baselines; the strongest baseline is picked per topology AND workload on its validation window. "
            "`least-loaded@S0` is least-loaded on instant global state: the oracle reference line, never a "
            "claim's baseline. Numbers from before are not comparable.", ""]


def _foresight_lines(test: pl.DataFrame) -> list[str]:
    """Value of foresight: paired differences among perfect, forecast and persistence OT planning."""
    have = [p for p in FORESIGHT if p in set(test["policy"].to_list())]
    if len(have) < 2:
        return []
    L = ["## Value of foresight", "",
         "The same OT planner fed perfect knowledge of the slot's demand (`torta-ot-oracle`), the forecast "
         "(`torta-ot`) or the last slot's demand (`torta-ot-last`, persistence). Paired per unit, mean response "
         "time: difference in percent of the second policy, mean [95 % CI] (pairs).", ""]
    from torta.runs.compare import t_interval

    pairs = (("torta-ot-oracle", "torta-ot-last"), ("torta-ot", "torta-ot-last"), ("torta-ot-oracle", "torta-ot"))
    keys = ["scenario", "workload", "seed", "day"]

    def row(scope: str, g: pl.DataFrame, a: str, b: str) -> list[str] | None:
        ga, gb = g.filter(pl.col("policy") == a), g.filter(pl.col("policy") == b)
        if not ga.height or not gb.height:
            return None
        j = ga.join(gb, on=keys, suffix="_b")
        rel = ((j["response_mean_s"] - j["response_mean_s_b"]) / j["response_mean_s_b"] * 100.0).to_numpy()
        mu, h = t_interval(rel)
        ci = f"{mu:+.1f} [{mu - h:+.1f}, {mu + h:+.1f}] ({len(rel)})" if len(rel) >= 2 else f"{mu:+.1f} (one pair)"
        return [scope, f"`{a}` vs `{b}`", ci,
                f"{_f(float(j['response_mean_s'].mean()))} / {_f(float(j['response_mean_s_b'].mean()))}"]

    rows = []
    for (sc, wl), g in test.group_by("scenario", "workload", maintain_order=True):
        rows += [r for a, b in pairs if (r := row(f"{sc} / {wl}", g, a, b))]
    # Pooled over the topologies (issue 18's acceptance reads the pooled pair): per workload, then all units.
    pooled = []
    for (wl,), g in test.group_by("workload", maintain_order=True):
        if g["scenario"].n_unique() > 1:
            pooled += [r for a, b in pairs if (r := row(f"all / {wl}", g, a, b))]
    if test["workload"].n_unique() > 1:
        pooled += [r for a, b in pairs if (r := row("all / all", test, a, b))]
    rows += pooled
    notes = []
    for (wl,), g in test.group_by("workload", maintain_order=True):
        means = {p: float(g.filter(pl.col("policy") == p)["response_mean_s"].mean()) for p in FORESIGHT
                 if g.filter(pl.col("policy") == p).height}
        if g["scenario"].n_unique() > 1 and len(means) == 3:
            o, fc, last = means["torta-ot-oracle"], means["torta-ot"], means["torta-ot-last"]
            notes.append(f"- all / {wl}: oracle {_f(o)} s, forecast {_f(fc)} s, persistence {_f(last)} s: the oracle "
                         + ("at most" if o <= last else "above") + " persistence; the forecast "
                         + ("between them" if min(o, last) <= fc <= max(o, last) else "not between them") + ".")
    tail = ["Pooled means (the multi-day workloads, every topology's test days):", "", *notes, ""] if notes else []
    return L + [_md_table(["scope", "pair", "diff % [95 % CI] (pairs)", "mean resp s (first / second)"], rows), "",
                *tail]


def _slot_figures(slot_response: pl.DataFrame | None, lines: dict, figures_dir: Path, md_dir: Path | None
                  ) -> dict[str, str]:
    """Response time per 15-minute slot over the day for the claim's policy, the strongest baseline and
    the oracle reference, one figure per topology (multi-day workloads, mean over units)."""
    if slot_response is None or slot_response.height == 0:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    figures_dir.mkdir(parents=True, exist_ok=True)
    data = slot_response.filter((pl.col("day") != TRACE_DAY) & (pl.col("role") == "test"))
    for (sc,), g in data.group_by("scenario", maintain_order=True):
        fig, ax = plt.subplots(figsize=(10, 3.4))
        for pol in lines.get(sc, ()):
            h = (g.filter(pl.col("policy") == pol).group_by("slot").agg(pl.col("response_mean_s").mean())
                 .sort("slot"))
            if h.height:
                ax.plot((h["slot"] * 0.25).to_list(), h["response_mean_s"].to_list(), label=pol, lw=1.2)
        ax.set_yscale("log")
        ax.set_xlabel("hour of the test day (15-minute slots)")
        ax.set_ylabel("mean response s (log)")
        ax.set_title(f"{sc}: response time per slot, mean over test days")
        ax.legend(fontsize=8)
        name = f"slots__{sc}.png"
        path = figures_dir / name
        tmp = path.with_name(f".{name}.tmp.png")
        fig.savefig(tmp, dpi=90, bbox_inches="tight")
        plt.close(fig)
        os.replace(tmp, path)
        out[sc] = os.path.relpath(path, md_dir) if md_dir is not None else str(path)
    return out


def _policy_gaps(test: pl.DataFrame) -> list[str]:
    """A banner line when some policies have rows in only some of the test cells that ran (an incremental
    sweep or a `--redo-policies` in progress): their pooled figures cover only those cells."""
    cell = pl.concat_str("scenario", "workload", "seed", "day", separator="|")
    n = test.select(cell.n_unique()).item()
    per = test.group_by("policy").agg(cell.n_unique().alias("cells")).filter(pl.col("cells") < n).sort("policy")
    if per.height == 0:
        return []
    return [f"> **Partial results per policy: of the {n} test cells that ran,** "
            + ", ".join(f"`{p}` has rows in {c}" for p, c in per.iter_rows())
            + ". Their figures (and claims, pairs, switches) cover only those cells; the sweep resumes the rest "
              "(`torta experiment paper`), then rerun `torta experiment results`.", ""]


def _partial_lines(test: pl.DataFrame, planned_cells: list[str] | None, command: str = "torta experiment paper"
                   ) -> list[str]:
    gaps = _policy_gaps(test)
    if not planned_cells:
        return gaps
    have = set(test.select(pl.concat_str("scenario", "workload", "seed", "day", separator="|"))
               .to_series().to_list())  # Cell.key
    missing = [k for k in planned_cells if k not in have]
    if not missing:
        return gaps
    return gaps + [f"> **Partial results: {len(planned_cells) - len(missing)} of the {len(planned_cells)} test cells.** "
            f"Not yet run (`{command}` resumes them, then rerun `torta experiment results`): "
            + ", ".join(f"`{k}`" for k in missing) + ". Pooled figures cover only the cells that ran.", ""]


def render_results(runs: pl.DataFrame, *, batch: str, figures_dir: Path | None = None,
                   md_dir: Path | None = None, wall_s: float | None = None, note: str = "",
                   slot_response: pl.DataFrame | None = None, planned_cells: list[str] | None = None) -> str:
    """RESULTS.md's text. `planned_cells`: the test cells' keys (`Cell.key`) the experiment's definition
    holds; when the batch has only some of them, a banner at the top says which are missing."""
    if runs.height == 0:
        raise ValueError("no runs to render")
    test = runs.filter(pl.col("role") == "test")
    val = runs.filter(pl.col("role") == "validation")
    if test.height == 0:
        raise ValueError(f"batch {batch!r} has no test runs")
    policies = test["policy"].unique().to_list()
    baselines = tuple(p for p in BASELINES if p in policies)
    torta = [p for p in TORTA_FAMILY if p in policies]
    best = strongest_baselines(val, test, baselines)
    claim_pol = _claim_policy(test)
    table = policy_table(test)
    paired = paired_table(test, best)
    claims = claims_table(test, best, claim_pol) if claim_pol else pl.DataFrame()
    figs = _figures(table, claims, figures_dir, md_dir) if figures_dir is not None else {}

    scen = test["scenario"].unique(maintain_order=True).to_list()
    wls = test["workload"].unique(maintain_order=True).to_list()
    days = sorted(d for d in test["day"].unique().to_list() if d != TRACE_DAY)
    seeds = test["seed"].n_unique()
    L = ["# Reproducing TORTA (arXiv:2507.10259): results", "",
         "Generated by `torta experiment results` from the warehouse (`runs` rows of experiment "
         f"`{runs['experiment'][0]}`, batch `{batch}`). Do not edit by hand: rerun the command.", ""]
    L += _partial_lines(test, planned_cells)
    L += _protocol_lines(test, runs)
    L += ["## What ran", ""]
    span = ""
    if "finished_at" in runs.columns and runs["finished_at"].dtype != pl.String:
        t0, t1 = runs["finished_at"].min(), runs["finished_at"].max()
        if isinstance(t0, datetime) and isinstance(t1, datetime):
            span = f"; first to last cell finished {(t1 - t0).total_seconds() / 60:.1f} min apart"
    hours = sorted(set(test.filter(pl.col("day") != TRACE_DAY)["hours"].to_list())) if "hours" in test.columns else []
    thours = sorted(set(test["trace_hours"].to_list())) if "trace_hours" in test.columns else []
    L += [f"- Topologies: {', '.join(scen)}. Workloads: {', '.join(wls)}.",
          f"- Seeds: {seeds}. Test days of the multi-day workloads: {', '.join(map(str, days)) or 'none'} "
          f"(first {', '.join(_f(h, 2) for h in hours) or '-'} h of each day); hour traces: first "
          f"{', '.join(_f(h, 2) for h in thours) or '-'} h, the same requests for every seed, origins drawn per seed.",
          f"- Paired units: one per (seed, test day) for the multi-day workloads, one per seed for the hour traces; "
          "every policy replays the identical requests in a unit.",
          f"- Policies: baselines {', '.join(baselines)}; TORTA and ablations {', '.join(torta)}."]
    ran = (test.group_by("scenario", "workload", maintain_order=True)
           .agg(pl.struct("seed", "day").n_unique().alias("cells"), pl.col("seed").unique().sort().alias("seeds"),
                pl.col("day").unique().sort().alias("days"), pl.len().alias("runs")))
    L.append("- Cells that ran (a cell = one scenario, workload, seed and day; every policy in it): "
             + "; ".join(f"{r['scenario']}/{r['workload']} {r['cells']} (seeds {','.join(map(str, r['seeds']))}"
                         + (f", days {','.join(map(str, r['days']))}" if r["days"] != [TRACE_DAY] else "")
                         + f"; {r['runs']} runs)" for r in ran.iter_rows(named=True)) + ".")
    missing = [p for p in TORTA_FAMILY if p not in policies]
    if missing:
        L.append(f"- Not in this batch: {', '.join(missing)} (not selected for the batch, not registered, or, "
                 "for the learned PPO policies, without a trained checkpoint (`torta train`) for every topology when "
                 "the batch ran).")
    if claim_pol in ("torta", "torta-horizon-ppo"):
        have = set(test.filter(pl.col("policy") == claim_pol)["scenario"].unique().to_list())
        on = ("on every topology" if have == set(scen) else
              f"on {', '.join(sorted(have))} only (no checkpoint elsewhere)")
        why = (" (the learned PPO macro policy with OT supervision and TORTA's micro allocator, from the "
               f"committed checkpoints, {on})") if claim_pol == "torta" else (
            " (TORTA as issue 18 builds it: the receding-horizon LP macro planner on the day-ahead forecast, the PPO "
            "actor trained on the surrogate with warm-model state offsetting its routing shares, and the "
            "target-following micro allocator that pre-loads to the plan's placement; from the committed "
            f"checkpoints, {on}; the paper's single-slot design `torta` has tables of its own below)")
    elif claim_pol == "torta-ot":
        why = (" (the PPO policy `torta` was not available, so the OT-only macro layer with TORTA's micro "
               "allocator stands in for TORTA)")
    else:
        why = ""
    L.append(f"- Claims are checked for `{claim_pol}`{why}"
             + "".join(f"; also for `{e}` (its own tables below)" for e in EXTRA_CLAIMS
                       if e in policies and e != claim_pol) + ".")
    L.append("- Windows: PPO trains on days 1-10 (`torta train`: episodes on days 2-10, day 1 as history); day 11 (validation, seed 0) tunes SkyLB's "
             "threshold and picks the strongest baseline; days 12-14 are the test. They never overlap.")
    if val.height and "skylb_threshold" in val.columns:
        th = val.group_by("scenario").agg(pl.col("skylb_threshold").first()).sort("scenario")
        L.append("- SkyLB threshold (pending requests per server, tuned on day 11): "
                 + ", ".join(f"{s} {_f(t, 1)}" for s, t in th.iter_rows()) + ".")
    L.append("- Strongest deployable baseline per topology and workload (the claims' reference): "
             + ", ".join(f"{s}/{w}: `{b}` ({how})" for (s, w), (b, how) in best.items()) + ".")
    cmd = _first_str(runs, "run_command")
    if cmd:
        w = int(runs["workers"].max()) if "workers" in runs.columns and runs["workers"].null_count() == 0 else 1
        L.append(f"- One command ran the whole batch: `{cmd}` (plan and run-time estimate, the validation cells, "
                 f"every test cell, then this file); cells ran {w} at a time"
                 + (f" in {w} worker processes." if w > 1 else " in one process."))
    if wall_s is not None:
        L.append(f"- Measured run time of the whole batch: {wall_s / 60:.1f} min on this machine{span}.")
    elif span:
        L.append(f"- Run time{span}.")
    if "wall_s" in runs.columns:
        L.append(f"- Replay time summed over all {runs.height} runs (validation included): "
                 f"{float(runs['wall_s'].sum()) / 60:.1f} min (the replay calls only: policy preparation such as "
                 "forecaster fitting, workload building and Dagster overhead per cell come on top).")
    if "cell_wall_s" in runs.columns and runs["cell_wall_s"].null_count() == 0:
        per_cell = _cell_walls(runs)
        L.append(f"- Cell wall time summed over {per_cell.height} cells: {float(per_cell['cell_wall_s'].sum()) / 60:.1f} "
                 "min (what one process needs, Dagster start-up per cell excluded).")
    if note:
        L.append(f"- How it ran: {note}")
    L.append("")
    L += ["## Summary", ""]
    for (sc, wl), g in table.group_by("scenario", "workload", maintain_order=True):
        order = g.sort("response_mean_s")["policy"].to_list()
        cheap = g.sort("cost_usd")["policy"][0]
        rank = f"; `{claim_pol}` ranks {order.index(claim_pol) + 1} of {len(order)}" if claim_pol in order else ""
        L.append(f"- {sc} / {wl}: lowest mean response time `{order[0]}`{rank}; lowest cost `{cheap}`.")
    L.append("")

    L += ["## The paper's claims against our measurement", "",
          f"Relative difference of `{claim_pol}` minus the strongest baseline, in percent of the baseline, "
          "mean over paired units and 95 % t-interval. Verdict: **reproduced** when the whole interval shows "
          "an improvement (below 0), **not reproduced** when the whole interval is at or above 0, "
          "**inconclusive** when it spans 0 or rests on one pair (the hour traces: one per topology). Magnitude compares the mean reduction with the claimed range.", ""]
    if claims.height:
        rows = _claims_rows(claims)
        allrows = [r for r in rows if r[2] == "all / all"]
        L += ["### Pooled over every topology and workload", "",
              "Every paired unit of every topology and workload, each against its own topology's strongest "
              "baseline.", "",
              _md_table(CLAIM_HEADER, allrows), ""]
        L += ["### Per topology and workload", "",
              _md_table(CLAIM_HEADER, [r for r in rows if r[2] != "all / all"]), ""]
        if "claims" in figs:
            L += [f"![claims]({figs['claims']})", ""]
    else:
        L += ["No TORTA policy in this batch: the claims cannot be checked.", ""]
    for extra in (p for p in EXTRA_CLAIMS if p in policies and p != claim_pol):
        ec = claims_table(test, best, extra)
        if not ec.height:
            continue
        rows = _claims_rows(ec)
        have = test.filter(pl.col("policy") == extra).select("scenario", "workload").unique().height
        every = test.select("scenario", "workload").unique().height
        L += [f"### The same claims for `{extra}`", "",
              f"`{extra}` ({EXTRA_WHAT.get(extra, 'issue 18')}) against the same strongest baselines, "
              "on the same paired units" + ("" if have == every else
                                            f" (only {have} of the {every} topology / workload scopes have its rows)")
              + ".", "",
              "Pooled over every topology and workload:", "",
              _md_table(CLAIM_HEADER, [r for r in rows if r[2] == "all / all"]), "",
              "Per topology and workload:", "",
              _md_table(CLAIM_HEADER, [r for r in rows if r[2] != "all / all"]), ""]
    L += _switches_lines(test, best, [p for p in (claim_pol, *EXTRA_CLAIMS) if p and p in policies])

    L += _foresight_lines(test)
    oracle = [p for p in policies if p.endswith("@S0")]
    lines = {}
    for (sc, wl), (b, _) in best.items():
        if sc not in lines:
            lines[sc] = [p for p in (claim_pol, *(e for e in EXTRA_CLAIMS if e in policies), b, *oracle) if p]
    sfig = _slot_figures(slot_response, lines, figures_dir, md_dir) if figures_dir is not None else {}
    if sfig:
        L += ["## Over the day", "",
              "Mean response time per 15-minute slot of the test days (by arrival), for the claims' policy, the "
              "strongest deployable baseline and the oracle reference, per topology.", ""]
        for sc, f in sfig.items():
            L += [f"![{sc} per slot]({f})", ""]
    L += ["## Per topology and workload", "",
          "Mean over paired units ± 95 % t-interval half-width. Cost = energy + transfer + switching (USD "
          "for the replayed window).", ""]
    for sc in scen:
        for wl in wls:
            t = table.filter(pl.col("scenario") == sc, pl.col("workload") == wl)
            if t.height == 0:
                continue
            L += [f"### {sc} / {wl}", ""]
            rows = [[r["policy"], str(r["units"])] + [f"{_f(r[m])} ± {_f(r[m + '_ci95'])}" for m in METRICS]
                    for r in t.iter_rows(named=True)]
            L += [_md_table(["policy", "units"] + [SHORT[m] for m in METRICS], rows), ""]
            p = paired.filter(pl.col("scenario") == sc, pl.col("workload") == wl) if paired.height else paired
            if p.height:
                L += [f"Paired difference against the strongest baseline `{p['baseline'][0]}` "
                      "(percent of the baseline, mean [95 % CI]):", ""]
                ms = ("response_mean_s", "response_p95_s", "load_std", "cost_usd", "energy_usd", "transfer_usd",
                      "switching_usd", "switches")
                rows = []
                for r in p.iter_rows(named=True):
                    cells = []
                    for m in ms:
                        if r[m + "_pct_pairs"] == 0:
                            cells.append(f"{_f(r[m + '_diff'])} abs")
                        else:
                            mu, h = r[m + "_pct"], r[m + "_pct_ci95"]
                            cells.append(f"{mu:+.1f} [{mu - h:+.1f}, {mu + h:+.1f}]")
                    rows.append([r["policy"], str(r["pairs"])] + cells)
                L += [_md_table(["policy", "pairs"] + [SHORT[m] for m in ms], rows), ""]
            key = f"{sc}|{wl}"
            if key in figs:
                L += [f"![{sc} {wl}]({figs[key]})", ""]
    L += ["## Reading these numbers", "",
          "- The paper's numbers come from its abstract only (its body and code are not public); its baselines, "
          "fleets and traces are not known, so a difference in magnitude is expected. Ours: "
          "the shipped scenarios, the ServeGen-shaped multi-day workload with Azure 2023 token lengths and the "
          "Azure 2023 hour traces, replayed by TORTA's simulator.",
          "- Windows: see the protocol at the top; `torta experiment paper --hours H --warmup-hours W` changes them.",
          "- Reproduce: `torta experiment paper` (add `--reduced` for the CI-sized run), then "
          "`torta experiment results`; the runs stay queryable with "
          "`torta sql \"select * from runs where experiment = 'paper'\"`.",
          ""]
    return "\n".join(L)


def _figures(table: pl.DataFrame, claims: pl.DataFrame, figures_dir: Path, md_dir: Path | None) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures_dir.mkdir(parents=True, exist_ok=True)
    rel = (lambda p: os.path.relpath(p, md_dir)) if md_dir is not None else str
    out: dict[str, str] = {}

    def save(fig, name: str) -> str:
        path = figures_dir / name
        tmp = path.with_name(f".{name}.tmp.png")
        fig.savefig(tmp, dpi=90, bbox_inches="tight")
        plt.close(fig)
        os.replace(tmp, path)
        return rel(path)

    for (sc, wl), g in table.group_by("scenario", "workload", maintain_order=True):
        g = g.sort("policy")
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
        for ax, m in zip(axes, ("response_mean_s", "load_std", "cost_usd")):
            colors = ["tab:red" if p in TORTA_FAMILY else "tab:gray" for p in g["policy"]]
            ax.bar(g["policy"].to_list(), g[m].to_list(), yerr=g[m + "_ci95"].to_list(), color=colors, capsize=3)
            vals = [v for v in g[m].to_list() if v > 0]
            if vals and max(vals) / min(vals) > 50:
                ax.set_yscale("log")
            ax.set_title(SHORT[m] + (" (log)" if ax.get_yscale() == "log" else ""))
            ax.tick_params(axis="x", rotation=60, labelsize=7)
        fig.suptitle(f"{sc} / {wl} (mean, 95 % CI; red: TORTA family)")
        out[f"{sc}|{wl}"] = save(fig, f"{sc}__{wl}.png")
    if claims.height:
        fig, axes = plt.subplots(1, len(CLAIMS), figsize=(14, 0.35 * claims.height / len(CLAIMS) + 1.8),
                                 sharey=True)
        for i, (ax, c) in enumerate(zip(axes, CLAIMS)):
            g = claims.filter(pl.col("claim") == c.name)
            labels = [f"{a}/{b}" for a, b in zip(g["scenario"], g["workload"])]
            y = list(range(len(labels)))
            ax.errorbar(g["diff_pct"].to_list(), y, xerr=g["ci95_pct"].to_list(), fmt="o", capsize=3)
            ax.axvspan(-c.hi_pct, -c.lo_pct, color="tab:green", alpha=0.2, label="paper's claim")
            ax.axvline(0, color="k", lw=0.8)
            if i == 0:
                ax.set_yticks(y, labels, fontsize=7)
            else:
                ax.tick_params(labelleft=False)
            ax.set_title(f"{c.name}: diff % vs strongest baseline", fontsize=9)
        axes[0].legend(fontsize=7)
        out["claims"] = save(fig, "claims.png")
    return out
