"""Public replay API and the `torta replay` command."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from torta.errors import InputError
from torta.sim.replay import replay, scale_load, to_arrays
from torta.sim.testing import make_requests, make_world


def test_compress_divides_arrival_times():
    df = make_requests(np.arange(10) * 2.0)
    out = scale_load(df, 4.0, "compress", seed=0)
    assert out["arrival_s"].to_list() == (np.arange(10) * 0.5).tolist()


def test_replicate_copies_with_jitter_and_unique_ids():
    df = make_requests(np.arange(1000) * 1.0)
    out = scale_load(df, 2.5, "replicate", seed=3)
    assert 2400 < out.height < 2600
    assert out["request_id"].n_unique() == out.height
    assert (out["arrival_s"].diff().drop_nulls() >= 0).all()
    assert out["arrival_s"].max() <= 999.5 + 1e-9
    again = scale_load(df, 2.5, "replicate", seed=3)
    assert out.equals(again)
    assert not out.equals(scale_load(df, 2.5, "replicate", seed=4))


@pytest.mark.parametrize("f,mode", [(0.0, "compress"), (-1.0, "replicate"), (float("nan"), "compress"), (2.0, "x")])
def test_bad_load_scaling_is_an_error(f, mode):
    with pytest.raises(ValueError):
        scale_load(make_requests([0.0, 1.0]), f, mode, seed=0)


def test_origins_seeded_by_weight_and_kept_when_set():
    w = make_world((1, 1, 1), origin_weights=[0.0, 3.0, 1.0])
    df = make_requests(np.arange(4000) * 0.01)
    a = to_arrays(w, df, seed=1).origin
    assert (a == 0).sum() == 0
    assert 0.7 < (a == 1).mean() < 0.8
    assert np.array_equal(a, to_arrays(w, df, seed=1).origin)
    fixed = make_requests([0.0, 1.0], origin=["r0", None])
    o = to_arrays(w, fixed, seed=1).origin
    assert o[0] == 0 and o[1] in (1, 2)


def test_bad_inputs_name_row_and_field():
    w = make_world((1,))
    with pytest.raises(InputError, match="origin_region") as e:
        to_arrays(w, make_requests([0.0, 1.0], origin=["r0", "mars"]), seed=0)
    assert e.value.line == 1
    with pytest.raises(InputError, match="model"):
        to_arrays(w, make_requests([0.0], model="gpt-9"), seed=0)
    with pytest.raises(InputError, match="prompt_tokens"):
        to_arrays(w, make_requests([0.0, 1.0], [5, -1]), seed=0)
    with pytest.raises(InputError, match="arrival_s"):
        to_arrays(w, make_requests([0.0, -1.0]), seed=0)


def test_unsorted_requests_are_replayed_in_time_order(tmp_path):
    w = make_world((1,))
    df = make_requests([5.0, 1.0, 3.0], 100, 5)
    res = replay(w, df, "least-loaded", seed=0, out_dir=tmp_path)
    c = pl.read_parquet(res.completions_path).sort("request_id")
    assert c["arrival_s"].to_list() == [5.0, 1.0, 3.0]
    assert (c["admitted_s"] >= c["arrival_s"]).all()


def test_empty_trace(tmp_path):
    res = replay(make_world((1,)), make_requests([]), "least-loaded", seed=0, out_dir=tmp_path)
    assert res.summary["requests"] == 0 and res.summary["completed"] == 0
    assert pl.read_parquet(res.completions_path).height == 0
    assert all(v is not None for v in res.summary.values())


def test_outputs_written_atomically_and_summary_matches(tmp_path):
    w = make_world((2,))
    res = replay(w, make_requests(np.arange(100) * 0.1, 100, 20), "round-robin", seed=0, out_dir=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["completions.parquet", "manifest.json", "slots.parquet", "summary.json"]
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["completed"] == 100 and doc["policy"] == "round-robin"
    assert pl.read_parquet(tmp_path / "slots.parquet").height == res.slots.height


def test_streaming_in_chunks(tmp_path, monkeypatch):
    """Completions are streamed to disk in row groups of ROW_GROUP_ROWS (memory stays bounded), and
    the file's bytes do not depend on how the engine batches its hand-overs."""
    import pyarrow.parquet as pq

    import torta.sim.accounting as acc
    from torta.sim.engine import EngineConfig

    monkeypatch.setattr(acc, "ROW_GROUP_ROWS", 512)
    w = make_world((2,))
    n = 5000
    reqs = make_requests(np.arange(n) * 0.05, 50, 5)
    res = replay(w, reqs, "least-loaded", seed=0, out_dir=tmp_path / "a", config=EngineConfig(chunk_requests=300))
    assert pq.ParquetFile(res.completions_path).metadata.num_row_groups == -(-n // 512)
    assert res.summary["completed"] == n
    other = replay(w, reqs, "least-loaded", seed=0, out_dir=tmp_path / "b", config=EngineConfig(chunk_requests=4096))
    assert res.completions_path.read_bytes() == other.completions_path.read_bytes()


REQUIRED = ["requests", "completed", "dropped", "response_mean_s", "response_p50_s", "response_p95_s",
            "response_p99_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "load_std", "load_cv", "cost_usd",
            "energy_kwh", "switches", "wall_s", "requests_per_s", "energy_usd", "transfer_usd", "switching_usd",
            "co2_kg", "planner_ms_per_slot", "dropped_reasons"]


def test_cli_acceptance_single_region_json(tmp_path):
    from torta.cli import main

    r = CliRunner().invoke(main, ["replay", "--scenario", "single-region", "--trace", "azure-2023-conv",
                                  "--policy", "least-loaded", "--json", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    for k in REQUIRED:
        assert k in doc and doc[k] is not None, k
    assert doc["requests"] == 19366 and doc["completed"] + doc["dropped"] == doc["requests"]
    assert 0 < doc["ttft_p50_s"] <= doc["ttft_p99_s"]
    assert 0 < doc["response_p50_s"] <= doc["response_p95_s"] <= doc["response_p99_s"]
    assert doc["tpot_p50_s"] > 0 and doc["planner_ms_per_slot"] == 0.0


def test_cli_unknown_policy_exits_2():
    from torta.cli import main

    r = CliRunner().invoke(main, ["replay", "--scenario", "single-region", "--trace", "azure-2023-conv",
                                  "--policy", "nope", "--json"])
    assert r.exit_code == 2
    assert "least-loaded" in r.output
