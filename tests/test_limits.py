"""Documented limits (torta.limits) checked at the edge, the replay's simulated-time horizon and slot
budget, and non-finite values refused instead of turned into zeros."""

from __future__ import annotations

import numpy as np
import pytest

from torta import limits
from torta.errors import InputError, LimitError, NonFiniteError
from torta.ingest.rawread import check_line_lengths
from torta.sim.replay import replay
from torta.sim.testing import LinearPerf, make_requests, make_world


def _no_outputs(tmp_path):
    assert not [p for p in tmp_path.rglob("*")], list(tmp_path.rglob("*"))


def test_a_queue_that_cannot_drain_stops_at_the_horizon(tmp_path):
    # one decode iteration takes 1000 s: 2000 output tokens need 23 days > last arrival + 7 days
    w = make_world((1,), perf=LinearPerf(decode_base_ms=1e6))
    with pytest.raises(LimitError, match="past the horizon"):
        replay(w, make_requests([0.0, 1.0], 10, 2000), "least-loaded", seed=0, out_dir=tmp_path / "out")
    _no_outputs(tmp_path)


def test_slot_budget_is_checked_before_the_engine_starts(tmp_path):
    w = make_world((1,), slot_s=1.0)
    df = make_requests([0.0, 300 * 86400.0], 10, 10)  # horizon 300 + 3000 days of 1-s slots
    with pytest.raises(LimitError, match="slots of 1 s"):
        replay(w, df, "least-loaded", seed=0, out_dir=tmp_path / "out")
    _no_outputs(tmp_path)


@pytest.mark.parametrize("f", [1e-300, 0.0, -1.0, float("nan"), float("inf"), 1e7])
def test_load_factor_limits(tmp_path, f):
    with pytest.raises(InputError, match="load_factor"):
        replay(make_world((1,)), make_requests([0.0, 1.0]), "least-loaded", seed=0, load_factor=f,
               out_dir=tmp_path / "out")
    _no_outputs(tmp_path)


def test_replicate_is_limited_to_100_copies():
    with pytest.raises(InputError, match="100"):
        replay(make_world((1,)), make_requests([0.0, 1.0]), "least-loaded", seed=0, load_factor=500.0,
               load_mode="replicate")


@pytest.mark.parametrize("col,value", [("arrival_s", 1e12), ("prompt_tokens", 2**30), ("output_tokens", 2**25)])
def test_arrival_and_token_limits_at_the_replay_edge(col, value):
    df = make_requests([0.0, 1.0], 10, 10)
    import polars as pl

    df = df.with_columns(pl.when(pl.col("request_id") == 1).then(pl.lit(value)).otherwise(pl.col(col))
                         .cast(df[col].dtype).alias(col))
    with pytest.raises(InputError, match=col):
        replay(make_world((1,)), df, "least-loaded", seed=0)


def test_a_nan_world_value_is_an_error_naming_the_metric_not_a_zero(tmp_path):
    w = make_world((1, 1), transfer_usd_per_gb=float("nan"))  # a World built in code skips the loader's checks
    with pytest.raises(NonFiniteError, match="transfer_usd"):
        replay(w, make_requests(np.arange(50) * 0.5, 100, 10), "round-robin", seed=0, out_dir=tmp_path / "out")
    _no_outputs(tmp_path)


def test_percentiles_keep_nan():
    from torta.sim.accounting import pct

    assert np.isnan(pct(np.array([1.0, np.nan]), 50))


@pytest.mark.parametrize("block", [7, 64, 1 << 20])
def test_line_length_scan_names_the_first_long_line(tmp_path, block):
    p = tmp_path / "f.csv"
    p.write_bytes(b"a,b\n" + b"x" * 40 + b"\n" + b"y" * 41 + b"\n" + b"z" * 100 + b"\n")
    check_line_lengths(p, limit=100, block=block)  # 100 bytes is allowed
    with pytest.raises(InputError, match=r"f\.csv:3.*longer than 40 bytes"):
        check_line_lengths(p, limit=40, block=block)
    q = tmp_path / "g.csv"
    q.write_bytes(b"a,b\n" + b"w" * 500)  # last line without a newline
    with pytest.raises(InputError, match=r"g\.csv:2"):
        check_line_lengths(q, limit=100, block=block)


def test_quote_cuts_long_values():
    q = limits.quote("9" * 10_000)
    assert len(q) < limits.QUOTE_CHARS + 40 and "10,000 characters" in q
    assert limits.quote("short") == "'short'"
