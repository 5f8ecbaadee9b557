"""The local Dagster instance used by `torta run` and `torta ui` (DAGSTER_HOME)."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.warehouse import REPO_ROOT


def dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or REPO_ROOT / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text("telemetry:\n  enabled: false\n")
    return home
