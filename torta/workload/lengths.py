"""Token-length pools: real (prompt, output) pairs drawn with replacement for synthesized requests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from torta.errors import InputError


@dataclass(frozen=True)
class LengthPool:
    """Paired per-request token lengths of a real trace; `source` names it."""

    source: str
    prompt_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64

    def __post_init__(self) -> None:
        if len(self.prompt_tokens) != len(self.output_tokens) or len(self.prompt_tokens) == 0:
            raise ValueError(f"length pool {self.source!r}: need equal, non-empty token arrays")

    @property
    def mean_prompt_tokens(self) -> float:
        return float(np.mean(self.prompt_tokens))

    @property
    def mean_output_tokens(self) -> float:
        return float(np.mean(self.output_tokens))

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(0, len(self.prompt_tokens), size=n)
        return self.prompt_tokens[idx], self.output_tokens[idx]


_TRACE_FILES = {
    "azure-2023-conv": "AzureLLMInferenceTrace_conv.csv",
    "azure-2023-code": "AzureLLMInferenceTrace_code.csv",
}


def _from_frame(name: str, df: pl.DataFrame) -> LengthPool:
    return LengthPool(name, df["prompt_tokens"].cast(pl.Int64).to_numpy(),
                      df["output_tokens"].cast(pl.Int64).to_numpy())


def read_azure_csv(path: str | Path, name: str) -> LengthPool:
    """Read an Azure LLM 2023 CSV (TIMESTAMP, ContextTokens, GeneratedTokens) into a pool."""
    path = Path(path)
    try:
        df = pl.read_csv(path, schema_overrides={"ContextTokens": pl.Int64,
                                                 "GeneratedTokens": pl.Int64})
    except pl.exceptions.PolarsError as exc:
        raise InputError(path, f"not an Azure LLM 2023 CSV: {exc}") from None
    for col in ("ContextTokens", "GeneratedTokens"):
        if col not in df.columns:
            raise InputError(path, f"missing column {col}", field=col)
        bad = df[col].is_null() | (df[col] < 0)
        if bad.any():
            raise InputError(path, "expected a non-negative integer", line=int(bad.arg_true()[0]) + 2,
                             field=col)
    return LengthPool(name, df["ContextTokens"].to_numpy(), df["GeneratedTokens"].to_numpy())


def load_length_pool(name: str = "azure-2023-conv") -> LengthPool:
    """The named real trace's lengths: via `torta.traces.load_trace` where available, else the
    shipped CSV under `traces/azure_llm_2023/`."""
    try:
        from torta.traces import load_trace  # built by the ingest layer
    except ImportError:
        load_trace = None
    if load_trace is not None:
        return _from_frame(name, load_trace(name))
    if name not in _TRACE_FILES:
        from torta.errors import UnknownNameError
        raise UnknownNameError("length trace", name, list(_TRACE_FILES))
    root = Path(__file__).resolve().parents[2] / "traces"
    for cand in (root / "azure_llm_2023" / _TRACE_FILES[name], root / _TRACE_FILES[name]):
        if cand.exists():
            return read_azure_csv(cand, name)
    raise InputError(root / "azure_llm_2023" / _TRACE_FILES[name], "length trace not found")
