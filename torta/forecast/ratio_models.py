"""`PoolRatioGBM`: a direct multi-horizon global LightGBM over the pooled regions' curve that
predicts the target's ratio to its seasonal mean (issue 20, the 6-h horizon).

Where the regions of a model show one curve shifted by local time (the synthesized workloads,
torta/workload/build.py), the regions east of a series have already observed its next slots: the
pool of the group's series, aligned by offsets estimated from the data
(`panel_models.estimate_offsets`), is known up to a frontier some slots past the origin (0 for the
easternmost series). Targets up to the frontier are read from the pool (as `Pooled` does). A
target j slots past the frontier is forecast as

    seasonal mean of the pool at the target (the mean of the last `days` days at that time)
    x the ratio a LightGBM model predicts,

one model per bucket of j (`J_BUCKETS`), trained over every series of every group at once on
origins before the fit point. Features (all ratios to a seasonal mean, so one model serves series
of any volume): the pool's observed / seasonal ratio over the last 1, 2, 4, 8 and 16 slots up to
its frontier; the same against yesterday; the target's value yesterday, one week before (where
the history has it) and its 3-day mean over the 7-day mean; j; the target's time of day and day of
week on the group's reference clock (the first series of the group, offsets from the data: no
coordinates); and the seasonal mean's own daily level against the last day's. The loss is L1
weighted by the seasonal mean: the absolute error the pooled MASE scores. Persistence and
SeasonalNaive use one of these inputs each; the model learns from the history how far past the
frontier the current ratio persists and when the curve returns to its seasonal mean.
"""

from __future__ import annotations

import numpy as np

from torta.forecast.models import _fit_points
from torta.forecast.panel_models import estimate_offsets, interp_rows

RATIO_WINDOWS = (1, 2, 4, 8, 16)  # slots up to the pool's frontier whose ratio is a feature
J_BUCKETS = (1, 3, 7, 13, 97)  # model b serves targets J_BUCKETS[b] <= j < J_BUCKETS[b + 1]


class _Frame:
    """The pooled curve of each series in its own clock, from the offsets of one fit point."""

    def __init__(self, Y, masked, groups, fit_at, season, max_lag, lag_days, share_days):
        S, T = Y.shape
        delta, ok = estimate_offsets(Y, masked, groups, fit_at, max_lag, lag_days * season)
        lo = max(fit_at - share_days * season, 0)
        vol = np.array([Y[s, lo:fit_at][~masked[s, lo:fit_at]].mean()
                        if (~masked[s, lo:fit_at]).any() else 0.0 for s in range(S)])
        self.S, self.T, self.season = S, T, season
        self.full = np.empty((S, T))  # the pool of every member (for slots all have observed)
        self.parts = []  # per series: (A (M, T) aligned members, c (M,), shares (M,), share_s)
        self.front = np.zeros(S, dtype=np.int64)  # latest relative slot the pool has observed
        self.clock = np.zeros(S)  # slot t of s is slot t + clock[s] of its group's reference
        g = np.array(groups)
        for s in range(S):
            mem = np.flatnonzero(ok[s])
            sh = np.maximum(vol[mem], 1e-9)
            share_s = sh[int(np.flatnonzero(mem == s)[0])]
            A = interp_rows(Y[mem], np.arange(T)[None, :] + delta[s, mem][:, None])
            self.full[s] = A.sum(axis=0) / sh.sum() * share_s
            c = np.floor(-delta[s, mem]).astype(np.int64)  # j has observed o + r iff r <= c_j - 1
            self.parts.append((A, c, sh, share_s))
            self.front[s] = int(c.max()) - 1
            ref = int(np.flatnonzero(g == g[s])[0])
            self.clock[s] = delta[s, ref] if ok[s, ref] else 0.0

    def partial(self, s: int, origins: np.ndarray, rel: np.ndarray) -> np.ndarray:
        """(n, R) pool of s at origins + rel from the members that observed it before the origin
        (NaN where none did)."""
        A, c, sh, share_s = self.parts[s]
        idx = np.clip(origins[:, None] + rel[None, :], 0, self.T - 1)
        out = np.empty(idx.shape)
        every = rel <= int(c.min()) - 1  # observed by every member: the full pool
        out[:, every] = self.full[s][idx[:, every]]
        if not every.all():
            r = rel[~every]
            m = (r[None, :] <= c[:, None] - 1).astype(float)  # (M, R')
            num = np.einsum("jor,jr->or", A[:, idx[:, ~every]], m)
            den = sh @ m
            out[:, ~every] = np.where(den > 0, num / np.maximum(den, 1e-12) * share_s, np.nan)
        return out


def _day_means(vals: np.ndarray, ok: np.ndarray, days: int) -> np.ndarray:
    """(n, R) mean over the first `days` of vals (n, D, R) where ok (days before the history's
    start left out; the first day's value when none is left)."""
    v, m = vals[:, :days], ok[:, :days]
    n = m.sum(axis=1)
    mean = np.where(m, v, 0.0).sum(axis=1) / np.maximum(n, 1)
    return np.where(n > 0, mean, v[:, 0])


def _features(fr: _Frame, s: int, o: np.ndarray, ks: np.ndarray, days: int):
    """Feature rows (n, K, F), seasonal means (n, K) of the targets o + ks, and whether the pool
    has observed each target (K,). Reads the pool before each origin only (one `partial` read of
    every relative slot needed)."""
    season = fr.season
    f = int(fr.front[s])
    rel_w = f - np.arange(max(RATIO_WINDOWS))  # frontier backwards
    rel_t = ks - season * (ks // season)  # targets past a day: their shape from whole days back
    rel_d = -1 - np.arange(season)  # the last day before the origin
    D = max(days, 3)
    dd = np.arange(1, D + 1)[:, None] * season
    parts = [rel_w, (rel_w[None, :] - dd).ravel(), (rel_t[None, :] - dd).ravel(),
             rel_t - 7 * season, (rel_d[None, :] - dd).ravel()]
    rr = np.concatenate(parts)
    vals = fr.partial(s, o, rr)
    ok = (o[:, None] + rr[None, :]) >= 0
    at = np.cumsum([0] + [len(x) for x in parts])
    n = len(o)

    def block(i, R):  # (n, D, R) values and validity of part i
        return (vals[:, at[i]:at[i + 1]].reshape(n, D, R), ok[:, at[i]:at[i + 1]].reshape(n, D, R))

    obs_w = vals[:, at[0]:at[1]]  # (n, W)
    vw, kw = block(1, len(rel_w))
    sh7_w, sh1_w = _day_means(vw, kw, days), _day_means(vw, kw, 1)
    ratios = []
    for w in RATIO_WINDOWS:
        num = np.nansum(obs_w[:, :w], axis=1)
        ratios.append(num / np.maximum(sh7_w[:, :w].sum(axis=1), 1e-9))
        ratios.append(num / np.maximum(sh1_w[:, :w].sum(axis=1), 1e-9))
    ratios = np.stack(ratios, axis=-1)  # (n, 2W)
    vt, kt = block(2, len(rel_t))
    base = np.maximum(_day_means(vt, kt, days), 1e-9)
    yday = _day_means(vt, kt, 1) / base
    wk = np.where(ok[:, at[3]:at[4]], vals[:, at[3]:at[4]], np.nan) / base
    m3 = _day_means(vt, kt, 3) / base
    # the seasonal mean's daily level: the last day against the `days`-day mean
    vd, kd = block(4, len(rel_d))
    day_lvl = _day_means(vd, kd, 1).sum(axis=1) / np.maximum(
        _day_means(vd, kd, days).sum(axis=1), 1e-9)
    j = (ks - f).astype(float)
    ref_t = o[:, None] + ks[None, :] + fr.clock[s]
    tod = (ref_t % season) / season
    dow = np.floor(ref_t / season) % 7
    n, K = ref_t.shape
    X = np.concatenate([
        np.broadcast_to(ratios[:, None, :], (n, K, ratios.shape[1])),
        np.stack([yday, wk, m3, np.broadcast_to(day_lvl[:, None], (n, K)),
                  np.broadcast_to(j[None, :], (n, K)), tod, dow], axis=-1)], axis=-1)
    return X.astype(np.float32), base, ks <= f


class PoolRatioGBM:
    """See the module docstring. Fitted at the backtest's fit points (the first origin, then
    every `refit` slots) on targets before the fit point. Training rows: origins from day 2 on,
    the latest every `train_step` slots (thinned evenly so that series x origins x steps stays
    under `max_build_rows`), at most `max_train_steps` steps each, at most `max_train_rows` rows
    per bucket of j (evenly thinned); a bucket with fewer than `min_train_rows` rows gets the
    ratio over the last 4 slots (`Pooled`'s rule).

    LightGBM size chosen on the validation folds (6-h MASE / SeasonalNaive, servegen-mid/small/
    mix, day 10 scored with the history cut there, then day 11): 7 leaves of at least 100 rows
    scored 0.601 / 0.611 / 0.571 and 0.431 / 0.696 / 0.543 alone, 0.509 / 0.607 / 0.512 and
    0.397 / 0.704 / 0.534 in the mean with LeaderGBMPooled, against 0.683 / 0.604 / 0.620 and
    0.472 / 0.679 / 0.530 alone, 0.539 / 0.604 / 0.529 and 0.425 / 0.692 / 0.524 in the mean with
    15 leaves of 50 (better on mid, mixed on small and mix); 40 trees at learning rate 0.12
    (0.589 / 0.623 / 0.572 and 0.431 / 0.684 / 0.563 alone, with the training rows thinned as
    now) cost half of 80 at 0.06 (0.601 / 0.611 / 0.590 and 0.431 / 0.696 / 0.559)."""

    name = "PoolRatioGBM"
    panel = True
    pools = True  # groups without the hierarchy's aggregates (pipeline.pool_groups)

    def __init__(self, days: int = 7, n_estimators: int = 40, learning_rate: float = 0.12,
                 num_leaves: int = 7, min_child_samples: int = 100, train_step: int = 2,
                 min_train_rows: int = 200, max_train_rows: int = 20_000,
                 max_train_steps: int = 24, max_build_rows: int = 150_000, max_lag: int = 32,
                 lag_days: int = 3, share_days: int = 3, threads: int = 1,
                 predict_threads: int = 1, seed: int = 0):
        self.days, self.train_step, self.min_train_rows = days, train_step, min_train_rows
        self.max_train_rows = max_train_rows
        self.max_train_steps, self.max_build_rows = max_train_steps, max_build_rows
        self.max_lag, self.lag_days, self.share_days = max_lag, lag_days, share_days
        self.predict_threads = predict_threads
        self.params = dict(n_estimators=n_estimators, learning_rate=learning_rate,
                           num_leaves=num_leaves, min_child_samples=min_child_samples,
                           subsample=0.8, subsample_freq=1, colsample_bytree=0.9,
                           objective="l1", n_jobs=threads, random_state=seed,
                           deterministic=True, force_row_wise=True, max_bin=63, verbose=-1)

    def rolling_panel(self, Y, masked, groups, origins, h, refit, season):
        out = np.empty((Y.shape[0], len(origins), h))
        fits = _fit_points(origins, refit)
        for f in np.unique(fits):
            sel = np.flatnonzero(fits == f)
            out[:, sel] = self.forecast_from(Y, masked, groups, int(f), origins[sel], h, season)
        return out

    def forecast_from(self, Y, masked, groups, fit_at, origins, h, season):
        """(S, len(origins), h): offsets, shares and models estimated from data before fit_at."""
        import lightgbm as lgb

        S = Y.shape[0]
        fr = _Frame(Y, masked, groups, fit_at, season, self.max_lag, self.lag_days,
                    self.share_days)
        ks = np.arange(h)
        # training: origins from one day in whose targets (all h) end before the fit point, the
        # latest ones every `train_step` slots (thinned evenly to at most `max_build_rows` rows
        # of at most `max_train_steps` steps each)
        kk = np.unique(np.linspace(0, h - 1, min(h, self.max_train_steps)).round().astype(int))
        lo, hi = season + max(RATIO_WINDOWS), fit_at - h
        every = max(self.train_step, -(-S * len(kk) * max(hi - lo, 0) // self.max_build_rows))
        tr = np.arange(hi, lo - 1, -every)[::-1]
        Xs, ys, ws, js = [], [], [], []
        for s in range(S):
            if tr.size == 0:
                break
            X, base, seen = _features(fr, s, tr, kk, self.days)
            t = tr[:, None] + kk[None, :]
            ok = ~seen[None, :] & ~masked[s, t]
            Xs.append(X[ok])
            ys.append((Y[s, t] / base)[ok])
            ws.append(base[ok])
            js.append(X[..., -3][ok])
        out = np.empty((S, len(origins), h))
        feats = [_features(fr, s, origins, ks, self.days) for s in range(S)]
        models = []
        if Xs:
            X, yv, wv, jv = (np.concatenate(a) for a in (Xs, ys, ws, js))
            for b in range(len(J_BUCKETS) - 1):
                m = (jv >= J_BUCKETS[b]) & (jv < J_BUCKETS[b + 1])
                if m.sum() < self.min_train_rows:
                    models.append(None)
                    continue
                rows = np.flatnonzero(m)
                if rows.size > self.max_train_rows:  # evenly thinned (deterministic)
                    rows = rows[np.linspace(0, rows.size - 1, self.max_train_rows).astype(np.int64)]
                reg = lgb.LGBMRegressor(**self.params)
                reg.fit(X[rows], yv[rows], sample_weight=wv[rows])
                models.append(reg)
        pred = [X[..., 4].astype(float) for X, _, _ in feats]  # fallback: ratio over 4 slots
        for b, reg in enumerate(models):
            if reg is None:
                continue
            lo_j, hi_j = J_BUCKETS[b], J_BUCKETS[b + 1]
            hit = [(X[..., -3] >= lo_j) & (X[..., -3] < hi_j) & ~seen[None, :]
                   for X, _, seen in feats]
            rows = np.concatenate([feats[s][0][hit[s]] for s in range(S)])
            if rows.shape[0] == 0:
                continue
            got = reg.booster_.predict(rows, num_threads=self.predict_threads)
            at = np.cumsum([0] + [int(x.sum()) for x in hit])
            for s in range(S):
                pred[s][hit[s]] = got[at[s]:at[s + 1]]
        for s in range(S):
            X, base, seen = feats[s]
            f = int(fr.front[s])
            fc = base * pred[s]
            if f >= 0:
                k_seen = np.arange(min(f + 1, h))
                fc[:, k_seen] = np.nan_to_num(fr.partial(s, origins, k_seen), nan=0.0)
            out[s] = fc
        return out
