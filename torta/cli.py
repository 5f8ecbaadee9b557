"""The `torta` command line (click). Subcommands live in `torta/commands/<name>.py`, each exposing a
click command or group called `cli`, plus the commands other packages declare as `torta.commands` entry
points (see `PLUGIN_GROUP`); all are imported lazily so `torta --help` stays fast.

Conventions: `--json` prints exactly one JSON document on stdout; progress and logs go to stderr.
Domain errors (`ValueError`, `torta.errors.TortaError`) and file-system errors (`OSError`: a read-only
folder, a file where a folder is expected...) exit with status 2 and ONE line on stderr, `error: ...`,
at most `MAX_ERROR_CHARS` long.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path

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


# name -> (module under torta.commands, one-line help). Each module defines a click object `cli`.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("ingest", "Convert a raw trace file into canonical request (or rates) Parquet."),
    "traces": ("traces", "List shipped traces and fetch larger public ones."),
    "fleet": ("fleet", "Inspect scenarios, fleets and the GPU latency model."),
    "replay": ("replay", "Replay a trace through a scenario under one policy."),
    "workload": ("workload", "Build and inspect multi-day workloads."),
    "forecast": ("forecast", "Forecast regional demand and backtest forecasters."),
    "policies": ("policies", "List scheduling policies."),
    "compare": ("compare", "Compare policies on the same requests and seeds."),
    "train": ("train", "Train TORTA's PPO macro policy (OT-supervised) on a scenario's training days."),
    "bench": ("bench", "Benchmarks (throughput, memory)."),
}

# Commands of other packages (the warehouse and orchestration commands `run`, `sql`, `report`, `ui`,
# `experiment` live with the Dagster glue, which the library never imports): entry points of this group,
# `name = "module:attr"` naming a click command, declared in pyproject.toml.
PLUGIN_GROUP = "torta.commands"


def plugin_commands() -> dict[str, str]:
    """name -> "module:attr" of the `torta.commands` entry points. A source checkout also reads its own
    pyproject.toml, so an editable install made before an entry point was declared still sees it (a
    fresh `pip install -e .` records them in the installed metadata)."""
    from importlib.metadata import entry_points

    out = {ep.name: ep.value for ep in entry_points(group=PLUGIN_GROUP)}
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        try:
            table = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            table = {}
        for name, value in table.get("project", {}).get("entry-points", {}).get(PLUGIN_GROUP, {}).items():
            out.setdefault(name, value)
    return out


def _plugin_help(target: str) -> str:
    """First line of the command's docstring, read from the module's source (importing the warehouse
    modules costs about a second; `torta --help` should not)."""
    import ast

    module, _, attr = target.partition(":")
    try:
        spec = importlib.util.find_spec(module)
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8")) if spec and spec.origin else None
    except (ModuleNotFoundError, OSError, SyntaxError, ValueError):
        return ""
    for node in tree.body if tree else ():
        if isinstance(node, ast.FunctionDef) and node.name == (attr or "cli"):
            doc = " ".join((ast.get_docstring(node) or "").split())
            return re.split(r"(?<=\.)\s", doc, maxsplit=1)[0]
    return ""


class LazyGroup(click.Group):
    def _plugins(self) -> dict[str, str]:
        if not hasattr(self, "_plugin_map"):
            self._plugin_map = {n: t for n, t in plugin_commands().items()
                                if n not in COMMANDS and _available(t.partition(":")[0])}
        return self._plugin_map

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n, (mod, _) in COMMANDS.items() if _available(_module_path(mod))] + sorted(self._plugins())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and _available(_module_path(COMMANDS[name][0])):
            cmd = importlib.import_module(_module_path(COMMANDS[name][0])).cli
            if not cmd.help and not cmd.short_help:
                cmd.short_help = COMMANDS[name][1]
            return cmd
        target = self._plugins().get(name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr or "cli")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        plugins = self._plugins()
        rows = [(n, COMMANDS[n][1] if n in COMMANDS else _plugin_help(plugins[n])) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):  # noqa: D401 - turn domain errors into one-line exits
        from torta.errors import TortaError

        # POT (the OT solver) imports torch for its backend list unless told not to: ~2 s per command, and
        # no command passes torch tensors to it. Set at run time, before any subcommand is imported.
        os.environ.setdefault("POT_BACKEND_DISABLE_PYTORCH", "1")
        try:
            return super().invoke(ctx)
        except (TortaError, ValueError, OSError) as exc:
            click.echo(error_line(exc), err=True)
            sys.exit(2)


def _module_path(module: str) -> str:
    return f"torta.commands.{module}"


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # parent package missing
        return False


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="torta")
def main() -> None:
    """TORTA: replay LLM-serving traces through two-layer schedulers on a modeled GPU fleet."""


if __name__ == "__main__":
    main()
