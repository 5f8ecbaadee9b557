"""One function per figure; each draws into a new matplotlib figure and saves a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

DPI = 110


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def response_cdf(samples: pl.DataFrame, path: Path) -> Path:
    """Empirical CDF of end-to-end response time per policy (columns policy, response_s)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for policy in sorted(samples["policy"].unique().to_list()):
        x = np.sort(samples.filter(pl.col("policy") == policy)["response_s"].drop_nulls().to_numpy())
        if len(x):
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=policy, lw=1.4)
    ax.set_xscale("log")
    ax.set_xlabel("end-to-end response time (s, log scale)")
    ax.set_ylabel("share of requests")
    ax.set_title("Response-time CDF per policy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def load_balance(over_time: pl.DataFrame, path: Path) -> Path:
    """Std of server utilisation per slot and policy (columns policy, t_start_s, util_std)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    agg = over_time.group_by("policy", "t_start_s").agg(pl.col("util_std").mean()).sort("t_start_s")
    for policy in sorted(agg["policy"].unique().to_list()):
        d = agg.filter(pl.col("policy") == policy)
        ax.plot(d["t_start_s"].to_numpy() / 3600, d["util_std"].to_numpy(), marker="o", ms=3, label=policy)
    ax.set_xlabel("time (h)")
    ax.set_ylabel("std of server utilisation")
    ax.set_title("Load balance over time (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def cost_breakdown(costs: pl.DataFrame, path: Path) -> Path:
    """Stacked bars of energy, transfer and switching USD per policy."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    costs = costs.sort("policy")
    x = np.arange(costs.height)
    bottom = np.zeros(costs.height)
    for col, color in (("energy_usd", "#4c72b0"), ("transfer_usd", "#dd8452"), ("switching_usd", "#55a868")):
        v = costs[col].to_numpy()
        ax.bar(x, v, bottom=bottom, label=col.removesuffix("_usd"), color=color)
        bottom += v
    ax.set_xticks(x, costs["policy"].to_list(), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("USD per run (mean over seeds)")
    ax.set_title("Operational cost breakdown")
    ax.legend(fontsize=8)
    return _save(fig, path)


def forecast_vs_actual(fc: pl.DataFrame, path: Path, max_series: int = 4) -> Path:
    """Forecast mean with its 80 % band against the actual demand (columns series, slot, mean,
    lo80, hi80, actual), for the largest few series."""
    top = (fc.group_by("series").agg(pl.col("actual").sum()).sort("actual", descending=True)
           .head(max_series)["series"].to_list())
    fig, axes = plt.subplots(len(top) or 1, 1, figsize=(7, 1.9 * max(len(top), 1)), sharex=True, squeeze=False)
    for ax, s in zip(axes[:, 0], top):
        d = fc.filter(pl.col("series") == s).sort("slot")
        h = (d["slot"].to_numpy() - d["slot"].min()) / 4
        ax.fill_between(h, d["lo80"].to_numpy(), d["hi80"].to_numpy(), alpha=0.25, label="80 % interval")
        ax.plot(h, d["mean"].to_numpy(), lw=1.3, label="forecast")
        ax.plot(h, d["actual"].to_numpy(), lw=1.0, color="k", label="actual")
        ax.set_title(s, fontsize=8)
        ax.set_ylabel("req/slot", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    axes[-1, 0].set_xlabel("hours into the forecast day")
    fig.suptitle("Demand forecast against actual demand", fontsize=10)
    return _save(fig, path)


def forecast_skill(scores: pl.DataFrame, path: Path) -> Path:
    """The selected forecast's backtest skill per horizon (columns hours, ratio_naive,
    ratio_seasonal_naive, coverage_80, coverage_95): MASE as a share of Naive's and of
    SeasonalNaive's (lower is better), with the intervals' coverage written above the bars."""
    d = scores.sort("hours")
    x = np.arange(d.height)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.bar(x - 0.2, d["ratio_naive"].to_numpy(), 0.4, label="MASE / Naive", color="#4c72b0")
    ax.bar(x + 0.2, d["ratio_seasonal_naive"].to_numpy(), 0.4, label="MASE / SeasonalNaive",
           color="#dd8452")
    ax.axhline(1.0, color="k", lw=0.8)
    for i, r in enumerate(d.iter_rows(named=True)):
        top = max(r["ratio_naive"], r["ratio_seasonal_naive"])
        ax.annotate(f"cov80 {r['coverage_80']:.2f}\ncov95 {r['coverage_95']:.2f}", (i, top),
                    xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7)
    ax.set_xticks(x, [f"{h:g} h" for h in d["hours"].to_list()])
    ax.set_ylim(0, max(1.15, float(d["ratio_naive"].max() or 0) + 0.25))
    ax.set_ylabel("selected forecast's MASE ratio")
    ax.set_title("Forecast skill per horizon (backtest, volume-weighted over series)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def flow_map(regions: pl.DataFrame, links: pl.DataFrame, flows: pl.DataFrame, path: Path, title: str,
             max_flows: int = 25) -> Path:
    """Regions at their coordinates, topology links in grey, and the largest inter-region flows
    (origin -> serving region, width by requests) in colour."""
    fig, ax = plt.subplots(figsize=(7, 4.6))
    pos = {r["name"]: (r["lon"], r["lat"]) for r in regions.iter_rows(named=True)}
    for link in links.iter_rows(named=True):
        if link["src_name"] in pos and link["dst_name"] in pos:
            (x1, y1), (x2, y2) = pos[link["src_name"]], pos[link["dst_name"]]
            ax.plot([x1, x2], [y1, y2], color="0.8", lw=1, zorder=1)
    moved = (flows.filter(pl.col("origin_region") != pl.col("serving_region"))
             .sort("requests", descending=True).head(max_flows))
    peak = float(moved["requests"].max() or 1) if moved.height else 1.0
    for f in moved.iter_rows(named=True):
        if f["origin_region"] in pos and f["serving_region"] in pos:
            (x1, y1), (x2, y2) = pos[f["origin_region"]], pos[f["serving_region"]]
            ax.annotate("", xy=(x2, y2), xytext=(x1, y1), zorder=2,
                        arrowprops=dict(arrowstyle="-|>", color="#c44e52", alpha=0.6,
                                        lw=0.5 + 4.0 * f["requests"] / peak, connectionstyle="arc3,rad=0.15"))
    dc = regions.filter(pl.col("hosts_datacenter"))
    other = regions.filter(~pl.col("hosts_datacenter"))
    ax.scatter(other["lon"], other["lat"], s=14, color="0.5", zorder=3, label="origin only")
    ax.scatter(dc["lon"], dc["lat"], s=40, color="#4c72b0", zorder=3, label="data centre")
    for name, (x, y) in pos.items():
        ax.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def training_curves(curves: pl.DataFrame, path: Path, title: str) -> Path:
    """PPO training curves: episode return (and the day-11 validation return against the reference
    policy where evaluated), and the KL to the OT plan with its weight."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    x = curves["update"].to_numpy()
    a1.plot(x, curves["episode_return"].to_numpy(), lw=1.2, label="train episode return")
    if "val_return" in curves.columns:
        v = curves.filter(pl.col("val_return").is_not_null() & pl.col("val_return").is_finite())
        if v.height:
            a1.plot(v["update"].to_numpy(), v["val_return"].to_numpy(), "o-", ms=3, label="validation (day 11)")
            if "val_ref_return" in v.columns:
                a1.plot(v["update"].to_numpy(), v["val_ref_return"].to_numpy(), "--", label="reference policy")
    a1.set_xlabel("PPO update")
    a1.set_ylabel("return")
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    if "kl_to_ot" in curves.columns:
        a2.plot(x, curves["kl_to_ot"].to_numpy(), lw=1.2, label="KL(policy || OT plan)")
    if "kl_coef" in curves.columns:
        a2.plot(x, curves["kl_coef"].to_numpy(), lw=1.0, ls="--", label="KL weight")
    a2.set_xlabel("PPO update")
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
