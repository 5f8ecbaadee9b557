"""What the asset graph says a replay depends on, and the data versions that make staleness mean
"the input changed" rather than "the input was re-run".

A replay partition (`scenario|workload|policy|seed`) reads one trace or workload, one scenario's
fleet, the workload's forecasts and, for the learned policies, a checkpoint. Dagster has no built-in
partition mapping from such a composite dynamic key to one upstream partition, and custom
PartitionMapping subclasses are unsupported (dagster-io/dagster#16023), so the dependencies use
`AllPartitionMapping`: a replay is marked stale when any partition of an upstream asset changes, a
superset of its real inputs (never a missed change). The upstream assets report content-hash data
versions (`content_version`), so re-materializing an unchanged trace or fleet marks nothing stale.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import dagster as dg

# Checks are declared per partition (AssetCheckSpec(partitions_def=...)) so each replay, trace or
# workload partition has its own check result; Dagster 1.13 marks that argument "preview".
warnings.filterwarnings("ignore", category=dg.PreviewWarning,
                        message="Specifying a partitions_def on an AssetCheckSpec")

ALL = dg.AllPartitionMapping()

# replay_run and experiment_cell: the requests (shipped traces), the workload's demand and forecasts,
# the fleet (topology, servers, prices) and the learned policies' checkpoints
REPLAY_INPUTS = [dg.AssetDep(k, partition_mapping=ALL)
                 for k in ("requests", "demand", "demand_forecasts", "topology", "fleet", "price_curves",
                           "trained_policy")]


def content_version(*paths: str | Path) -> dg.DataVersion:
    """A data version from the bytes of the files written (same content -> same version)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return dg.DataVersion(h.hexdigest()[:16])


def file_url(path: str | Path) -> dg.UrlMetadataValue:
    """A clickable link to a local file in the UI's metadata."""
    return dg.MetadataValue.url(Path(path).resolve().as_uri())


def tidy(meta: dict) -> dict:
    """Metadata for reading: floats to 4 significant digits (names carry the units: _s, _usd, ...)."""
    return {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in meta.items()}


def table_value(frame, max_rows: int = 50) -> dg.TableMetadataValue:
    """A polars frame as a Dagster table (shown as a table in the UI), floats to 4 significant digits."""
    import polars as pl

    kinds = {pl.Boolean: "bool", pl.Int64: "int", pl.Int32: "int", pl.Float64: "float", pl.String: "string"}
    schema = dg.TableSchema(columns=[dg.TableColumn(c, kinds.get(t, "string")) for c, t in frame.schema.items()])
    rows = [dg.TableRecord(tidy({k: (v if isinstance(v, (bool, int, float, str)) or v is None else str(v))
                                 for k, v in r.items()}))
            for r in frame.head(max_rows).iter_rows(named=True)]
    return dg.MetadataValue.table(records=rows, schema=schema)
