"""Registry of traces: the ones shipped in `traces/` and the larger public ones `torta traces fetch`
downloads. Read from `traces/manifest.toml`.

    shipped_traces()            -> {"azure-2023-conv": TraceInfo, "azure-2023-code": TraceInfo}
    load_trace("azure-2023-conv") -> canonical requests (sha256 of the shipped file checked)
    load_trace("out/conv.parquet") -> canonical Parquet, validated against REQUEST_SCHEMA
"""

from __future__ import annotations

import functools
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from torta.errors import InputError, UnknownNameError
from torta.schema import REQUEST_SCHEMA, conform

ROOT_ENV = "TORTA_TRACES_DIR"


def traces_dir() -> Path:
    """`traces/` of the repository (or $TORTA_TRACES_DIR)."""
    env = os.environ.get(ROOT_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "traces"


def downloads_dir() -> Path:
    return traces_dir() / "downloads"


@dataclass(frozen=True)
class TraceInfo:
    name: str
    file: str  # relative to traces/ (downloads: downloads/<file name>)
    format: str  # a key of torta.ingest.FORMATS
    shipped: bool
    url: str
    license: str
    citation: str
    sha256: str | None = None
    size_bytes: int | None = None
    rows: int | None = None
    description: str = ""

    @property
    def path(self) -> Path:
        return traces_dir() / self.file

    @property
    def file_name(self) -> str:
        return Path(self.file).name

    def to_dict(self) -> dict:
        return {"name": self.name, "file": self.file, "format": self.format, "shipped": self.shipped,
                "url": self.url, "license": self.license, "citation": self.citation,
                "sha256": self.sha256 or "", "size_bytes": self.size_bytes or 0, "rows": self.rows or 0,
                "description": self.description, "present": self.path.exists()}


def manifest_path() -> Path:
    return traces_dir() / "manifest.toml"


def all_traces() -> dict[str, TraceInfo]:
    """Every trace in the manifest, shipped or fetchable."""
    path = manifest_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "trace manifest not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(path, f"invalid TOML: {exc}") from None
    out: dict[str, TraceInfo] = {}
    for i, entry in enumerate(data.get("trace", []), start=1):
        try:
            info = TraceInfo(**entry)
        except TypeError as exc:
            raise InputError(path, f"[[trace]] entry {i}: {exc}") from None
        out[info.name] = info
    return out


def shipped_traces() -> dict[str, TraceInfo]:
    """The traces whose files are in the repository (names like "azure-2023-conv")."""
    return {n: t for n, t in all_traces().items() if t.shipped}


@functools.lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    from torta.ingest.fetch import sha256_file

    return sha256_file(Path(path))


def verify(info: TraceInfo) -> Path:
    """The trace's file, after checking it exists and matches the manifest's sha256 (if any)."""
    path = info.path
    if not path.exists():
        hint = "" if info.shipped else f"; run `torta traces fetch {info.name}`"
        raise InputError(path, f"trace {info.name!r} is not present{hint}")
    st = path.stat()
    expected = info.sha256
    if expected is None and not info.shipped:
        side = path.with_name(path.name + ".sha256")
        if side.exists():
            expected = side.read_text().split()[0]
    if expected:
        got = _sha256_cached(str(path), st.st_size, st.st_mtime_ns)
        if got != expected:
            raise InputError(path, f"sha256 mismatch for trace {info.name!r}: expected {expected}, got {got}")
    return path


@functools.lru_cache(maxsize=8)
def _ingest_cached(name: str, path: str, size: int, mtime_ns: int) -> pl.DataFrame:
    from torta.ingest import ingest

    info = all_traces()[name]
    return ingest(info.format, Path(path), source=name).frame


def validate_requests(frame: pl.DataFrame, path: object = "<frame>") -> pl.DataFrame:
    """The frame in REQUEST_SCHEMA order and types; InputError if it is not canonical."""
    try:
        out = conform(frame, REQUEST_SCHEMA)
    except (ValueError, pl.exceptions.PolarsError) as exc:
        raise InputError(path, f"not canonical requests: {exc}") from None
    for c in ("request_id", "arrival_s", "prompt_tokens", "output_tokens", "source"):
        nulls = out[c].null_count()
        if nulls:
            row = int(out[c].is_null().arg_true()[0]) + 1
            raise InputError(path, f"{nulls} null values in {c}", line=row, field=c)
    n = out.height
    if n and not out["request_id"].equals(pl.Series("request_id", range(n), dtype=pl.Int64)):
        raise InputError(path, "request_id must be 0..n-1 in row order", field="request_id")
    if n > 1:
        bad = (out["arrival_s"].diff() < 0).arg_true()
        if bad.len():
            raise InputError(path, "arrival_s must be non-decreasing", line=int(bad[0]) + 1, field="arrival_s")
    for c in ("prompt_tokens", "output_tokens"):
        bad = (out[c] < 0).arg_true()
        if bad.len():
            raise InputError(path, f"negative {c}", line=int(bad[0]) + 1, field=c)
    return out


def load_trace(name_or_path: str | Path) -> pl.DataFrame:
    """Canonical requests of a manifest trace (shipped, or fetched into traces/downloads/), or of a
    canonical Parquet file (validated against REQUEST_SCHEMA)."""
    traces = all_traces()
    key = str(name_or_path)
    if isinstance(name_or_path, str) and key in traces:
        info = traces[key]
        path = verify(info)
        if not info.shipped:  # large downloads: no in-process cache
            from torta.ingest import ingest

            return ingest(info.format, path, source=info.name).frame
        st = path.stat()
        return _ingest_cached(info.name, str(path), st.st_size, st.st_mtime_ns).clone()
    path = Path(name_or_path)
    if path.suffix.lower() == ".parquet" and path.exists():
        try:
            frame = pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InputError(path, f"not a readable Parquet file: {exc}") from None
        return validate_requests(frame, path)
    if path.exists():
        raise InputError(path, "expected a trace name or canonical requests Parquet; convert raw files with "
                               "`torta ingest FORMAT PATH --out FILE.parquet`")
    if path.suffix or os.sep in key:
        raise InputError(path, "no such file")
    raise UnknownNameError("trace", key, list(traces))


def fetch_trace(name: str, *, dest: str | Path | None = None, url: str | None = None, retries: int = 3,
                progress: bool = True, timeout_s: float = 60.0):
    """Download a fetchable (or shipped) trace; returns torta.ingest.fetch.FetchResult.

    The sha256 of what arrived is written beside the file as `<file>.sha256` when the manifest has none.
    """
    from torta.ingest.fetch import fetch

    traces = all_traces()
    if name not in traces:
        raise UnknownNameError("trace", name, list(traces))
    info = traces[name]
    target = (Path(dest) if dest is not None else downloads_dir()) / info.file_name
    result = fetch(url or info.url, target, expected_size=info.size_bytes, sha256=info.sha256, retries=retries,
                   progress=progress, timeout_s=timeout_s)
    if not info.sha256:
        target.with_name(target.name + ".sha256").write_text(f"{result.sha256}  {target.name}\n")
    return result
