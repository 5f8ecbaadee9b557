"""benchmarks/forecast_floor.py: the oracle (the generating rate) and the hindsight bound."""

from __future__ import annotations

import pytest

from benchmarks.forecast_floor import run


@pytest.mark.slow
def test_floor_oracle_is_the_noise_and_hindsight_bounds_every_candidate():
    doc = run("servegen-small-14d", 4)
    rows = {r["model"]: r for r in doc["rows"]}
    assert rows["SeasonalNaive"]["test_over_SeasonalNaive"] == pytest.approx(1.0)
    # the counts are drawn around the rate: knowing it leaves only the sampling noise
    assert rows["Oracle"]["test_over_SeasonalNaive"] < 0.05
    # choosing per series and step bucket on the test days is at least as good as any one of
    # the candidates it chooses from (the oracle is not one of them)
    bound = rows["Best(test,all) hindsight"]["test_mase"]
    cands = [r for k, r in rows.items() if k not in ("Oracle", "Best(test,all) hindsight")
             and not k.startswith("Best(val")]
    assert len(cands) > 40
    assert all(bound <= r["test_mase"] + 1e-12 for r in cands)
    assert rows["Oracle"]["test_mase"] < bound
