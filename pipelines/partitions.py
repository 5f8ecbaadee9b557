"""Partition definitions, declared once."""

from __future__ import annotations

import dagster as dg

from torta.traces import shipped_traces

trace_partitions = dg.StaticPartitionsDefinition(sorted(shipped_traces()))

from torta.fleet.scenario import list_scenarios  # noqa: E402
from torta.workload import WORKLOADS  # noqa: E402

scenario_partitions = dg.StaticPartitionsDefinition(sorted(list_scenarios()))
workload_partitions = dg.StaticPartitionsDefinition(sorted(WORKLOADS))
