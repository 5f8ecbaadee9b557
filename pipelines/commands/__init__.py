"""`torta` subcommands that need Dagster or DuckDB (the library `torta` imports neither)."""
