"""Ingestion: raw trace files -> canonical request (or rate) frames.

    from torta.ingest import ingest, summarize, write_parquet_atomic, FORMATS
    result = ingest("azure-2023", "traces/azure-2023/AzureLLMInferenceTrace_conv.csv")
    result.frame          # REQUEST_SCHEMA
    write_parquet_atomic(result.frame, "out/conv.parquet")
"""

from __future__ import annotations

from .formats import FORMATS, ingest
from .mapping import ColumnMapping
from .output import quarantine_path, summarize, write_parquet_atomic
from .requests import RequestLayout, read_requests
from .result import IngestResult

__all__ = ["FORMATS", "ColumnMapping", "IngestResult", "RequestLayout", "ingest", "quarantine_path",
           "read_requests", "summarize", "write_parquet_atomic"]
