"""`torta sql "QUERY" [--json] [--param name=value ...]`: read-only SQL on the warehouse."""

from __future__ import annotations

import json
import sys

import click

from pipelines import warehouse as wh


def _parse_param(raw: str) -> tuple[str, object]:
    if "=" not in raw:
        raise click.BadParameter(f"{raw!r}: expected name=value")
    name, value = raw.split("=", 1)
    for cast in (int, float):
        try:
            return name, cast(value)
        except ValueError:
            pass
    return name, value


@click.command()
@click.argument("query")
@click.option("--json", "as_json", is_flag=True, help="Print an array of row objects.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Bind $NAME in the query to VALUE (repeatable); never pasted into the SQL.")
@click.option("--warehouse", "database", default=None, help="Warehouse file (default: $TORTA_WAREHOUSE).")
def cli(query: str, as_json: bool, params: tuple[str, ...], database: str | None) -> None:
    """Run a read-only QUERY on the warehouse (tables and views: see warehouse/README.md)."""
    bound = dict(_parse_param(p) for p in params) or None
    frame = wh.query(wh.warehouse_path(database), query, bound)
    if as_json:
        json.dump(frame.to_dicts(), sys.stdout, default=str)
        sys.stdout.write("\n")
    else:
        with_cfg = {"tbl_rows": 200, "tbl_cols": 30, "fmt_str_lengths": 60}
        import polars as pl

        with pl.Config(**with_cfg):
            click.echo(frame)
