"""Assemble the report folder: `index.html` plus `figures/*.png`, written atomically (a temporary
folder renamed into place)."""

from __future__ import annotations

import html
import math
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

# the comparison table on the page: (header, unit, column, its ci95 column or None, scale)
SHOWN = (("response mean", "s", "response_mean_s", "response_mean_s_ci95", 1.0),
         ("response p95", "s", "response_p95_s", "response_p95_s_ci95", 1.0),
         ("TTFT p95", "s", "ttft_p95_s", None, 1.0),
         ("TPOT mean", "ms", "tpot_mean_s", None, 1000.0),
         ("SLO attain.", "%", "slo_attainment", None, 100.0),
         ("goodput", "req/s", "goodput_per_s", None, 1.0),
         ("load std", "", "load_std", "load_std_ci95", 1.0),
         ("cost", "USD", "cost_usd", "cost_usd_ci95", 1.0),
         ("switches", "", "switches", None, 1.0),
         ("planner", "ms/slot", "planner_ms_per_slot", None, 1.0),
         # the prefix cache's (torta.sim.prefix); only for batches replayed with it
         ("cache hit", "% tokens", "cache_hit_rate", None, 100.0),
         ("prefill saved", "tokens", "prefill_tokens_saved", None, 1.0),
         ("evictions", "blocks", "cache_evictions", None, 1.0))


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
    slo: pl.DataFrame | None = None  # policy, seed, slo_attainment, goodput_per_s
    utilisation: pl.DataFrame | None = None  # policy, region, t_start_s, utilisation (mean over servers, seeds)
    plans: pl.DataFrame | None = None  # policy, t_start_s, serving_region, share (one policy's macro plan)
    window_h: float | None = None  # the scored (replayed) window; time axes stop there


def human(v: float | int | None, digits: int = 3) -> str:
    """3 significant digits, thousands separators, never an exponent: 236,912 -> 237,000; 0.01234 -> 0.0123."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, int) or float(v).is_integer() and abs(v) >= 1:
        return f"{int(round(v)):,}"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    dec = max(0, digits - 1 - mag)
    rounded = round(v, dec) if dec else round(v, -(mag - digits + 1))
    return f"{rounded:,.{dec}f}"


def _table(df: pl.DataFrame) -> str:
    """Policies as rows, a few columns with units in the header, mean ± 95 % half-width in one cell."""
    shown = [c for c in SHOWN if c[2] in df.columns]
    head = "<th class='p'>policy</th><th>seeds</th>" + "".join(
        f"<th>{html.escape(h)}{f'<br><span class=u>{html.escape(u)}</span>' if u else ''}</th>"
        for h, u, *_ in shown)
    rows = []
    for r in df.iter_rows(named=True):
        cells = [f"<td class='p'>{html.escape(str(r['policy']))}</td>", f"<td>{r.get('seeds', '')}</td>"]
        for _, _, col, ci, k in shown:
            v = r[col]
            text = human(None if v is None else v * k)
            if ci and ci in r and r[ci] is not None and r[ci] > 0:
                text += f" <span class=ci>± {human(r[ci] * k, 2)}</span>"
            cells.append(f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class=tw><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


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

        styles = figures.policy_styles(inputs.comparison["policy"].to_list() + inputs.responses["policy"].to_list())
        window = f" (first {inputs.window_h:g} h)" if inputs.window_h else ""
        add("response_cdf.png", "End-to-end response time per policy (network included).",
            lambda d, path: figures.response_cdf(d, path, styles), inputs.responses)
        if "ttft_s" in inputs.responses.columns:
            add("ttft_cdf.png", "Time to first token per policy (network both ways included).",
                lambda samples, path: figures.cdf(samples, "ttft_s", path, "time to first token (s, log scale)",
                                                  "TTFT CDF per policy", styles), inputs.responses)
        if "tpot_s" in inputs.responses.columns:
            add("tpot_cdf.png", "Time per output token per policy (requests with more than one output token).",
                lambda samples, path: figures.cdf(samples.with_columns(tpot_ms=pl.col("tpot_s") * 1000), "tpot_ms",
                                                  path, "time per output token (ms, log scale)",
                                                  "TPOT CDF per policy", styles), inputs.responses)
        if inputs.slo is not None and inputs.slo.height:
            add("slo_goodput.png", "SLO attainment (TTFT <= 2 s and TPOT <= 0.2 s; drops miss) and goodput.",
                figures.slo_goodput, inputs.slo)
        if {"cost_usd", "response_mean_s"} <= set(inputs.comparison.columns) and inputs.comparison.height:
            add("cost_vs_response.png", "Cost against mean response time, with 95 % intervals over seeds.",
                lambda c, path: figures.cost_vs_response(c, path, styles), inputs.comparison)
        add("load_balance.png", f"Standard deviation of server utilisation per 15-minute slot{window}.",
            lambda d, path: figures.load_balance(d, path, styles, inputs.window_h), inputs.load_over_time)
        if inputs.utilisation is not None and inputs.utilisation.height:
            add("utilisation.png", f"Mean server utilisation per region and slot{window}, per policy.",
                lambda d, path: figures.utilisation_heatmap(d, path, inputs.window_h), inputs.utilisation)
        add("cost_breakdown.png", "Operational cost per run (log scale) and its split: energy, inter-region "
            "transfer, model switching.", figures.cost_breakdown, inputs.costs)
        if inputs.plans is not None and inputs.plans.height:
            planner = inputs.plans["policy"][0]
            add("plan_shares.png", f"The macro plan of {planner}: share of each slot's demand per serving region.",
                lambda d, path: figures.plan_shares(d, path, planner, inputs.window_h), inputs.plans)
        if inputs.forecast is not None and inputs.forecast.height:
            add("forecast.png", "Day-ahead demand forecast (80 % interval) against the demand that came.",
                figures.forecast_vs_actual, inputs.forecast)
        if inputs.forecast_scores is not None and inputs.forecast_scores.height:
            add("forecast_skill.png", "Backtest of the selected forecast at 1, 3 and 6 h ahead: MASE "
                "against persistence (Naive) and yesterday's value (SeasonalNaive), with coverage "
                "of its 80 % and 95 % intervals.", figures.forecast_skill, inputs.forecast_scores)
        flows = inputs.flows if flow_policy is None else inputs.flows.filter(pl.col("policy") == flow_policy)
        if flows.height:
            add("flows.png", "Inter-region flows per policy (origin -> serving region) on the topology.",
                lambda f, path: figures.flow_maps(inputs.regions, inputs.links, f, path), flows)
        body = [f"<h1>{html.escape(inputs.title)}</h1>",
                f"<p class='meta'>Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by torta report.</p>",
                "<h2>Policy comparison</h2>", _table(inputs.comparison)]
        body += [f"<p class='note'>{html.escape(n)}</p>" for n in inputs.notes]
        for src, caption, fig_id in made:
            body.append(f"<figure id='{fig_id}'><img src='{src}' alt='{html.escape(caption)}'>"
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
                 ".tw{overflow-x:auto}table{border-collapse:collapse;font-size:12px;width:100%}"
                 "td,th{border:1px solid #ddd;padding:3px 5px;text-align:right;white-space:nowrap}"
                 "th{background:#f3f3f3;font-weight:600;vertical-align:bottom}.p{text-align:left}"
                 "tbody tr:nth-child(even){background:#fafafa}.u{font-weight:normal;color:#666}"
                 ".ci{color:#777;font-size:11px}figure{margin:1.5em 0}img{max-width:100%}"
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
