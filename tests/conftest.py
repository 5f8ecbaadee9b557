"""Shared fixtures. Tests never read ../shared and never touch the internet."""

from __future__ import annotations

import os

import pytest

import torta  # noqa: F401  (first: pins OpenBLAS's kernels before numpy loads them, torta.determinism)

os.environ.setdefault("POT_BACKEND_DISABLE_PYTORCH", "1")


@pytest.fixture
def warehouse_db(tmp_path, monkeypatch):
    """A fresh warehouse file under tmp_path, also exported as TORTA_WAREHOUSE."""
    db = tmp_path / "wh" / "torta.duckdb"
    monkeypatch.setenv("TORTA_WAREHOUSE", str(db))
    return db
