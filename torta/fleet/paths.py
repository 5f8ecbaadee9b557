"""Where the shipped data lives (inside the package, so tests never read ../shared)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # torta/
DATA_DIR = PACKAGE_DIR / "data"
REPO_DIR = PACKAGE_DIR.parent
SCENARIO_DIR = REPO_DIR / "scenarios"
TOPOLOGY_DIR = DATA_DIR / "topologies"
FLEET_DATA_DIR = DATA_DIR / "fleet"
PRICE_DIR = DATA_DIR / "prices"
