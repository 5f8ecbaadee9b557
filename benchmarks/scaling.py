"""Scaling benchmarks: `python -m benchmarks.scaling` writes docs/PERFORMANCE.md, the raw
docs/performance.json and plots under docs/figures/.

Series measured (medians of `--repeats`, one thread each, the machine and its load average recorded):
- replay requests/s against trace size: Azure 2023 conv replicated (seeded) to N requests at 60 % of
  the `abilene` fleet's capacity, policy least-loaded; each case in a fresh subprocess
  (`torta.sim.bench.run_case`: trace loading + replay + completions Parquet timed, imports excluded);
- replay requests/s against fleet size: abilene's regions with N servers cloned from abilene's
  (`torta.sim.bench.big_fleet`), a fixed number of requests at 60 % of that fleet's capacity;
- planner ms per slot against the number of regions (`torta.planner.bench.bench_planner`, exact EMD);
- forecasting seconds against the number of series (`torta.forecast.forecast`, "auto" selection over
  the default models, 14 days of 15-min slots of seeded synthetic diurnal series, horizon 24 slots).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click

QUICK = {"trace_sizes": (2_000, 5_000), "fleet_sizes": (10, 50), "fleet_requests": 2_000,
         "regions": (10, 20), "series": (2, 4), "repeats": 1, "slots": 5}
DEFAULT = {"trace_sizes": (10_000, 100_000, 1_000_000), "fleet_sizes": (10, 100, 1_000, 10_000),
           "fleet_requests": 50_000, "regions": (10, 25, 50, 100, 200), "series": (3, 9, 27, 81, 150), "bench_regions": 50,
           "repeats": 3, "slots": 30}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "POLARS_MAX_THREADS": "1", "RAYON_NUM_THREADS": "1"}


def machine() -> dict:
    import numpy
    import polars

    cpu = "unknown"
    mem_gib = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 1024 ** 2
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count() or 0, "cpu_model": cpu, "memory_gib": round(mem_gib, 1),
            "python": platform.python_version(), "numpy": numpy.__version__, "polars": polars.__version__,
            "platform": platform.platform()}


def _spawn(fn: str, arg: dict) -> dict:
    """Run `fn(arg)` (a dotted path) in a fresh one-thread subprocess; returns its dict."""
    mod, attr = fn.rsplit(".", 1)
    code = (f"import json,sys; from {mod} import {attr}; "
            f"print(json.dumps({attr}(json.loads(sys.argv[1]))))")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(arg)], capture_output=True, text=True,
                       env={**os.environ, **ONE_THREAD})
    if p.returncode != 0:
        raise RuntimeError(f"benchmark {fn}({arg}) failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _median_runs(fn: str, arg: dict, repeats: int) -> dict:
    runs, loads = [], []
    for _ in range(repeats):
        loads.append(os.getloadavg()[0])
        runs.append(_spawn(fn, arg))
    out = dict(runs[len(runs) // 2])
    for k in ("requests_per_s", "requests_per_cpu_s", "wall_s", "peak_rss_mib", "ms_per_slot_median",
              "ms_per_slot_p95", "s_per_series"):
        if k in runs[0]:
            out[k] = statistics.median(float(r[k]) for r in runs)
    out["repeats"] = repeats
    out["load_avg_1m"] = statistics.median(loads)
    return out


def forecast_case(arg: dict) -> dict:
    """Runs in the subprocess: forecast `series` synthetic series (14 days of 15-min slots)."""
    import numpy as np
    import polars as pl

    from torta.forecast import forecast

    for mod in ("statsforecast.models", "lightgbm", "mlforecast", "hierarchicalforecast.methods"):
        try:  # imports are not timed
            __import__(mod)
        except ImportError:
            pass
    rng = np.random.default_rng(arg["seed"])
    n, slots = arg["series"], 14 * 96
    t = np.arange(slots)
    frames = []
    for i in range(n):
        level = rng.uniform(5, 50)
        y = level * (1 + 0.6 * np.sin(2 * np.pi * (t / 96 + rng.uniform()))) + rng.normal(0, level * 0.1, slots)
        frames.append(pl.DataFrame({"series": [f"s{i}|m"] * slots, "slot": t, "y": np.maximum(y, 0.0),
                                    "masked": [False] * slots}))
    hist = pl.concat(frames)
    t0 = time.perf_counter()
    fc = forecast(hist, arg["horizon"], "auto", n_jobs=1)
    wall = time.perf_counter() - t0
    return {"series": n, "history_slots": slots, "horizon": arg["horizon"], "wall_s": wall,
            "s_per_series": wall / n, "rows": fc.height}


def planner_case(arg: dict) -> dict:
    from torta.planner.bench import bench_planner

    return bench_planner(arg["regions"], arg["slots"], "emd", arg["seed"])


SERIES = ("trace", "fleet", "planner", "forecast", "forecast_bench")


def forecast_bench_cases(regions: int, repeats: int) -> list[dict]:
    """`torta bench forecast --regions N --json` in fresh processes, `repeats` times: per case the
    median wall and CPU seconds, with the median load average."""
    import statistics
    import subprocess
    import sys

    runs: dict[str, list[dict]] = {}
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", "from torta.cli import main; main()", "bench",
                              "forecast", "--regions",
                              str(regions), "--json"], check=True, capture_output=True, text=True)
        doc = json.loads(out.stdout.strip().splitlines()[-1])
        for c in doc["cases"]:
            runs.setdefault(c["case"], []).append({**c, "load_avg_1m": doc["load_avg_1m"]})
    rows = []
    for case, rs in runs.items():
        med = {k: statistics.median(float(r[k]) for r in rs)
               for k in ("wall_s", "cpu_s", "peak_rss_mib", "load_avg_1m")}
        rows.append({"case": case, "regions": regions, "series": rs[0]["series"],
                     "horizon": rs[0]["horizon"], **med, "repeats": len(rs)})
    return rows


def run_scaling(cfg: dict, log=lambda m: click.echo(m, err=True), only: tuple[str, ...] = SERIES) -> dict:
    doc = {"generated_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
           "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
           "trace": [], "fleet": [], "planner": [], "forecast": [], "forecast_bench": []}
    t0 = time.perf_counter()
    for n in (cfg["trace_sizes"] if "trace" in only else ()):
        reps = cfg["repeats"] if n <= 100_000 else 1  # big cases once (documented per row)
        r = _median_runs("torta.sim.bench.run_case",
                         {"scenario": "abilene", "load": 0.6, "servers": 0, "requests": n, "seed": 0}, reps)
        r["target_requests"] = n
        doc["trace"].append(r)
        log(f"replay {n:,} requests: {r['requests_per_s']:,.0f} req/s (median of {reps}, load {r['load_avg_1m']:.1f})")
    for s in (cfg["fleet_sizes"] if "fleet" in only else ()):
        r = _median_runs("torta.sim.bench.run_case", {"scenario": "abilene", "load": 0.6, "servers": s,
                                                      "requests": cfg["fleet_requests"], "seed": 0},
                         cfg["repeats"] if s < 10_000 else 1)
        doc["fleet"].append(r)
        log(f"replay on {s:,} servers: {r['requests_per_s']:,.0f} req/s (load {r['load_avg_1m']:.1f})")
    for k in (cfg["regions"] if "planner" in only else ()):
        r = _median_runs("benchmarks.scaling.planner_case", {"regions": k, "slots": cfg["slots"], "seed": 0},
                         cfg["repeats"])
        doc["planner"].append(r)
        log(f"planner {k} regions: {r['ms_per_slot_median']:.2f} ms/slot (load {r['load_avg_1m']:.1f})")
    for n in (cfg["series"] if "forecast" in only else ()):
        r = _median_runs("benchmarks.scaling.forecast_case", {"series": n, "horizon": 96, "seed": 0},
                         cfg["repeats"] if n < 27 else 1)
        doc["forecast"].append(r)
        log(f"forecast {n} series: {r['wall_s']:.1f} s (load {r['load_avg_1m']:.1f})")
    if "forecast_bench" in only and cfg.get("bench_regions"):
        doc["forecast_bench"] = forecast_bench_cases(cfg["bench_regions"], cfg["repeats"])
        for r in doc["forecast_bench"]:
            log(f"bench forecast {r['case']}: {r['wall_s']:.1f} s (load {r['load_avg_1m']:.1f})")
    doc["total_wall_s"] = time.perf_counter() - t0
    doc["load_avg_end"] = list(os.getloadavg())
    return doc


def _plots(doc: dict, fig_dir: Path, md_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_dir.mkdir(parents=True, exist_ok=True)
    specs = [("trace", "requests", "requests_per_s", "trace size (requests)", "replay requests/s"),
             ("fleet", "servers", "requests_per_s", "fleet size (servers)", "replay requests/s"),
             ("planner", "regions", "ms_per_slot_median", "regions", "planner ms per slot (median)"),
             ("forecast", "series", "wall_s", "series", "forecast wall s")]
    out = {}
    for key, x, y, xl, yl in specs:
        rows = doc.get(key) or []
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.plot([r[x] for r in rows], [r[y] for r in rows], "o-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        path = fig_dir / f"perf_{key}.png"
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=90, bbox_inches="tight")
        plt.close(fig)
        os.replace(tmp, path)
        out[key] = os.path.relpath(path, md_dir)
    return out


# Below this line docs/PERFORMANCE.md is written by hand (the replay engine's measurements and history);
# rendering keeps whatever follows it in the existing file.
DIARY_MARKER = "<!-- written by hand below this line: python -m benchmarks.scaling keeps it -->"


def diary_of(path: Path) -> str:
    """The hand-written part of an existing PERFORMANCE.md (after DIARY_MARKER), or ""."""
    text = path.read_text() if path.exists() else ""
    return text.split(DIARY_MARKER, 1)[1].lstrip("\n") if DIARY_MARKER in text else ""


def render_performance(doc: dict, figs: dict[str, str] | None = None, diary: str = "") -> str:
    """The generated page; `diary` (the hand-written part) follows DIARY_MARKER at the end."""
    m = doc["machine"]
    figs = figs or {}
    L = ["# Performance and scaling", "",
         "Generated by `python -m benchmarks.scaling` (raw numbers in `docs/performance.json`). Do not edit by "
         "hand: rerun the command.", "",
         "## Machine", "",
         f"- {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB memory, {m['platform']}",
         f"- Python {m['python']}, numpy {m['numpy']}, polars {m['polars']}",
         f"- Run at {doc['generated_at']}, {doc.get('total_wall_s', 0.0) / 60:.1f} min in all; load average "
         f"(1 min) at the end {', '.join(f'{x:.2f}' for x in doc.get('load_avg_end', []))}. The machine is shared "
         "with other jobs: each row gives the median 1-min load average while it ran; numbers are medians of "
         "the repeats, one thread per case.", ""]

    def table(title, key, cols, note):
        rows = doc.get(key) or []
        if not rows:
            return
        L.extend([f"## {title}", "", note, ""])
        L.append("| " + " | ".join(h for h, _, _ in cols) + " |")
        L.append("|" + "|".join("---" for _ in cols) + "|")
        for r in rows:
            L.append("| " + " | ".join(fmt.format(r.get(k, 0)) for _, k, fmt in cols) + " |")
        L.append("")
        if key in figs:
            L.extend([f"![{key}]({figs[key]})", ""])

    rep = [("repeats", "repeats", "{}"), ("load avg", "load_avg_1m", "{:.1f}")]
    table("Replay throughput against trace size", "trace",
          [("requests", "requests", "{:,}"), ("servers", "servers", "{:,}"), ("requests/s", "requests_per_s", "{:,.0f}"),
           ("requests/CPU-s", "requests_per_cpu_s", "{:,.0f}"), ("wall s", "wall_s", "{:.2f}"),
           ("peak RSS MiB", "peak_rss_mib", "{:,.0f}"), *rep],
          "Azure 2023 conv replicated to N requests at 60 % of the abilene fleet's capacity, least-loaded; "
          "trace loading, replay and writing the completions Parquet are timed.")
    table("Replay throughput against fleet size", "fleet",
          [("servers", "servers", "{:,}"), ("requests", "requests", "{:,}"), ("requests/s", "requests_per_s", "{:,.0f}"),
           ("requests/CPU-s", "requests_per_cpu_s", "{:,.0f}"), ("wall s", "wall_s", "{:.2f}"),
           ("peak RSS MiB", "peak_rss_mib", "{:,.0f}"), *rep],
          f"A fixed {doc['config'].get('fleet_requests', 0):,} requests at 60 % of each fleet's capacity "
          "(abilene's regions, servers cloned from abilene's).")
    table("Planner time against the number of regions", "planner",
          [("regions", "regions", "{}"), ("slots", "slots", "{}"), ("ms/slot median", "ms_per_slot_median", "{:.2f}"),
           ("ms/slot p95", "ms_per_slot_p95", "{:.2f}"), *rep],
          "Cost matrix + exact EMD transport plan per slot on seeded random demand, capacity, prices and queues.")
    table("Forecasting time against the number of series", "forecast",
          [("series", "series", "{}"), ("history slots", "history_slots", "{}"), ("horizon", "horizon", "{}"),
           ("wall s", "wall_s", "{:.2f}"), ("s/series", "s_per_series", "{:.3f}"), *rep],
          "`forecast(history, 96, \"auto\")` (24 h ahead): every default model (SeasonalNaive, Naive, EWMA, "
          "SeasonalScaled, Leader, GBM) over the last 3 days, selection per series and step, reconciliation, "
          "conformal intervals; one process (LightGBM predicts on 2 threads), imports not timed. Synthetic series of one model: "
          "see `torta bench forecast` below for real workloads on 50 regions.")
    table("Forecasting every series of a 14-day workload on 50 regions", "forecast_bench",
          [("case", "case", "{}"), ("regions", "regions", "{}"), ("series", "series", "{}"),
           ("horizon", "horizon", "{}"), ("wall s", "wall_s", "{:.2f}"), ("CPU s", "cpu_s", "{:.2f}"),
           ("peak RSS MiB", "peak_rss_mib", "{:,.0f}"), *rep],
          "`torta bench forecast` (target: at most 10 s on 2 cores): the workload on 50 synthetic origin "
          "regions (longitudes -170..170), every series (regions x models), `forecast(history, 96, \"auto\")`: "
          "fit and 24 h ahead with selection, reconciliation and intervals; `--jobs 2`, LightGBM predicts on "
          "2 threads. CPU s counts this process and its workers; on a shared machine wall time grows with the "
          "load beside it.")
    slopes = []
    for key, x, y, what in (("trace", "requests", "requests_per_s", "replay requests/s"),
                            ("fleet", "servers", "requests_per_s", "replay requests/s"),
                            ("planner", "regions", "ms_per_slot_median", "planner ms per slot"),
                            ("forecast", "series", "wall_s", "forecast wall time")):
        rows = doc.get(key) or []
        if len(rows) >= 2 and rows[0][x] > 0 and rows[-1][x] > rows[0][x] and rows[0][y] > 0 and rows[-1][y] > 0:
            import math

            k = math.log(rows[-1][y] / rows[0][y]) / math.log(rows[-1][x] / rows[0][x])
            slopes.append(f"- {what} ~ {x}^{k:.2f} from {rows[0][x]:,} to {rows[-1][x]:,} {x} "
                          f"({rows[0][y]:,.2f} -> {rows[-1][y]:,.2f}).")
    if slopes:
        L += ["## Scaling exponents (log-log, first to last size)", ""] + slopes + [""]
    skipped = doc.get("skipped") or []
    if skipped:
        L += ["## Not run", ""] + [f"- {s}" for s in skipped] + [""]
    if diary:
        L.extend(["", DIARY_MARKER, "", diary.rstrip("\n")])
    return "\n".join(L)


def _ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in s.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"{s!r}: expected comma-separated integers") from None


@click.command()
@click.option("--quick", is_flag=True, help="Tiny sizes (seconds), for tests.")
@click.option("--trace-sizes", default=None, help="Comma-separated request counts (default 10k,100k,1M).")
@click.option("--fleet-sizes", default=None, help="Comma-separated server counts (default 10,100,1000,10000).")
@click.option("--regions", default=None, help="Comma-separated region counts (default 10,25,50,100,200).")
@click.option("--series", default=None, help="Comma-separated series counts (default 3,9,27,81).")
@click.option("--repeats", type=click.IntRange(1), default=None)
@click.option("--out", default="docs/PERFORMANCE.md", show_default=True)
@click.option("--figures", default="docs/figures", show_default=True)
@click.option("--only", multiple=True, type=click.Choice(SERIES), help="Measure only these series.")
@click.option("--merge", is_flag=True, help="Keep the other series (and rows of other sizes) from the existing "
              "performance.json beside --out.")
@click.option("--render-only", is_flag=True, help="Re-render PERFORMANCE.md from the existing performance.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw document.")
def cli(quick, trace_sizes, fleet_sizes, regions, series, repeats, only, merge, render_only, out, figures,
        as_json) -> None:
    """Measure scaling and write PERFORMANCE.md (+ performance.json and plots)."""
    cfg = dict(QUICK if quick else DEFAULT)
    for k, v in (("trace_sizes", trace_sizes), ("fleet_sizes", fleet_sizes), ("regions", regions),
                 ("series", series)):
        if v:
            cfg[k] = _ints(v)
    if repeats:
        cfg["repeats"] = repeats
    out_p = Path(out)
    if render_only:
        doc = json.loads(out_p.with_name("performance.json").read_text())
        figs = _plots(doc, Path(figures), out_p.parent)
        tmp = out_p.with_name(f".{out_p.name}.tmp")
        tmp.write_text(render_performance(doc, figs, diary_of(out_p)))
        os.replace(tmp, out_p)
        click.echo(f"wrote {out_p}")
        return
    doc = run_scaling(cfg, only=tuple(only) or SERIES)
    if merge and out_p.with_name("performance.json").exists():
        old = json.loads(out_p.with_name("performance.json").read_text())
        xkey = {"trace": "target_requests", "fleet": "servers", "planner": "regions", "forecast": "series",
                "forecast_bench": "case"}
        for k, x in xkey.items():
            new_x = {r.get(x) for r in doc[k]}
            rows = [r for r in old.get(k, []) if r.get(x) not in new_x] + doc[k]
            doc[k] = sorted(rows, key=lambda r: r.get(x) or 0)
        doc["total_wall_s"] = doc["total_wall_s"] + float(old.get("total_wall_s", 0.0))
        doc["generated_at"] = f"{old.get('generated_at', '?')} (+ {doc['generated_at']})"
    sizes = {r.get("target_requests") for r in doc["trace"]}
    doc["skipped"] = [f"{n:,}-request trace: not in this run (pass --trace-sizes to add it)"
                      for n in (10_000_000,) if n not in sizes]
    out_p.parent.mkdir(parents=True, exist_ok=True)
    figs = _plots(doc, Path(figures), out_p.parent)
    for path, text in ((out_p.with_name("performance.json"), json.dumps(doc, indent=1)),
                       (out_p, render_performance(doc, figs, diary_of(out_p)))):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    click.echo(json.dumps(doc) if as_json else f"wrote {out_p}")


if __name__ == "__main__":
    cli()
