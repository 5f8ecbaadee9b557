"""Guess a raw trace's format from its name or first line (used for files dropped into
`traces/incoming/`). A `<format>__` file-name prefix always wins."""

from __future__ import annotations

import json
from pathlib import Path

from torta.errors import InputError
from torta.ingest.formats import FORMATS


def detect_format(path: str | Path) -> str:
    p = Path(path)
    if "__" in p.name:
        prefix = p.name.split("__", 1)[0]
        if prefix in FORMATS:
            return prefix
    if p.suffix.lower() == ".parquet":
        raise InputError(p, "cannot guess the format of a Parquet file; name it '<format>__name.parquet' "
                            f"(formats: {', '.join(sorted(FORMATS))})")
    try:
        with open(p, encoding="utf-8", errors="replace") as fh:
            first = fh.readline().strip()
            second = fh.readline().strip()
    except OSError as exc:
        raise InputError(p, f"cannot read: {exc}") from None
    if first.startswith("{"):
        try:
            keys = set(json.loads(first))
        except json.JSONDecodeError:
            keys = set()
        if {"timestamp", "input_length", "output_length"} <= keys:
            return "mooncake"
    cols = {c.strip() for c in first.split(",")}
    if {"TIMESTAMP", "ContextTokens", "GeneratedTokens"} <= cols:
        stamp = second.split(",", 1)[0]
        has_zone = stamp.endswith("Z") or "+" in stamp[10:] or stamp[19:].count("-") > 0
        return "azure-2024" if has_zone else "azure-2023"
    if {"Timestamp", "Request tokens", "Response tokens"} <= cols:
        return "burstgpt"
    raise InputError(p, "cannot guess the trace format from its header "
                        f"{first[:80]!r}; name the file '<format>__name.ext' (formats: {', '.join(sorted(FORMATS))})",
                     line=1)
