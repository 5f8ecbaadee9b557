"""The target-following micro allocator of `torta-horizon` (torta.planner.horizon_policy).

The macro plan gives, per slot, the servers each region should hold per model (`set_targets`). Inside the
serving region, per request, as `TortaAllocator` (expected backlog + prefill and decode at the server's
next batch size + a small spreading term), except for how a server comes to switch model:

- the plan asks (pre-loading): while region r holds fewer servers of m than its target and some server
  there holds a model above its own target, m's next request in r goes to the least busy of those
  (it loads m), even when a warm server is free: the load happens before the forecast ramp, not once
  the warm servers' queues have grown. Each slot's switches of this kind are bounded by the deficits the
  planner saw on the live state (so an old load report cannot make a gateway order the same switch twice);
- otherwise a cold server pays its load time plus `TargetConfig.switch_margin_s`, and where its model is
  at or below its target (the plan keeps it warm, e.g. through a dip), loading that model back plus the
  margin again: a switch happens only when the expected wait for a warm server exceeds the load by a margin.

Without targets (before the first plan) the region's last server of a model counts as needed (the
`TortaAllocator` displacement rule, with the margin instead of the switch penalty).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from torta.allocator.config import MicroConfig, TargetConfig
from torta.allocator.greedy import TortaAllocator, spread_scale


def _completion_s(wait_s: float, active: int, pre: float, tpot: list, mb: int, p: int, o: int) -> float:
    """Expected backlog (floored at 0) + the request's prefill and decode at the server's next batch size."""
    b = active + 1
    return (wait_s if wait_s > 0.0 else 0.0) + pre * p + o * tpot[b if b <= mb else mb]


class TargetAllocator(TortaAllocator):
    """TORTA per-request allocator that follows the macro plan's placement targets (module docstring)."""

    def __init__(self, config: MicroConfig = MicroConfig(), targets: TargetConfig = TargetConfig()) -> None:
        super().__init__(config)
        self.targets = targets
        self._tgt: list | None = None
        self._deficit: list | None = None
        self._surplus: list | None = None
        self.preloads = 0

    def set_targets(self, targets: np.ndarray, held: np.ndarray) -> None:
        """targets[r, m]: servers of region r to hold model m in the coming slot; held[r, m]: servers holding
        it now (the planner's live view), which bounds the slot's pre-loads."""
        t = np.asarray(targets, dtype=np.int64)
        h = np.asarray(held, dtype=float).round().astype(np.int64)
        if t.shape != h.shape or t.ndim != 2:
            raise ValueError(f"set_targets: targets and held must be (R, M) of one shape, got {t.shape}, {h.shape}")
        self._tgt = t.tolist()
        self._deficit = (np.maximum(t - h, 0) if self.targets.preload else np.zeros_like(t)).tolist()
        self._surplus = np.maximum(h - t, 0).tolist()

    def best(self, view: Any, request: Any, region: int | None) -> tuple[float, int]:
        if self._view_id != id(view):
            self._setup(view)
        now = view.now_s
        m = request.model
        sf = spread_scale(self, now)
        if region is not None and self._deficit is not None and self._deficit[region][m] > 0:
            c, s = self._preload(region, request, now)
            if s >= 0:
                self._remember(s, now)
                return c, s
        if region is None:
            regions, lat = self._near[request.origin][m], self._lat[request.origin]
        else:
            regions, lat = (region,), None
        best, bs = math.inf, -1
        for r in regions:
            d = lat[r] if lat is not None else 0.0
            if d >= best:
                break
            c, s = self._scan(r, request, now, d, sf)
            if c < best:
                best, bs = c, s
        if bs < 0:
            return math.inf, -1
        self._remember(bs, now)
        return best, bs

    def cost_in(self, view: Any, request: Any, region: int, delay_s: float) -> tuple[float, int]:
        """Cost and server in `region` for a request that reaches it `delay_s` later (no side effects)."""
        return self._scan(region, request, view.now_s, delay_s, 0.0)

    def _remember(self, server: int, now: float) -> None:
        if self.config.spread_s_per_request > 0.0:
            self._recent[server] += math.exp((now - self._t_ref) / self.config.spread_tau_s)

    def _lists(self, region: int) -> tuple:
        return self._state(region) if self._state is not None else (self._bu, self._tailm, self._nact)

    def _held(self, region: int, tailm: Any) -> list:
        cnt = [0] * len(self._cands[region])
        for s in self._sir[region]:
            x = tailm[s]
            if x >= 0:
                cnt[x] += 1
        return cnt

    def _scan(self, region: int, request: Any, now: float, delay_s: float, sf: float) -> tuple[float, int]:
        bu, tailm, nact = self._lists(region)
        m, p, o = request.model, request.prompt_tokens, request.output_tokens
        tgt = self._tgt[region] if self._tgt is not None else None
        margin = self.targets.switch_margin_s
        rec, load_of = self._recent, self._load_of
        held = None
        best, bs = math.inf, -1
        for s, pre, tpot, mb, _cold, cap in self._cands[region][m]:
            if cap < p:
                continue
            w = bu[s] - now  # inlined _completion_s: the hot path (one call per candidate server)
            b = nact[s] + 1
            c = delay_s + (w if w > 0.0 else 0.0) + pre * p + o * tpot[b if b <= mb else mb] + rec[s] * sf
            if tailm[s] != m:
                c += load_of[s][m] + margin
                cur = tailm[s]
                if c < best and cur >= 0:
                    if held is None:
                        held = self._held(region, tailm)
                    if held[cur] <= (tgt[cur] if tgt is not None else 1):  # the plan keeps it warm
                        c += load_of[s][cur] + margin
            if c < best:
                best, bs = c, s
        return best, bs

    def _preload(self, region: int, request: Any, now: float) -> tuple[float, int]:
        """The least busy server of `region` holding a model above its target: (cost without the load the
        plan ordered, server), or (inf, -1) when none can take the request."""
        bu, tailm, nact = self._lists(region)
        m, p, o = request.model, request.prompt_tokens, request.output_tokens
        surplus = self._surplus[region]
        best, bs = math.inf, -1
        for s, pre, tpot, mb, _cold, cap in self._cands[region][m]:
            cur = tailm[s]
            if cap < p or cur == m or (cur >= 0 and surplus[cur] <= 0):
                continue
            c = _completion_s(bu[s] - now, nact[s], pre, tpot, mb, p, o)
            if c < best:
                best, bs = c, s
        if bs >= 0:
            self._deficit[region][m] -= 1
            cur = tailm[bs]
            if cur >= 0:
                surplus[cur] -= 1
            self.preloads += 1
        return best, bs
