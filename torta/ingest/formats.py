"""One small adapter per trace format, selected by name through the plain registry `FORMATS`.

Every adapter has the signature `(path, *, source, on_bad_rows, mapping) -> IngestResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torta.errors import UnknownNameError

from .mapping import ColumnMapping
from .requests import RequestLayout, read_requests
from .result import IngestResult
from .servegen import read_servegen

Adapter = Callable[..., IngestResult]

# Azure LLM inference traces 2023 (Splitwise, ISCA'24) and 2024 (DynamoLLM, HPCA'25):
# TIMESTAMP (0-7 fractional digits, optional UTC offset; none = UTC), ContextTokens, GeneratedTokens.
AZURE = RequestLayout(timestamp="TIMESTAMP", timestamp_kind="iso", prompt="ContextTokens", output="GeneratedTokens")

# BurstGPT (HPMLL/BurstGPT): Timestamp in s from the trace start; failed requests are logged with
# 0 Response tokens (source README) -> dropped with reason zero_tokens_failure and counted.
BURSTGPT = RequestLayout(timestamp="Timestamp", timestamp_kind="s", prompt="Request tokens",
                         output="Response tokens", model="Model", extras=(("Log Type", "log_type", "string"),),
                         drop_zero_output=True)

# Mooncake (kvcache-ai/Mooncake, FAST'25): JSONL, timestamp in ms, hash_ids = 512-token prefix blocks.
MOONCAKE = RequestLayout(timestamp="timestamp", timestamp_kind="ms", prompt="input_length", output="output_length",
                         extras=(("hash_ids", "hash_ids", "int_list"),), file_kind="jsonl")


def _no_mapping(fmt: str, mapping: ColumnMapping | None) -> None:
    if mapping is not None:
        raise ValueError(f"format {fmt!r} has a fixed layout; a column mapping is only for the 'generic' format")


def azure_2023(path: str | Path, *, source: str | None = None, on_bad_rows: str = "error",
               mapping: ColumnMapping | None = None) -> IngestResult:
    _no_mapping("azure-2023", mapping)
    return read_requests(path, AZURE, fmt="azure-2023", source=source, on_bad_rows=on_bad_rows)


def azure_2024(path: str | Path, *, source: str | None = None, on_bad_rows: str = "error",
               mapping: ColumnMapping | None = None) -> IngestResult:
    _no_mapping("azure-2024", mapping)
    return read_requests(path, AZURE, fmt="azure-2024", source=source, on_bad_rows=on_bad_rows)


def burstgpt(path: str | Path, *, source: str | None = None, on_bad_rows: str = "error",
             mapping: ColumnMapping | None = None) -> IngestResult:
    _no_mapping("burstgpt", mapping)
    return read_requests(path, BURSTGPT, fmt="burstgpt", source=source, on_bad_rows=on_bad_rows)


def mooncake(path: str | Path, *, source: str | None = None, on_bad_rows: str = "error",
             mapping: ColumnMapping | None = None) -> IngestResult:
    _no_mapping("mooncake", mapping)
    return read_requests(path, MOONCAKE, fmt="mooncake", source=source, on_bad_rows=on_bad_rows)


def servegen(path: str | Path, *, source: str | None = None, on_bad_rows: str = "error",
             mapping: ColumnMapping | None = None) -> IngestResult:
    _no_mapping("servegen", mapping)
    return read_servegen(path, fmt="servegen", source=source, on_bad_rows=on_bad_rows)


def generic(path: str | Path, *, source: str | None = None, on_bad_rows: str = "error",
            mapping: ColumnMapping | None = None) -> IngestResult:
    if mapping is None:
        raise ValueError("format 'generic' needs a column mapping: --timestamp-col, --prompt-col, --output-col "
                         "(and --timestamp-unit or --timestamp-format), or --mapping FILE.toml")
    p = Path(path)
    return read_requests(p, mapping.layout(p), fmt="generic", source=source, on_bad_rows=on_bad_rows)


FORMATS: dict[str, Adapter] = {
    "azure-2023": azure_2023,
    "azure-2024": azure_2024,
    "burstgpt": burstgpt,
    "mooncake": mooncake,
    "servegen": servegen,
    "generic": generic,
}


def ingest(fmt: str, path: str | Path, *, mapping: ColumnMapping | None = None, on_bad_rows: str = "error",
           source: str | None = None) -> IngestResult:
    """Read a raw trace of format `fmt` (a key of FORMATS) into canonical rows.

    Raises UnknownNameError for an unknown format (listing the valid ones) and InputError (naming file,
    line, field and what was expected) for bad input; `on_bad_rows="quarantine"` sets bad rows aside
    in `result.quarantine` instead.
    """
    try:
        adapter = FORMATS[fmt]
    except KeyError:
        raise UnknownNameError("trace format", fmt, list(FORMATS)) from None
    return adapter(path, source=source, on_bad_rows=on_bad_rows, mapping=mapping)
