"""TORTA: trace replay and two-layer (macro OT/RL + micro allocator) scheduling of LLM inference
on a modeled geo-distributed GPU fleet. Re-implementation of arXiv:2507.10259.

The library never imports Dagster or DuckDB; `pipelines/` holds the orchestration glue.
"""

from torta.determinism import pin_blas_kernels

__version__ = "0.1.0"

pin_blas_kernels()  # before numpy loads OpenBLAS: the same bytes on every x86-64 machine (torta.determinism)
