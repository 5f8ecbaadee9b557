"""Fit the latency model to the measured tables and report its error.

Splitwise (Patel et al., ISCA 2024; splitwise-sim @ 8f99e7dc `data/perf_model.csv`, MIT):
end-to-end prefill (`prompt_time`) and decode-iteration (`token_time`) times of llama2-70b and
bloom-176b on DGX-A100 / DGX-H100 at tp 2/4/8. Cleaning, in order:

1. exact duplicate rows dropped (the (512, 1, 128) rows appear three times);
2. the median of each configuration's repeats is the target (repeats vary by tens of percent);
3. `h100-80gb-pcap` groups are *derived* (prompt_time = 1.3 x H100, token_time identical; checked
   at load): they are reported, not fitted as independent evidence;
4. llama2-70b tp 2 batch 64 is excluded as physically impossible (reason computed from the data).

Prefill model per (model, gpu, tp), with T = batch prompt tokens, S = sum of squared prompt
lengths and n = T^2 / S (the number of equal-length prompts that gives T and S):

    prefill_ms = a + b*T + c*ramp(T)*T + d*S + e*n,  ramp(T) = clip((T - 2048) / 2048, 0, 1)

`ramp` carries the measured regime step in per-token cost between 2,048 and 4,096 batch tokens
(no samples fall between them, so the linear ramp between is an interpolation choice), `d*S` is
causal self-attention (quadratic in each prompt's length), `e*n` the per-prompt cost seen on A100
at tp 4/8. Decode per iteration, with `context` the mean tokens in context per sequence:

    decode_ms = a + b*batch + c*batch*context

Coefficients are non-negative least squares on relative error (each point weighted 1/y).

Vidur (Agrawal et al., MLSys 2024, MIT): linear-layer time only (`vidur_summary.py`), fitted
per (model, gpu, tp) as `a + b*tokens`, separately over decode batch sizes (1..256 tokens) and
prefill sizes (128..4096 tokens). The attention and overhead terms the composed model adds are
documented in `torta.fleet.perf`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl

from torta.errors import InputError
from torta.fleet.paths import FLEET_DATA_DIR

SPLITWISE_CSV = FLEET_DATA_DIR / "splitwise_perf_model.csv"
VIDUR_CSV = FLEET_DATA_DIR / "vidur_linear_ops.csv"
SPLITWISE_GPU = {"a100-80gb": "A100", "h100-80gb": "H100"}
DERIVED_GROUPS = {"h100-80gb-pcap": ("h100-80gb", 1.3)}  # derived hardware -> (base, prompt ratio)
RAMP_LO_TOKENS, RAMP_HI_TOKENS = 2048.0, 4096.0
VIDUR_DECODE_MAX_TOKENS = 256
VIDUR_PREFILL_MIN_TOKENS = 128

Key = tuple[str, str, int]  # (model, gpu catalog name, tp)


def ramp(tokens):
    return np.clip((np.asarray(tokens, dtype=float) - RAMP_LO_TOKENS)
                   / (RAMP_HI_TOKENS - RAMP_LO_TOKENS), 0.0, 1.0)


def prefill_features(tokens, sum_sq, n_prompts) -> np.ndarray:
    t = np.asarray(tokens, dtype=float)
    return np.column_stack([np.ones_like(t), t, ramp(t) * t, np.asarray(sum_sq, dtype=float),
                            np.asarray(n_prompts, dtype=float)])


def decode_features(batch, context) -> np.ndarray:
    b = np.asarray(batch, dtype=float)
    return np.column_stack([np.ones_like(b), b, b * np.asarray(context, dtype=float)])


def nnls_small(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact non-negative least squares for a few columns (<= 8), by enumeration.

    The NNLS optimum restricted to its positive set is that set's unconstrained least-squares
    solution, so the best feasible (all >= 0) subset solution is the optimum. 2^k small solves.
    """
    k = a.shape[1]
    if k > 8:
        raise ValueError(f"nnls_small is for <= 8 columns, got {k}")
    best, best_res = np.zeros(k), float(b @ b)
    for mask in range(1, 1 << k):
        cols = [j for j in range(k) if mask >> j & 1]
        sol, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
        if np.any(sol < 0):
            continue
        r = b - a[:, cols] @ sol
        res = float(r @ r)
        if res < best_res - 1e-15:
            best = np.zeros(k)
            best[cols] = sol
            best_res = res
    return best


def fit_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares minimising the sum of squared *relative* errors."""
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    coef = nnls_small((x / scale) / y[:, None], np.ones_like(y))
    return coef / scale


@dataclass(frozen=True)
class PrefillFit:
    coef: tuple[float, ...]  # a, b, c, d, e as in the module docstring

    def __call__(self, tokens: float, sum_sq: float, n_prompts: float) -> float:
        # scalar arithmetic (hot path of the simulator): same as prefill_features(...) @ coef
        a, b, c, d, e = self.coef
        r = min(1.0, max(0.0, (tokens - RAMP_LO_TOKENS) / (RAMP_HI_TOKENS - RAMP_LO_TOKENS)))
        return a + b * tokens + c * r * tokens + d * sum_sq + e * n_prompts


@dataclass(frozen=True)
class DecodeFit:
    coef: tuple[float, float, float]  # a, b, c

    def __call__(self, batch: float, context: float) -> float:
        a, b, c = self.coef
        return a + b * batch + c * batch * context


@dataclass(frozen=True)
class LinearFit:
    a: float
    b: float

    def __call__(self, tokens: float) -> float:
        return self.a + self.b * tokens


def _pct(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.abs(pred - y) / y * 100.0


def _loo(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        out[i] = x[i] @ fit_relative(x[keep], y[keep])
    return _pct(out, y)


# ---------------------------------------------------------------- Splitwise

@dataclass(frozen=True)
class SplitwiseData:
    prefill: pl.DataFrame  # model, hardware, tp, prompt_size, batch_size, prompt_ms (median)
    decode: pl.DataFrame  # model, hardware, tp, prompt_size, batch_size, token_size, token_ms
    excluded: tuple[dict, ...]
    derived: tuple[dict, ...]
    duplicates_dropped: int


def _impossible_reason(pre: pl.DataFrame, model: str, hw: str, tp: int) -> str | None:
    """llama2-70b at tp 2, batch 64: faster prefill than at batch 32 is physically impossible."""
    def t(b):
        s = pre.filter((pl.col("model") == model) & (pl.col("hardware") == hw)
                       & (pl.col("tp") == tp) & (pl.col("prompt_size") == 512)
                       & (pl.col("batch_size") == b))["prompt_ms"]
        return float(s[0]) if len(s) else None
    t32, t64 = t(32), t(64)
    if t32 is None or t64 is None or t64 >= t32:
        return None
    return (f"prefill of 64 x 512 tokens measured {t64:.0f} ms, {t32 / t64:.1f}x faster than "
            f"32 x 512 ({t32:.0f} ms): physically impossible (twice the work cannot take less "
            "time); ~138 GB of weights on 2 x 80 GB leaves no room for this batch (likely OOM)")


@lru_cache(maxsize=1)
def splitwise_data() -> SplitwiseData:
    raw = pl.read_csv(SPLITWISE_CSV)
    need = {"model", "hardware", "prompt_size", "batch_size", "token_size", "prompt_time",
            "token_time", "tensor_parallel"}
    if not need <= set(raw.columns):
        raise InputError(SPLITWISE_CSV, f"missing columns {sorted(need - set(raw.columns))}")
    d = raw.unique(maintain_order=True).rename({"tensor_parallel": "tp"})
    dups = raw.height - d.height
    pre = (d.group_by("model", "hardware", "tp", "prompt_size", "batch_size")
           .agg(pl.col("prompt_time").median().alias("prompt_ms"))
           .sort("model", "hardware", "tp", "prompt_size", "batch_size"))
    dec = (d.group_by("model", "hardware", "tp", "prompt_size", "batch_size", "token_size")
           .agg(pl.col("token_time").median().alias("token_ms"))
           .sort("model", "hardware", "tp", "prompt_size", "batch_size", "token_size"))
    derived = []
    for hw, (base, ratio) in DERIVED_GROUPS.items():
        a = d.filter(pl.col("hardware") == hw).sort("model", "tp", "prompt_size", "batch_size",
                                                     "token_size", "prompt_time")
        b = d.filter(pl.col("hardware") == base).sort("model", "tp", "prompt_size", "batch_size",
                                                       "token_size", "prompt_time")
        if a.height == b.height and a.height:
            pr = (a["prompt_time"] / b["prompt_time"]).to_numpy()
            tr = (a["token_time"] / b["token_time"]).to_numpy()
            if np.allclose(pr, ratio, rtol=1e-6) and np.allclose(tr, 1.0, rtol=1e-9):
                for (m, tp), _ in a.group_by(["model", "tp"], maintain_order=True):
                    derived.append({"config": f"{m}/{hw}/tp{tp}",
                                    "reason": f"derived, not measured: prompt_time = {ratio} x "
                                              f"{base}, token_time identical (checked on every row)"})
                pre = pre.filter(pl.col("hardware") != hw)
                dec = dec.filter(pl.col("hardware") != hw)
    excluded = []
    for (m, hw, tp), _ in pre.group_by(["model", "hardware", "tp"], maintain_order=True):
        reason = _impossible_reason(pre, m, hw, tp)
        if reason:
            excluded.append({"config": f"{m}/{hw}/tp{tp}/batch64", "reason": reason})
            drop = ((pl.col("model") == m) & (pl.col("hardware") == hw) & (pl.col("tp") == tp)
                    & (pl.col("batch_size") == 64))
            pre, dec = pre.filter(~drop), dec.filter(~drop)
    return SplitwiseData(pre, dec, tuple(excluded), tuple(derived), dups)


def _prefill_xy(g: pl.DataFrame):
    p = g["prompt_size"].to_numpy().astype(float)
    b = g["batch_size"].to_numpy().astype(float)
    return prefill_features(p * b, b * p * p, b), g["prompt_ms"].to_numpy()


def _decode_xy(g: pl.DataFrame):
    # token_time is the mean over a generation of token_size tokens: mean context = P + tokens/2
    ctx = g["prompt_size"].to_numpy() + g["token_size"].to_numpy() / 2.0
    return decode_features(g["batch_size"].to_numpy(), ctx), g["token_ms"].to_numpy()


@lru_cache(maxsize=1)
def splitwise_fits() -> dict[Key, tuple[PrefillFit, DecodeFit]]:
    sw = splitwise_data()
    out = {}
    for (m, hw, tp), g in sw.prefill.group_by(["model", "hardware", "tp"], maintain_order=True):
        x, y = _prefill_xy(g)
        gd = sw.decode.filter((pl.col("model") == m) & (pl.col("hardware") == hw)
                              & (pl.col("tp") == tp))
        xd, yd = _decode_xy(gd)
        out[(m, SPLITWISE_GPU[hw], int(tp))] = (PrefillFit(tuple(fit_relative(x, y))),
                                                DecodeFit(tuple(fit_relative(xd, yd))))
    return out


def _summary(errs: list[np.ndarray], loo: list[np.ndarray]) -> dict[str, float]:
    e, l_ = np.concatenate(errs), np.concatenate(loo)
    return {"median_abs_pct_error": round(float(np.median(e)), 3),
            "max_abs_pct_error": round(float(e.max()), 3),
            "loo_median_abs_pct_error": round(float(np.median(l_)), 3),
            "loo_max_abs_pct_error": round(float(l_.max()), 3),
            "points": int(len(e))}


def check_splitwise() -> dict:
    sw = splitwise_data()
    pe, pl_, de, dl, groups = [], [], [], [], []
    for (m, hw, tp), g in sw.prefill.group_by(["model", "hardware", "tp"], maintain_order=True):
        x, y = _prefill_xy(g)
        pe.append(_pct(x @ fit_relative(x, y), y))
        pl_.append(_loo(x, y))
        gd = sw.decode.filter((pl.col("model") == m) & (pl.col("hardware") == hw)
                              & (pl.col("tp") == tp))
        xd, yd = _decode_xy(gd)
        de.append(_pct(xd @ fit_relative(xd, yd), yd))
        dl.append(_loo(xd, yd))
        groups.append(f"{m}/{hw}/tp{tp}")
    return {"prefill": _summary(pe, pl_), "decode": _summary(de, dl),
            "configs": int(sw.decode.height), "prefill_configs": int(sw.prefill.height),
            "groups": groups, "excluded": list(sw.excluded), "derived": list(sw.derived),
            "duplicate_rows_dropped": sw.duplicates_dropped}


# ---------------------------------------------------------------- Vidur

def _vidur_phase(g: pl.DataFrame, phase: str):
    if phase == "decode":
        g = g.filter(pl.col("num_tokens") <= VIDUR_DECODE_MAX_TOKENS)
    else:
        g = g.filter(pl.col("num_tokens") >= VIDUR_PREFILL_MIN_TOKENS)
    t = g["num_tokens"].to_numpy().astype(float)
    return np.column_stack([np.ones_like(t), t]), g["linear_ms"].to_numpy()


@lru_cache(maxsize=1)
def vidur_table() -> pl.DataFrame:
    return pl.read_csv(VIDUR_CSV)


@lru_cache(maxsize=1)
def vidur_fits() -> dict[Key, tuple[LinearFit, LinearFit]]:
    """(model, gpu, tp) -> (prefill linear-op fit, decode linear-op fit), ms vs tokens."""
    out = {}
    for (gpu, m, tp), g in vidur_table().group_by(["gpu", "model", "tp"], maintain_order=True):
        fits = []
        for phase in ("prefill", "decode"):
            x, y = _vidur_phase(g, phase)
            fits.append(LinearFit(*fit_relative(x, y)))
        out[(m, gpu, int(tp))] = tuple(fits)
    return out


def check_vidur() -> dict:
    res, groups = {}, []
    for phase in ("prefill", "decode"):
        errs, loo = [], []
        for (gpu, m, tp), g in vidur_table().group_by(["gpu", "model", "tp"], maintain_order=True):
            x, y = _vidur_phase(g, phase)
            errs.append(_pct(x @ fit_relative(x, y), y))
            loo.append(_loo(x, y))
            if phase == "prefill":
                groups.append(f"{m}/{gpu}/tp{tp}")
        res[phase] = _summary(errs, loo)
    res.update({"configs": int(vidur_table().height), "groups": groups, "excluded": [],
                "note": "linear layers only (Vidur mlp.csv); attention and overhead terms are "
                        "added by torta.fleet.perf and checked against Splitwise under 'composed'"})
    return res
