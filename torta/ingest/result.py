"""The value every adapter returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

ON_BAD_ROWS = ("error", "quarantine")

# Reasons a row can be left out of the canonical frame without being an error.
BLANK_LINE = "blank_line"
ZERO_TOKENS_FAILURE = "zero_tokens_failure"


@dataclass(frozen=True)
class IngestResult:
    """Canonical rows plus what was left out and why.

    `frame` follows REQUEST_SCHEMA (or RATES_SCHEMA for rate traces, `kind == "rates"`).
    `dropped_rows` counts every data line not in `frame` (blank lines, documented failure rows such
    as BurstGPT's zero-token responses, and quarantined bad rows); `drop_reasons` splits it by reason.
    `quarantine` holds the bad rows (line, reason, field, expected, raw fields) in quarantine mode.
    """

    frame: pl.DataFrame
    dropped_rows: int
    drop_reasons: dict[str, int]
    quarantine: pl.DataFrame | None
    path: Path
    fmt: str
    kind: str = "requests"  # "requests" (REQUEST_SCHEMA) or "rates" (RATES_SCHEMA)

    @property
    def rows(self) -> int:
        return self.frame.height

    @property
    def quarantined_rows(self) -> int:
        return 0 if self.quarantine is None else self.quarantine.height
