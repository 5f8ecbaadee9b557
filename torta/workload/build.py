"""Multi-day workloads from ServeGen per-client rates: requests (`build_workload`) or expected and
drawn counts per slot (`regional_rates`), both from one seeded plan.

Time: `arrival_s` is seconds from 00:00 UTC of day 1 of the 14-day span. Follow-the-sun: region r
with local offset L_r = lon_r / 15 h sees, at UTC time t, the ServeGen shape at trace time
(t + L_r) modulo the 14-day span (the trace's clock is read as local time of day; the span wraps
around at its ends), scaled by its normalised weight.

Randomness: per (class, region) one stream draws every window's request count (stochastic rounding
of the expected count, so per-window totals follow the real rates); per (class, region, trace hour)
one stream draws arrival times and token lengths. Building days a-b therefore yields exactly the
requests of the full 14-day build that fall in those days.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from torta.schema import REQUEST_SCHEMA
from torta.workload import servegen as sg
from torta.workload.lengths import LengthPool, load_length_pool
from torta.workload.regions import OriginRegion, as_regions, fleet_capacity_rps, load_world
from torta.workload.registry import AZURE_CITATION, SERVEGEN_CITATION, WorkloadSpec, get_spec

DAY_S = 86400
# Inter-arrival CVs are clipped to this range before the Gamma shape 1/CV^2 is taken: ServeGen
# publishes CVs up to ~1000 for windows with a handful of requests, which would put every arrival
# of the window at one instant.
CV_MIN, CV_MAX = 0.05, 10.0
_HOURS = sg.N_WINDOWS // 6
_COUNT_STREAM = 1_000_000
_SPLIT_STREAM = 2_000_000


@dataclass(frozen=True)
class WorkloadPlan:
    """Everything a build needs, resolved: regions, scale and seeds. No I/O after creation."""

    spec: WorkloadSpec
    seed: int
    regions: tuple[OriginRegion, ...]
    scale: float  # multiplier on ServeGen requests/s
    capacity_rps: Mapping[str, float]  # model -> whole-fleet capacity used for the scale
    mean_utilisation: float  # achieved mean over clean windows (== target by construction)
    scenario: str
    lengths: LengthPool = field(repr=False)
    rates: tuple[sg.ClassRates, ...] = field(repr=False)

    def rng(self, class_i: int, region: OriginRegion, stream: int) -> np.random.Generator:
        key = zlib.crc32(region.name.encode())
        return np.random.default_rng(
            np.random.SeedSequence([int(self.seed), self.spec.stream, class_i, key, stream]))

    def expected_counts(self, class_i: int, region: OriginRegion) -> np.ndarray:
        """(clients, windows) expected requests of this class from this region, gaps imputed."""
        return self.rates[class_i].filled_rate_per_s * (self.scale * region.weight * sg.WINDOW_S)

    def counts(self, class_i: int, region: OriginRegion) -> np.ndarray:
        """(clients, windows) drawn request counts: stochastic rounding of the expectation."""
        exp = self.expected_counts(class_i, region)
        base = np.floor(exp)
        u = self.rng(class_i, region, _COUNT_STREAM).random(exp.shape)
        return (base + (u < exp - base)).astype(np.int64)


def prepare(name: str, scenario: Any = None, seed: int = 0, *, regions: Sequence[Any] | None = None,
            capacity_rps: Mapping[str, float] | None = None, lengths: LengthPool | None = None,
            target_utilisation: float | None = None) -> WorkloadPlan:
    """Resolve a named workload against a scenario.

    `scenario`: a scenario name (default: the spec's) or a fleet World. `regions` ((name, lon,
    weight) tuples) and `capacity_rps` (model -> requests/s of the whole fleet) override what the
    scenario gives, so the workload layer can run without the fleet layer.
    """
    spec = get_spec(name)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    target = spec.target_utilisation if target_utilisation is None else float(target_utilisation)
    if not 0 < target <= 10:
        raise ValueError(f"target utilisation must be in (0, 10], got {target}")
    lengths = lengths if lengths is not None else load_length_pool(spec.length_source)
    world = None
    scen_name = scenario if isinstance(scenario, str) else getattr(scenario, "name", None)
    if regions is None or capacity_rps is None:
        world = load_world(scenario if scenario is not None else spec.scenario)
        scen_name = getattr(world, "name", scen_name or spec.scenario)
    regs = as_regions(regions if regions is not None else world.regions)
    if capacity_rps is None:
        capacity_rps = fleet_capacity_rps(world, spec.models, lengths.mean_prompt_tokens,
                                          lengths.mean_output_tokens)
    missing = [m for m in spec.models if m not in capacity_rps]
    if missing:
        raise ValueError(f"capacity_rps lacks models {missing}")
    rates = tuple(sg.load_class(c) for c in spec.classes)
    # fleet share used per unit of scale: sum over classes of mean clean rate / model capacity
    per_unit = sum(float(r.rate_per_s.sum(axis=0)[~r.gap].mean()) / float(capacity_rps[m])
                   for r, m in zip(rates, spec.models))
    scale = target / per_unit
    return WorkloadPlan(spec, int(seed), regs, scale, dict(capacity_rps), target,
                        str(scen_name or "custom"), lengths, rates)


def _window_bounds(days: Any, hours: float | None, span_days: int) -> tuple[float, float]:
    if days is None:
        a, b = 1, span_days
    elif isinstance(days, str):
        parts = days.split("-")
        try:
            a, b = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
        except ValueError:
            a = b = None
        if a is None:
            raise ValueError(f"days must look like 'a-b' or 'a', got {days!r}")
    elif isinstance(days, (int, np.integer)):
        a = b = int(days)
    else:
        a, b = (int(x) for x in days)
    if not 1 <= a <= b <= span_days:
        raise ValueError(f"days must satisfy 1 <= start <= end <= {span_days}, got ({a}, {b})")
    start, end = (a - 1) * DAY_S, b * DAY_S
    if hours is not None:
        if not hours > 0:
            raise ValueError(f"hours must be > 0, got {hours}")
        end = min(end, start + float(hours) * 3600.0)
    return float(start), float(end)


def _gamma_positions(rng: np.random.Generator, n: np.ndarray, cv: np.ndarray) -> np.ndarray:
    """Arrival offsets in [0, 1) for cells with n[i] arrivals each: a Gamma renewal process with
    CV cv[i] (shape 1/cv^2), n+1 gaps rescaled to span the cell (as ServeGen does per window)."""
    total = int(n.sum())
    if total == 0:
        return np.empty(0)
    k = 1.0 / np.clip(cv, CV_MIN, CV_MAX) ** 2
    gaps = np.maximum(rng.gamma(np.repeat(k, n + 1)), 1e-300)
    starts = np.cumsum(n + 1) - (n + 1)
    gaps /= np.repeat(np.add.reduceat(gaps, starts), n + 1)  # each cell's gaps now sum to 1
    cs = np.cumsum(gaps)
    before = np.where(starts > 0, cs[np.maximum(starts - 1, 0)], 0.0)
    keep = np.ones(len(cs), bool)
    keep[starts + n] = False  # the last gap of a cell closes the window
    cell = np.repeat(np.arange(len(n)), n + 1)[keep]
    return np.clip(cs[keep] - before[cell], 0.0, np.nextafter(1.0, 0.0))


def _chunk(plan: WorkloadPlan, ci: int, region: OriginRegion, counts: np.ndarray, h_unwrapped: int):
    """Arrivals (sim seconds, unsorted) and lengths of trace hour h (6 windows) for one region."""
    h = h_unwrapped % _HOURS
    w0 = h * 6
    n = counts[:, w0:w0 + 6]
    cells = np.flatnonzero(n.ravel())
    if cells.size == 0:
        return None
    nc = n.ravel()[cells]
    cv = plan.rates[ci].filled_iat_cv[:, w0:w0 + 6].ravel()[cells]
    cv = np.where(cv > 0, cv, 1.0)  # missing CV -> Poisson
    rng = plan.rng(ci, region, h)
    pos = _gamma_positions(rng, nc, cv)
    win = np.repeat(cells % 6, nc)
    base = (h_unwrapped * 6 + win) * sg.WINDOW_S - region.offset_s
    # keep each arrival inside its own window after rounding (pos < 1 can round up to the next)
    t = np.minimum(base + pos * sg.WINDOW_S, np.nextafter(base + sg.WINDOW_S, -np.inf))
    prompt, output = plan.lengths.draw(rng, len(t))
    return t, prompt, output


def _requests_between(plan: WorkloadPlan, start: float, end: float,
                      id_offset: int = 0) -> pl.DataFrame:
    """Requests arriving in [start, end) (sim seconds), sorted, ids from `id_offset`."""
    spec = plan.spec
    ts, ps, os_, rs, ms = [], [], [], [], []
    for ci in range(len(spec.classes)):
        for ri, region in enumerate(plan.regions):
            counts = plan.counts(ci, region)
            # a margin of 1e-9 h takes in the neighbouring hour when a bound falls on an hour
            # boundary, where rounding may put an arrival on either side
            h_lo = int(np.floor((start + region.offset_s) / 3600.0 - 1e-9))
            h_hi = int(np.ceil((end + region.offset_s) / 3600.0 + 1e-9))
            for hu in range(h_lo, h_hi):
                got = _chunk(plan, ci, region, counts, hu)
                if got is None:
                    continue
                t, p, o = got
                sel = (t >= start) & (t < end)
                if not sel.any():
                    continue
                ts.append(t[sel]); ps.append(p[sel]); os_.append(o[sel])
                rs.append(np.full(int(sel.sum()), ri, np.int16))
                ms.append(np.full(int(sel.sum()), ci, np.int8))
    if ts:
        t = np.concatenate(ts)
        order = np.argsort(t, kind="stable")
        t = t[order]
        prompt = np.concatenate(ps)[order]
        output = np.concatenate(os_)[order]
        reg = np.concatenate(rs)[order]
        mod = np.concatenate(ms)[order]
    else:
        t = np.empty(0); prompt = output = np.empty(0, np.int64)
        reg = np.empty(0, np.int16); mod = np.empty(0, np.int8)
    region_names = [r.name for r in plan.regions]
    df = pl.DataFrame({
        "request_id": np.arange(id_offset, id_offset + len(t), dtype=np.int64),
        "arrival_s": t,
        "prompt_tokens": prompt.astype(np.int64),
        "output_tokens": output.astype(np.int64),
        "_m": mod, "_r": reg,
    })
    df = df.with_columns(
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("timestamp_utc"),
        pl.col("_m").replace_strict(list(range(len(spec.models))), list(spec.models),
                                    return_dtype=pl.String).alias("model"),
        pl.col("_r").replace_strict(list(range(len(region_names))), region_names,
                                    return_dtype=pl.String).alias("origin_region"),
        pl.lit(spec.name, dtype=pl.String).alias("source"),
    ).select([pl.col(c).cast(dt) for c, dt in REQUEST_SCHEMA.items()])
    return df


def build_workload(name: str, scenario: Any = None, seed: int = 0, days: Any = None,
                   hours: float | None = None, *, plan: WorkloadPlan | None = None,
                   **prepare_kw) -> tuple[pl.DataFrame, dict]:
    """Requests of a named workload in REQUEST_SCHEMA (sorted by arrival) and its metadata.

    `days`: None (all), (start_day, end_day) 1-based inclusive, an int, or 'a-b'. `hours`: keep
    only the first `hours` hours of that window. Collection gaps are imputed (from the same window
    of the nearest clean day) and listed in metadata["masked_intervals"] (never score them).
    A whole 14-day build of a large fleet is tens of millions of rows: build a window, or stream
    days with `iter_workload`.
    """
    plan = plan or prepare(name, scenario, seed, **prepare_kw)
    start, end = _window_bounds(days, hours, plan.spec.days)
    df = _requests_between(plan, start, end)
    meta = metadata(plan, start, end)
    meta["requests"] = df.height
    return df, meta


def iter_workload(name: str, scenario: Any = None, seed: int = 0, days: Any = None,
                  hours: float | None = None, *, plan: WorkloadPlan | None = None,
                  chunk_s: float = DAY_S, **prepare_kw):
    """The requests of `build_workload` as consecutive frames of at most `chunk_s` seconds each
    (memory-light); concatenated they equal `build_workload`'s frame, request ids included.
    Yields (frame, metadata-of-the-whole-window) pairs."""
    plan = plan or prepare(name, scenario, seed, **prepare_kw)
    start, end = _window_bounds(days, hours, plan.spec.days)
    meta = metadata(plan, start, end)
    offset, a = 0, start
    while a < end:
        b = min(end, a + chunk_s)
        df = _requests_between(plan, a, b, offset)
        offset += df.height
        yield df, meta
        a = b


def masked_intervals(plan: WorkloadPlan, start: float = 0.0, end: float | None = None) -> list[dict]:
    """Sim-time intervals (per region and model) that fall in ServeGen collection gaps."""
    span = float(sg.SPAN_S)
    end = span if end is None else end
    out = []
    for ci, cls in enumerate(plan.spec.classes):
        gap = plan.rates[ci].gap
        runs = []
        w = 0
        while w < len(gap):
            if gap[w]:
                v = w
                while v + 1 < len(gap) and gap[v + 1]:
                    v += 1
                runs.append((w, v + 1))
                w = v + 1
            else:
                w += 1
        for region in plan.regions:
            for a, b in runs:
                s0 = (a * sg.WINDOW_S - region.offset_s) % span
                s1 = s0 + (b - a) * sg.WINDOW_S
                for lo, hi in ((s0, s1), (s0 - span, s1 - span)):
                    lo, hi = max(lo, start), min(hi, end)
                    if hi > lo:
                        out.append({"origin_region": region.name, "model": plan.spec.models[ci],
                                    "model_class": cls, "start_s": float(lo), "end_s": float(hi)})
    return out


def metadata(plan: WorkloadPlan, start: float = 0.0, end: float | None = None) -> dict:
    spec = plan.spec
    end = float(sg.SPAN_S) if end is None else end
    return {
        "workload": spec.name,
        "seed": plan.seed,
        "stream": spec.stream,
        "scenario": plan.scenario,
        "sources": list(spec.sources),
        "citations": [SERVEGEN_CITATION, AZURE_CITATION],
        "synthesized": True,
        "classes": {c: m for c, m in zip(spec.classes, spec.models)},
        "target_utilisation": plan.mean_utilisation,
        "scale_factor": plan.scale,
        "capacity_rps": dict(plan.capacity_rps),
        "mean_prompt_tokens": plan.lengths.mean_prompt_tokens,
        "mean_output_tokens": plan.lengths.mean_output_tokens,
        "regions": [{"name": r.name, "lon": r.lon, "weight": r.weight, "offset_s": r.offset_s}
                    for r in plan.regions],
        "start_s": float(start),
        "end_s": float(end),
        "masked_windows": {c: (np.flatnonzero(r.gap) * sg.WINDOW_S).tolist()
                           for c, r in zip(spec.classes, plan.rates)},
        "masked_intervals": masked_intervals(plan, start, end),
        "arrival_process": f"Gamma renewal per client and 10-min window, CV clipped to "
                           f"[{CV_MIN}, {CV_MAX}], Poisson where CV missing",
    }


def regional_rates(name: str, scenario: Any = None, seed: int = 0, slot_s: float | None = None, *,
                   plan: WorkloadPlan | None = None, **prepare_kw) -> pl.DataFrame:
    """Per slot, origin region and model: `expected_requests` (scaled ServeGen rate integrated over
    the slot, gaps imputed), `requests` (the build's per-window counts, each window's count split
    binomially over the slots it overlaps), expected prompt / output tokens (expected requests x
    the length pool's means) and `masked` (slot touches a collection gap).

    The per-window totals equal those of `build_workload` with the same seed; only the split of a
    window across a slot boundary is drawn separately. Cheap: no requests are materialised.
    """
    plan = plan or prepare(name, scenario, seed, **prepare_kw)
    spec = plan.spec
    slot_s = float(slot_s or spec.slot_s)
    span = float(sg.SPAN_S)
    n_slots = int(round(span / slot_s))
    if abs(n_slots * slot_s - span) > 1e-6 or slot_s < sg.WINDOW_S:
        raise ValueError(f"slot_s must divide {span:.0f} s and be >= {sg.WINDOW_S} s, got {slot_s}")
    frames = []
    for ci in range(len(spec.classes)):
        gap = plan.rates[ci].gap
        for region in plan.regions:
            n_w = plan.counts(ci, region).sum(axis=0)
            e_w = plan.expected_counts(ci, region).sum(axis=0)
            s = (np.arange(sg.N_WINDOWS) * sg.WINDOW_S - region.offset_s) % span
            a = np.floor(s / slot_s).astype(np.int64)
            f1 = np.minimum(sg.WINDOW_S, (a + 1) * slot_s - s) / sg.WINDOW_S
            f1 = np.clip(f1, 0.0, 1.0)
            b = (a + 1) % n_slots
            k1 = plan.rng(ci, region, _SPLIT_STREAM).binomial(n_w, f1)
            req = np.bincount(a, k1, n_slots) + np.bincount(b, n_w - k1, n_slots)
            exp = np.bincount(a, e_w * f1, n_slots) + np.bincount(b, e_w * (1 - f1), n_slots)
            touched = np.bincount(a, gap & (f1 > 0), n_slots) + np.bincount(b, gap & (f1 < 1), n_slots)
            frames.append(pl.DataFrame({
                "slot": np.arange(n_slots, dtype=np.int32),
                "slot_start_s": np.arange(n_slots) * slot_s,
                "origin_region": [region.name] * n_slots,
                "model": [spec.models[ci]] * n_slots,
                "requests": np.rint(req).astype(np.int64),
                "expected_requests": exp,
                "expected_prompt_tokens": exp * plan.lengths.mean_prompt_tokens,
                "expected_output_tokens": exp * plan.lengths.mean_output_tokens,
                "masked": touched > 0,
            }))
    return pl.concat(frames)
