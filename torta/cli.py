"""The `torta` command line (click). Subcommands live in `torta/commands/<name>.py`, each exposing a
click command or group called `cli`; they are imported lazily so `torta --help` stays fast.

Conventions: `--json` prints exactly one JSON document on stdout; progress and logs go to stderr.
Domain errors (`ValueError`, `torta.errors.TortaError`) and file-system errors (`OSError`: a read-only
folder, a file where a folder is expected...) exit with status 2 and ONE line on stderr, `error: ...`,
at most `MAX_ERROR_CHARS` long.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

MAX_ERROR_CHARS = 1000


def error_line(exc: BaseException) -> str:
    """`error: <message>` on one line, cut to MAX_ERROR_CHARS."""
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        msg = f"{where}: {exc.strerror}" if where else exc.strerror
    else:
        msg = str(exc) or type(exc).__name__
    msg = " | ".join(part.strip() for part in msg.splitlines() if part.strip())
    if len(msg) > MAX_ERROR_CHARS:
        msg = msg[:MAX_ERROR_CHARS] + f"... ({len(msg):,} characters)"
    return f"error: {msg}"

# name -> (module, one-line help). A bare module name means torta.commands.<module>; a dotted path is
# used as is: the warehouse/orchestration commands live in `pipelines.commands` because the library
# `torta` never imports Dagster or DuckDB. Each module defines a click object `cli`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pipelines.commands.run", "Run the main job: the default scenario end to end, every policy, a report."),
    "ingest": ("ingest", "Convert a raw trace file into canonical request (or rates) Parquet."),
    "traces": ("traces", "List shipped traces and fetch larger public ones."),
    "fleet": ("fleet", "Inspect scenarios, fleets and the GPU latency model."),
    "replay": ("replay", "Replay a trace through a scenario under one policy."),
    "workload": ("workload", "Build and inspect multi-day workloads."),
    "forecast": ("forecast", "Forecast regional demand and backtest forecasters."),
    "policies": ("policies", "List scheduling policies."),
    "compare": ("compare", "Compare policies on the same requests and seeds."),
    "train": ("train", "Train TORTA's PPO macro policy (OT-supervised) on a scenario's training days."),
    "experiment": ("pipelines.commands.experiment", "Run the paper's comparison and write docs/RESULTS.md."),
    "bench": ("bench", "Benchmarks (throughput, memory)."),
    "sql": ("pipelines.commands.sql", "Run a read-only SQL query on the warehouse."),
    "report": ("pipelines.commands.report", "Write the HTML report from the warehouse."),
    "ui": ("pipelines.commands.ui", "Start the Dagster UI (dagster dev) on 127.0.0.1."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n, (mod, _) in COMMANDS.items() if _available(mod)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _available(COMMANDS[name][0]):
            return None
        module = importlib.import_module(_module_path(COMMANDS[name][0]))
        cmd = module.cli
        if not cmd.help and not cmd.short_help:
            cmd.short_help = COMMANDS[name][1]
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][1]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):  # noqa: D401 - turn domain errors into one-line exits
        from torta.errors import TortaError

        try:
            return super().invoke(ctx)
        except (TortaError, ValueError, OSError) as exc:
            click.echo(error_line(exc), err=True)
            sys.exit(2)


def _module_path(module: str) -> str:
    return module if "." in module else f"torta.commands.{module}"


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(_module_path(module)) is not None
    except ModuleNotFoundError:  # parent package missing
        return False


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="torta")
def main() -> None:
    """TORTA: replay LLM-serving traces through two-layer schedulers on a modeled GPU fleet."""


if __name__ == "__main__":
    main()
