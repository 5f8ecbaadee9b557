"""Library boundaries: `torta` never imports Dagster or DuckDB, names no `pipelines` module, and sets no
environment variables at import time."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import torta

ROOT = Path(torta.__file__).resolve().parent


def test_importing_every_library_module_loads_neither_dagster_nor_duckdb():
    code = """
import json, pkgutil, importlib, sys
import torta
names = [m.name for m in pkgutil.walk_packages(torta.__path__, "torta.")]
for n in names:
    importlib.import_module(n)
print(json.dumps({"modules": names, "loaded": sorted(m for m in ("dagster", "duckdb", "pipelines") if m in sys.modules)}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(doc["modules"]) > 80 and "torta.runs.execute" in doc["modules"] and "torta.cli" in doc["modules"]
    assert doc["loaded"] == []


def _sources() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_library_names_no_pipelines_module():
    pat = re.compile(r"\bpipelines\.[a-z_]")
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in _sources() for i, line in enumerate(p.read_text().splitlines(), 1)
           if pat.search(line)]
    assert bad == []


def test_no_import_time_environment_defaults():
    bad = [str(p.relative_to(ROOT)) for p in _sources()
           if re.search(r"^os\.environ\.(setdefault|update)|^os\.environ\[", p.read_text(), re.M)]
    assert bad == []


def test_click_lives_in_the_command_layer():
    """Benchmarks' measuring code stays in the library; their click commands are in torta/commands/."""
    bad = [str(p.relative_to(ROOT)) for p in _sources()
           if re.search(r"^import click|^from click", p.read_text(), re.M)
           and p.parent.name != "commands" and p.name != "cli.py"]
    assert bad == []
