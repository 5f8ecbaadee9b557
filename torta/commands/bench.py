"""`torta bench ...`: benchmarks. Each subcommand lives beside the code it measures and is
registered here by module path, imported lazily."""

from __future__ import annotations

import importlib
import importlib.util

import click

# subcommand -> (module, attribute)
BENCHES: dict[str, tuple[str, str]] = {
    "ingest": ("torta.ingest.bench", "bench_ingest"),
    "replay": ("torta.sim.bench", "bench_replay"),
    "forecast": ("torta.forecast.bench", "bench_forecast"),
    "plan": ("torta.plan.bench", "bench_plan"),
}


class _LazyBench(click.Group):
    def list_commands(self, ctx):
        return sorted(n for n, (m, _) in BENCHES.items() if importlib.util.find_spec(m) is not None)

    def get_command(self, ctx, name):
        if name not in self.list_commands(ctx):
            return None
        mod, attr = BENCHES[name]
        return getattr(importlib.import_module(mod), attr)


@click.group(cls=_LazyBench)
def cli() -> None:
    """Benchmarks (throughput and peak memory). Quote medians; never timed unit tests."""
