"""Thin Dagster assets, one module per group; each calls pure `torta` functions."""
