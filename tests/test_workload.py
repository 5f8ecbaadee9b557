"""Multi-day ServeGen workloads: packing, gaps, determinism, windows, follow-the-sun, scaling."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from torta.errors import InputError, UnknownNameError
from torta.schema import REQUEST_SCHEMA
from torta.workload import build_workload, prepare, regional_rates
from torta.workload import servegen as sg
from torta.workload.lengths import LengthPool

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "traces" / "servegen" / "raw-sample" / "m-small" / "chunk-5-trace.csv"

REGIONS = [("east", 15.0, 1.0), ("zero", 0.0, 3.0)]  # offsets +1 h and 0 h
CAP = {"llama2-70b": 4.0, "llama2-13b": 6.0, "llama2-7b": 8.0}
POOL = LengthPool("test-pool", np.array([100, 200, 300, 400]), np.array([10, 20, 30, 40]))


def _plan(name="servegen-small-14d", seed=0, **kw):
    return prepare(name, seed=seed, regions=REGIONS, capacity_rps=CAP, lengths=POOL, **kw)


def test_packed_matches_raw_sample(tmp_path):
    src = tmp_path / "data" / "language" / "m-small"
    src.mkdir(parents=True)
    shutil.copy(RAW, src / "chunk-5-trace.csv")
    out = sg.pack_raw(tmp_path, tmp_path / "out", classes=("m-small",))
    mine = pl.read_parquet(out)
    shipped = sg.load_packed().filter((pl.col("model_class") == "m-small") & (pl.col("client") == 5))
    assert mine.height == shipped.height > 100
    assert mine.equals(shipped.sort("window_start_s"))
    assert (tmp_path / "out" / "SHA256SUMS.source").read_text().split()[1] == \
        "data/language/m-small/chunk-5-trace.csv"


def test_raw_reader_names_line_and_field(tmp_path):
    bad = tmp_path / "chunk-0-trace.csv"
    bad.write_text("0,1.5,1.0,Gamma,1,2\n600,abc,1.0,Gamma,1,2\n")
    with pytest.raises(InputError, match=r"chunk-0-trace.csv:2 \[rate_per_s\]"):
        sg.read_raw_csv(bad, "m-small", 0)
    bad.write_text("0,1.5,1.0,Gamma,1\n")
    with pytest.raises(InputError, match=":1: expected 6"):
        sg.read_raw_csv(bad, "m-small", 0)
    bad.write_text("601,1.5,1.0,Gamma,1,2\n")
    with pytest.raises(InputError, match="window_start_s"):
        sg.read_raw_csv(bad, "m-small", 0)


def test_gaps_are_masked_and_imputed_from_a_clean_day():
    counts = {c: int(sg.load_class(c).gap.sum()) for c in sg.CLASSES}
    assert counts == {"m-large": 0, "m-mid": 102, "m-small": 37}
    r = sg.load_class("m-mid")
    raw_zero = r.rate_per_s.sum(axis=0) == 0
    assert raw_zero.sum() == 84 and np.all(r.gap[raw_zero])  # every all-zero window is a gap
    for w in np.flatnonzero(r.gap):
        src = w - 144
        while src >= 0 and r.gap[src]:
            src -= 144
        if src >= 0:
            np.testing.assert_array_equal(r.filled_rate_per_s[:, w], r.rate_per_s[:, src])
    assert (r.filled_rate_per_s.sum(axis=0) > 0).all()


def test_same_seed_identical_other_seed_differs():
    a, meta_a = build_workload("servegen-small-14d", days=(12, 12), hours=1, plan=_plan(seed=3))
    b, _ = build_workload("servegen-small-14d", days=(12, 12), hours=1, plan=_plan(seed=3))
    c, _ = build_workload("servegen-small-14d", days=(12, 12), hours=1, plan=_plan(seed=4))
    assert a.height > 1000
    assert a.equals(b)
    assert not a.equals(c)
    assert meta_a["seed"] == 3 and meta_a["requests"] == a.height


def test_requests_schema_window_and_models():
    df, meta = build_workload("servegen-mix-14d", days="2-2", hours=0.5,
                              plan=_plan("servegen-mix-14d"))
    assert dict(df.schema) == REQUEST_SCHEMA
    assert df["arrival_s"].min() >= 86400 and df["arrival_s"].max() < 86400 + 1800
    assert df["arrival_s"].is_sorted()
    assert df["request_id"].to_list() == list(range(df.height))
    assert set(df["model"].unique()) == {"llama2-70b", "llama2-13b", "llama2-7b"}
    assert set(df["origin_region"].unique()) == {"east", "zero"}
    assert (df["source"] == "servegen-mix-14d").all()
    assert set(df["prompt_tokens"].unique()) <= {100, 200, 300, 400}
    pairs = set(zip(df["prompt_tokens"].to_list(), df["output_tokens"].to_list()))
    assert pairs <= {(100, 10), (200, 20), (300, 30), (400, 40)}  # drawn as real pairs
    assert meta["sources"] == ["servegen:language/m-large", "servegen:language/m-mid",
                               "servegen:language/m-small", "lengths:azure-2023-conv"]
    assert meta["scale_factor"] > 0 and meta["synthesized"] is True


def test_a_window_is_the_same_requests_as_a_longer_build():
    plan = _plan()
    short, _ = build_workload("servegen-small-14d", days=(5, 5), hours=1, plan=plan)
    long, _ = build_workload("servegen-small-14d", days=(5, 5), hours=2, plan=plan)
    cut = long.filter(pl.col("arrival_s") < 4 * 86400 + 3600).drop("request_id")
    assert short.drop("request_id").equals(cut)


def test_rate_level_counts_agree_with_requests_and_target_utilisation():
    plan = _plan()
    rates = regional_rates("servegen-small-14d", plan=plan)
    assert rates.height == 2 * 1344
    df, _ = build_workload("servegen-small-14d", days=(3, 3), hours=2, plan=plan)
    got = df.group_by("origin_region").len().sort("origin_region")
    exp = (rates.filter((pl.col("slot") >= 192) & (pl.col("slot") < 200))
           .group_by("origin_region").agg(pl.col("requests").sum(), pl.col("expected_requests").sum())
           .sort("origin_region"))
    for n_req, n_rate, e in zip(got["len"], exp["requests"], exp["expected_requests"]):
        assert abs(n_req - n_rate) <= 0.02 * e + 20
        assert abs(n_rate - e) <= 0.02 * e + 20
    # mean utilisation of the clean slots equals the target: rate / capacity
    clean = rates.filter(~pl.col("masked"))
    per_s = clean["expected_requests"].sum() / (clean["slot"].n_unique() * 900.0)
    assert per_s / CAP["llama2-7b"] == pytest.approx(0.6, rel=0.03)


def test_follow_the_sun_shift_and_weights():
    rates = regional_rates("servegen-large-14d", plan=_plan("servegen-large-14d"))
    e = rates.filter(pl.col("origin_region") == "east")["expected_requests"].to_numpy()
    z = rates.filter(pl.col("origin_region") == "zero")["expected_requests"].to_numpy()
    # east is 1 h (4 slots) ahead in local time and has a third of zero's weight
    np.testing.assert_allclose(e[:-4] * 3.0, z[4:], rtol=1e-9)


def test_masked_slots_flagged_consistently():
    plan = _plan()
    rates = regional_rates("servegen-small-14d", plan=plan)
    zero = rates.filter(pl.col("origin_region") == "zero")
    gap_slots = set(zero.filter(pl.col("masked"))["slot"].to_list())
    gap_w = np.flatnonzero(sg.load_class("m-small").gap)
    assert {int(w * 600 // 900) for w in gap_w} <= gap_slots
    assert (zero.filter(pl.col("masked"))["expected_requests"] > 0).all()  # imputed, not zero
    _, meta = build_workload("servegen-small-14d", days=(14, 14), hours=0.01, plan=plan)
    full = [m for m in _meta_all(plan) if m["origin_region"] == "zero"]
    assert sum(m["end_s"] - m["start_s"] for m in full) == pytest.approx(37 * 600)


def _meta_all(plan):
    from torta.workload.build import masked_intervals

    return masked_intervals(plan)


def test_bad_names_and_arguments():
    with pytest.raises(UnknownNameError, match="servegen-mid-14d"):
        prepare("nope", regions=REGIONS, capacity_rps=CAP, lengths=POOL)
    with pytest.raises(ValueError, match="days"):
        build_workload("servegen-small-14d", days=(0, 3), plan=_plan())
    with pytest.raises(ValueError, match="days"):
        build_workload("servegen-small-14d", days="3-15", plan=_plan())
    with pytest.raises(ValueError, match="seed"):
        _plan(seed=-1)
    with pytest.raises(ValueError, match="weights"):
        prepare("servegen-small-14d", regions=[("a", 0, 0)], capacity_rps=CAP, lengths=POOL)


def test_cli_build_writes_parquet_and_metadata(tmp_path):
    import json

    from click.testing import CliRunner

    from torta.cli import main

    out = tmp_path / "w.parquet"
    r = CliRunner().invoke(main, ["workload", "build", "servegen-small-14d", "--scenario", "abilene",
                                  "--seed", "2", "--days", "12", "--hours", "0.1",
                                  "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    meta = json.loads(r.stdout)
    df = pl.read_parquet(out)
    assert dict(df.schema) == REQUEST_SCHEMA
    assert meta["requests"] == df.height > 0 and meta["seed"] == 2
    assert meta["scenario"] == "abilene" and 0 < meta["scale_factor"]
    assert json.loads((tmp_path / "w.parquet.meta.json").read_text())["requests"] == df.height
    assert not list(tmp_path.glob("*.tmp"))
    r = CliRunner().invoke(main, ["workload", "build", "nope", "--out", str(out)])
    assert r.exit_code == 2 and "servegen-mid-14d" in r.output


def test_iter_workload_chunks_equal_the_whole_build():
    from torta.workload import iter_workload

    plan = _plan("servegen-mix-14d")
    whole, meta = build_workload("servegen-mix-14d", days=(7, 7), hours=1, plan=plan)
    parts = [df for df, _ in iter_workload("servegen-mix-14d", days=(7, 7), hours=1, plan=plan,
                                           chunk_s=700)]
    assert len(parts) == 6
    assert pl.concat(parts).equals(whole)


def test_chunks_on_hour_boundaries_lose_no_request():
    """Whole-hour offsets (lon -105 = -7 h) put window ends exactly on chunk bounds, where an
    arrival at 0.99999... of a window could round onto the bound (a regression)."""
    from torta.workload import iter_workload

    plan = prepare("servegen-mix-14d", regions=[("den", -105.0, 1.0), ("odd", -87.6167, 1.0)],
                   capacity_rps=CAP, lengths=POOL)
    whole, _ = build_workload("servegen-mix-14d", days=(12, 12), hours=4, plan=plan)
    parts = [df for df, _ in iter_workload("servegen-mix-14d", days=(12, 12), hours=4, plan=plan,
                                           chunk_s=3600)]
    assert pl.concat(parts).equals(whole)
