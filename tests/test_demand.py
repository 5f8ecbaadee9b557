"""Regional demand per slot from canonical requests."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import polars as pl
import pytest

from torta.traces import load_trace
from torta.workload import demand_series


def test_demand_on_a_real_slice_matches_a_hand_count():
    req = load_trace("azure-2023-conv").head(3000)
    rng = np.random.default_rng(0)
    req = req.with_columns(
        pl.Series("origin_region", rng.choice(["a", "b", "c"], req.height)),
        pl.Series("model", rng.choice(["m1", "m2"], req.height)))
    d = demand_series(req, slot_s=60)
    hand = defaultdict(lambda: [0, 0, 0])
    for t, p, o, r, m in zip(req["arrival_s"], req["prompt_tokens"], req["output_tokens"],
                             req["origin_region"], req["model"]):
        h = hand[(int(t // 60), r, m)]
        h[0] += 1; h[1] += p; h[2] += o
    got = {(s, r, m): [n, p, o] for s, r, m, n, p, o in
           d.select("slot", "origin_region", "model", "requests", "prompt_tokens",
                    "output_tokens").iter_rows()}
    for k, v in hand.items():
        assert got[k] == v
    assert sum(v[0] for v in got.values()) == req.height
    # a regular grid: every (region, model) has every slot from first to last
    n_slots = d["slot"].max() - d["slot"].min() + 1
    assert d.height == 6 * n_slots
    assert not d["masked"].any()


def test_masked_intervals_flag_slots():
    req = pl.DataFrame({"arrival_s": [0.0, 100.0, 950.0, 2000.0], "prompt_tokens": [1, 2, 3, 4],
                        "output_tokens": [1, 1, 1, 1], "origin_region": ["r"] * 4,
                        "model": ["m"] * 4})
    d = demand_series(req, 900, masked_intervals=[{"origin_region": "r", "model": "m",
                                                    "start_s": 1000.0, "end_s": 1100.0}])
    assert d["requests"].to_list() == [2, 1, 1]
    assert d["prompt_tokens"].to_list() == [3, 3, 4]
    assert d["masked"].to_list() == [False, True, False]


def test_demand_rejects_bad_input():
    with pytest.raises(ValueError, match="arrival_s"):
        demand_series(pl.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="slot_s"):
        demand_series(pl.DataFrame({"arrival_s": [1.0]}), slot_s=0)
