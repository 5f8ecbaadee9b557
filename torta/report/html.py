"""Assemble the report folder: `index.html` plus `figures/*.png`, written atomically (a temporary
folder renamed into place)."""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from torta.report import figures

TABLE_COLUMNS = ("policy", "seeds", "requests", "response_mean_s", "response_mean_s_ci95", "response_p95_s",
                 "load_std", "cost_usd", "energy_usd", "transfer_usd", "switching_usd", "switches",
                 "planner_ms_per_slot")


@dataclass(frozen=True)
class ReportInputs:
    title: str
    comparison: pl.DataFrame  # one row per policy (policy_comparison view)
    responses: pl.DataFrame  # policy, response_s (completed requests)
    load_over_time: pl.DataFrame  # policy, t_start_s, util_std
    costs: pl.DataFrame  # policy, energy_usd, transfer_usd, switching_usd
    regions: pl.DataFrame  # name, lat, lon, hosts_datacenter
    links: pl.DataFrame  # src_name, dst_name, km
    flows: pl.DataFrame  # policy, origin_region, serving_region, requests
    forecast: pl.DataFrame | None = None  # series, slot, mean, lo80, hi80, actual
    # hours, ratio_naive, ratio_seasonal_naive, coverage_80, coverage_95 (backtests, 'selected')
    forecast_scores: pl.DataFrame | None = None
    notes: tuple[str, ...] = ()


def _table(df: pl.DataFrame) -> str:
    cols = [c for c in TABLE_COLUMNS if c in df.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for r in df.select(cols).iter_rows(named=True):
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"<td>{v:.4g}</td>" if isinstance(v, float) else f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_report(inputs: ReportInputs, out_dir: str | os.PathLike, flow_policy: str | None = None) -> Path:
    """Write `out_dir/index.html` and its figures; returns the index path."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fig_dir = tmp / "figures"
        fig_dir.mkdir()
        made: list[tuple[str, str, str]] = []

        def add(fname: str, caption: str, fn, *args) -> None:
            fn(*args, fig_dir / fname)
            made.append((f"figures/{fname}", caption, fname.removesuffix(".png")))

        add("response_cdf.png", "End-to-end response time per policy (network included).",
            figures.response_cdf, inputs.responses)
        add("load_balance.png", "Standard deviation of server utilisation per 15-minute slot.",
            figures.load_balance, inputs.load_over_time)
        add("cost_breakdown.png", "Operational cost per run: energy, inter-region transfer, model switching.",
            figures.cost_breakdown, inputs.costs)
        if inputs.forecast is not None and inputs.forecast.height:
            add("forecast.png", "Day-ahead demand forecast (80 % interval) against the demand that came.",
                figures.forecast_vs_actual, inputs.forecast)
        if inputs.forecast_scores is not None and inputs.forecast_scores.height:
            add("forecast_skill.png", "Backtest of the selected forecast at 1, 3 and 6 h ahead: MASE "
                "against persistence (Naive) and yesterday's value (SeasonalNaive), with coverage "
                "of its 80 % and 95 % intervals.", figures.forecast_skill, inputs.forecast_scores)
        policy = flow_policy or (inputs.comparison["policy"][0] if inputs.comparison.height else None)
        if policy is not None:
            flows = inputs.flows.filter(pl.col("policy") == policy)
            add("flows.png", f"Inter-region flows of policy {policy} (origin -> serving region) on the topology.",
                lambda *a: figures.flow_map(inputs.regions, inputs.links, flows, a[-1],
                                            f"Request flows under {policy}"), None)
        body = [f"<h1>{html.escape(inputs.title)}</h1>",
                f"<p class='meta'>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by torta report.</p>",
                "<h2>Policy comparison</h2>", _table(inputs.comparison)]
        body += [f"<p class='note'>{html.escape(n)}</p>" for n in inputs.notes]
        for src, caption, fig_id in made:
            body.append(f"<figure id='{fig_id}'><img src='{src}' alt='{html.escape(caption)}'>"
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
                 "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;"
                 "text-align:right}th{background:#f3f3f3}figure{margin:1.5em 0}img{max-width:100%}"
                 ".meta,.note{color:#666;font-size:13px}")
        (tmp / "index.html").write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(inputs.title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"
