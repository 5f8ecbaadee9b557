"""Derive `torta/data/fleet/vidur_linear_ops.csv` from Vidur's per-operator profiles.

Vidur (Agrawal et al., MLSys 2024; github.com/microsoft/vidur @ 7d47513,
`data/profiling/compute/<gpu>/meta-llama/Llama-2-<size>-hf/mlp.csv`, MIT) times the *linear* parts of
one transformer layer per `num_tokens` and tensor-parallel degree. We keep one number per
(gpu, model, tp, num_tokens): the whole model's linear time

    linear_ms = n_layers * (input_layernorm + attn_pre_proj + attn_rope + attn_post_proj
                            + post_attention_layernorm + mlp_up_proj + mlp_act + mlp_down_proj
                            + 2 * add) + emb

from the per-op *median* columns (median over the repeated rows of a configuration). Attention
kernels, all-reduce and CPU overhead are not in these files; `torta.fleet.fit` adds them.

Run: `python -m torta.fleet.vidur_summary ../shared/fleet/vidur_profiles torta/data/fleet/vidur_linear_ops.csv`
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

LAYER_OPS = ["input_layernorm", "attn_pre_proj", "attn_rope", "attn_post_proj",
             "post_attention_layernorm", "mlp_up_proj", "mlp_act", "mlp_down_proj"]
N_LAYERS = {"llama2-7b": 32, "llama2-70b": 80}  # HF config.json num_hidden_layers


def summarize(profile_dir: Path) -> pl.DataFrame:
    frames = []
    for path in sorted(profile_dir.glob("*_llama2-*_mlp.csv")):
        gpu, model = path.name.split("_")[:2]
        d = pl.read_csv(path)
        layer = sum(pl.col(f"time_stats.{op}.median") for op in LAYER_OPS) \
            + 2 * pl.col("time_stats.add.median")
        total = N_LAYERS[model] * layer + pl.col("time_stats.emb.median")
        frames.append(
            d.select(pl.lit(gpu.upper()).alias("gpu"), pl.lit(model).alias("model"),
                     pl.col("num_tensor_parallel_workers").alias("tp"),
                     pl.col("num_tokens"), total.alias("linear_ms"))
            .group_by("gpu", "model", "tp", "num_tokens").agg(pl.col("linear_ms").median()))
    return pl.concat(frames).sort("gpu", "model", "tp", "num_tokens")


if __name__ == "__main__":
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    out = summarize(src)
    tmp = dst.with_suffix(".tmp")
    out.write_csv(tmp, float_precision=5)
    tmp.replace(dst)
    print(f"wrote {dst}: {out.height} rows", file=sys.stderr)
