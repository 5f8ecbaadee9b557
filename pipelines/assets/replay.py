"""Group `replay`: one replay per dynamic partition `scenario|workload|policy|seed`.

Rows are written per partition to `runs`, `completions`, `slot_metrics` and `plans`. The views over
`completions`, `slot_metrics` and `plans` only show rows whose (key, run_uid) has a `runs` row. A
materialization writes its rows under a new run_uid (new files beside the old ones), then replaces the
`runs` row (one rename: the switch), then removes the older versions: a killed replay leaves the previous
result visible and whole, never a mix and never nothing (see pipelines/warehouse.py).
"""

import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import polars as pl

from pipelines import warehouse as wh
from pipelines.lineage import REPLAY_INPUTS, file_url, tidy
from pipelines.resources import WarehouseResource
from torta.runs.planlog import row_sums_ok
from torta.runs.spec import RunSpec, execute

replay_partitions = dg.DynamicPartitionsDefinition(name="replays")

REGRESSION_TOLERANCE = 0.05  # headline metrics may worsen by 5 % before the check warns


class ReplayConfig(dg.Config):
    hours: float = 0.0  # 0: the whole trace / `days` of a multi-day workload
    days: int = 1
    load_factor: float = 1.0
    load_mode: str = "compress"
    batch: str = "adhoc"  # groups runs of one job invocation (policy_comparison shows the latest)
    warmup_hours: float = 0.0  # multi-day workloads: unscored warm-up before the window
    state_refresh_s: float = 0.0  # the control-plane information model; 0 = instant global state


VERSIONED_TABLES = ("completions", "slot_metrics", "plans")


def _label(frame: pl.LazyFrame, spec: RunSpec, batch: str, run_uid: str) -> pl.LazyFrame:
    return frame.with_columns(key=pl.lit(spec.key), scenario=pl.lit(spec.scenario), workload=pl.lit(spec.workload),
                              policy=pl.lit(spec.policy), seed=pl.lit(spec.seed, dtype=pl.Int64), batch=pl.lit(batch),
                              run_uid=pl.lit(run_uid))


SLO_TTFT_S, SLO_TPOT_S = 2.0, 0.2  # as the slo_attainment view (warehouse/views/slo_attainment.sql)


def slo_summary(completions: pl.LazyFrame) -> dict:
    """SLO attainment (share of requests served with TTFT <= 2 s and TPOT <= 0.2 s; drops miss) and
    goodput (SLO-meeting requests per second of trace), as in the slo_attainment view."""
    ok = (pl.col("dropped_reason").is_null() & (pl.col("ttft_s") <= SLO_TTFT_S)
          & (pl.col("tpot_s").fill_null(0.0) <= SLO_TPOT_S))
    row = completions.select(
        ok.mean().alias("slo_attainment"), ok.sum().alias("good"),
        (pl.col("arrival_s").max() - pl.col("arrival_s").min()).alias("span_s")).collect().row(0, named=True)
    return {"slo_attainment": float(row["slo_attainment"] or 0.0),
            "goodput_per_s": float(row["good"] or 0) / max(float(row["span_s"] or 0.0), 1.0)}


def _previous(db: Path, key: str) -> dict | None:
    f = wh.partition_file(db, "runs", key)
    return pl.read_parquet(f).to_dicts()[0] if f.exists() else None


@dg.asset(
    partitions_def=replay_partitions,
    group_name="replay",
    kinds={"parquet"},
    deps=REPLAY_INPUTS,
    check_specs=[
        dg.AssetCheckSpec("conservation", asset="replay_run", partitions_def=replay_partitions,
                          description="completed + dropped = requests; one completion row per request"),
        dg.AssetCheckSpec("plan_rows_sum_to_one", asset="replay_run", partitions_def=replay_partitions,
                          description="every macro plan row (slot, model, origin) sums to one"),
        dg.AssetCheckSpec("headline_not_regressed", asset="replay_run", partitions_def=replay_partitions,
                          description="response_mean_s and cost_usd within 5 % of the previous materialization"),
    ],
)
def replay_run(context: dg.AssetExecutionContext, config: ReplayConfig,
               warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Replay one trace or workload window through one policy on one scenario; rows to the warehouse."""
    db = warehouse.db_path
    spec = RunSpec.from_key(context.partition_key, days=config.days, hours=config.hours or None,
                            load_factor=config.load_factor, load_mode=config.load_mode,
                            warmup_h=config.warmup_hours, state_refresh_s=config.state_refresh_s)
    previous = _previous(db, spec.key)  # stays in place (and visible) until the new rows are complete
    uid = uuid.uuid4().hex
    staging = wh.parquet_root(db) / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as tmp:
        out = Path(tmp) / "run"
        result = execute(spec, out_dir=out)
        n_rows = pl.scan_parquet(out / "completions.parquet").select(pl.len()).collect().item()
        slo = slo_summary(pl.scan_parquet(out / "completions.parquet"))
        completions_path = wh.sink_partition(
            db, "completions", spec.key,
            _label(pl.scan_parquet(out / "completions.parquet"), spec, config.batch, uid), version=uid)
        wh.write_partition(db, "slot_metrics", spec.key,
                           _label(result.slots.lazy(), spec, config.batch, uid).collect(), version=uid)
        wh.write_partition(db, "plans", spec.key, _label(result.plans.lazy(), spec, config.batch, uid).collect(),
                           version=uid)
    s = result.summary
    run_row = {k: v for k, v in s.items() if not isinstance(v, dict)}
    run_row.update({f"dropped_{k}": v for k, v in s.get("dropped_reasons", {}).items()})
    run_row.update(key=spec.key, run_uid=uid, workload=spec.workload, batch=config.batch, hours=config.hours,
                   days=config.days, dagster_run_id=context.run.run_id,
                   finished_at=datetime.now(timezone.utc).replace(tzinfo=None))
    runs_path = wh.write_partition(db, "runs", spec.key, pl.DataFrame([run_row]))  # the switch to the new rows
    for table in VERSIONED_TABLES:
        wh.drop_other_versions(db, table, spec.key, keep=uid)
    warehouse.refresh_views()

    plans_ok, plan_err = row_sums_ok(result.plans)
    conserved = s["completed"] + s["dropped"] == s["requests"] == n_rows
    regress_meta, regressed = {}, False
    if previous:
        for m in ("response_mean_s", "cost_usd"):
            old, new = float(previous.get(m, 0.0)), float(s[m])
            regress_meta[f"{m}_previous"], regress_meta[m] = old, new
            regressed |= old > 0 and new > old * (1 + REGRESSION_TOLERANCE)
    return dg.MaterializeResult(
        metadata={**tidy({k: s[k] for k in ("requests", "completed", "dropped", "response_mean_s", "response_p95_s",
                                            "ttft_mean_s", "ttft_p95_s", "tpot_mean_s", "tpot_p99_s",
                                            "load_std", "cost_usd", "switches", "wall_s") if k in s}),
                  **tidy(slo), "batch": config.batch,
                  "runs_parquet": file_url(runs_path), "completions_parquet": file_url(completions_path)},
        check_results=[
            dg.AssetCheckResult(check_name="conservation", passed=bool(conserved),
                                metadata={"requests": s["requests"], "completed": s["completed"],
                                          "dropped": s["dropped"], "completion_rows": n_rows}),
            dg.AssetCheckResult(check_name="plan_rows_sum_to_one", passed=plans_ok,
                                metadata={"plan_rows": result.plans.height, "max_abs_row_error": plan_err}),
            dg.AssetCheckResult(check_name="headline_not_regressed", passed=not regressed,
                                severity=dg.AssetCheckSeverity.WARN,
                                metadata=regress_meta or {"note": "first materialization"}),
        ],
    )
