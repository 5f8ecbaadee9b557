"""Strict JSON for every `--json` document: NaN and infinities are an error naming the field, never the
bare `NaN` / `Infinity` tokens that `json.dumps` writes by default (they are not JSON)."""

from __future__ import annotations

import json
import math
from typing import Any

from torta.errors import NonFiniteError


def first_non_finite(doc: Any, path: str = "$") -> tuple[str, float] | None:
    """(JSON path, value) of the first NaN or infinite float in `doc`, else None."""
    if isinstance(doc, float):
        return None if math.isfinite(doc) else (path, doc)
    if isinstance(doc, dict):
        items = ((f"{path}.{k}", v) for k, v in doc.items())
    elif isinstance(doc, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(doc))
    else:
        return None
    for p, v in items:
        hit = first_non_finite(v, p)
        if hit is not None:
            return hit
    return None


def dumps(doc: Any, **kw) -> str:
    """json.dumps(allow_nan=False); NonFiniteError naming the field instead of an unreadable document."""
    hit = first_non_finite(doc)
    if hit is not None:
        raise NonFiniteError(f"JSON output field {hit[0]}", hit[1])
    return json.dumps(doc, allow_nan=False, **kw)
