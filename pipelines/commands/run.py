"""`torta run`: the main job (what `make run` runs)."""

from __future__ import annotations

import click


@click.command()
@click.option("--warehouse", "database", default=None, help="Warehouse file (default: $TORTA_WAREHOUSE).")
def cli(database: str | None) -> None:
    """Run the main job on the local Dagster instance and print the results."""
    from pipelines.main import print_main, run_main

    print_main(run_main(database))
