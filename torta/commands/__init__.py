"""CLI subcommands, one module each; see torta/cli.py."""
