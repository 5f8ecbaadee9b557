"""TORTA: trace replay and two-layer (macro OT/RL + micro allocator) scheduling of LLM inference
on a modeled geo-distributed GPU fleet. Re-implementation of arXiv:2507.10259.

The library never imports Dagster or DuckDB; `pipelines/` holds the orchestration glue.
"""

__version__ = "0.1.0"
