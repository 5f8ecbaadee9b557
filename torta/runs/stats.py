"""Statistics over a comparison's runs: the mean and 95 % t-interval over units (seeds, or (seed, day)
pairs), and paired differences of a policy against a baseline on the units both ran."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

METRICS = ("response_mean_s", "response_p95_s", "load_std", "cost_usd", "energy_usd", "transfer_usd",
           "switching_usd", "switches", "planner_ms_per_slot")


def t_interval(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and 95 % t-interval half-width over seeds (0.0 with one seed)."""
    from scipy.stats import t as student_t

    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        return 0.0, 0.0
    mean = float(x.mean())
    if n < 2:
        return mean, 0.0
    half = float(student_t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return mean, (half if math.isfinite(half) else 0.0)


def _unit(r: dict) -> tuple[int, int]:
    return int(r["seed"]), int(r.get("day", 0) or 0)


def paired(runs: list[dict], policy: str, baseline: str) -> dict:
    """Paired differences policy - baseline over the units both ran: one unit per seed, or per
    (seed, day) when the runs carry a `day` (`hours_per_day`). Mean and 95 % t-interval per metric,
    absolute (`<m>_diff`) and relative to the baseline in percent (`<m>_diff_pct`: per-unit
    (policy - baseline) / baseline x 100, over the units where the baseline is not 0)."""
    base = {_unit(r): r for r in runs if r["policy"] == baseline}
    mine = {_unit(r): r for r in runs if r["policy"] == policy}
    units = sorted(set(base) & set(mine))
    out: dict[str, Any] = {"baseline": baseline, "pairs": len(units)}
    for m in METRICS:
        mean, half = t_interval([float(mine[k][m]) - float(base[k][m]) for k in units])
        out[m + "_diff"] = mean
        out[m + "_diff_ci95"] = half
        rel = [100.0 * (float(mine[k][m]) - float(base[k][m])) / float(base[k][m])
               for k in units if float(base[k][m]) != 0.0]
        mean, half = t_interval(rel)
        out[m + "_diff_pct"] = mean
        out[m + "_diff_pct_ci95"] = half
    return out


def parse_baselines(baseline: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """`--baseline` as a list: None -> [], "a,b" -> ["a", "b"] (order kept, duplicates dropped)."""
    if baseline is None:
        return []
    items = baseline.split(",") if isinstance(baseline, str) else list(baseline)
    return list(dict.fromkeys(b.strip() for b in items if b and b.strip()))
