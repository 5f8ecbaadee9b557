"""Safe output files and directories: unique temporary names beside the target, renamed into place
whole; modes follow the umask; outputs never overwrite an input.

- `atomic_file(dest)`: a context manager yielding a unique temporary path in `dest`'s folder; on success it
  is chmod-ed to the umask's mode (0644 under the usual 022; `mkstemp` alone gives 0600) and renamed onto
  `dest`, on failure removed. Readers see the old file or the new one, never a partial one.
- `run_dir(target)`: the same for a directory of files that form one unit (a replay's completions, slots,
  summary and manifest). An exclusive lock `.<name>.lock` beside the target makes concurrent writers of
  one target refuse (`OutputBusyError`, exit 2) instead of mixing files; the unit is built in a unique
  `.<name>.tmp-*` folder and swapped in with one `renameat2(RENAME_EXCHANGE)` (Linux; elsewhere two
  renames, and a leftover `.<name>.old-*` is put back by the next writer). Leftover temporaries of a
  killed writer are removed by the next writer of the same target.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from torta.errors import InputError, OutputError, TortaError

LOCK_SUFFIX = ".lock"


class OutputBusyError(TortaError):
    """Another process is writing the same output."""


# errors of writing (not of reading an input): reported as OutputError naming the output
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


def _write_failed(dest: Path, exc: BaseException) -> OutputError:
    why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:300]
    return OutputError(f"{dest}: cannot write the output: {why}; nothing was written")


def _write_errno(exc: BaseException) -> int | None:
    """The errno of a failed write: OSError's, or the "os error N" that polars/pyarrow put in messages."""
    if isinstance(exc, OSError):
        return exc.errno
    m = re.search(r"(?:os error|errno) (\d+)", str(exc))
    return int(m.group(1)) if m else None


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def file_mode() -> int:
    """The mode a plain `open(..., "w")` would give a new file: 0666 minus the umask."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    return 0o777 & ~_umask()


def _check_parent(dest: Path) -> None:
    parent = dest.parent
    for p in (parent, *parent.parents):
        if p.exists():
            if not p.is_dir():
                raise InputError(dest, f"cannot write here: {p} is a file, not a folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(dest, f"cannot create the folder {parent}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(dest, f"cannot write here: the folder {parent} is not writable")


@contextmanager
def atomic_file(dest: str | os.PathLike, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a unique temporary path beside `dest`; rename it onto `dest` when the block succeeds."""
    dest = Path(dest)
    _check_parent(dest)
    if dest.is_dir():
        raise InputError(dest, "is a folder; expected a file path for the output")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    except OSError as exc:
        raise _write_failed(dest, exc) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, dest)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if _write_errno(exc) in _WRITE_ERRNOS:
            raise _write_failed(dest, exc) from None
        raise


def atomic_write_text(dest: str | os.PathLike, text: str) -> Path:
    with atomic_file(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)


def same_or_inside(out: Path, inp: Path) -> bool:
    """True when `inp` is `out` or lies inside it (after resolving links)."""
    try:
        o, i = out.resolve(), inp.resolve()
    except OSError:
        return False
    return i == o or o in i.parents


def refuse_output_over_inputs(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None],
                              option: str = "--out") -> None:
    """InputError when the output would replace (or, for a folder, contain) one of the inputs."""
    o = Path(out)
    for inp in inputs:
        if inp is None:
            continue
        i = Path(inp)
        if i.exists() and same_or_inside(o, i):
            raise InputError(o, f"{option} resolves to the input {i}; writing it would destroy the input; "
                                "choose another output path", field=option)


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def git_commit() -> str:
    """HEAD of the repository holding this package ("unknown" outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---------------------------------------------------------------- directories as one unit

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc.renameat2  # noqa: B018 - probe
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    rc = _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _lock(lock_path: Path, target: Path) -> int:
    import fcntl

    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputBusyError(f"{target}: another run is writing this output folder right now (lock "
                                  f"{lock_path.name}); wait for it or choose another --out") from None
        try:  # the holder before us may have removed the lock file: lock the file that is there now
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-"


def _old_prefix(target: Path) -> str:
    return f".{target.name}.old-"


def leftovers(target: Path) -> list[Path]:
    """Temporary folders of killed writers of `target`."""
    parent = target.parent
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir()
                  if p.name.startswith(_tmp_prefix(target)) or p.name.startswith(_old_prefix(target)))


def _clean(target: Path) -> None:
    olds = [p for p in leftovers(target) if p.name.startswith(_old_prefix(target))]
    if olds and not target.exists():  # killed between the two renames of the fallback: put it back
        os.rename(olds[-1], target)
    for p in leftovers(target):
        shutil.rmtree(p, ignore_errors=True)


def _check_replaceable(target: Path, allowed: frozenset[str]) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise InputError(target, "exists and is not a folder; expected a folder for the run's files")
    other = sorted(p.name for p in target.iterdir() if p.name not in allowed)
    if other:
        shown = ", ".join(other[:5]) + (" ..." if len(other) > 5 else "")
        raise InputError(target, f"the folder holds files that are not a previous run ({shown}); replacing it "
                                 "would delete them; choose a new or empty folder")


@contextmanager
def run_dir(target: str | os.PathLike, allowed: Iterable[str]) -> Iterator[Path]:
    """Yield a unique temporary folder beside `target`; when the block succeeds it replaces `target` as
    a whole. `target` may be absent, empty, or a previous unit (only names in `allowed`)."""
    target = Path(target).absolute()
    _check_parent(target)
    _check_replaceable(target, frozenset(allowed))
    lock_path = target.parent / f".{target.name}{LOCK_SUFFIX}"
    try:
        fd = _lock(lock_path, target)
    except OSError as exc:
        raise _write_failed(target, exc) from None
    try:
        _clean(target)
        _check_replaceable(target, frozenset(allowed))
        try:
            tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), dir=target.parent))
        except OSError as exc:
            raise _write_failed(target, exc) from None
        try:
            os.chmod(tmp, dir_mode())
            yield tmp
            _publish(tmp, target)
        except Exception as exc:
            if _write_errno(exc) in _WRITE_ERRNOS:
                raise _write_failed(target, exc) from None
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # after a swap: the previous unit
    finally:
        lock_path.unlink(missing_ok=True)  # while still holding it: a waiter re-checks the inode
        os.close(fd)


def _publish(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
        return
    if _exchange(tmp, target):
        return
    old = Path(tempfile.mkdtemp(prefix=_old_prefix(target), dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    os.rename(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
