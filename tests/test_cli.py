"""The CLI contract: every subcommand answers --help; the warehouse commands come in as entry points."""

from __future__ import annotations

import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from torta.cli import COMMANDS, PLUGIN_GROUP, main, plugin_commands

WAREHOUSE_COMMANDS = ("run", "experiment", "sql", "report", "ui")


def _names() -> list[str]:
    return main.list_commands(click.Context(main))


def test_top_level_help_lists_available_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in _names():
        assert name in result.output
    assert set(COMMANDS) <= set(_names())


def test_warehouse_commands_are_entry_points_of_pyproject():
    table = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    declared = table["project"]["entry-points"][PLUGIN_GROUP]
    assert set(WAREHOUSE_COMMANDS) <= set(declared)
    assert all(v.startswith("pipelines.commands.") for v in declared.values())
    found = plugin_commands()
    assert {n: found[n] for n in declared} == declared
    assert set(WAREHOUSE_COMMANDS) <= set(_names())


@pytest.mark.parametrize("name", _names())
def test_every_subcommand_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
