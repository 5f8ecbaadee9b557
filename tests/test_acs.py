import numpy as np
import pytest

from torta.planner.acs import (ACSConfig, ACSDiffusion, common_coupling_residual, inter_coupling,
                            intra_spread, zone_means, zone_offsets)

# three zones of four regions; physical links: rings/chains inside zones, three links across
ZONES = np.repeat([0, 1, 2], 4)
EDGES = [(0, 1), (1, 2), (2, 3), (0, 3), (4, 5), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 11),
         (3, 4), (7, 8), (2, 5)]
THETA = np.array([0.062, 0.029, -0.090])  # topologies-and-sync.md §4.6 check 3 (price offsets)


def _world(seed=7):
    rng = np.random.default_rng(seed)
    xy = np.concatenate([rng.normal(c, 1.0, (4, 2)) for c in [(0, 0), (10, 0), (20, 0)]])
    lat = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    mu = rng.uniform(40, 160, 12)
    return lat, mu, rng


def _run(acs, u, lam, t_end=40.0):
    dt = min(0.01, 0.5 * acs.max_stable_dt())
    for _ in range(int(t_end / dt)):
        u = acs.step(u, lam, dt)
    return u


@pytest.mark.parametrize("mode", ["ot", "gravity"])
def test_common_coupling_condition_holds_by_construction(mode):
    lat, mu, _ = _world()
    g = inter_coupling(mu, ZONES, lat, EDGES, 40.0, mode, 4.0)
    assert common_coupling_residual(g, ZONES, mu) < 1e-9
    np.testing.assert_allclose(g, g.T)
    for k in range(3):  # every zone pair carries the requested total
        for k2 in range(k + 1, 3):
            assert g[np.ix_(ZONES == k, ZONES == k2)].sum() == pytest.approx(40.0)


def test_physical_coupling_violates_the_condition():
    lat, mu, _ = _world()
    g = inter_coupling(mu, ZONES, lat, EDGES, 40.0, "physical", 4.0)
    assert common_coupling_residual(g, ZONES, mu) > 0.1


def test_static_load_synchronises_each_cluster_and_keeps_clusters_distinct():
    lat, mu, rng = _world()
    acs = ACSDiffusion(mu, ZONES, lat, EDGES, THETA, ACSConfig(inter_mode="ot"))
    u0 = rng.uniform(0, 1.5, 12)
    assert intra_spread(u0, ZONES, mu) > 1.0
    lam = np.array([0.95, 0.60, 0.85])[ZONES] * mu  # capacity-proportional arrivals inside a zone
    u = _run(acs, u0, lam)
    assert intra_spread(u, ZONES, mu) < 1e-8
    levels = zone_means(u, ZONES, mu)
    assert np.min(np.abs(np.subtract.outer(levels, levels))[np.triu_indices(3, 1)]) > 0.02
    assert acs.g_intra.max() <= acs.g_max


def test_spread_does_not_vanish_when_the_condition_is_violated():
    lat, mu, rng = _world()
    acs = ACSDiffusion(mu, ZONES, lat, EDGES, THETA, ACSConfig(inter_mode="physical"))
    lam = np.array([0.95, 0.60, 0.85])[ZONES] * mu
    u = _run(acs, rng.uniform(0, 1.5, 12), lam)
    assert intra_spread(u, ZONES, mu) > 1e-3
    assert acs.g_intra.max() > acs.g0  # the gains did adapt, and still could not close the gap


def test_adaptive_gains_beat_static_on_heterogeneous_arrivals():
    lat, mu, rng = _world()
    lam = rng.uniform(0.3, 1.0, 12) * mu
    u0 = np.full(12, 0.5)
    static = _run(ACSDiffusion(mu, ZONES, lat, EDGES, THETA, ACSConfig(adaptive=False)), u0, lam)
    adaptive = _run(ACSDiffusion(mu, ZONES, lat, EDGES, THETA, ACSConfig(adaptive=True)), u0, lam)
    assert intra_spread(adaptive, ZONES, mu) <= 0.5 * intra_spread(static, ZONES, mu)


def test_flows_conserve_mass():
    lat, mu, rng = _world()
    acs = ACSDiffusion(mu, ZONES, lat, EDGES, THETA)
    f = acs.flows(rng.uniform(0, 1, 12))
    np.testing.assert_allclose(f, -f.T, atol=1e-12)
    u = rng.uniform(0, 1, 12)
    lam = rng.uniform(10, 50, 12)
    dt = 0.5 * acs.max_stable_dt()
    u1 = acs.step(u, lam, dt)
    # d/dt sum mu u = sum lambda - sum mu u / tau
    assert np.sum(mu * (u1 - u)) / dt == pytest.approx(lam.sum() - np.sum(mu * u), rel=1e-9)


def test_redirect_shares_are_a_routing_plan_towards_cooler_regions():
    lat, mu, _ = _world()
    acs = ACSDiffusion(mu, ZONES, lat, EDGES, np.zeros(3))
    u = np.full(12, 0.2)
    u[0] = 2.0
    p = acs.redirect_shares(u, mu * 0.5)
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert np.all(p >= 0)
    assert p[0, 0] < 1.0 and p[0, 1] > 0  # hot region 0 sheds load to its neighbour
    np.testing.assert_allclose(np.diag(p)[1:], 1.0)  # cooler regions keep theirs


def test_zone_offsets_make_expensive_zones_cooler():
    th = zone_offsets(np.array([0, 0, 1]), np.array([60.0, 60.0, 30.0]), 0.3)
    assert th[0] > 0 > th[1]


def test_bad_config():
    with pytest.raises(ValueError, match="inter_mode"):
        ACSConfig(inter_mode="star")
    with pytest.raises(ValueError, match="g_max"):
        ACSConfig(g0=1.0, g_max=0.5)
