"""The CLI contract: every subcommand answers --help."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from torta.cli import COMMANDS, _available, main


def test_top_level_help_lists_available_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name, (module, _) in COMMANDS.items():
        if _available(module):
            assert name in result.output


@pytest.mark.parametrize("name", [n for n, (m, _) in COMMANDS.items() if _available(m)])
def test_every_subcommand_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
