"""Global forecasters that see every series at once: `Leader` (the same demand seen earlier in
another region) and `GBM` (one LightGBM model over all series, features from mlforecast).

Panel interface: `rolling_panel(Y, masked, groups, origins, h, refit, season)` -> (S, n_origins, h)
point forecasts; Y and masked are (S, T); groups[s] names the series' group (its model: series of
different models never inform each other). As for the per-series models, parameters are estimated
at fit points (the first origin, then every `refit` slots) from data before the fit point, and a
forecast from origin o reads Y[:, :o] only.

Follow-the-sun leads. In the workloads of this repository every origin region sees the same
ServeGen client population at its local time of day (torta/workload/build.py), so a region east
of another shows the western region's demand hours earlier. `Leader` and the leader feature of
`GBM` find such pairs from the data alone (no coordinates): per pair of series of a group, the
lag d (1 to `max_lead` slots) whose mean-normalised squared difference over the `lead_days` before
the fit point is smallest. On real multi-region traces leads are weaker than in these synthetic
copies; the backtest's selection on validation days decides per series and step whether a lead
helps.
"""

from __future__ import annotations

import numpy as np

from torta.forecast.models import _fit_points

LEAD_WINDOW = 4  # slots over which a leader's level is matched to the follower's


def _rmean(cs: np.ndarray, o: np.ndarray, w: int) -> np.ndarray:
    """Mean of Y[:, o-w:o] per series from cumulative sums cs (S, T+1); (S, len(o))."""
    lo = np.maximum(o - w, 0)
    return (cs[:, o] - cs[:, lo]) / np.maximum(o - lo, 1)


def estimate_leads(Y: np.ndarray, masked: np.ndarray, groups: tuple[str, ...], fit_at: int,
                   max_lead: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pair (s, j) of series of one group: the lead d in 1..max_lead minimising the mean
    squared difference of the mean-normalised series, y_s[t] vs y_j[t - d], over t in
    [fit_at - window, fit_at) (clean pairs only), and that error. Returns lead (S, S) int and
    err (S, S) float (inf for pairs of different groups, the diagonal, or no data)."""
    S = Y.shape[0]
    lead = np.zeros((S, S), dtype=np.int64)
    err = np.full((S, S), np.inf)
    lo = max(fit_at - window, max_lead)
    if fit_at - lo < 8:
        return lead, err
    g = np.array(groups)
    same = (g[:, None] == g[None, :]) & ~np.eye(S, dtype=bool)
    seg = Y[:, lo - max_lead:fit_at]
    clean = ~masked[:, lo - max_lead:fit_at]
    mean = np.array([seg[s][clean[s]].mean() if clean[s].any() else 0.0 for s in range(S)])
    Z = np.where(clean, seg / np.maximum(mean, 1e-9)[:, None], 0.0)
    C = clean.astype(float)
    n = fit_at - lo
    a, ca = Z[:, max_lead:], C[:, max_lead:]
    for d in range(1, max_lead + 1):
        b, cb = Z[:, max_lead - d:max_lead - d + n], C[:, max_lead - d:max_lead - d + n]
        cnt = ca @ cb.T
        # sum over clean pairs of (a - b)^2 = sum ca cb a^2 + sum ca cb b^2 - 2 sum a b
        sq = (a * a) @ cb.T + ca @ (b * b).T - 2.0 * (a @ b.T)
        e = np.where(cnt >= 8, sq / np.maximum(cnt, 1), np.inf)
        better = same & (e < err)
        err[better] = e[better]
        lead[better] = d
    return lead, err


def leader_order(err_s: np.ndarray) -> np.ndarray:
    """Candidate leaders of one series, best (lowest lead error) first."""
    order = np.argsort(err_s, kind="stable")
    return order[np.isfinite(err_s[order])]


def covering_leaders(order: np.ndarray, lead_s: np.ndarray, h: int) -> np.ndarray:
    """Per step k < h, the best leader in `order` with lead > k (so its value for the target is
    observed), or -1."""
    if order.size == 0:
        return np.full(h, -1)
    cover = lead_s[order][None, :] > np.arange(h)[:, None]  # (h, n)
    return np.where(cover.any(axis=1), order[np.argmax(cover, axis=1)], -1)


class Leader:
    """Scaled leader-naive. From origin o, step k (target o + k) of series s: the leader j of its
    group with the lowest lead error among those with lead d > k gives y_j[o + k - d] (observed
    before o) times the ratio of the last LEAD_WINDOW slots of s to the matching slots of j.
    Steps past every lead: the latest scaled values (s as it will be d slots after the origin) of
    the `n_leaders` best leaders, weighted by 1 / lead error. No leader at all: the last value."""

    name = "Leader"
    panel = True

    def __init__(self, max_lead: int = 32, lead_days: int = 3, n_leaders: int = 3):
        self.max_lead, self.lead_days, self.n_leaders = max_lead, lead_days, n_leaders

    def rolling_panel(self, Y, masked, groups, origins, h, refit, season):
        S, T = Y.shape
        cs = np.concatenate([np.zeros((S, 1)), np.cumsum(Y, axis=1)], axis=1)
        out = np.repeat(Y[:, origins - 1][:, :, None], h, axis=2).astype(float)
        fits = _fit_points(origins, refit)
        w = LEAD_WINDOW
        for f in np.unique(fits):
            sel = np.flatnonzero(fits == f)
            o = origins[sel]
            lead, err = estimate_leads(Y, masked, groups, int(f), self.max_lead,
                                       self.lead_days * season)
            num = _rmean(cs, o, w)  # (S, n)
            for s in range(S):
                order = leader_order(err[s])
                if order.size == 0:
                    continue
                ratios: dict[int, np.ndarray] = {}

                def scaled(j, k):  # leader j's value for step k (k < d) or its latest (k >= d)
                    d = int(lead[s, j])
                    if j not in ratios:
                        den = _rmean(cs[j:j + 1], o - d, w)[0]
                        ratios[j] = np.where(den > 0, num[s] / np.maximum(den, 1e-9), 1.0)
                    return Y[j, o + min(k, d - 1) - d] * ratios[j]

                cover = covering_leaders(order, lead[s], h)
                for k in np.flatnonzero(cover >= 0):
                    out[s, sel, k] = scaled(int(cover[k]), int(k))
                rest = np.flatnonzero(cover < 0)
                if rest.size:
                    top = order[:self.n_leaders]
                    wts = 1.0 / np.maximum(err[s, top], 1e-12)
                    latest = sum(wt * scaled(int(j), h) for wt, j in zip(wts, top)) / wts.sum()
                    out[s, sel[:, None], rest[None, :]] = latest[:, None]
        return out


def best_leader_values(Y, lead, err, o, h):
    """(S, n, h) value of the best leader at the target time (NaN where no leader with d > k),
    normalised later by the caller."""
    S = Y.shape[0]
    out = np.full((S, len(o), h), np.nan, dtype=np.float32)
    for s in range(S):
        cover = covering_leaders(leader_order(err[s]), lead[s], h)
        for k in np.flatnonzero(cover >= 0):
            j = int(cover[k])
            d = int(lead[s, j])
            out[s, :, k] = Y[j, o + k - d] / np.maximum(Y[j, o - d - 1], 1.0)
    return out


class GBM:
    """One LightGBM model over all series and steps ("global", direct multi-step with the step as
    a feature). Origin features come from mlforecast's preprocessing (lags 1-4 and 96, rolling
    means over 4, 16 and 96 slots ending at the origin); per step the target slot's time of day
    and day of week, the values one day and one week before the target, the step, and the best
    leader's relative change (see the module docstring). Every value is divided by the series'
    level at the origin (mean of the last 4 slots, at least 1) and the model predicts the target
    over that level with an L1 loss weighted by the level: the absolute error the pooled MASE
    scores. Training rows: origins every `train_step` slots (more where rows would exceed
    `max_train_rows`) from day 2 on whose targets are before the fit point, steps thinned to at
    most `max_train_steps` per origin. LightGBM trains on `threads` threads (1: on a shared 2-core
    machine extra OpenMP threads mostly spin) and predicts on `predict_threads` (the prediction of
    every origin and step is the larger part: 1.4 M rows for 150 series and 96 steps)."""

    name = "GBM"
    panel = True
    LAGS = (1, 2, 3, 4, 96)
    WINDOWS = (4, 16, 96)

    def __init__(self, n_estimators: int = 60, learning_rate: float = 0.12, num_leaves: int = 31,
                 train_step: int = 3, max_train_steps: int = 12, max_train_rows: int = 40_000,
                 threads: int = 1, predict_threads: int = 2, seed: int = 0, max_lead: int = 32,
                 lead_days: int = 3, pooled_feature: bool = False):
        self.pooled_feature = pooled_feature
        self.params = dict(n_estimators=n_estimators, learning_rate=learning_rate,
                           num_leaves=num_leaves, min_child_samples=40, subsample=0.8,
                           subsample_freq=1, colsample_bytree=0.9, objective="l1",
                           n_jobs=threads, random_state=seed, deterministic=True,
                           force_row_wise=True, max_bin=63, verbose=-1)
        self.train_step, self.max_train_steps = train_step, max_train_steps
        self.max_train_rows, self.predict_threads = max_train_rows, predict_threads
        self.max_lead, self.lead_days = max_lead, lead_days

    # -- features --------------------------------------------------------------------------
    def origin_features(self, Y: np.ndarray) -> np.ndarray:
        """(S, T + 1, F0) features of every origin 0..T from mlforecast (row t uses Y[:, :t])."""
        import pandas as pd
        from mlforecast import MLForecast
        from mlforecast.lag_transforms import RollingMean

        S, T = Y.shape
        ext = np.concatenate([Y, np.zeros((S, 1))], axis=1)  # row T: origin after the history
        df = pd.DataFrame({"unique_id": np.repeat(np.arange(S), T + 1),
                           "ds": np.tile(np.arange(T + 1), S), "y": ext.ravel()})
        mlf = MLForecast(models=[], freq=1, lags=list(self.LAGS),
                         lag_transforms={1: [RollingMean(window_size=w, min_samples=1)
                                             for w in self.WINDOWS]})
        feats = mlf.preprocess(df, dropna=False, static_features=[], validate_data=False)
        cols = [c for c in feats.columns if c not in ("unique_id", "ds", "y")]
        return feats[cols].to_numpy(dtype=float).reshape(S, T + 1, len(cols))

    def step_features(self, Y, F0, o, ks, season, lead, err, pooled=None):
        """(S, n, K, F) feature rows and (S, n) levels for origins o and steps ks (0-based);
        `pooled` (S, n, K): an extra feature per step (the Pooled forecast), over the level."""
        S, T = Y.shape
        lvl = np.maximum(F0[:, o, len(self.LAGS)], 1.0)  # RollingMean(4) at the origin
        base = F0[:, o, :] / lvl[..., None]
        ldr = best_leader_values(Y, lead, err, o, int(ks.max()) + 1)
        last = np.maximum(Y[:, o - 1], 1.0)
        rows = []
        for i, k in enumerate(ks):
            tgt = o + k
            dlag = season * (k // season + 1)
            day = Y[:, np.clip(tgt - dlag, 0, None)] / lvl
            wk = np.where((tgt - 7 * season >= 0)[None, :],
                          Y[:, np.clip(tgt - 7 * season, 0, None)], np.nan) / lvl
            extra = np.stack([
                day, wk, ldr[:, :, k] * last / lvl,
                np.broadcast_to((tgt % season)[None, :] / season, lvl.shape),
                np.broadcast_to(((tgt // season) % 7)[None, :].astype(float), lvl.shape),
                np.full(lvl.shape, float(k)),
                *(() if pooled is None else (pooled[:, :, i] / lvl,)),
            ], axis=-1)
            rows.append(np.concatenate([base, extra], axis=-1).astype(np.float32))
        return np.stack(rows, axis=2), lvl

    def _pooled(self, Y, masked, groups, fit_at, origins, ks, season):
        """The Pooled forecasts at steps ks from origins (offsets estimated before fit_at), or
        None when this GBM has no pooled feature."""
        if not self.pooled_feature:
            return None
        got = Pooled().forecast_from(Y, masked, groups, fit_at, origins, int(ks.max()) + 1, season)
        return got[:, :, ks]

    def rolling_panel(self, Y, masked, groups, origins, h, refit, season):
        import lightgbm as lgb

        S, T = Y.shape
        F0 = self.origin_features(Y)
        fits = _fit_points(origins, refit)
        out = np.empty((S, len(origins), h))
        for f in np.unique(fits):
            f = int(f)
            lead, err = estimate_leads(Y, masked, groups, f, self.max_lead,
                                       self.lead_days * season)
            kk = np.unique(np.linspace(0, h - 1, min(h, self.max_train_steps)).round().astype(int))
            lo, hi = max(season, self.max_lead + 2), f - int(kk.max())
            per_origin = S * len(kk)
            every = max(self.train_step, -(-per_origin * max(hi - lo, 0) // self.max_train_rows))
            tr = np.arange(hi - 1, lo - 1, -every)[::-1]  # the latest origins, thinned evenly
            sel = np.flatnonzero(fits == f)
            if tr.size < 8:  # too little history to learn from: last value
                out[:, sel] = Y[:, origins[sel] - 1][:, :, None]
                continue
            X, lvl = self.step_features(Y, F0, tr, kk, season, lead, err,
                                        self._pooled(Y, masked, groups, f, tr, kk, season))
            tgt = tr[:, None] + kk[None, :]
            yt = Y[:, tgt] / lvl[..., None]
            ok = ~masked[:, tgt] & (tgt < f)[None]
            wts = np.broadcast_to(lvl[..., None], ok.shape)
            model = lgb.LGBMRegressor(**self.params)
            model.fit(X[ok], yt[ok], sample_weight=wts[ok])
            Xp, lp = self.step_features(Y, F0, origins[sel], np.arange(h), season, lead, err,
                                        self._pooled(Y, masked, groups, f, origins[sel],
                                                     np.arange(h), season))
            pred = model.predict(Xp.reshape(-1, Xp.shape[-1]),
                                 num_threads=self.predict_threads).reshape(Xp.shape[:-1])
            out[:, sel] = pred * lp[..., None]
        return out


def estimate_offsets(Y: np.ndarray, masked: np.ndarray, groups: tuple[str, ...], fit_at: int,
                     max_lag: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Fractional local-time offsets between the series of a group, from the data alone.

    delta[s, j]: series j at slot t + delta[s, j] shows what series s shows at slot t (negative:
    j is east of s and saw it earlier). Per pair, the integer lag l in -max_lag..max_lag
    minimising the mean squared difference of the mean-normalised series z_s[t] vs z_j[t + l] over
    t in the `window` slots before fit_at - max_lag (clean pairs only), refined to a fraction of a
    slot by the parabola through the errors at l - 1, l, l + 1. Returns delta (S, S) and
    ok (S, S) bool (same group and a lag found strictly inside the range; the diagonal is ok
    with delta 0)."""
    S = Y.shape[0]
    delta = np.zeros((S, S))
    ok = np.eye(S, dtype=bool)
    L = int(max_lag)
    hi = fit_at - L  # t + l < fit_at for every lag
    lo = max(hi - window, L)
    if hi - lo < 8:
        return delta, ok
    g = np.array(groups)
    n = hi - lo
    for name in dict.fromkeys(groups):  # pairs within a group only: one block per group
        mem = np.flatnonzero(g == name)
        if mem.size < 2:
            continue
        seg, clean = Y[mem, lo - L:hi + L], ~masked[mem, lo - L:hi + L]
        mean = np.array([r[c].mean() if c.any() else 0.0 for r, c in zip(seg, clean)])
        Z = np.where(clean, seg / np.maximum(mean, 1e-9)[:, None], 0.0)
        C = clean.astype(float)
        a, ca = Z[:, L:L + n], C[:, L:L + n]
        err = np.full((2 * L + 1, mem.size, mem.size), np.inf)
        for i, lag in enumerate(range(-L, L + 1)):
            b, cb = Z[:, L + lag:L + lag + n], C[:, L + lag:L + lag + n]
            cnt = ca @ cb.T
            sq = (a * a) @ cb.T + ca @ (b * b).T - 2.0 * (a @ b.T)
            err[i] = np.where(cnt >= 8, sq / np.maximum(cnt, 1), np.inf)
        best = np.argmin(err, axis=0)
        inner = (best > 0) & (best < 2 * L) & np.isfinite(err.min(axis=0)) \
            & ~np.eye(mem.size, dtype=bool)
        si, ji = np.nonzero(inner)
        bi = best[si, ji]
        em, e0, ep = err[bi - 1, si, ji], err[bi, si, ji], err[bi + 1, si, ji]
        curv = em - 2 * e0 + ep
        frac = np.where(curv > 0, 0.5 * (em - ep) / np.where(curv > 0, curv, 1.0), 0.0)
        delta[mem[si], mem[ji]] = bi - L + np.clip(frac, -0.5, 0.5)
        ok[mem[si], mem[ji]] = True
    return delta, ok


def interp_rows(Y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Y[j] at fractional slots x[j] (linear between neighbouring slots, clipped at the ends)."""
    T = Y.shape[-1]
    f = np.floor(x)
    i0 = np.clip(f.astype(np.int64), 0, T - 1)
    i1 = np.clip(i0 + 1, 0, T - 1)
    fr = x - f
    return (1 - fr) * np.take_along_axis(Y, i0, axis=-1) + fr * np.take_along_axis(Y, i1, axis=-1)


def pooled_scaled(Y: np.ndarray, members: np.ndarray, delta: np.ndarray, shares: np.ndarray,
                  s: int, origins: np.ndarray, h: int, season: int, days: int,
                  window: int) -> np.ndarray:
    """(len(origins), h) forecasts of series s from the pool of `members` (indices into Y, s among
    them) whose offsets to s are `delta` (member j shows s's slot t at t + delta) and volume shares
    `shares`. The pooled value of s at slot t: sum_j Y_j(t + delta_j) / sum_j share_j x share_s
    over the members that observed it before the origin (both interpolation slots < o). A target
    some member has observed gets its pooled value; the others the pooled mean of the `days` days
    before at the same time of day, times the ratio of the pool to that mean over the last
    `window` slots some member has observed (the pool's frontier: up to the largest lead ahead of
    the origin)."""
    A = interp_rows(Y[members], np.arange(Y.shape[1])[None, :] + delta[:, None])  # (M, T)
    c = np.floor(-delta)  # member j has observed s's slot o + r iff r <= c_j - 1
    front = int(c.max()) - 1  # the latest relative slot the pool has observed
    rt = np.arange(h)
    rr = front - np.arange(window)
    ds = np.arange(1, days + 1) * season
    rt_day = rt - season * (rt // season)  # targets past a day: their shape from whole days back
    rel = np.concatenate([rt, rr, (rt_day[None, :] - ds[:, None]).ravel(),
                          (rr[None, :] - ds[:, None]).ravel()])
    idx = np.clip(origins[:, None] + rel[None, :], 0, Y.shape[1] - 1)  # (n_o, K)
    share_s = shares[int(np.flatnonzero(members == s)[0])]
    # relative slots every member has observed read one pooled series; the others (near the
    # origin) pool only the members that have observed them
    part = rel > int(c.min()) - 1
    pool = np.empty(idx.shape)
    pool[:, ~part] = (A.sum(axis=0) / shares.sum() * share_s)[idx[:, ~part]]
    m = (rel[part][None, :] <= c[:, None] - 1).astype(float)  # (M, K'): who has observed o + rel
    num = np.einsum("jok,jk->ok", A[:, idx[:, part]], m)
    den = shares @ m  # (K',)
    pool[:, part] = np.where(den > 0, num / np.maximum(den, 1e-12) * share_s, np.nan)
    nt, nr = h, window
    p_t, p_r = pool[:, :nt], pool[:, nt:nt + nr]
    # days reaching before the history's start are left out of the mean (at least one stays)
    day_ok = (origins[:, None] + min(int(rr.min()), 0) - ds[None, :] >= 0)
    day_ok[:, 0] = True
    w = day_ok / day_ok.sum(axis=1, keepdims=True)  # (n_o, D)
    sh_t = np.einsum("od,odk->ok", w, pool[:, nt + nr:nt + nr + days * nt].reshape(-1, days, nt))
    sh_r = np.einsum("od,odk->ok", w, pool[:, nt + nr + days * nt:].reshape(-1, days, nr))
    ratio = np.nansum(p_r, axis=1) / np.maximum(np.nansum(sh_r, axis=1), 1e-9)
    seen = rt <= front
    return np.where(seen[None, :], p_t, sh_t * ratio[:, None])


class Pooled:
    """Cross-region pooled, level-scaled seasonal mean. The series of one model in different
    regions that show one curve shifted by local time (the synthesized workloads: every region
    sees the ServeGen rates at its local time, torta/workload/build.py) are aligned by offsets
    estimated from the data (`estimate_offsets`, fractional, within `max_lag` slots) and pooled
    (`pooled_scaled`): a target some region east of the series has observed already is read from
    the pool; later targets get the pooled mean of the last `days` days at the same time of day,
    scaled by the pool's level over its last `window` observed slots. The pool is known further
    ahead than a western series itself, so its level is the more recent. Volume shares are the
    series' means over the `share_days` days before the fit point. Where the regions do not share
    a curve, the offsets' fits are poor and the per-series selection on validation days leaves
    the model out."""

    name = "Pooled"
    panel = True
    pools = True  # run_models hands it groups without the hierarchy's aggregates (pool_groups)

    # days, window chosen on the tuning day (day 11, benchmarks/forecast_floor.py --tune): in the
    # mean with Leader and GBM, 7 days / 2 slots scored 0.436 / 0.759 / 0.577 x SeasonalNaive at
    # 6 h on servegen-mid/small/mix against 0.425 / 0.782 / 0.582 for 3 days / 4 slots
    def __init__(self, days: int = 7, window: int = 2, max_lag: int = 32, lag_days: int = 3,
                 share_days: int = 3):
        self.days, self.window, self.max_lag = days, window, max_lag
        self.lag_days, self.share_days = lag_days, share_days

    def rolling_panel(self, Y, masked, groups, origins, h, refit, season, offsets=None):
        """`offsets` (S,) local-time offsets in slots, if known, replace the estimated ones."""
        out = np.empty((Y.shape[0], len(origins), h))
        fits = _fit_points(origins, refit)
        for f in np.unique(fits):
            sel = np.flatnonzero(fits == f)
            out[:, sel] = self.forecast_from(Y, masked, groups, int(f), origins[sel], h, season,
                                             offsets)
        return out

    def forecast_from(self, Y, masked, groups, fit_at, origins, h, season, offsets=None):
        """(S, len(origins), h) forecasts with offsets and shares estimated before `fit_at`."""
        S = Y.shape[0]
        if offsets is None:
            delta, ok = estimate_offsets(Y, masked, groups, fit_at, self.max_lag,
                                         self.lag_days * season)
        else:
            off = np.asarray(offsets, dtype=float)
            g = np.array(groups)
            delta, ok = off[:, None] - off[None, :], g[:, None] == g[None, :]
        lo = max(fit_at - self.share_days * season, 0)
        vol = np.array([Y[s, lo:fit_at][~masked[s, lo:fit_at]].mean()
                        if (~masked[s, lo:fit_at]).any() else 0.0 for s in range(S)])
        out = np.empty((S, len(origins), h))
        for s in range(S):
            mem = np.flatnonzero(ok[s])
            shares = np.maximum(vol[mem], 1e-9)
            out[s] = pooled_scaled(Y, mem, delta[s, mem], shares / shares.sum(), s, origins, h,
                                   season, self.days, self.window)
        return out


class GBMPooled(GBM):
    """GBM with the Pooled forecast of each target (over the level) as one more feature: the
    pool's level is known further ahead than a western series' own."""

    name = "GBMPooled"
    pools = True

    def __init__(self, **kw):
        super().__init__(pooled_feature=True, **kw)
