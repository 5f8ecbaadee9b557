"""`torta fleet perf --check`: fit errors per table and phase, in-sample and leave-one-out."""

from __future__ import annotations

import numpy as np

from torta.fleet.fit import SPLITWISE_GPU, check_splitwise, check_vidur, splitwise_data
from torta.fleet.perf import _build, calibration  # noqa: F401  (calibration shared)


def check_composed() -> dict:
    """How well the composed tier (used for unmeasured pairs) predicts the Splitwise medians.

    For each measured group the composed model is built *as if* Splitwise had not
    been measured (Vidur linear layers + attention + calibrated overhead). The overhead is
    calibrated on the same table, so this is a consistency check, not a hold-out.
    """
    from torta.fleet import perf as perf_mod

    sw = splitwise_data()
    pe, de = [], []
    for (m, hw, tp), g in sw.prefill.group_by(["model", "hardware", "tp"], maintain_order=True):
        gpu = SPLITWISE_GPU[hw]
        try:
            r = perf_mod._build_composed(m, gpu, int(tp))
        except KeyError:
            continue
        p = g["prompt_size"].to_numpy().astype(float)
        b = g["batch_size"].to_numpy().astype(float)
        y = g["prompt_ms"].to_numpy()
        pred = np.array([r.prefill_ms(pp * bb, bb * pp * pp) for pp, bb in zip(p, b)])
        pe.append(np.abs(pred - y) / y * 100)
        gd = sw.decode.filter((sw.decode["model"] == m) & (sw.decode["hardware"] == hw)
                              & (sw.decode["tp"] == tp))
        ctx = gd["prompt_size"].to_numpy() + gd["token_size"].to_numpy() / 2.0
        bd = gd["batch_size"].to_numpy().astype(float)
        yd = gd["token_ms"].to_numpy()
        predd = np.array([r.decode_ms(bb, c) for bb, c in zip(bd, ctx)])
        de.append(np.abs(predd - yd) / yd * 100)
    out = {}
    for phase, errs in (("prefill", pe), ("decode", de)):
        e = np.concatenate(errs) if errs else np.zeros(1)
        out[phase] = {"median_abs_pct_error": round(float(np.median(e)), 3),
                      "max_abs_pct_error": round(float(e.max()), 3), "points": int(len(e))}
    out["note"] = ("composed tier (Vidur linear + attention + overhead calibrated on Splitwise) "
                   "against the Splitwise medians (llama2-70b via Vidur, bloom-176b via roofline); "
                   "a consistency check, not a hold-out")
    return out


def check_roofline_blis() -> dict:
    """A plain roofline with the catalog's BLIS efficiencies (gpus.csv `mfu_prefill`,
    `bw_eff_decode`) against the Splitwise medians, for reference: why the composed tier is
    calibrated instead. prefill = 2*params*T / (tp*peak*mfu) + 2*L*d*S / (tp*peak*mfu);
    decode = (weights + B*ctx*kv_bytes) / (tp*HBM*bw_eff) + 2*params*B / (tp*peak*mfu)."""
    from torta.fleet import catalog

    sw = splitwise_data()
    pe, de = [], []
    for (m, hw, tp), g in sw.prefill.group_by(["model", "hardware", "tp"], maintain_order=True):
        ms, gs = catalog.model(m), catalog.gpu(SPLITWISE_GPU[hw])
        flops = gs.tflops_fp16 * 1e12 * gs.mfu_prefill * tp
        bw = gs.hbm_tb_s * 1e12 * gs.bw_eff_decode * tp
        p = g["prompt_size"].to_numpy().astype(float)
        b = g["batch_size"].to_numpy().astype(float)
        pred = (2 * ms.params * p * b + 2 * ms.n_layers * ms.d_model * b * p * p) / flops * 1e3
        y = g["prompt_ms"].to_numpy()
        pe.append(np.abs(pred - y) / y * 100)
        gd = sw.decode.filter((sw.decode["model"] == m) & (sw.decode["hardware"] == hw)
                              & (sw.decode["tp"] == tp))
        bd = gd["batch_size"].to_numpy().astype(float)
        ctx = gd["prompt_size"].to_numpy() + gd["token_size"].to_numpy() / 2.0
        predd = ((ms.weight_bytes + bd * ctx * ms.kv_bytes_per_token) / bw
                 + 2 * ms.params * bd / flops) * 1e3
        yd = gd["token_ms"].to_numpy()
        de.append(np.abs(predd - yd) / yd * 100)
    out = {}
    for phase, errs in (("prefill", pe), ("decode", de)):
        e = np.concatenate(errs)
        out[phase] = {"median_abs_pct_error": round(float(np.median(e)), 3),
                      "max_abs_pct_error": round(float(e.max()), 3), "points": int(len(e))}
    out["note"] = "uncalibrated roofline x BLIS MFU against the Splitwise medians (reference only)"
    return out


def perf_check() -> dict:
    return {"tables": {"splitwise": check_splitwise(), "vidur": check_vidur(),
                       "composed": check_composed(), "roofline_blis": check_roofline_blis()}}
