"""Partition definitions, declared once."""

from __future__ import annotations

import dagster as dg

from torta.traces import shipped_traces

trace_partitions = dg.StaticPartitionsDefinition(sorted(shipped_traces()))
