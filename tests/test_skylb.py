import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torta.planner.skylb import SkyLBRouter, tune_threshold

LAT = np.array([[0, 10, 20, 5], [10, 0, 10, 8], [20, 10, 0, 15], [5, 8, 15, 0]], float)
DC = np.array([True, True, True, False])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=4, max_size=4), st.integers(0, 3), st.integers(0, 40))
def test_never_pushes_at_or_below_threshold(pending, origin, threshold):
    r = SkyLBRouter(LAT, DC, threshold)
    pending = np.array(pending, dtype=float)
    j = r.route(origin, pending)
    local = int(r.local[origin])
    if pending[local] <= threshold:
        assert j == local
    else:  # pushed only to a strictly less loaded data centre, and to the least loaded one
        assert DC[j]
        assert j == local or (pending[j] < pending[local] and pending[j] == pending[DC].min())


def test_non_dc_origin_is_local_to_its_nearest_dc():
    r = SkyLBRouter(LAT, DC, 3)
    assert r.route(3, np.zeros(4)) == 0


def test_pushes_to_least_pending_ties_by_latency():
    r = SkyLBRouter(LAT, DC, 3)
    assert r.route(0, np.array([10, 2, 2, 0.0])) == 1  # 1 and 2 tie; 1 is nearer to 0
    assert r.route(0, np.array([10, 4, 2, 0.0])) == 2
    assert r.route(0, np.array([3, 0, 0, 0.0])) == 0  # at threshold: stays
    assert r.pushes == 2


def test_tune_threshold_picks_minimum_and_records_table():
    res = tune_threshold(lambda th: (th - 8) ** 2 + 1.0, [0, 4, 8, 16])
    assert res.threshold == 8
    assert [t for t, _ in res.table] == [0, 4, 8, 16]
    assert tune_threshold(lambda th: 1.0, [2, 4]).threshold == 4  # ties: fewer pushes
    with pytest.raises(ValueError):
        tune_threshold(lambda th: float("nan"), [1])


def test_bad_config():
    with pytest.raises(ValueError, match="data centre"):
        SkyLBRouter(LAT, np.zeros(4, bool), 1)
    with pytest.raises(ValueError, match="threshold"):
        SkyLBRouter(LAT, DC, -1)
