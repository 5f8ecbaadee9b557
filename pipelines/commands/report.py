"""`torta report [--out DIR] [--batch B]`: the HTML report from the warehouse."""

from __future__ import annotations

import click

from pipelines import warehouse as wh


@click.command()
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Report folder (default: $TORTA_REPORT_DIR or warehouse/report).")
@click.option("--batch", default=None, help="Batch of runs to report (default: the latest).")
@click.option("--warehouse", "database", default=None, help=f"Warehouse file. {wh.WAREHOUSE_HELP}")
def cli(out_dir: str | None, batch: str | None, database: str | None) -> None:
    """Write the HTML report (comparison table, response-time CDF, load balance over time, cost
    breakdown, forecast against actual demand, flows on the topology map)."""
    from pathlib import Path

    from pipelines.report import build_report

    index = build_report(wh.warehouse_path(database), Path(out_dir) if out_dir else None, batch)
    click.echo(str(index))
