"""One function per figure; each draws into a new matplotlib figure and saves a PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

DPI = 110


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# 14+ policies need more than colour: 10 distinct hues x 4 line styles, assigned in a fixed order so
# a policy keeps its look across every figure of the report.
_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
            "#7f7f7f", "#bcbd22"]
_DASHES = ["-", "--", "-.", ":"]


# a point plot's marker per line style: tells apart the policies that share a colour
_MARKERS = dict(zip(_DASHES, ("o", "s", "^", "D")))


def policy_styles(policies) -> dict[str, dict]:
    """A fixed colour and line style per policy (sorted), distinct for up to 40 policies."""
    out = {}
    for i, p in enumerate(sorted(set(policies))):
        out[p] = {"color": _COLOURS[i % len(_COLOURS)], "ls": _DASHES[(i // len(_COLOURS)) % len(_DASHES)]}
    return out


def _legend_right(ax, n: int) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 if n <= 18 else 2,
              frameon=False, handlelength=3)


def cdf(samples: pl.DataFrame, column: str, path: Path, xlabel: str, title: str,
        styles: dict | None = None, log: bool = True) -> Path:
    """Empirical CDF of `column` per policy (columns policy, <column>)."""
    policies = sorted(samples["policy"].unique().to_list())
    styles = styles or policy_styles(policies)
    fig, ax = plt.subplots(figsize=(9, 4.4))
    for policy in policies:
        x = samples.filter(pl.col("policy") == policy)[column].drop_nulls().drop_nans().to_numpy()
        x = np.sort(x[x > 0] if log else x)
        if len(x):
            ax.plot(x, np.arange(1, len(x) + 1) / len(x), label=policy, lw=1.5, **styles[policy])
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of requests")
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    _legend_right(ax, len(policies))
    return _save(fig, path)


def response_cdf(samples: pl.DataFrame, path: Path, styles: dict | None = None) -> Path:
    """Empirical CDF of end-to-end response time per policy (columns policy, response_s)."""
    return cdf(samples, "response_s", path, "end-to-end response time (s, log scale)",
               "Response-time CDF per policy", styles)


def load_balance(over_time: pl.DataFrame, path: Path, styles: dict | None = None,
                 window_h: float | None = None) -> Path:
    """Std of server utilisation per slot and policy (columns policy, t_start_s, util_std), within
    the scored window [0, window_h) (slots after the last arrival, while a backlog drains, are cut)."""
    agg = over_time.group_by("policy", "t_start_s").agg(pl.col("util_std").mean()).sort("t_start_s")
    if window_h is not None:
        agg = agg.filter(pl.col("t_start_s") < window_h * 3600)
    policies = sorted(agg["policy"].unique().to_list())
    styles = styles or policy_styles(policies)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    starts = np.unique(agg["t_start_s"].to_numpy())
    half_h = (np.diff(starts).min() / 2 if len(starts) > 1 else 450.0) / 3600  # plotted at slot midpoints
    for policy in policies:
        d = agg.filter(pl.col("policy") == policy)
        ax.plot(d["t_start_s"].to_numpy() / 3600 + half_h, d["util_std"].to_numpy(), marker="o", ms=3,
                label=policy, lw=1.4, **styles[policy])
    if window_h is not None:
        ax.set_xlim(0, window_h)
    ax.set_xlabel("time into the replayed window (h; each point a 15-minute slot, at its middle)")
    ax.set_ylabel("std of server utilisation")
    ax.set_title("Load balance over time (lower is better)")
    ax.grid(alpha=0.3)
    _legend_right(ax, len(policies))
    return _save(fig, path)


def _plain(v: float) -> str:
    """1,000 / 20 / 0.5: a log axis's tick as a reader writes it."""
    return f"{v:,.0f}" if v >= 1 else f"{v:.3g}"


def _log_ticks(axis, prefix: str = "") -> None:
    """Ticks at 1, 2 and 5 per decade, labelled as plain numbers (`prefix` before them), not as 3 x 10^0
    on every minor tick (which overlap when the axis spans less than a decade)."""
    axis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(mticker.FuncFormatter(lambda v, _: prefix + _plain(v)))
    axis.set_minor_formatter(mticker.NullFormatter())


def cost_breakdown(costs: pl.DataFrame, path: Path) -> Path:
    """Left: total USD per policy on a log scale (every bar shows, whatever the spread); right: each
    policy's cost split into energy, transfer and switching (shares of its total)."""
    costs = costs.with_columns(total=pl.col("energy_usd") + pl.col("transfer_usd") + pl.col("switching_usd")
                               ).sort("total", descending=True)
    n = costs.height
    y = np.arange(n)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.32 * n + 1.6), sharey=True,
                                 gridspec_kw={"width_ratios": [1.3, 1]})
    total = costs["total"].to_numpy()
    a1.barh(y, total, color="#4c72b0")
    a1.set_xscale("log")
    for yi, v in zip(y, total):
        a1.annotate(f"${v:,.2f}", (v, yi), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    a1.set_xlim(max(total.min(), 1e-4) / 2, total.max() * 2)
    _log_ticks(a1.xaxis, "$")
    a1.set_yticks(y, costs["policy"].to_list(), fontsize=8)
    a1.invert_yaxis()
    a1.set_xlabel("USD per run (mean over seeds, log scale)")
    a1.set_title("Total operational cost", fontsize=10)
    a1.grid(alpha=0.3, axis="x", which="both")
    left = np.zeros(n)
    safe = np.where(total > 0, total, 1.0)
    for col, colour in (("energy_usd", "#4c72b0"), ("transfer_usd", "#dd8452"), ("switching_usd", "#55a868")):
        share = costs[col].to_numpy() / safe
        a2.barh(y, share, left=left, color=colour, label=col.removesuffix("_usd"))
        left += share
    a2.set_xlim(0, 1)
    a2.set_xlabel("share of the policy's cost")
    a2.set_title("Breakdown", fontsize=10)
    a2.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def slo_goodput(slo: pl.DataFrame, path: Path) -> Path:
    """SLO attainment (share of requests with TTFT <= 2 s and TPOT <= 0.2 s) and goodput (requests
    meeting it per second) per policy: mean over seeds with min-max whiskers (columns policy, seed,
    slo_attainment, goodput_per_s)."""
    agg = (slo.group_by("policy").agg([pl.col(c).mean().alias(c) for c in ("slo_attainment", "goodput_per_s")]
                                      + [pl.col(c).min().alias(f"{c}_lo") for c in ("slo_attainment", "goodput_per_s")]
                                      + [pl.col(c).max().alias(f"{c}_hi") for c in ("slo_attainment", "goodput_per_s")])
           .sort("slo_attainment", descending=True))
    n = agg.height
    y = np.arange(n)
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.32 * n + 1.6), sharey=True)
    for ax, col, label in ((axes[0], "slo_attainment", "SLO attainment (share of requests)"),
                           (axes[1], "goodput_per_s", "goodput (SLO-meeting requests / s)")):
        v = agg[col].to_numpy()
        err = np.vstack([v - agg[f"{col}_lo"].to_numpy(), agg[f"{col}_hi"].to_numpy() - v])
        ax.barh(y, v, xerr=err, color="#55a868", ecolor="0.3", capsize=2)
        for yi, vi in zip(y, v):
            ax.annotate(f"{vi:.1%}" if col == "slo_attainment" else f"{vi:,.1f}", (vi, yi), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=7)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_xlim(0, 1.12)
    axes[0].set_yticks(y, agg["policy"].to_list(), fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle("SLO attainment and goodput (bars: mean over seeds; whiskers: min-max)", fontsize=10)
    return _save(fig, path)


def cost_vs_response(comparison: pl.DataFrame, path: Path, styles: dict | None = None) -> Path:
    """Mean response time against cost per policy with 95 % intervals over seeds on both axes
    (columns policy, response_mean_s, response_mean_s_ci95, cost_usd, cost_usd_ci95); log-log."""
    policies = comparison["policy"].to_list()
    styles = styles or policy_styles(policies)
    fig, ax = plt.subplots(figsize=(9, 5))
    for r in comparison.iter_rows(named=True):
        st = styles[r["policy"]]
        ax.errorbar(r["cost_usd"], r["response_mean_s"], xerr=r.get("cost_usd_ci95") or 0.0,
                    yerr=r.get("response_mean_s_ci95") or 0.0, fmt=_MARKERS[st["ls"]], color=st["color"], ms=5, capsize=2,
                    label=r["policy"])
        ax.annotate(r["policy"], (r["cost_usd"], r["response_mean_s"]), xytext=(4, 3), textcoords="offset points",
                    fontsize=6.5, color=st["color"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_ticks(ax.xaxis, "$")
    _log_ticks(ax.yaxis)
    ax.set_xlabel("cost per run (USD, log scale)")
    ax.set_ylabel("mean response time (s, log scale)")
    ax.set_title("Cost against response time (95 % intervals over seeds; lower left is better)")
    ax.grid(alpha=0.3, which="both")
    _legend_right(ax, len(policies))
    return _save(fig, path)


def _grid(n: int, cols: int) -> tuple[int, int]:
    cols = min(cols, max(n, 1))
    return -(-max(n, 1) // cols), cols


def utilisation_heatmap(util: pl.DataFrame, path: Path, window_h: float | None = None, cols: int = 4) -> Path:
    """Mean server utilisation per region (rows) and 15-minute slot (columns), one small panel per
    policy, one colour scale (columns policy, region, t_start_s, utilisation)."""
    if window_h is not None:
        util = util.filter(pl.col("t_start_s") < window_h * 3600)
    policies = sorted(util["policy"].unique().to_list())
    regions = sorted(util["region"].unique().to_list())
    times = sorted(util["t_start_s"].unique().to_list())
    rows, cols = _grid(len(policies), cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 1.0, (0.11 * len(regions) + 0.6) * rows + 0.5),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    im = None
    ti = {t: i for i, t in enumerate(times)}
    ri = {r: i for i, r in enumerate(regions)}
    for ax, policy in zip(axes.flat, policies):
        m = np.full((len(regions), len(times)), np.nan)
        for r in util.filter(pl.col("policy") == policy).iter_rows(named=True):
            m[ri[r["region"]], ti[r["t_start_s"]]] = r["utilisation"]
        step_h = (times[1] - times[0]) / 3600 if len(times) > 1 else 0.25
        im = ax.imshow(m, aspect="auto", vmin=0, vmax=1, cmap="viridis", interpolation="nearest",
                       extent=(times[0] / 3600, times[-1] / 3600 + step_h, len(regions) - 0.5, -0.5))
        ax.set_title(policy, fontsize=8)
        ax.set_yticks(range(len(regions)), regions, fontsize=5.5)
        ax.tick_params(axis="x", labelsize=6)
    for ax in list(axes.flat)[len(policies):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("h", fontsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes, shrink=0.6, label="mean server utilisation")
    fig.suptitle("Utilisation per region over time", fontsize=10)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plan_shares(plans: pl.DataFrame, path: Path, policy: str, window_h: float | None = None) -> Path:
    """The macro plan of one policy: per 15-minute slot, the share of demand it sends to each serving
    region (mean over origins and models of the plan rows; columns slot, t_start_s, serving_region, share)."""
    if window_h is not None:
        plans = plans.filter(pl.col("t_start_s") < window_h * 3600)
    rows = plans.select(pl.len()).item()
    per = (plans.group_by("t_start_s", "serving_region").agg(pl.col("share").sum())
           .with_columns(share=pl.col("share") / pl.col("share").sum().over("t_start_s")).sort("t_start_s"))
    regions = sorted(per["serving_region"].unique().to_list())
    times = sorted(per["t_start_s"].unique().to_list())
    fig, ax = plt.subplots(figsize=(9, 4.2))
    bottom = np.zeros(len(times))
    cmap = plt.get_cmap("tab20")
    x = np.array(times) / 3600
    width = (x[1] - x[0]) * 0.9 if len(x) > 1 else 0.2
    for i, reg in enumerate(regions):
        d = dict(per.filter(pl.col("serving_region") == reg).select("t_start_s", "share").iter_rows())
        v = np.array([d.get(t, 0.0) for t in times])
        ax.bar(x, v, bottom=bottom, width=width, align="edge", color=cmap(i % 20), label=reg)
        bottom += v
    ax.set_ylim(0, 1)
    ax.set_xlabel("slot start (h into the replayed window)")
    ax.set_ylabel("share of the slot's demand")
    ax.set_title(f"Macro plan of {policy}: where each slot's demand is sent ({rows:,} plan rows)")
    _legend_right(ax, len(regions))
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
    """One policy's map: see `flow_maps`."""
    return flow_maps(regions, links, flows.with_columns(policy=pl.lit(title)), path, cols=1, max_flows=max_flows)


def _draw_flows(ax, pos: dict, links: pl.DataFrame, moved: pl.DataFrame, scale: float) -> None:
    for link in links.iter_rows(named=True):
        if link["src_name"] in pos and link["dst_name"] in pos:
            (x1, y1), (x2, y2) = pos[link["src_name"]], pos[link["dst_name"]]
            ax.plot([x1, x2], [y1, y2], color="0.82", lw=0.8, zorder=1)
    for f in moved.iter_rows(named=True):
        if f["origin_region"] in pos and f["serving_region"] in pos:
            (x1, y1), (x2, y2) = pos[f["origin_region"]], pos[f["serving_region"]]
            ax.annotate("", xy=(x2, y2), xytext=(x1, y1), zorder=2,
                        arrowprops=dict(arrowstyle="-|>", color="#c44e52", alpha=0.65,
                                        lw=0.4 + 3.6 * f["requests"] / scale, connectionstyle="arc3,rad=0.15"))


def flow_maps(regions: pl.DataFrame, links: pl.DataFrame, flows: pl.DataFrame, path: Path, cols: int = 4,
              max_flows: int = 25) -> Path:
    """Per policy (one small map each, same scale): regions at their coordinates, topology links in
    grey, the largest inter-region flows (origin -> serving region) as arrows, width by requests; a
    legend gives the widths and the share of requests served away from their origin."""
    from matplotlib.lines import Line2D

    policies = sorted(flows["policy"].unique().to_list())
    pos = {r["name"]: (r["lon"], r["lat"]) for r in regions.iter_rows(named=True)}
    away = flows.filter(pl.col("origin_region") != pl.col("serving_region"))
    scale = float(away["requests"].max() or 1.0) if away.height else 1.0
    rows, cols = _grid(len(policies), cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows + 0.9), squeeze=False)
    dc = regions.filter(pl.col("hosts_datacenter"))
    other = regions.filter(~pl.col("hosts_datacenter"))
    for ax, policy in zip(axes.flat, policies):
        mine = flows.filter(pl.col("policy") == policy)
        moved = (mine.filter(pl.col("origin_region") != pl.col("serving_region"))
                 .sort("requests", descending=True).head(max_flows))
        _draw_flows(ax, pos, links, moved, scale)
        ax.scatter(other["lon"], other["lat"], s=6, color="0.5", zorder=3)
        ax.scatter(dc["lon"], dc["lat"], s=18, color="#4c72b0", zorder=3)
        total = float(mine["requests"].sum() or 0.0)
        share = float(mine.filter(pl.col("origin_region") != pl.col("serving_region"))["requests"].sum() or 0.0)
        ax.set_title(f"{policy}: {share / total:.0%} served away" if total else policy, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(policies) == 1:  # one big map: name the regions
        for name, (x, y) in pos.items():
            axes[0, 0].annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    for ax in list(axes.flat)[len(policies):]:
        ax.axis("off")
    handles = [Line2D([], [], color="#c44e52", alpha=0.65, lw=0.4 + 3.6 * q, label=f"{q * scale:,.0f} requests")
               for q in (0.1, 0.5, 1.0)]
    handles += [Line2D([], [], marker="o", ls="", color="#4c72b0", label="data centre"),
                Line2D([], [], marker="o", ls="", ms=4, color="0.5", label="origin only"),
                Line2D([], [], color="0.82", label="topology link")]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=7, frameon=False)
    fig.suptitle("Request flows between regions (origin -> serving region, per seed; "
                 f"the {max_flows} largest per policy)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


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
