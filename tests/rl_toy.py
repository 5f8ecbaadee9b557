"""A toy fleet for the RL tests: 3 regions on a line, one model, hourly slots (24 per day), a predictable
daily surge at origin 0 (hours 10-13) that exceeds region 0's capacity."""

from __future__ import annotations

import numpy as np

from torta.rl.fleet import SurrogateFleet

DAYS = 6


def toy_fleet() -> SurrogateFleet:
    r = 3
    return SurrogateFleet(
        name="toy", slot_s=3600.0, latency_ms=np.array([[0.0, 20.0, 40.0], [20.0, 0.0, 20.0], [40.0, 20.0, 0.0]]),
        servers=np.array([4.0, 2.0, 2.0]), rps_rm=np.ones((r, 1)), lat_s_rm=np.full((r, 1), 2.0),
        energy_kwh_rm=np.full((r, 1), 1e-3), near_rm=np.arange(r)[:, None].astype(np.int64),
        capacity_rps=np.array([4.0, 2.0, 2.0]), energy_kwh_per_request=np.full(r, 1e-3),
        transfer_usd_per_request=1e-5, price_usd_per_mwh=np.array([[50.0] * 24, [60.0] * 24, [70.0] * 24]),
        start_hour=0)


def toy_demand(days: int = DAYS) -> np.ndarray:
    """(1, 24 days, 3, 1) requests per hour."""
    hours = np.arange(24 * days) % 24
    d = np.zeros((1, 24 * days, 3, 1))
    d[0, :, 0, 0] = np.where((hours >= 10) & (hours < 14), 16000.0, 5000.0)
    d[0, :, 1, 0] = 2000.0
    d[0, :, 2, 0] = 1500.0
    return d
