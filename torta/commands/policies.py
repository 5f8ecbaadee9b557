"""`torta policies`: list scheduling policies."""

from __future__ import annotations


import click

from torta import strictjson


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (an array of {name, description}).")
def cli(as_json: bool) -> None:
    """List scheduling policies with one-line descriptions."""
    from torta.policy import list_policies

    rows = list_policies()
    if as_json:
        click.echo(strictjson.dumps([{"name": n, "description": d} for n, d in rows]))
        return
    width = max((len(n) for n, _ in rows), default=0)
    for n, d in rows:
        click.echo(f"{n:<{width}}  {d}")
