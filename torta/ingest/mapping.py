"""Column mapping for the `generic` format: given by CLI flags or a TOML file."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from torta.errors import InputError

from .requests import FILE_KINDS, RequestLayout
from .timeparse import UNIT_SECONDS

_SUFFIX_KIND = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns of a CSV / JSONL / Parquet file hold each canonical field.

    `timestamp_unit` (s, ms, us) for numeric timestamps, or `timestamp_format` (strftime, e.g.
    "%Y-%m-%d %H:%M:%S%.f"; a format without %z is read as UTC), or neither: ISO timestamps.
    `epoch = true` says numeric timestamps are Unix times (fills timestamp_utc); otherwise they are
    relative. `file_format` defaults to the file's suffix. `block_ids`: a column of prefix block ids
    per request (a list of integers, e.g. "[1, 2, 3]" in a CSV), read into `hash_ids` as the Mooncake
    adapter does (`torta.sim.prefix`).
    """

    timestamp: str
    prompt_tokens: str
    output_tokens: str
    timestamp_unit: str | None = None
    timestamp_format: str | None = None
    model: str | None = None
    epoch: bool = False
    file_format: str | None = None
    separator: str = ","
    block_ids: str | None = None

    def __post_init__(self) -> None:
        if self.timestamp_unit is not None and self.timestamp_unit not in UNIT_SECONDS:
            raise ValueError(f"timestamp unit {self.timestamp_unit!r}; expected one of {sorted(UNIT_SECONDS)}")
        if self.timestamp_unit and self.timestamp_format:
            raise ValueError("give either a timestamp unit (numeric timestamps) or a timestamp format, not both")
        if self.file_format is not None and self.file_format not in FILE_KINDS:
            raise ValueError(f"file format {self.file_format!r}; expected one of {FILE_KINDS}")
        for name in ("timestamp", "prompt_tokens", "output_tokens"):
            if not getattr(self, name):
                raise ValueError(f"column mapping needs a {name} column name")

    @classmethod
    def from_dict(cls, data: dict, *, origin: str = "mapping") -> "ColumnMapping":
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"{origin}: unknown key(s) {unknown}; valid keys: {sorted(allowed)}")
        for k, v in data.items():
            want = bool if k == "epoch" else str
            if not isinstance(v, want) or (want is str and isinstance(v, bool)):
                raise ValueError(f"{origin}: key {k!r} must be {'true/false' if want is bool else 'a string'} "
                                 f"(a column name or option), got {v!r}")
        missing = [k for k in ("timestamp", "prompt_tokens", "output_tokens") if not data.get(k)]
        if missing:
            raise ValueError(f"{origin}: missing key(s) {missing}; a mapping needs timestamp, prompt_tokens, "
                             "output_tokens")
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path) -> "ColumnMapping":
        """Keys at top level or under a [mapping] table."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(p, "no such mapping file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(p, f"not valid TOML: {exc}") from None
        if isinstance(data.get("mapping"), dict):
            data = data["mapping"]
        try:
            return cls.from_dict(data, origin="mapping")
        except (TypeError, ValueError) as exc:
            raise InputError(p, str(exc)) from None

    def merged(self, **overrides) -> "ColumnMapping":
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def layout(self, path: Path) -> RequestLayout:
        kind = self.file_format or _SUFFIX_KIND.get(path.suffix.lower())
        if kind is None:
            raise InputError(path, f"cannot tell the file format from the suffix {path.suffix!r}; "
                                   f"set file_format to one of {FILE_KINDS}")
        if self.timestamp_unit:
            ts_kind = self.timestamp_unit
        elif self.timestamp_format:
            ts_kind = "strftime"
        else:
            ts_kind = "iso"
        sep = "\t" if path.suffix.lower() == ".tsv" and self.separator == "," else self.separator
        return RequestLayout(timestamp=self.timestamp, timestamp_kind=ts_kind, timestamp_format=self.timestamp_format,
                             prompt=self.prompt_tokens, output=self.output_tokens, model=self.model,
                             epoch=self.epoch, file_kind=kind, separator=sep,
                             extras=((self.block_ids, "hash_ids", "int_list"),) if self.block_ids else ())
