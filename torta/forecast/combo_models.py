"""`PoolCombo`: a weighted mean of panel forecasts whose weights are fitted on past errors
(issue 20, the 6-h horizon; opt-in, `torta forecast backtest --models ...,PoolCombo`).

Members: PoolRatioGBM, Leader and Pooled (COMBO_MEMBERS), each computed once by
pipeline.run_models. The weights depend on how far a target lies past the pool's frontier (the
latest slot of the series that a region east of it has observed, `pool_fronts`, the frontier of
`ratio_models._Frame`): j = step - frontier (0-based steps: j < 0 is read from the pool), in the
buckets of J_EDGES: j < 0, 0-1, 2-3, 4-7, 8-11, 12-15, 16-31, 32-63, 64+. Per bucket, at each fit
point f, the simplex weights (non-negative, summing to 1) minimising the summed absolute error of
the members' forecasts over the targets observed before f (of the origins forecast so far; at most
COMBO_MAX_ROWS rows, thinned evenly), shrunk halfway (COMBO_SHRINK) towards COMBO_PRIOR. With
`freeze_at` (the pipeline passes the end of its selection window: the backtest's test start) the
weights of fit points after it are those fitted on targets before it, with the frontiers estimated
there: the test days never inform them. The bottom series and the hierarchy's aggregates (groups
starting with "*", pipeline.pool_groups) are fitted apart (an aggregate's errors are the sum of
its series' and would outweigh them).

Chosen on the two validation folds of docs/PERFORMANCE.md ("Forecast accuracy at 6 h": day 10
scored with the history cut after it, day 9 the day before; day 11 scored, day 10 before), H = 24,
MASE / SeasonalNaive over steps 1-24, mid / small / mix, no reconciliation, from member forecasts
computed once (`python -m benchmarks.combo_research build`, 2026-12-07; the lowest sum over the
six cells, a variant within 0.005 taken where cheaper): PoolRatioLGP alone 0.505 / 0.613 / 0.512
and 0.397 / 0.698 / 0.540 (sum 3.266); with GBM a fourth member (prior 0.5, 1/6, 1/6, 1/6, the
weights of PoolRatioLGP) 0.457 / 0.584 / 0.513 and 0.411 / 0.684 / 0.545 (3.194; shrink 0.25:
3.201, 0.75: 3.219, none: 3.244); these three members, prior 0.5 / 0.25 / 0.25: 0.448 / 0.589 /
0.492 and 0.392 / 0.733 / 0.542 (3.195, without GBM's 4-5 CPU s on `torta bench forecast`); an
equal prior 3.229; PoolRatioGBM, GBM, Pooled 3.299; weights per group (model) instead of one fit
for all bottom series (`by_group`, only mix differs) 3.192; a fourth member with prior 0:
SeasonalScaled 3.209, GBM 3.178, Pooled with a 1-slot window 3.180; PoolRatioGBM, Leader and
Pooled(window=1) 3.176 (not taken: 0.003 a cell, below the spread between the folds, for one more
registered model). Earlier, with a research copy of the same
fit: buckets of the step instead of j (the pipeline's step buckets, no shrink) 3.278, SeasonalScaled
a fifth member 3.201, coarser j buckets (< 0, 0-3, 4-11, 12+) 3.212, the j buckets shifted by one
3.208. Buckets from 32 on were not tuned (no H = 24 target reaches them).
"""

from __future__ import annotations

import numpy as np

from torta.forecast.models import _fit_points
from torta.forecast.panel_models import estimate_offsets

COMBO_MEMBERS: tuple[str, ...] = ("PoolRatioGBM", "Leader", "Pooled")
COMBO_PRIOR: tuple[float, ...] = (0.5, 0.25, 0.25)
COMBO_SHRINK = 0.5  # share of COMBO_PRIOR in the weights
J_EDGES = (0, 2, 4, 8, 12, 16, 32, 64)  # bucket b: J_EDGES[b-1] <= j < J_EDGES[b] (b = 0: j < 0)
COMBO_MIN_ROWS = 50  # fewer known errors in a bucket: the prior
COMBO_MAX_ROWS = 10_000  # errors per bucket and fit (thinned evenly)
COMBO_SWEEPS = 4  # passes of the weight search


def _l1_line(r: np.ndarray, d: np.ndarray, lo: float, hi: float) -> float:
    """argmin over t in [lo, hi] of sum |r - t d|: the weighted median of r / d (weights |d|)."""
    nz = np.abs(d) > 1e-12
    if not nz.any():
        return 0.0
    z, w = r[nz] / d[nz], np.abs(d[nz])
    o = np.argsort(z, kind="stable")
    z, c = z[o], np.cumsum(w[o])
    t = float(z[min(int(np.searchsorted(c, 0.5 * c[-1])), z.size - 1)])
    return min(max(t, lo), hi)


def simplex_l1_weights(F: np.ndarray, y: np.ndarray, sweeps: int = 6) -> np.ndarray:
    """Weights w >= 0, sum 1, minimising sum |y - F w| for F (n, M), y (n,): from equal weights,
    exact line searches moving weight from one member to another, every ordered pair, `sweeps`
    times (fewer once nothing moves)."""
    n, M = F.shape
    if F.shape[0] != y.shape[0]:
        raise ValueError(f"F has {F.shape[0]} rows but y {y.shape[0]}")
    w = np.full(M, 1.0 / M)
    r = y - F @ w
    for _ in range(sweeps):
        moved = 0.0
        for i in range(M):
            for j in range(M):
                if i == j:
                    continue
                d = F[:, i] - F[:, j]
                t = _l1_line(r, d, -w[i], w[j])
                if t != 0.0:
                    w[i] += t
                    w[j] -= t
                    r = r - t * d
                    moved += abs(t)
        if moved < 1e-4:
            break
    w = np.clip(w, 0.0, None)
    return w / w.sum()


def pool_fronts(Y: np.ndarray, masked: np.ndarray, groups: tuple[str, ...], fit_at: int,
                season: int, max_lag: int = 32, lag_days: int = 3) -> np.ndarray:
    """(S,) the latest slot relative to an origin that the pool of each series has observed
    (-1: none past the origin), from the offsets estimated before fit_at: ratio_models._Frame's
    frontier with its default offsets."""
    delta, ok = estimate_offsets(Y, masked, groups, fit_at, max_lag, lag_days * season)
    S = Y.shape[0]
    out = np.full(S, -1, dtype=np.int64)
    for s in range(S):
        mem = np.flatnonzero(ok[s])
        out[s] = int(np.floor(-delta[s, mem]).max()) - 1
    return out


def j_buckets(front: np.ndarray, h: int) -> np.ndarray:
    """(S, h) bucket of J_EDGES of each series' steps 0..h-1 (j = step - frontier)."""
    j = np.arange(h)[None, :] - front[:, None]
    return np.searchsorted(np.array(J_EDGES), j, side="right")


class PoolCombo:
    """See the module docstring. `combine` takes the members' forecasts (run_models computes
    them); `weights` (filled by `combine`) maps (fit point, kind, bucket) to the weights used."""

    name = "PoolCombo"
    panel = True
    pools = True

    def __init__(self, members: tuple[str, ...] = COMBO_MEMBERS,
                 prior: tuple[float, ...] = COMBO_PRIOR, shrink: float = COMBO_SHRINK,
                 min_rows: int = COMBO_MIN_ROWS, max_rows: int = COMBO_MAX_ROWS,
                 sweeps: int = COMBO_SWEEPS, by_group: bool = False):
        self.members, self.by_group = tuple(members), bool(by_group)
        if len(prior) != len(self.members) or abs(sum(prior) - 1.0) > 1e-9 or min(prior) < 0:
            raise ValueError(f"prior must be {len(self.members)} weights >= 0 summing to 1, "
                             f"got {prior}")
        if not 0.0 <= shrink <= 1.0:
            raise ValueError(f"shrink must be within 0-1, got {shrink}")
        self.prior, self.shrink = np.asarray(prior, dtype=float), float(shrink)
        self.min_rows, self.max_rows, self.sweeps = int(min_rows), int(max_rows), int(sweeps)
        self.weights: dict[tuple[int, int, int], np.ndarray] = {}

    def combine(self, fc: dict[str, np.ndarray], Y: np.ndarray, masked: np.ndarray,
                groups: tuple[str, ...], origins: np.ndarray, h: int, refit, season: int,
                freeze_at: int | None = None) -> np.ndarray:
        """(S, n_origins, h): per fit point and bucket the weighted mean of the members'
        forecasts fc[m] (S, n_origins, h), weights from errors on targets before the fit point
        (before freeze_at when that is earlier)."""
        S, T = Y.shape
        missing = [m for m in self.members if m not in fc]
        if missing:
            raise ValueError(f"PoolCombo needs the forecasts of {missing[0]!r}")
        F = np.stack([np.asarray(fc[m], dtype=float) for m in self.members], axis=-1)
        if F.shape[:3] != (S, len(origins), h):
            raise ValueError(f"member forecasts of shape {F.shape[:3]}, expected "
                             f"{(S, len(origins), h)}")
        tgt = origins[:, None] + np.arange(h)[None, :]
        y = Y[:, np.minimum(tgt, T - 1)]
        seen = ~masked[:, np.minimum(tgt, T - 1)] & (tgt < T)[None]
        if self.by_group:  # one fit per group (model)
            kind = np.unique(np.array(groups), return_inverse=True)[1].astype(np.int64)
        else:  # the bottom series together, the aggregates together
            kind = np.array([g.startswith("*") for g in groups], dtype=np.int64)
        fits = _fit_points(origins, refit)
        out = np.empty((S, len(origins), h))
        self.weights = {}
        for f in np.unique(fits):
            f = int(f)
            fw = f if freeze_at is None else min(f, int(freeze_at))
            sel = np.flatnonzero(fits == f)
            jb = j_buckets(pool_fronts(Y, masked, groups, fw, season), h)  # (S, h)
            known = seen & (tgt < fw)[None]
            for k in np.unique(kind):
                rows_k = kind == k
                for b in np.unique(jb[rows_k]):
                    cell = rows_k[:, None] & (jb == b)  # (S, h)
                    fit_pts = known & cell[:, None, :]
                    n = int(fit_pts.sum())
                    w = self.prior
                    if n >= self.min_rows:
                        Fb, yb = F[fit_pts], y[fit_pts]
                        if n > self.max_rows:  # evenly thinned (deterministic)
                            keep = np.linspace(0, n - 1, self.max_rows).astype(np.int64)
                            Fb, yb = Fb[keep], yb[keep]
                        w = (1.0 - self.shrink) * simplex_l1_weights(Fb, yb, self.sweeps) \
                            + self.shrink * self.prior
                    self.weights[(f, int(k), int(b))] = w
                    si, ki = np.nonzero(cell)
                    out[si[:, None], sel[None, :], ki[:, None]] = \
                        F[si[:, None], sel[None, :], ki[:, None]] @ w
        return out
