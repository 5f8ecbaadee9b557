"""The GPU latency model: `FittedPerfModel` implements `torta.fleet.model.PerfModel`.

For each (model, gpu, tp) the first available tier answers:

1. **splitwise** - the per-group fit to the measured Splitwise table (`torta.fleet.fit`):
   llama2-70b and bloom-176b on A100/H100 at tp 2/4/8.
2. **composed** - linear layers from the Vidur fit where profiled (llama2-7b/70b on A100, H100,
   A40, tp 1/2/4/8), otherwise a roofline of the linear layers
   (`max(weights / (tp * HBM * eta_w), 2 * params * T / (tp * peak * mfu))`, with eta_w and mfu
   calibrated per GPU against Vidur: the median over its profiled groups, or over all profiled
   GPUs for a GPU Vidur did not profile); plus
   - attention: prefill `2 * n_layers * d_model * S / (tp * peak * mfu_attn)` FLOP-bound
     (causal QK^T and AV), decode `batch * context * kv_bytes / (tp * HBM * eta_kv)` bytes-bound;
   - overhead per iteration: `n_layers * overhead_per_layer_ms(phase, tp)` (kernel launches,
     all-reduce, scheduler CPU time).
   mfu_attn = ATTN_MFU (FlashAttention-2's low end); eta_kv = the GPU's calibrated eta_w (the
   KV cache is streamed like the weights). Splitwise's own batch*context and S coefficients are
   not transferred: context varies there only at batch 1, where that term is not bandwidth-bound.
   Decode overhead_per_layer is the median residual of the Splitwise fit of llama2-70b on the same
   GPU and tp over Vidur linear + attention on the measured grid; prefill is calibrated as
   `(k + k_step * ramp(T)) * (linear + attention) + n_layers * o` (non-negative least squares on
   the same grid: the Splitwise engine is ~1.1-2.3x slower per prompt token than Vidur's kernels,
   and slower again past the 2,048-4,096-token regime step). GPUs/tps without
   Splitwise data take the median over calibrated ones. This keeps measured and unmeasured
   (model, gpu) pairs on the same engine footing (Splitwise's engine is slower than Vidur's floor).

The catalog's BLIS efficiencies (`mfu_prefill`, `bw_eff_decode` in gpus.csv) are not used by
these tiers: a plain roofline with them misses the Splitwise medians by ~29 % (prefill) and ~49 %
(decode) median (`torta fleet perf --check`, table `roofline_blis`), hence the calibration.

Memory: KV capacity = (tp * memory * GPU_MEMORY_UTILIZATION - weights) / kv_bytes_per_token;
the largest batch is min(MAX_BATCH, capacity // context). A model whose weights do not fit is a
`ModelDoesNotFitError` from every latency method.

Load time: `weights / min(tp * host_link, SERVER_LOAD_GB_S)`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from torta.fleet import catalog
from torta.fleet.fit import (RAMP_HI_TOKENS, RAMP_LO_TOKENS, DecodeFit, LinearFit, PrefillFit,
                             fit_relative, ramp, splitwise_data, splitwise_fits, vidur_fits)

# vLLM's default `gpu_memory_utilization` (docs.vllm.ai EngineArgs): share of GPU memory for
# weights + KV cache; the rest is activations and CUDA context.
GPU_MEMORY_UTILIZATION = 0.9
# vLLM's default `max_num_seqs` (docs.vllm.ai EngineArgs): cap on running sequences per replica.
MAX_BATCH = 256
# Effective checkpoint load rate of one server (storage/DRAM -> GPUs): ServerlessLLM (Fu et al.,
# OSDI 2024) reports LLaMA-2-70B loads of 84 s with Safetensors (~1.6 GB/s) and a 3.6-8.2x faster
# loader; Anyscale (blog "Loading Llama-2 70b 20x faster", 2023) loads it in ~20 s (~6.9 GB/s).
SERVER_LOAD_GB_S = 6.5
# Attention kernels' fraction of peak FLOP/s in prefill: FlashAttention-2 (Dao, 2023) reaches
# 50-73 % of the A100's peak in the forward pass; we take the low end.
ATTN_MFU = 0.5


class ModelDoesNotFitError(ValueError):
    """The model's weights (plus a minimal KV cache) do not fit on tp GPUs of that type."""


@dataclass(frozen=True)
class Calibration:
    eta_w: dict[str, float]  # gpu -> fraction of HBM bandwidth reading weights (decode linear)
    mfu: dict[str, float]  # gpu -> fraction of peak FLOP/s in prefill linear layers
    mfu_attn: dict[str, float]  # gpu -> fraction of peak FLOP/s for prefill attention
    eta_kv: dict[str, float]  # gpu -> fraction of HBM bandwidth reading KV cache in decode
    overhead_ms_per_layer: dict[tuple[str, str, int], float]  # (phase, gpu, tp) -> ms per layer
    prefill_scale: dict[tuple[str, int], float]  # (gpu, tp) -> engine slowdown of prefill
    prefill_step: dict[tuple[str, int], float]  # (gpu, tp) -> extra slowdown above 4,096 tokens

    def scale(self, gpu: str, tp: int, table: str = "prefill_scale") -> float:
        t = getattr(self, table)
        if (gpu, tp) in t:
            return t[(gpu, tp)]
        same = [v for (_, k), v in t.items() if k == tp]
        return float(np.median(same if same else list(t.values())))

    def get(self, table: dict, gpu: str) -> float:
        return table[gpu] if gpu in table else float(np.median(list(table.values())))

    def overhead(self, phase: str, gpu: str, tp: int) -> float:
        t = self.overhead_ms_per_layer
        if (phase, gpu, tp) in t:
            return t[(phase, gpu, tp)]
        same_tp = [v for (p, _, k), v in t.items() if p == phase and k == tp]
        if same_tp:
            return float(np.median(same_tp))
        # tp not calibrated (e.g. tp 1: no all-reduce): the smallest calibrated tp's median
        tps = sorted({k for (p, _, k) in t if p == phase})
        near = min(tps, key=lambda k: (abs(k - tp), k))
        return float(np.median([v for (p, _, k), v in t.items() if p == phase and k == near]))


def _roofline_linear(m: catalog.ModelSpec, g: catalog.GpuSpec, tp: int, eta_w: float,
                     mfu: float) -> tuple[float, float]:
    """(ms to stream weights once, ms of linear FLOPs per token) for one replica."""
    w_ms = m.weight_bytes / tp / (g.hbm_tb_s * 1e12 * eta_w) * 1e3
    per_tok_ms = 2.0 * m.params / tp / (g.tflops_fp16 * 1e12 * mfu) * 1e3
    return w_ms, per_tok_ms


@lru_cache(maxsize=1)
def calibration() -> Calibration:
    vf = vidur_fits()
    eta_w: dict[str, list[float]] = {}
    mfu: dict[str, list[float]] = {}
    for (mname, gname, tp), (pre, dec) in vf.items():
        m, g = catalog.model(mname), catalog.gpu(gname)
        w_ms, tok_ms = _roofline_linear(m, g, tp, 1.0, 1.0)
        eta_w.setdefault(gname, []).append(w_ms / dec(1.0))
        mfu.setdefault(gname, []).append(tok_ms / pre.b)
    sw = splitwise_data()
    over: dict[tuple[str, str, int], float] = {}
    scale: dict[tuple[str, int], float] = {}
    step: dict[tuple[str, int], float] = {}
    mfu_attn = {g: ATTN_MFU for g in eta_w}
    eta_kv = {g: float(np.median(v)) for g, v in eta_w.items()}
    for (mname, gname, tp), (pfit, dfit) in splitwise_fits().items():
        if (mname, gname, tp) not in vf:
            continue
        m, g = catalog.model(mname), catalog.gpu(gname)
        vpre, vdec = vf[(mname, gname, tp)]
        d_coef = 2.0 * m.n_layers * m.d_model / tp / (g.tflops_fp16 * 1e12 * mfu_attn[gname]) * 1e3
        c_coef = m.kv_bytes_per_token / tp / (g.hbm_tb_s * 1e12 * eta_kv[gname]) * 1e3
        # overhead: residual of the Splitwise fit over Vidur linear + attention, on the grid
        hw = {v: k for k, v in _SW_GPU.items()}[gname]
        pre = sw.prefill.filter((sw.prefill["model"] == mname) & (sw.prefill["hardware"] == hw)
                                & (sw.prefill["tp"] == tp))
        P = pre["prompt_size"].to_numpy().astype(float)
        B = pre["batch_size"].to_numpy().astype(float)
        T, S = P * B, B * P * P
        # prefill: Splitwise ~ k * (linear + attention) + n_layers * o, fitted (k, o >= 0)
        y = np.array([pfit(t, s, b) for t, s, b in zip(T, S, B)])
        base = np.array([vpre(t) + d_coef * s for t, s in zip(T, S)])
        k, k_step, o = fit_relative(
            np.column_stack([base, ramp(T) * base, np.full_like(base, m.n_layers)]), y)
        scale[(gname, tp)] = float(k)
        step[(gname, tp)] = float(k_step)
        over[("prefill", gname, tp)] = float(o)
        dec = sw.decode.filter((sw.decode["model"] == mname) & (sw.decode["hardware"] == hw)
                               & (sw.decode["tp"] == tp))
        Bd = dec["batch_size"].to_numpy().astype(float)
        C = dec["prompt_size"].to_numpy() + dec["token_size"].to_numpy() / 2.0
        res_d = [dfit(b, c) - vdec(b) - c_coef * b * c for b, c in zip(Bd, C)]
        over[("decode", gname, tp)] = max(0.0, float(np.median(res_d)) / m.n_layers)
    med = lambda d: {k: float(np.median(v)) for k, v in d.items()}  # noqa: E731
    return Calibration(med(eta_w), med(mfu), mfu_attn, eta_kv, over, scale, step)


_SW_GPU = {"a100-80gb": "A100", "h100-80gb": "H100"}


@dataclass(frozen=True)
class ReplicaModel:
    """Closed-form latency of one (model, gpu, tp) replica; `tier` says where it came from."""

    model: str
    gpu: str
    tp: int
    tier: str  # "splitwise" | "composed-vidur" | "composed-roofline"
    prefill_fit: PrefillFit | None
    decode_fit: DecodeFit | None
    lin_prefill: LinearFit | None  # composed tiers: linear layers vs tokens
    lin_decode: LinearFit | None
    prefill_attn_ms_per_sq: float  # ms per squared prompt token
    decode_kv_ms_per_token: float  # ms per context token in the batch
    prefill_overhead_ms: float
    decode_overhead_ms: float
    prefill_scale: float  # composed tiers: engine slowdown over linear + attention
    prefill_step: float  # composed tiers: extra slowdown once the batch passes 4,096 tokens
    kv_capacity_tokens: int
    load_s: float

    def prefill_ms(self, tokens: float, sum_sq: float | None) -> float:
        if tokens <= 0:
            return 0.0
        s = float(tokens) ** 2 if sum_sq is None else float(sum_sq)
        n = max(1.0, tokens * tokens / s) if s > 0 else 1.0
        if self.prefill_fit is not None:
            return self.prefill_fit(tokens, s, n)
        r = min(1.0, max(0.0, (tokens - RAMP_LO_TOKENS) / (RAMP_HI_TOKENS - RAMP_LO_TOKENS)))
        return ((self.prefill_scale + self.prefill_step * r)
                * (self.lin_prefill(tokens) + self.prefill_attn_ms_per_sq * s)
                + self.prefill_overhead_ms)

    def decode_ms(self, batch: float, context: float) -> float:
        if batch <= 0:
            return 0.0
        if self.decode_fit is not None:
            return self.decode_fit(batch, context)
        return (self.lin_decode(batch) + self.decode_kv_ms_per_token * batch * context
                + self.decode_overhead_ms)


def _build_composed(mname: str, gname: str, tp: int) -> ReplicaModel:
    """The composed tier even where Splitwise measured the pair (for `fleet perf --check`)."""
    return _build(mname, gname, tp, use_measured=False)


def _build(mname: str, gname: str, tp: int, use_measured: bool = True) -> ReplicaModel:
    m, g = catalog.model(mname), catalog.gpu(gname)
    if tp < 1:
        raise ValueError(f"tp must be >= 1, got {tp}")
    usable = tp * g.memory_bytes * GPU_MEMORY_UTILIZATION
    kv_tokens = int((usable - m.weight_bytes) // m.kv_bytes_per_token)
    if kv_tokens < 1:
        raise ModelDoesNotFitError(
            f"{mname} ({m.weight_bytes / 1e9:.1f} GB of weights) does not fit on {tp} x {gname} "
            f"({tp} x {g.memory_gib:g} GiB x {GPU_MEMORY_UTILIZATION} usable = {usable / 1e9:.1f} GB)")
    cal = calibration()
    load_s = m.weight_bytes / (min(tp * g.host_link_gb_s, SERVER_LOAD_GB_S) * 1e9)
    attn_sq = 2.0 * m.n_layers * m.d_model / tp / (
        g.tflops_fp16 * 1e12 * cal.get(cal.mfu_attn, gname)) * 1e3
    kv_tok = m.kv_bytes_per_token / tp / (g.hbm_tb_s * 1e12 * cal.get(cal.eta_kv, gname)) * 1e3
    common = dict(model=mname, gpu=gname, tp=tp, prefill_attn_ms_per_sq=attn_sq,
                  decode_kv_ms_per_token=kv_tok,
                  prefill_overhead_ms=m.n_layers * cal.overhead("prefill", gname, tp),
                  decode_overhead_ms=m.n_layers * cal.overhead("decode", gname, tp),
                  prefill_scale=cal.scale(gname, tp),
                  prefill_step=cal.scale(gname, tp, "prefill_step"),
                  kv_capacity_tokens=kv_tokens, load_s=load_s)
    sw = splitwise_fits().get((mname, gname, tp)) if use_measured else None
    if sw is not None:
        return ReplicaModel(tier="splitwise", prefill_fit=sw[0], decode_fit=sw[1],
                            lin_prefill=None, lin_decode=None, **common)
    vf = vidur_fits().get((mname, gname, tp))
    if vf is not None:
        return ReplicaModel(tier="composed-vidur", prefill_fit=None, decode_fit=None,
                            lin_prefill=vf[0], lin_decode=vf[1], **common)
    w_ms, tok_ms = _roofline_linear(m, g, tp, cal.get(cal.eta_w, gname), cal.get(cal.mfu, gname))
    # roofline linear part: decode is weight-streaming bound plus per-token FLOPs; prefill is the
    # larger of streaming the weights and the FLOPs (a + b*T approximated by its two asymptotes)
    return ReplicaModel(tier="composed-roofline", prefill_fit=None, decode_fit=None,
                        lin_prefill=_MaxLinear(w_ms, tok_ms), lin_decode=LinearFit(w_ms, tok_ms),
                        **common)


@dataclass(frozen=True)
class _MaxLinear:
    floor_ms: float
    per_token_ms: float

    def __call__(self, tokens: float) -> float:
        return max(self.floor_ms, self.per_token_ms * tokens)


@lru_cache(maxsize=256)
def replica(model: str, gpu: str, tp: int) -> ReplicaModel:
    return _build(model, gpu, int(tp))


class FittedPerfModel:
    """`PerfModel` backed by the fits; replicas are built lazily and cached (thread-safe reads)."""

    def replica(self, model: str, gpu: str, tp: int) -> ReplicaModel:
        return replica(model, gpu, tp)

    def prefill_ms(self, model: str, gpu: str, tp: int, batch_prompt_tokens: int,
                   sum_sq_prompt_tokens: float | None = None) -> float:
        return replica(model, gpu, tp).prefill_ms(batch_prompt_tokens, sum_sq_prompt_tokens)

    def decode_ms_per_iter(self, model: str, gpu: str, tp: int, batch: int,
                           context_tokens: float) -> float:
        """One decode iteration of `batch` sequences whose mean context is `context_tokens`."""
        return replica(model, gpu, tp).decode_ms(batch, context_tokens)

    def kv_capacity_tokens(self, model: str, gpu: str, tp: int) -> int:
        try:
            return replica(model, gpu, tp).kv_capacity_tokens
        except ModelDoesNotFitError:
            return 0

    def max_batch(self, model: str, gpu: str, tp: int, context_tokens: int) -> int:
        cap = self.kv_capacity_tokens(model, gpu, tp)
        return int(min(MAX_BATCH, cap // max(1, int(context_tokens))))

    def load_s(self, model: str, gpu: str, tp: int) -> float:
        return replica(model, gpu, tp).load_s

    def fits(self, model: str, gpu: str, tp: int) -> bool:
        return self.kv_capacity_tokens(model, gpu, tp) > 0


def default_perf_model() -> FittedPerfModel:
    return FittedPerfModel()
