"""Replay parity: sha256 of the completions and slot tables of a fixed set of replays.

`python -m benchmarks.parity --write-ref PATH` replays the set and writes the hashes (PATH: a JSON
file, or a directory that gets `parity_ref.json`); `--check PATH` replays it again and compares, one
line per replay, exit 1 on any difference. `--set quick` is the reduced subset the test suite checks
(`tests/test_parity.py`); `--set full` (default) is the parity set of issue 16:

- `day12-<policy>`: the first 3 h of day 12 of the `servegen-mix-14d` workload (three models) on
  `abilene`, seed 0, built and prepared as `torta compare` does (`multiday_input`, `prepared_policy`:
  history, oracle, token means, model mix), for least-loaded, round-robin, local-only, skylb
  (threshold fixed at 2.0 pending requests per server instead of tuned), acs, myopic-ot, torta-ot and
  torta-ot-hungarian (the batch-window path);
- `azure-2023-conv-*`, `azure-2023-code-*`: the shipped traces as `torta compare` reads them
  (`trace_input`, origins drawn by the replay), with least-loaded and one Python-allocator policy;
- `bench-<case>`: the three `torta bench replay` cases (normal, overloaded, large-fleet) at 100,000
  requests, built as `torta.sim.bench.run_case` builds them.

`--set protocol`: the evaluation protocol's mechanisms on (issue 17), so that a refactor of the
information model or of an allocator's perceived-state reads is checked too: `proto-day12-<policy>`,
1 h of day 12 after 0.5 h of warm-up, load reports every 5 s, for the day12 policies and `torta` (PPO).
The quick set has four short ones (`quick-proto-day12-*`: 0.1 h after 0.25 h). `--set all` is
full + quick + protocol.

Each replay writes `completions.parquet` and `slots.parquet` (`torta.sim.replay.replay`, `out_dir`)
and the hashes are of those tables' contents (`table_sha256`: every column's name, type, validity and
value bytes, in order): identical outputs to the last bit, not merely equal summaries. Not of the files'
bytes: a Parquet file embeds its writer's version (`created_by`), so the same rows written by pyarrow
26 and by an earlier release hash differently.
`benchmarks/parity_ref.json` holds the reference of the engine the set was last accepted on
(`engine_commit` records which).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

import torta  # noqa: F401  (before numpy: pins OpenBLAS's kernels, torta.determinism)

DAY12_POLICIES = ("least-loaded", "round-robin", "local-only", "skylb", "acs", "myopic-ot", "torta-ot",
                  "torta-ot-hungarian")
SKYLB_THRESHOLD = 2.0  # pending requests per server: fixed (one of SKYLB_CANDIDATES) so no tuning runs
BENCH_CASES = ("normal", "overloaded", "large-fleet")
PROTOCOL_POLICIES = DAY12_POLICIES + ("torta",)
PROTOCOL_STATE_REFRESH_S = 5.0
PROTOCOL_WARMUP_H = 0.5
DEFAULT_REF = Path(__file__).with_name("parity_ref.json")


def cases(which: str) -> list[dict]:
    """The replays of the `full` or `quick` set as small dicts (name, kind and the kind's inputs)."""
    if which == "full":
        out = [dict(name=f"day12-{p}", kind="day", policy=p, hours=3.0) for p in DAY12_POLICIES]
        out += [dict(name="azure-2023-conv-least-loaded", kind="trace", trace="azure-2023-conv",
                     policy="least-loaded"),
                dict(name="azure-2023-conv-torta-ot-last", kind="trace", trace="azure-2023-conv",
                     policy="torta-ot-last"),
                dict(name="azure-2023-code-least-loaded", kind="trace", trace="azure-2023-code",
                     policy="least-loaded"),
                dict(name="azure-2023-code-round-robin", kind="trace", trace="azure-2023-code",
                     policy="round-robin")]
        out += [dict(name=f"bench-{c}", kind="bench", case=c, requests=100_000) for c in BENCH_CASES]
        return out
    if which == "quick":
        return ([dict(name=f"quick-day12-{p}", kind="day", policy=p, hours=0.1)
                 for p in ("least-loaded", "round-robin", "skylb", "torta-ot", "torta-ot-hungarian")]
                + [dict(name="quick-azure-2023-code-least-loaded", kind="trace", trace="azure-2023-code",
                        policy="least-loaded", hours=0.25),
                   dict(name="quick-bench-large-fleet", kind="bench", case="large-fleet", requests=20_000)]
                + [dict(name=f"quick-proto-day12-{p}", kind="day", policy=p, hours=0.1, warmup_h=0.25,
                        state_refresh_s=PROTOCOL_STATE_REFRESH_S)
                   for p in ("least-loaded", "skylb", "torta-ot", "torta-ot-hungarian")])
    if which == "protocol":
        return [dict(name=f"proto-day12-{p}", kind="day", policy=p, hours=1.0, warmup_h=PROTOCOL_WARMUP_H,
                     state_refresh_s=PROTOCOL_STATE_REFRESH_S) for p in PROTOCOL_POLICIES]
    raise ValueError(f"unknown parity set {which!r}; expected 'full', 'quick' or 'protocol'")


ENV_PACKAGES = ("numpy", "scipy", "polars", "pyarrow", "pot", "torch", "statsforecast")


def environment() -> dict:
    """Versions of the packages whose arithmetic the replays' numbers go through. The same engine on other
    wheels can differ in the last bits (and a planner's choices then diverge), so a reference is only
    comparable in the environment it was recorded in."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ENV_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def recorded_environment() -> dict:
    """What a new reference records: the package versions and the BLAS kernels."""
    return {**environment(), "blas": blas_kernels()}


def blas_kernels() -> str | None:
    """The kernels numpy's OpenBLAS runs here (threadpoolctl's `architecture`, e.g. Haswell, SkylakeX):
    they round differently, so a reference holds on the kernels it was recorded with (torta.determinism
    pins Haswell on x86-64)."""
    import numpy  # noqa: F401  (loads OpenBLAS)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    archs = [i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"]
    return archs[0] if archs else None


def environment_differences(doc: dict) -> list[str]:
    """'package recorded -> here' for each package whose version differs from the reference's, and the
    BLAS kernels where the reference names them."""
    rec, here = doc.get("environment") or {}, environment()
    out = [f"{k} {rec.get(k)} -> {here[k]}" for k in ENV_PACKAGES if rec.get(k) != here[k]]
    if "blas" in rec and rec["blas"] != (kernels := blas_kernels()):
        out.append(f"OpenBLAS kernels {rec['blas']} -> {kernels}")
    return out


def table_sha256(path: Path) -> str:
    """sha256 of a Parquet table's contents, independent of the writer's version and file layout: per
    column, its name and Arrow type, its validity bitmap, then its values (fixed-width: the raw bytes with
    nulls as 0; others: each value's text, NUL-separated)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pq.read_table(path)
    h = hashlib.sha256()
    for name, col in zip(t.column_names, t.columns):
        col = col.combine_chunks()
        h.update(f"{name}:{col.type}\0".encode())
        h.update(np.packbits(col.is_valid().to_numpy(zero_copy_only=False)).tobytes())
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type):
            zero = pa.scalar(False if pa.types.is_boolean(col.type) else 0, col.type)
            h.update(np.ascontiguousarray(col.fill_null(zero).to_numpy(zero_copy_only=False)).tobytes())
        else:
            h.update("\0".join("" if v is None else str(v) for v in col.to_pylist()).encode())
    return h.hexdigest()


def _inputs(case: dict):
    """(world, requests, policy, warm-up s) of one case."""
    from torta.fleet.scenario import load_scenario
    from torta.runs.execute import prepare_policy as prepared_policy
    from torta.runs.inputs import multiday_input, trace_input

    world = load_scenario("abilene")
    if case["kind"] == "day":
        inp = multiday_input("servegen-mix-14d", "abilene", world, 0, 1, case["hours"], 12,
                             warmup_h=case.get("warmup_h", 0.0))
        return inp.world, inp.requests, prepared_policy(case["policy"], inp, SKYLB_THRESHOLD), inp.warmup_s
    if case["kind"] == "trace":
        inp = trace_input(case["trace"], world, 0, None, case.get("hours"), {})
        return inp.world, inp.requests, prepared_policy(case["policy"], inp, SKYLB_THRESHOLD), 0.0
    if case["kind"] == "bench":
        from torta.sim.bench import CASES, big_fleet
        from torta.sim.cluster import build_tables, capacity_rps
        from torta.sim.replay import scale_load
        from torta.traces import load_trace

        spec = CASES[case["case"]]
        if spec["servers"]:
            world = big_fleet(world, spec["servers"])
        base = load_trace("azure-2023-conv")
        reqs = scale_load(base, case["requests"] / base.height, "replicate", seed=0)
        span = float(reqs["arrival_s"].max() - reqs["arrival_s"].min())
        cap = capacity_rps(build_tables(world), float(base["prompt_tokens"].mean()),
                           float(base["output_tokens"].mean()))
        # the bench compresses time inside replay (load_factor); done here the same way
        return world, reqs, ("least-loaded", spec["load"] * cap / (reqs.height / span)), 0.0
    raise ValueError(f"unknown case kind {case['kind']!r}")


def run_case(case: dict, keep: Path | None = None, **replay_kw) -> dict:
    """Replay one case into a temporary directory (or `keep/<name>`); hashes and a few summary numbers.
    `replay_kw` go to `torta.sim.replay.replay` (e.g. `warmup_s=0, state_refresh_s=0`: the mechanisms
    switched off explicitly must reproduce the reference)."""
    from torta.sim.replay import replay

    world, reqs, policy, warmup_s = _inputs(case)
    if warmup_s:
        replay_kw = {"warmup_s": warmup_s, **replay_kw}
    if case.get("state_refresh_s"):
        replay_kw = {"state_refresh_s": case["state_refresh_s"], **replay_kw}
    factor = 1.0
    if isinstance(policy, tuple):
        policy, factor = policy
    with tempfile.TemporaryDirectory(prefix="torta-parity-") as tmp:
        out = Path(tmp) if keep is None else keep / case["name"]
        t0 = time.perf_counter()
        res = replay(world, reqs, policy, seed=0, out_dir=out, load_factor=factor, **replay_kw)
        wall = time.perf_counter() - t0
        s = res.summary
        return dict(completions_sha256=table_sha256(out / "completions.parquet"),
                    slots_sha256=table_sha256(out / "slots.parquet"), requests=int(s["requests"]),
                    completed=int(s["completed"]), response_mean_s=float(s["response_mean_s"]),
                    wall_s=round(wall, 2))


def compare(ref: dict, got: dict) -> list[str]:
    """Names of the cases whose completions or slot hashes differ from the reference (or are missing)."""
    bad = []
    for name, g in got.items():
        r = ref.get(name)
        if r is None or r["completions_sha256"] != g["completions_sha256"] or r["slots_sha256"] != g["slots_sha256"]:
            bad.append(name)
    return bad


def _ref_path(path: str) -> Path:
    p = Path(path)
    return p / "parity_ref.json" if p.is_dir() or not p.suffix else p


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@click.command()
@click.option("--write-ref", "write_ref", type=click.Path(), default=None,
              help="Replay the set and write the hashes to this JSON file (or DIR/parity_ref.json).")
@click.option("--check", "check", type=click.Path(), default=None,
              help="Replay the set and compare with this reference (file or directory).")
@click.option("--set", "which", type=click.Choice(["full", "quick", "protocol", "all"]), default="full", show_default=True)
@click.option("--only", multiple=True, help="Only these case names.")
@click.option("--keep", type=click.Path(file_okay=False), default=None,
              help="Keep each replay's outputs under this directory (for diffing).")
def cli(write_ref: str | None, check: str | None, which: str, only: tuple[str, ...], keep: str | None) -> None:
    """Replay the parity set; write or check the reference hashes."""
    if (write_ref is None) == (check is None):
        raise click.UsageError("give exactly one of --write-ref PATH or --check PATH")
    todo = cases("full") + cases("quick") + cases("protocol") if which == "all" else cases(which)
    if only:
        unknown = sorted(set(only) - {c["name"] for c in todo})
        if unknown:
            raise click.UsageError(f"unknown case(s) {unknown}; expected names of the {which!r} set")
        todo = [c for c in todo if c["name"] in only]
    keep_dir = Path(keep) if keep else None
    got = {}
    for case in todo:
        got[case["name"]] = r = run_case(case, keep_dir)
        click.echo(f"{case['name']:<36} {r['requests']:>8} req  response_mean_s {r['response_mean_s']:.6g}  "
                   f"completions {r['completions_sha256'][:12]}  slots {r['slots_sha256'][:12]}  "
                   f"({r['wall_s']:.1f} s)", err=True)
    if write_ref is not None:
        path = _ref_path(write_ref)
        old = json.loads(path.read_text())["cases"] if path.exists() else {}
        doc = {"engine_commit": _commit(), "environment": recorded_environment(), "cases": {**old, **got}}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        click.echo(f"wrote {len(got)} case(s) to {path}", err=True)
        return
    doc = json.loads(_ref_path(check).read_text())
    moved = environment_differences(doc)
    if moved:
        click.echo("note: the reference was recorded on other package versions (" + ", ".join(moved)
                   + "): a difference may come from them; record a reference from the old commit here to A/B",
                   err=True)
    bad = compare(doc["cases"], got)
    for name in got:
        click.echo(f"{'DIFFERS' if name in bad else 'same':<8} {name}")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    cli()
