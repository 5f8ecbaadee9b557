"""What `torta sql` lets through: one read-only statement over the warehouse's own files.

Two layers, both needed:

1. The statement gate (`check_statement`): DuckDB's own parser splits the text; exactly one statement,
   of type SELECT (which covers `WITH`, `FROM`, `VALUES`, `DESCRIBE`, `SHOW`, `SUMMARIZE`) or EXPLAIN,
   and not a `PRAGMA` (which the parser rewrites into a SELECT). `COPY`, `ATTACH`, `INSTALL`, `LOAD`,
   `SET`, `EXPORT`, `CREATE`, `CALL` ... are refused before anything runs.
2. The engine lock (`lock_down`): the connection is read-only, extension autoinstall/autoload is off,
   file access is limited to the warehouse's Parquet folder (`allowed_directories` +
   `enable_external_access = false`), and `lock_configuration` stops a later `SET` from undoing it.
   So `read_csv('/etc/passwd')`, `read_text`, `glob` and `sniff_csv` of a host path fail inside DuckDB
   even though they are SELECTs. (The gate is still needed: DuckDB allows `COPY ... TO` into an allowed
   directory.)

Checked against duckdb 1.5.6: `allowed_directories` must be set after the database has started, so it
is a `SET` on the open connection, before `enable_external_access` goes off.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from torta.errors import TortaError


class SqlRefused(TortaError):
    """A query `torta sql` does not run: it would write, reach outside the warehouse or change settings."""


_ALLOWED_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}

# first keyword -> why it is refused (the statement type alone cannot tell INSTALL from LOAD, and
# PRAGMA parses as a SELECT)
_REASONS = {
    "COPY": "COPY reads or writes files (use `torta sql --format csv ... > file` to export)",
    "ATTACH": "ATTACH opens another database",
    "DETACH": "DETACH changes the attached databases",
    "INSTALL": "INSTALL downloads an extension",
    "LOAD": "LOAD loads an extension",
    "FORCE": "FORCE INSTALL downloads an extension",
    "SET": "SET changes a setting",
    "RESET": "RESET changes a setting",
    "PRAGMA": "PRAGMA reads or changes settings",
    "EXPORT": "EXPORT DATABASE writes files",
    "IMPORT": "IMPORT DATABASE reads files and writes tables",
    "CALL": "CALL runs a table function outside a SELECT",
    "CHECKPOINT": "CHECKPOINT writes the database file",
    "USE": "USE changes the session's database",
}

_REFUSED = "refused (torta sql is read-only)"
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


def _first_keyword(sql: str) -> str:
    m = re.match(r"[\s(]*([A-Za-z_]+)", _COMMENT.sub(" ", sql))
    return m.group(1).upper() if m else ""


def check_statement(sql: str) -> str:
    """The one statement of `sql` if `torta sql` may run it; else SqlRefused with a one-line reason."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlRefused(f"query does not parse: {' '.join(str(exc).split())}") from None
    if not statements:
        raise SqlRefused("empty query: expected one SELECT statement")
    if len(statements) > 1:
        raise SqlRefused(f"{_REFUSED}: {len(statements)} statements; exactly one runs "
                         f"(nothing after ';' is run)")
    (stmt,) = statements
    word = _first_keyword(sql)
    if word in _REASONS:
        raise SqlRefused(f"{_REFUSED}: {_REASONS[word]}")
    if stmt.type not in _ALLOWED_TYPES:
        raise SqlRefused(f"{_REFUSED}: {stmt.type.name} statement; only SELECT (WITH, FROM, DESCRIBE, "
                         f"SHOW, SUMMARIZE) or EXPLAIN runs")
    return sql


def lock_down(con: duckdb.DuckDBPyConnection, readable_dir: Path | str) -> None:
    """Limit `con` to reading files under `readable_dir` (a folder, or an `s3://` prefix read through
    a registered fsspec filesystem), no extensions, settings locked."""
    folder = (readable_dir if isinstance(readable_dir, str) else readable_dir.as_posix()).rstrip("/") + "/"
    con.execute("SET allowed_directories = [$d]", {"d": folder})
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def explain_engine_error(exc: duckdb.Error) -> str:
    """A one-line message for an error raised while a query ran."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, duckdb.PermissionException):
        return f"{_REFUSED}: {first.removeprefix('Permission Error: ')} (only the warehouse's own files are readable)"
    if isinstance(exc, duckdb.InvalidInputException) and "configuration has been locked" in first:
        return f"{_REFUSED}: settings are locked"
    return f"query failed: {first}"
