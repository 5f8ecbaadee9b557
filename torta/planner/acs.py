"""ACS-Diffusion: the adaptive cluster-synchronisation balancer (after W. Lu, B. Liu, T. Chen,
"Cluster synchronization in networks of coupled non-identical dynamical systems", arXiv:0912.2418).

Regions are grouped into clusters (zones: pricing zone or GPU type). Each region i has capacity mu_i
and a normalised load u_i; its cost potential is phi_i = u_i + theta_{zone(i)} (theta: the zone's price
offset). Load diffuses over coupling edges, F_ij = g_ij (phi_i - phi_j) = -F_ji, in a fluid model

    du_i/dt = lambda_i / mu_i - u_i / tau - (1 / mu_i) sum_j F_ij                       (3)

Intra-zone gains adapt (edge-wise, with leakage sigma and a cap, on the physical intra-zone links):

    g_ij <- clip(g_ij + dt [eta (phi_i - phi_j)^2 - sigma (g_ij - g0)], g0, g_max)        (4)

The inter-zone coupling must satisfy the paper's common-coupling condition (A): every region of zone k
has the same normalised coupling to zone k', sum_{j in C_k'} g_ij / mu_i = beta_kk'. A Sinkhorn plan
with capacity-proportional marginals satisfies it by construction ("ot" mode); coupling only on the
physical inter-zone links ("physical" mode) generally violates it, and the intra-zone spread then does
not vanish. The equations are the reconstruction in ../shared/notes/topologies-and-sync.md §3-4 [R]/[D];
the paper's full text was not readable.

Gains are given relative to the mean capacity (g_abs = g_rel * mean(mu)), so one configuration fits
fleets of any size; `eta` likewise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import ot  # POT

INTER_MODES = ("ot", "gravity", "physical")


@dataclass(frozen=True)
class ACSConfig:
    """Defaults: topologies-and-sync.md §4.5 (g0 = 2, eta = 200, sigma = 0.01, g_max = 500, total
    inter-zone conductance 40, kappa = 0.3, ell = 800 km = 4 ms) rescaled by its mean capacity of ~100."""

    g0: float = 0.02
    """Baseline intra-zone gain g0 of (4), relative to the mean capacity (§4.5: 2 / 100)."""
    eta: float = 2.0
    """Adaptation rate of the intra-zone gains in (4), relative to the mean capacity (§4.5: 200 / 100)."""
    sigma: float = 0.01
    """Leakage of the gains back towards g0 in (4) (§4.5)."""
    g_max: float = 5.0
    """Cap of an intra-zone gain, relative to the mean capacity (§4.5: 500 / 100)."""
    inter_total: float = 0.4
    """Total inter-zone conductance, relative to the mean capacity (§4.5: 40 / 100)."""
    inter_mode: str = "ot"
    """How inter-zone coupling is laid out: "ot" (Sinkhorn plan, satisfies condition (A)), "gravity" or
    "physical" (only the physical inter-zone links; violates (A) in general)."""
    ell_ms: float = 4.0
    """Latency scale of the inter-zone coupling (§4.5: 800 km = 4 ms)."""
    kappa: float = 0.3
    """Weight of a zone's price offset theta in the cost potential (§4.5)."""
    tau_s: float = 1.0
    """Service time constant tau of the fluid model (3)."""
    adaptive: bool = True
    """Adapt the intra-zone gains by (4); False keeps them at g0."""
    deadband: float = 0.0
    """Potential differences below this move no load (0: none)."""

    def __post_init__(self) -> None:
        if self.inter_mode not in INTER_MODES:
            raise ValueError(f"ACSConfig.inter_mode must be one of {INTER_MODES}, got {self.inter_mode!r}")
        for name in ("g0", "eta", "sigma", "inter_total", "deadband", "kappa"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ACSConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("ell_ms", "tau_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ACSConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not self.g_max >= self.g0:
            raise ValueError(f"ACSConfig.g_max ({self.g_max}) must be >= g0 ({self.g0})")


def zone_offsets(zones: np.ndarray, price: np.ndarray, kappa: float) -> np.ndarray:
    """theta_k = kappa (mean price of zone k - mean price) / mean price (expensive zones run cooler)."""
    zones = np.asarray(zones, dtype=np.int64)
    price = np.asarray(price, dtype=float)
    k = int(zones.max()) + 1
    zp = np.bincount(zones, weights=price, minlength=k) / np.maximum(np.bincount(zones, minlength=k), 1)
    mean = float(price.mean())
    if mean == 0.0:
        return np.zeros(k)
    return kappa * (zp - mean) / abs(mean)


def inter_coupling(mu: np.ndarray, zones: np.ndarray, latency_ms: np.ndarray,
                   edges: list[tuple[int, int]], total: float, mode: str, ell_ms: float) -> np.ndarray:
    """Symmetric inter-zone conductance matrix (R, R), `total` per zone pair.

    "ot": Sinkhorn plan of kernel exp(-latency / ell) with marginals total * mu_i / M_k and
    total * mu_j / M_k' (condition (A) holds exactly); "gravity": total * mu_i mu_j / (M_k M_k');
    "physical": `total` split evenly over the physical links between the two zones.
    """
    mu = np.asarray(mu, dtype=float)
    zones = np.asarray(zones, dtype=np.int64)
    r = mu.size
    g = np.zeros((r, r))
    nz = int(zones.max()) + 1 if r else 0
    members = [np.flatnonzero(zones == k) for k in range(nz)]
    if mode == "physical":
        pair_edges: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for i, j in edges:
            if zones[i] != zones[j]:
                key = (min(zones[i], zones[j]), max(zones[i], zones[j]))
                pair_edges.setdefault(key, []).append((i, j))
        for es in pair_edges.values():
            for i, j in es:
                g[i, j] += total / len(es)
                g[j, i] += total / len(es)
        return g
    lat = np.asarray(latency_ms, dtype=float)
    for k in range(nz):
        for k2 in range(k + 1, nz):
            ci, cj = members[k], members[k2]
            if ci.size == 0 or cj.size == 0:
                continue
            a = mu[ci] / mu[ci].sum()
            b = mu[cj] / mu[cj].sum()
            if mode == "gravity":
                block = np.outer(a, b)
            else:
                block = ot.sinkhorn(a, b, lat[np.ix_(ci, cj)] / ell_ms, 1.0, method="sinkhorn_log",
                                    numItermax=10_000, stopThr=1e-14, warn=False)
                # exact marginals (one Sinkhorn half-step each way leaves ~1e-15 residue)
                block *= (a / block.sum(1))[:, None]
            g[np.ix_(ci, cj)] = total * block
            g[np.ix_(cj, ci)] = total * block.T
    return g


def common_coupling_residual(g: np.ndarray, zones: np.ndarray, mu: np.ndarray) -> float:
    """Largest spread over i in C_k of sum_{j in C_k'} g_ij / mu_i, over zone pairs k != k' (0: (A) holds)."""
    zones = np.asarray(zones, dtype=np.int64)
    mu = np.asarray(mu, dtype=float)
    nz = int(zones.max()) + 1
    onehot = (zones[:, None] == np.arange(nz)[None, :]).astype(float)
    per_zone = (np.asarray(g) @ onehot) / mu[:, None]  # (R, K): coupling of i to each zone
    worst = 0.0
    for k in range(nz):
        rows = per_zone[zones == k]
        if rows.shape[0] > 1:
            spread = rows.max(0) - rows.min(0)
            spread[k] = 0.0
            worst = max(worst, float(spread.max()))
    return worst


def intra_spread(u: np.ndarray, zones: np.ndarray, mu: np.ndarray) -> float:
    """E_intra = sum_k sum_{i in C_k} mu_i (u_i - ubar_k)^2 with capacity-weighted zone means."""
    zones = np.asarray(zones, dtype=np.int64)
    mu = np.asarray(mu, dtype=float)
    u = np.asarray(u, dtype=float)
    nz = int(zones.max()) + 1
    ubar = np.bincount(zones, weights=mu * u, minlength=nz) / np.bincount(zones, weights=mu, minlength=nz)
    return float(np.sum(mu * (u - ubar[zones]) ** 2))


def zone_means(u: np.ndarray, zones: np.ndarray, mu: np.ndarray) -> np.ndarray:
    zones = np.asarray(zones, dtype=np.int64)
    mu = np.asarray(mu, dtype=float)
    nz = int(zones.max()) + 1
    return np.bincount(zones, weights=mu * np.asarray(u), minlength=nz) / np.bincount(zones, weights=mu,
                                                                                       minlength=nz)


class ACSDiffusion:
    """State of the balancer: intra-zone adaptive gains on the physical intra-zone links, a fixed
    inter-zone coupling, zone offsets theta. Capacities mu (R,), zones (R,) ints 0..K-1."""

    def __init__(self, mu: np.ndarray, zones: np.ndarray, latency_ms: np.ndarray,
                 edges: list[tuple[int, int]], theta: np.ndarray | None = None,
                 config: ACSConfig = ACSConfig()) -> None:
        self.mu = np.asarray(mu, dtype=float)
        self.zones = np.asarray(zones, dtype=np.int64)
        r = self.mu.size
        if self.zones.shape != (r,) or np.asarray(latency_ms).shape != (r, r):
            raise ValueError(f"ACSDiffusion: mu (R,), zones (R,), latency (R, R) expected; got "
                             f"{self.mu.shape}, {self.zones.shape}, {np.asarray(latency_ms).shape}")
        if np.any(self.mu <= 0):
            raise ValueError("ACSDiffusion: capacities mu must be > 0")
        self.config = config
        nz = int(self.zones.max()) + 1
        self.theta = np.zeros(nz) if theta is None else np.asarray(theta, dtype=float)
        if self.theta.shape != (nz,):
            raise ValueError(f"ACSDiffusion: theta must have one value per zone ({nz}), got {self.theta.shape}")
        scale = float(self.mu.mean())
        self.g0, self.g_max = config.g0 * scale, config.g_max * scale
        self.eta = config.eta * scale
        intra = sorted({(min(i, j), max(i, j)) for i, j in edges if i != j and self.zones[i] == self.zones[j]})
        self.ei = np.array([e[0] for e in intra], dtype=np.int64)
        self.ej = np.array([e[1] for e in intra], dtype=np.int64)
        self.g_intra = np.full(len(intra), self.g0)
        self.g_inter = inter_coupling(self.mu, self.zones, latency_ms, list(edges),
                                      config.inter_total * scale, config.inter_mode, config.ell_ms)

    def conductance(self) -> np.ndarray:
        g = self.g_inter.copy()
        g[self.ei, self.ej] += self.g_intra
        g[self.ej, self.ei] += self.g_intra
        return g

    def potentials(self, u: np.ndarray) -> np.ndarray:
        return np.asarray(u, dtype=float) + self.theta[self.zones]

    def flows(self, u: np.ndarray) -> np.ndarray:
        """F[i, j] = g_ij (phi_i - phi_j) beyond the dead band (antisymmetric), capacity units per second."""
        phi = self.potentials(u)
        diff = phi[:, None] - phi[None, :]
        db = self.config.deadband
        if db > 0:
            diff = np.sign(diff) * np.maximum(np.abs(diff) - db, 0.0)
        return self.conductance() * diff

    def adapt(self, u: np.ndarray, dt: float) -> None:
        if not self.config.adaptive or self.ei.size == 0:
            return
        phi = self.potentials(u)
        d = phi[self.ei] - phi[self.ej]
        g = self.g_intra + dt * (self.eta * d * d - self.config.sigma * (self.g_intra - self.g0))
        np.clip(g, self.g0, self.g_max, out=g)
        self.g_intra = g

    def max_stable_dt(self) -> float:
        """Explicit-Euler step bound: dt (1/tau + sum_j g_ij / mu_i) < 1 at the gain cap."""
        g = self.g_inter.sum(1) / self.mu
        deg = np.bincount(np.concatenate([self.ei, self.ej]), minlength=self.mu.size)
        return 1.0 / (1.0 / self.config.tau_s + float(np.max(g + deg * self.g_max / self.mu)))

    def step(self, u: np.ndarray, arrivals: np.ndarray, dt: float) -> np.ndarray:
        """One explicit step of the fluid model (3) and the adaptive law (4); returns the new u."""
        u = np.asarray(u, dtype=float)
        f = self.flows(u)
        du = np.asarray(arrivals, dtype=float) / self.mu - u / self.config.tau_s - f.sum(1) / self.mu
        self.adapt(u, dt)
        return u + dt * du

    def redirect_shares(self, u: np.ndarray, arrivals: np.ndarray) -> np.ndarray:
        """Row-stochastic (R, R) routing of new arrivals: region i sends the outward flow F_ij > 0 of its
        arrivals to j (capped at all of them), the rest stays at i. Redirecting new requests realises
        the diffusion without migrating running ones (topologies-and-sync.md §4.7)."""
        f = np.maximum(self.flows(u), 0.0)
        lam = np.asarray(arrivals, dtype=float)
        out = f.sum(1)
        scale = np.where(out > lam, lam / np.maximum(out, 1e-300), 1.0)
        share = f * scale[:, None] / np.maximum(lam, 1e-300)[:, None]
        share[lam <= 0] = 0.0
        np.fill_diagonal(share, 0.0)
        share[np.diag_indices_from(share)] = 1.0 - share.sum(1)
        return np.clip(share, 0.0, 1.0)
