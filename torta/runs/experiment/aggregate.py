"""Aggregate experiment runs (polars frames, one row per (cell, policy)): per-policy means with 95 %
t-intervals over the (seed, day) units, paired differences against the strongest baseline, and the
paper's three claims with a verdict each."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from torta.runs.compare import t_interval

METRICS = ("response_mean_s", "response_p95_s", "load_std", "cost_usd", "energy_usd", "transfer_usd",
           "switching_usd", "switches")
UNIT = ("scenario", "workload", "seed", "day")  # one paired unit: identical requests for every policy


@dataclass(frozen=True)
class Claim:
    name: str
    metric: str  # lower is better for all three
    text: str  # the claim as the paper's abstract states it (arXiv:2507.10259, abstract)
    lo_pct: float  # claimed reduction range, percent
    hi_pct: float


CLAIMS = (
    Claim("response time", "response_mean_s", "average inference response time down by up to 15 %", 0.0, 15.0),
    Claim("load balance", "load_std", "load balance better by about 4-5 % (read: load std down 4-5 %)", 4.0, 5.0),
    Claim("operational cost", "cost_usd", "total operational cost down by 10-20 %", 10.0, 20.0),
)


def verdict(mean: float, half: float, pairs: int) -> str:
    """For a lower-is-better relative difference (policy - baseline): 'reproduced' when the whole 95 %
    interval is below zero, 'not reproduced' when it is at or above zero, 'inconclusive' when it spans
    zero (or fewer than 2 pairs)."""
    if pairs < 2:
        return "inconclusive"
    if mean + half < 0:
        return "reproduced"
    if mean - half >= 0:
        return "not reproduced"
    return "inconclusive"


def magnitude(mean_pct: float, claim: Claim) -> str:
    red = -mean_pct
    if red <= 0:
        return "no reduction"
    if red < claim.lo_pct:
        return "smaller than claimed"
    if red > claim.hi_pct:
        return "larger than claimed"
    return "within the claimed range"


def policy_table(runs: pl.DataFrame) -> pl.DataFrame:
    """Per scenario, workload and policy: n units, mean and 95 % half-width of every metric."""
    rows = []
    for (sc, wl, pol), g in runs.group_by("scenario", "workload", "policy", maintain_order=True):
        row = {"scenario": sc, "workload": wl, "policy": pol, "units": g.height,
               "requests": float(g["requests"].mean())}
        for m in METRICS:
            mean, half = t_interval(g[m].cast(pl.Float64).to_numpy())
            row[m], row[m + "_ci95"] = mean, half
        rows.append(row)
    return pl.DataFrame(rows).sort("scenario", "workload", "response_mean_s")


def strongest_baselines(validation: pl.DataFrame | None, test: pl.DataFrame,
                        baselines: tuple[str, ...]) -> dict[tuple[str, str], tuple[str, str]]:
    """(scenario, workload) -> (baseline, how chosen): lowest mean response time on that workload's
    validation window on that topology (day 11 of a multi-day workload, the first minutes of an hour
    trace); where there is none, the lowest mean response time over its test runs (said so)."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for sc, wl in test.select("scenario", "workload").unique(maintain_order=True).iter_rows():
        for frame, how in ((validation, "validation window, mean response time"),
                           (test, "test runs, mean response time (no validation runs)")):
            if frame is None or frame.height == 0:
                continue
            g = frame.filter(pl.col("scenario") == sc, pl.col("workload") == wl, pl.col("policy").is_in(list(baselines)))
            if g.height:
                best = g.group_by("policy").agg(pl.col("response_mean_s").mean()).sort("response_mean_s", "policy")
                out[(sc, wl)] = (best["policy"][0], how)
                break
    return out


def paired_table(test: pl.DataFrame, baseline_of: dict[tuple[str, str], tuple[str, str]]) -> pl.DataFrame:
    """Per scenario, workload and policy: paired per-(seed, day) differences policy - strongest baseline,
    absolute and relative (percent of the baseline), mean and 95 % half-width."""
    rows = []
    for (sc, wl), g in test.group_by("scenario", "workload", maintain_order=True):
        if (sc, wl) not in baseline_of:
            continue
        base_name = baseline_of[(sc, wl)][0]
        base = g.filter(pl.col("policy") == base_name)
        for pol in g["policy"].unique(maintain_order=True).to_list():
            mine = g.filter(pl.col("policy") == pol)
            j = mine.join(base, on=list(UNIT), suffix="_base")
            row = {"scenario": sc, "workload": wl, "policy": pol, "baseline": base_name, "pairs": j.height}
            for m in METRICS:
                a, b = j[m].cast(pl.Float64), j[m + "_base"].cast(pl.Float64)
                row[m + "_diff"], row[m + "_diff_ci95"] = t_interval((a - b).to_numpy())
                ok = b.abs() > 1e-12
                rel = ((a - b) / b * 100.0).filter(ok).to_numpy()
                row[m + "_pct"], row[m + "_pct_ci95"] = t_interval(rel)
                row[m + "_pct_pairs"] = int(rel.size)
            rows.append(row)
    return pl.DataFrame(rows) if rows else pl.DataFrame()


def claims_table(test: pl.DataFrame, baseline_of: dict[tuple[str, str], tuple[str, str]], policy: str
                 ) -> pl.DataFrame:
    """The three claims for `policy` vs the strongest baseline: per scenario x workload and pooled over
    all pairs ('all'): relative difference (percent), 95 % interval, verdict, magnitude."""
    rows = []
    groups = [(sc, wl, g) for (sc, wl), g in test.group_by("scenario", "workload", maintain_order=True)]
    groups += [(sc, "all", g) for (sc,), g in test.group_by("scenario", maintain_order=True)]
    groups.append(("all", "all", test))
    for sc, wl, g in groups:
        pairs = []
        for (s2, w2), gs in g.group_by("scenario", "workload", maintain_order=True):
            if (s2, w2) not in baseline_of:
                continue
            mine = gs.filter(pl.col("policy") == policy)
            base = gs.filter(pl.col("policy") == baseline_of[(s2, w2)][0])
            pairs.append(mine.join(base, on=list(UNIT), suffix="_base"))
        j = pl.concat(pairs) if pairs else pl.DataFrame()
        for c in CLAIMS:
            if j.height:
                a, b = j[c.metric].cast(pl.Float64), j[c.metric + "_base"].cast(pl.Float64)
                rel = ((a - b) / b * 100.0).filter(b.abs() > 1e-12).to_numpy()
            else:
                rel = []
            mean, half = t_interval(rel)
            n = len(rel)
            rows.append({"scenario": sc, "workload": wl, "claim": c.name, "metric": c.metric, "paper": c.text,
                         "policy": policy, "pairs": n, "diff_pct": mean, "ci95_pct": half,
                         "lo_pct": mean - half, "hi_pct": mean + half,
                         "verdict": verdict(mean, half, n),
                         "magnitude": magnitude(mean, c) if verdict(mean, half, n) == "reproduced"
                         else ("n/a (one pair: no interval)" if n < 2
                               else "n/a (interval spans 0)" if verdict(mean, half, n) == "inconclusive"
                               else "no reduction")})
    return pl.DataFrame(rows)
