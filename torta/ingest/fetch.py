"""Resumable, verified HTTP download (stdlib urllib + tqdm on stderr).

The file is streamed to `<dest>.part`; an existing `.part` is resumed with an HTTP Range request
(a server that answers 200 instead of 206 makes the download start over). Only after the size
(expected, else the server's Content-Length) and the sha256 (when known) match is the `.part`
renamed to `dest`, so a truncated file never sits under the final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from torta.errors import TortaError

CHUNK_BYTES = 1 << 20
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class FetchError(TortaError):
    """A download failed or did not verify; the message says what to do next."""


@dataclass(frozen=True)
class FetchResult:
    path: Path
    size_bytes: int
    sha256: str
    attempts: int
    resumed: bool  # some bytes came from an earlier, interrupted attempt
    already_present: bool = False


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _attempt(url: str, part: Path, *, timeout_s: float, progress: bool) -> tuple[int | None, bool]:
    """One request; appends to / rewrites `part`. Returns (total size if the server said, resumed)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "torta-fetch/1", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the .part is complete (verified below)
            return None, True
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    with resp:
        total: int | None = None
        resumed = False
        if have and resp.status == 206:
            m = _RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise FetchError(f"{url}: server answered the Range request with "
                                 f"Content-Range {resp.headers.get('Content-Range')!r}; expected bytes {have}-")
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode, resumed = "ab", True
        elif resp.status == 200:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode, have = "wb", 0
        else:
            raise FetchError(f"{url}: unexpected HTTP status {resp.status}")
        with open(part, mode) as fh, tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=part.name[:-5], file=sys.stderr, disable=not progress,
                                          leave=False) as bar:
            while True:
                block = resp.read(CHUNK_BYTES)
                if not block:
                    break
                fh.write(block)
                bar.update(len(block))
    return total, resumed


def fetch(url: str, dest: str | Path, *, expected_size: int | None = None, sha256: str | None = None,
          retries: int = 3, timeout_s: float = 60.0, progress: bool = True) -> FetchResult:
    """Download `url` to `dest` (see module doc). Retries `retries` times after an interruption,
    resuming each time. Raises FetchError; a checksum mismatch deletes the `.part`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    if dest.exists():
        got = sha256_file(dest)
        size = dest.stat().st_size
        if (sha256 and got != sha256) or (expected_size is not None and size != expected_size):
            raise FetchError(f"{dest} exists but does not verify (size {size}, sha256 {got}); delete it to "
                             "download again")
        return FetchResult(dest, size, got, attempts=0, resumed=False, already_present=True)
    attempts = 0
    resumed_any = False
    total: int | None = expected_size
    while True:
        attempts += 1
        try:
            said, resumed = _attempt(url, part, timeout_s=timeout_s, progress=progress)
            resumed_any |= resumed
            if said is not None:
                if expected_size is not None and said != expected_size:
                    part.unlink(missing_ok=True)
                    raise FetchError(f"{url}: server reports {said} bytes, the manifest expects {expected_size}; "
                                     "nothing kept (pass --url for a mirror or fix traces/manifest.toml)")
                total = said
            have = part.stat().st_size if part.exists() else 0
            if total is not None and have < total:
                raise ConnectionError(f"connection closed after {have} of {total} bytes")
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            have = part.stat().st_size if part.exists() else 0
            if attempts > retries:
                raise FetchError(f"{url}: download interrupted ({exc.__class__.__name__}: {exc}); {have} bytes kept "
                                 f"in {part}; run the command again to resume") from None
            continue
        break
    size = part.stat().st_size
    if total is not None and size != total:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: got {size} bytes, expected {total}; the partial file was deleted")
    got = sha256_file(part)
    if sha256 and got != sha256:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: sha256 mismatch: expected {sha256}, got {got}; the download was deleted")
    os.replace(part, dest)
    return FetchResult(dest, size, got, attempts=attempts, resumed=resumed_any)
