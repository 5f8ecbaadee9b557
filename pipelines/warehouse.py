"""The DuckDB warehouse: Parquet per partition, views in the `.duckdb` file.

DuckDB lets one process write at a time, so materializations never write into the `.duckdb` file
directly: each partition of each table is one Parquet file under `<warehouse dir>/parquet/<table>/`,
written to a temporary name and renamed (atomic; re-materializing a partition replaces its rows).
The `.duckdb` file only holds views: one per table over its Parquet files (DDL in
`warehouse/tables/*.sql`) and the comparison views in `warehouse/views/*.sql`, one per file.
Views are refreshed by short-lived connections with a retry on the file lock; readers
(`torta sql`) open the file read-only.

Storage URL (`torta experiment paper --storage URL`, docs/SCALE-OUT.md): the partitions can live elsewhere
than `<warehouse dir>/parquet`: another (shared) directory, or S3-compatible object storage
(`s3://bucket/prefix`, through fsspec / s3fs; an object PUT is whole or absent, as the rename is). The
URL is recorded beside the `.duckdb` file (`<name>.storage`) so every later command finds it; DuckDB reads
`s3://` through the fsspec filesystem registered on each connection (its httpfs extension is not used).
The endpoint and credentials come from the usual AWS settings (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, or ~/.aws).

Versioned partitions (replays): a replay writes its completions, slot metrics and plans under a new
version (`<key>@<run_uid>.parquet`, rows carrying `run_uid`), then replaces its `runs` row (the switch:
views show only rows whose (key, run_uid) has a `runs` row), then removes the older versions. A killed
replay leaves the previous result visible and whole; the next one removes its unreferenced files.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl

from pipelines import sqlguard
from torta.errors import TortaError
from torta.fileio import atomic_file

REPO_ROOT = Path(__file__).resolve().parents[1]
DDL_DIR = REPO_ROOT / "warehouse"
DEFAULT_WAREHOUSE = "warehouse/torta.duckdb"  # inside the TORTA checkout (REPO_ROOT)
WAREHOUSE_HELP = ("Default: $TORTA_WAREHOUSE (relative to the working directory), else "
                  "warehouse/torta.duckdb in the TORTA checkout, else $XDG_DATA_HOME/torta/torta.duckdb "
                  "(~/.local/share/torta/torta.duckdb) when the checkout is not writable.")


def default_warehouse(root: Path = REPO_ROOT) -> Path:
    """The project's warehouse: `warehouse/torta.duckdb` of the checkout this code runs from (so the
    same file whatever the working directory), or a user data directory when this code does not run
    from a writable checkout (an installed package)."""
    folder = root / "warehouse"
    if (folder / "tables").is_dir() and os.access(folder, os.W_OK):
        return folder / "torta.duckdb"
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "torta" / "torta.duckdb"


WAREHOUSE_HELP += f" Here: {default_warehouse()}."


def warehouse_path(path: str | os.PathLike | None = None) -> Path:
    """The one resolution every command uses: an explicit path, else $TORTA_WAREHOUSE, else
    `default_warehouse()`. Relative paths are taken from the working directory."""
    raw = path or os.environ.get("TORTA_WAREHOUSE")
    if not raw:
        return default_warehouse()
    p = Path(raw)
    return p if p.is_absolute() else (Path.cwd() / p)


# no query, reader or writer, may install or load an extension behind our back
_NO_AUTO_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}

_SAFE_KEY = re.compile(r"[^A-Za-z0-9._=-]+")


class WarehouseError(TortaError):
    """The warehouse file is locked, corrupt or missing."""


STORAGE_SCHEMES = ("s3://", "file://")


def check_storage_url(url: str) -> str:
    """A directory path, `file:///DIR` or `s3://BUCKET[/PREFIX]`; anything else is a ValueError naming it."""
    url = url.strip()
    if "://" in url and not url.startswith(STORAGE_SCHEMES):
        raise ValueError(f"--storage {url!r}: unsupported scheme {url.split('://')[0]!r}; expected a directory, "
                         "file:///DIR or s3://BUCKET/PREFIX")
    if url.startswith("s3://") and not url[5:].strip("/"):
        raise ValueError(f"--storage {url!r}: expected s3://BUCKET/PREFIX")
    if not url or url == "file://":
        raise ValueError(f"--storage {url!r}: empty location")
    return url


def _marker(db_path: Path) -> Path:
    return db_path.with_name(db_path.stem + ".storage")


def storage_url(db_path: Path) -> str | None:
    """The storage URL recorded for this warehouse (None: `<warehouse dir>/parquet`)."""
    m = _marker(db_path)
    return m.read_text().strip() or None if m.is_file() else None


def set_storage(db_path: Path, url: str) -> None:
    """Record `url` as this warehouse's partition storage (checked; a directory is made absolute)."""
    url = check_storage_url(url)
    if "://" not in url:
        url = str(Path(url).resolve())
    db_path.parent.mkdir(parents=True, exist_ok=True)
    if storage_url(db_path) != url:
        with atomic_file(_marker(db_path)) as tmp:
            Path(tmp).write_text(url + "\n")


def parquet_root(db_path: Path, storage: str | None = None) -> Path | str:
    """Where the partitions live: `storage` (a URL), else the one recorded for the warehouse, else
    `<warehouse dir>/parquet`. An `s3://` root is returned as a string (no trailing slash)."""
    url = storage or storage_url(db_path)
    if not url:
        return db_path.parent / "parquet"
    if url.startswith("s3://"):
        return url.rstrip("/")
    return Path(url.removeprefix("file://"))


def _remote(root: Path | str) -> bool:
    return isinstance(root, str)


def object_fs():
    """The fsspec filesystem of `s3://` roots (s3fs; listings uncached: other processes write)."""
    import fsspec

    return fsspec.filesystem("s3", use_listings_cache=False, skip_instance_cache=True)


def _join(root: Path | str, *parts: str) -> Path | str:
    return "/".join([root, *parts]) if _remote(root) else root.joinpath(*parts)


def _safe(key: str) -> str:
    return _SAFE_KEY.sub("_", key.replace("|", "__")) or "all"


def partition_file(db_path: Path, table: str, key: str, version: str | None = None,
                   storage: str | None = None) -> Path | str:
    """`<table>/<key>.parquet`, or `<table>/<key>@<version>.parquet` for a versioned partition."""
    tail = f"@{version}" if version else ""
    return _join(parquet_root(db_path, storage), table, f"{_safe(key)}{tail}.parquet")


def _glob(root: Path | str, table: str, pattern: str) -> list:
    if _remote(root):
        return sorted("s3://" + p for p in object_fs().glob(f"{root}/{table}/{pattern}"))
    folder = root / table
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


def _exists(f: Path | str) -> bool:
    return object_fs().exists(f) if isinstance(f, str) else f.exists()


def partition_files(db_path: Path, table: str, key: str, storage: str | None = None) -> list:
    """Every file of one partition: the plain one and each version."""
    root = parquet_root(db_path, storage)
    plain = partition_file(db_path, table, key, storage=storage)
    out = _glob(root, table, f"{_safe(key)}@*.parquet")
    return ([plain] if _exists(plain) else []) + out


def _atomic_write(dest: Path | str, write) -> Path | str:
    """Call `write(tmp_path)` on a unique temporary file beside `dest`, then rename it onto `dest`; for
    an object store, one PUT of the whole file."""
    if isinstance(dest, str):
        buf = io.BytesIO()
        write(buf)
        object_fs().pipe_file(dest, buf.getvalue())
        return dest
    with atomic_file(dest) as tmp:
        write(tmp)
    return dest


def write_partition(db_path: Path, table: str, key: str, frame: pl.DataFrame, version: str | None = None,
                    storage: str | None = None) -> Path | str:
    """Write one partition of `table` atomically (temp file in the same folder, then rename)."""
    return _atomic_write(partition_file(db_path, table, key, version, storage), frame.write_parquet)


def sink_partition(db_path: Path, table: str, key: str, frame: pl.LazyFrame, version: str | None = None) -> Path:
    """Like write_partition for a LazyFrame, streamed to disk (memory does not grow with rows)."""
    return _atomic_write(partition_file(db_path, table, key, version), frame.sink_parquet)


def delete_partition(db_path: Path, table: str, key: str) -> None:
    f = partition_file(db_path, table, key)
    if isinstance(f, str):
        object_fs().rm_file(f) if _exists(f) else None
    else:
        f.unlink(missing_ok=True)


def drop_other_versions(db_path: Path, table: str, key: str, keep: str) -> None:
    """Remove every file of the partition but version `keep` (after the `runs` row switched to it)."""
    kept = partition_file(db_path, table, key, keep)
    for f in partition_files(db_path, table, key):
        if f != kept:
            f.unlink(missing_ok=True)


def _read(f: Path | str) -> pl.DataFrame:
    return pl.read_parquet(io.BytesIO(object_fs().cat_file(f))) if isinstance(f, str) else pl.read_parquet(f)


def read_table(db_path: Path, table: str, key: str | None = None, storage: str | None = None) -> pl.DataFrame:
    """Read a table (all partitions) or one partition straight from Parquet, no DuckDB lock. A versioned
    partition reads the version its `runs` row names."""
    if key is not None:
        files = partition_files(db_path, table, key, storage)
        if not files:
            f = partition_file(db_path, table, key, storage=storage)
            raise WarehouseError(f"table {table!r} has no partition {key!r} ({f}); materialize it first")
        if len(files) > 1 and table != "runs":
            runs = partition_file(db_path, "runs", key, storage=storage)
            uid = _read(runs).to_dicts()[0].get("run_uid") if _exists(runs) else None
            want = partition_file(db_path, table, key, uid, storage) if uid else None
            files = [want] if want in files else files[-1:]
        return _read(files[0])
    root = parquet_root(db_path, storage)
    files = _glob(root, table, "*.parquet")
    if not files:
        raise WarehouseError(f"table {table!r} is empty in {root}; materialize it first")
    return pl.concat([_read(f) for f in files], how="diagonal_relaxed")


def register_storage(con: duckdb.DuckDBPyConnection, db_path: Path) -> None:
    """Give `con` the fsspec filesystem of an `s3://` storage root (no-op for a directory)."""
    if _remote(parquet_root(db_path)):
        con.register_filesystem(object_fs())


def _is_lock_error(exc: Exception) -> bool:
    """DuckDB's "Could not set lock on file ... Conflicting lock is held" (not "... in block at ...")."""
    text = str(exc).lower()
    return "could not set lock" in text or "conflicting lock" in text


@contextmanager
def connect(db_path: Path, *, read_only: bool = False, retries: int = 40) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection; waits (up to ~20 s) while another process holds the lock."""
    if read_only and not db_path.exists():
        raise WarehouseError(f"warehouse {db_path} does not exist yet; run `torta run` or materialize assets first")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    delay = 0.05
    for attempt in range(retries):
        try:
            con = duckdb.connect(str(db_path), read_only=read_only, config=_NO_AUTO_EXTENSIONS)
            break
        except duckdb.IOException as exc:
            if _is_lock_error(exc) and attempt < retries - 1:
                time.sleep(delay)
                delay = min(delay * 1.5, 1.0)
                continue
            if _is_lock_error(exc):
                raise WarehouseError(f"warehouse {db_path} is locked by another process: {exc}") from None
            text = str(exc).lower()
            if "corrupt database" in text or "does not match stored checksum" in text:
                raise WarehouseError(f"warehouse {db_path} is corrupt: {str(exc).splitlines()[0]}; it holds only "
                                     "views: delete it and run `torta run` (or materialize) to rebuild it from "
                                     "the Parquet files") from None
            raise WarehouseError(f"cannot open warehouse {db_path}: {exc}") from None
        except duckdb.Error as exc:  # corrupt or not a DuckDB file
            raise WarehouseError(f"cannot open warehouse {db_path} (corrupt or not a DuckDB file?): {exc}") from None
    try:
        yield con
    finally:
        con.close()


def _sql_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.sql"))


_EMPTY = re.compile(r"^-- empty: (.+)$", re.MULTILINE)


def _empty_view(con: duckdb.DuckDBPyConnection, ddl: Path) -> None:
    """A table with no Parquet file yet: a view with no rows and the columns its DDL declares
    (`-- empty: name TYPE, ...`), so queries on it return nothing instead of failing; without such a
    line, no view."""
    m = _EMPTY.search(ddl.read_text())
    if not m:
        con.execute(f'DROP VIEW IF EXISTS "{ddl.stem}"')
        return
    cols = ", ".join(f'CAST(NULL AS {typ}) AS "{name}"'
                     for name, typ in (c.strip().split(None, 1) for c in m.group(1).split(",")))
    con.execute(f'CREATE OR REPLACE VIEW "{ddl.stem}" AS SELECT {cols} WHERE false')


def refresh_views(db_path: Path) -> dict[str, str]:
    """(Re)create the table views over Parquet and the derived views. Returns name -> status."""
    root = parquet_root(db_path)
    status: dict[str, str] = {}
    with connect(db_path) as con:
        register_storage(con, db_path)
        pending = _sql_files(DDL_DIR / "tables")
        for _ in range(len(pending) + 1):  # views over other views (completions -> runs): retry in passes
            failed = []
            for ddl in pending:
                table = ddl.stem
                files = _glob(root, table, "*.parquet")
                if not files:
                    _empty_view(con, ddl)
                    status[table] = "empty"
                    continue
                pattern = _join(root, table, "*.parquet")
                glob = (pattern if _remote(root) else pattern.as_posix()).replace("'", "''")
                try:
                    con.execute(ddl.read_text().replace("{parquet_glob}", glob))
                    status[table] = "ok"
                except duckdb.Error as exc:
                    failed.append(ddl)
                    status[table] = f"skipped: {str(exc).splitlines()[0]}"
            if not failed or len(failed) == len(pending):
                for ddl in failed:
                    con.execute(f'DROP VIEW IF EXISTS "{ddl.stem}"')
                break
            pending = failed
        for view in _sql_files(DDL_DIR / "views"):
            try:
                con.execute(view.read_text())
                status[view.stem] = "ok"
            except duckdb.Error as exc:  # a view over a table that has no rows yet
                con.execute(f'DROP VIEW IF EXISTS "{view.stem}"')
                status[view.stem] = f"skipped: {str(exc).splitlines()[0]}"
    return status


def query(db_path: Path, sql: str, params: dict | list | None = None) -> pl.DataFrame:
    """Run one read-only statement (see `pipelines.sqlguard`); values go in as bound parameters,
    never pasted into the SQL. The connection reads only the warehouse's own Parquet files."""
    sql = sqlguard.check_statement(sql)
    with connect(db_path, read_only=True) as con:
        register_storage(con, db_path)
        sqlguard.lock_down(con, parquet_root(db_path))
        try:
            rel = con.execute(sql, params) if params else con.execute(sql)
            cols = [d[0] for d in rel.description] if rel.description else []
            rows = rel.fetchall()
        except duckdb.CatalogException as exc:
            raise WarehouseError(_missing_object(con, db_path, exc)) from None
        except duckdb.Error as exc:
            raise WarehouseError(sqlguard.explain_engine_error(exc)) from None
    return pl.DataFrame(rows, schema=cols, orient="row", infer_schema_length=None) if cols else pl.DataFrame()


def _missing_object(con: duckdb.DuckDBPyConnection, db_path: Path, exc: duckdb.Error) -> str:
    first = str(exc).splitlines()[0]
    m = re.search(r"(?:Table|View) with name (\S+) does not exist", first)
    if not m:
        return f"query failed: {first}"
    names = sorted(r[0] for r in con.execute("select table_name from information_schema.tables").fetchall())
    return (f"no table or view {m.group(1)!r} in warehouse {db_path} (it appears once a materialization "
            f"writes it; present: {', '.join(names) or 'none'})")
