"""Gather the report's inputs from the warehouse (latest batch of runs) and write it."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from pipelines import warehouse as wh
from torta.report import ReportInputs, write_report


def default_report_dir(db: Path) -> Path:
    return Path(os.environ.get("TORTA_REPORT_DIR") or db.parent / "report")


def _q(db: Path, sql: str, params: dict | None = None) -> pl.DataFrame:
    return wh.query(db, sql, params)


def gather(db: Path, batch: str | None = None) -> ReportInputs:
    if batch is None:
        latest = _q(db, "select batch from runs order by finished_at desc limit 1")
        if latest.height == 0:
            raise wh.WarehouseError("no runs in the warehouse yet; run `torta run` first")
        batch = latest["batch"][0]
    runs = _q(db, "select key, scenario, workload, policy from runs where batch = $b", {"b": batch})
    if runs.height == 0:
        raise wh.WarehouseError(f"no runs with batch {batch!r}")
    scenario, workload = runs["scenario"][0], runs["workload"][0]
    p = {"b": batch}
    comparison = _q(db, "select * from policy_comparison where batch = $b", p)
    if comparison.height == 0:  # an older batch: aggregate it the same way
        comparison = _q(db, "select policy, count(*) as seeds, avg(requests) as requests, "
                            "avg(response_mean_s) as response_mean_s, avg(response_p95_s) as response_p95_s, "
                            "avg(load_std) as load_std, avg(cost_usd) as cost_usd, avg(energy_usd) as energy_usd, "
                            "avg(transfer_usd) as transfer_usd, avg(switching_usd) as switching_usd, "
                            "avg(switches) as switches, avg(planner_ms_per_slot) as planner_ms_per_slot "
                            "from runs where batch = $b group by policy order by response_mean_s", p)
    keys = "(select key from runs where batch = $b)"
    # Slot rows are on the replay clock, whose first `warmup_s` seconds are the unscored warm-up (plans
    # also hold the warm-up's slots): shift them to the scored window's clock and drop the warm-up.
    has_warmup = "warmup_s" in _q(db, "select * from runs limit 0").columns
    warm = (f"(select key, coalesce(warmup_s, 0.0) as w from runs where batch = $b)" if has_warmup
            else "(select key, 0.0 as w from runs where batch = $b)")
    responses = _q(db, f"select * from (select policy, response_s, ttft_s, tpot_s from completions where key in {keys} "
                       f"and dropped_reason is null) using sample reservoir(200000 rows) repeatable (42)", p)
    load = _q(db, f"select l.policy, l.t_start_s - k.w as t_start_s, l.util_std from load_balance_over_time l "
                  f"join {warm} k on l.key = k.key where l.t_start_s >= k.w", p)
    costs = _q(db, "select policy, avg(energy_usd) as energy_usd, avg(transfer_usd) as transfer_usd, "
                   "avg(switching_usd) as switching_usd from runs where batch = $b group by policy", p)
    flows = _q(db, f"select policy, origin_region, serving_region, count(*) / count(distinct seed) as requests "
                   f"from completions where key in {keys} and dropped_reason is null "
                   f"group by policy, origin_region, serving_region", p)
    tables = set(_q(db, "select table_name from information_schema.tables")["table_name"].to_list())
    sp = {"s": scenario}
    regions = (_q(db, "select name, lat, lon, hosts_datacenter from regions where scenario = $s", sp)
               if "regions" in tables else pl.DataFrame(schema={"name": pl.String, "lat": pl.Float64,
                                                                "lon": pl.Float64, "hosts_datacenter": pl.Boolean}))
    links = (_q(db, "select src_name, dst_name, km from links where scenario = $s", sp)
             if "links" in tables else pl.DataFrame(schema={"src_name": pl.String, "dst_name": pl.String,
                                                           "km": pl.Float64}))
    hours = _q(db, "select max(hours) as h from runs where batch = $b", p)["h"][0]
    window_h = float(hours) if hours else None
    slo = _q(db, "select policy, seed, slo_attainment, goodput_per_s from slo_attainment where batch = $b", p)
    per_policy = _q(db, "select policy, avg(ttft_p95_s) as ttft_p95_s, avg(tpot_mean_s) as tpot_mean_s "
                        "from runs where batch = $b group by policy", p)
    run_cols = set(_q(db, "select * from runs limit 0").columns)
    if "prefix_cache" in run_cols:  # runs replayed with the prefix cache: its metrics join the table
        cached = _q(db, "select policy, avg(cache_hit_rate) as cache_hit_rate, avg(prefill_tokens_saved) as "
                        "prefill_tokens_saved, avg(cache_evictions) as cache_evictions from runs where batch = $b "
                        "and prefix_cache group by policy", p)
        if cached.height:
            per_policy = per_policy.join(cached, on="policy", how="left")
    slo_mean = slo.group_by("policy").agg(pl.col("slo_attainment").mean(), pl.col("goodput_per_s").mean())
    comparison = (comparison.join(per_policy, on="policy", how="left").join(slo_mean, on="policy", how="left")
                  .sort("response_mean_s"))
    utilisation = _q(db, f"select m.policy, m.region, m.t_start_s - k.w as t_start_s, "
                         f"avg(m.utilisation) as utilisation from slot_metrics m join {warm} k on m.key = k.key "
                         f"where m.t_start_s >= k.w group by m.policy, m.region, m.t_start_s - k.w", p)
    planner = next((q for q in ("torta", "torta-ot") if q in set(runs["policy"].to_list())), None)
    plans = None
    if planner is not None and "plans" in tables:
        plans = _q(db, f"select x.policy, x.t_start_s - k.w as t_start_s, x.serving_region, avg(x.share) as share "
                       f"from plans x join {warm} k on x.key = k.key where x.policy = $pol and x.t_start_s >= k.w "
                       f"group by x.policy, x.t_start_s - k.w, x.serving_region", {**p, "pol": planner})
    forecast = None
    if "forecasts" in tables:
        fc = _q(db, "select series, slot, mean, lo80, hi80, actual from forecasts where workload = $w",
                {"w": workload})
        forecast = fc if fc.height else None
    scores = None
    if "backtests" in tables:
        cols = set(_q(db, "select * from backtests limit 0").columns)
        if {"hours", "ratio_naive", "ratio_seasonal_naive"} <= cols:
            sc = _q(db, "select hours, ratio_naive, ratio_seasonal_naive, coverage_80, coverage_95 "
                        "from backtests where workload = $w and model = 'selected' and hours is not null "
                        "order by hours", {"w": workload})
            scores = sc if sc.height else None
    return ReportInputs(
        title=f"TORTA: {scenario} / {workload} (batch {batch})",
        comparison=comparison, responses=responses, load_over_time=load, costs=costs,
        regions=regions, links=links, flows=flows, forecast=forecast, forecast_scores=scores, slo=slo,
        utilisation=utilisation, plans=plans, window_h=window_h,
        notes=(f"Mean over seeds; ± is the half-width of the 95 % t-interval over seeds. Scenario {scenario}, "
               f"workload {workload}, the first {window_h or 0:g} h replayed; time axes stop there (a backlog "
               f"may drain after it). Response times and TTFT include network latency both ways; SLO: TTFT "
               f"<= 2 s and TPOT <= 0.2 s, dropped requests miss.",))


def build_report(db: Path, out_dir: Path | None = None, batch: str | None = None) -> Path:
    return write_report(gather(db, batch), out_dir or default_report_dir(db))
