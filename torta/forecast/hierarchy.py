"""The origin x model hierarchy of the demand series and its reconciliation.

Bottom series are "<origin>|<model>". Aggregates: the total, one per origin (its models summed,
"<origin>|*") where an origin has more than one model, one per model ("*|<model>") where a model
has more than one origin. Reconciliation: MinTrace with a shrunk covariance of the base forecasts'
errors (Wickramasuriya, Athanasopoulos & Hyndman 2019, "Optimal forecast reconciliation for
hierarchical and grouped time series through trace minimization", JASA 114, 804-819), computed by
hierarchicalforecast's `MinTrace(method="mint_shrink")`. The reconciled bottom forecasts are
P @ base (P from the library), clipped at 0; every aggregate is the sum of its bottom series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from torta.forecast.data import SERIES_SEP, Panel

TOTAL = "*" + SERIES_SEP + "*"


@dataclass(frozen=True)
class Hierarchy:
    nodes: tuple[str, ...]  # aggregates first, then the bottom series in panel order
    S: np.ndarray  # (n_nodes, n_bottom) summing matrix
    n_bottom: int


def build_hierarchy(series: tuple[str, ...]) -> Hierarchy:
    parts = [s.split(SERIES_SEP, 1) if SERIES_SEP in s else [s, ""] for s in series]
    origins = sorted({p[0] for p in parts})
    models = sorted({p[1] for p in parts})
    rows: list[tuple[str, np.ndarray]] = [(TOTAL, np.ones(len(series)))]
    if len(models) > 1:
        for o in origins:
            m = np.array([p[0] == o for p in parts], float)
            if m.sum() > 1:
                rows.append((o + SERIES_SEP + "*", m))
    if len(origins) > 1:
        for mo in models:
            m = np.array([p[1] == mo for p in parts], float)
            if m.sum() > 1 and m.sum() < len(series):
                rows.append(("*" + SERIES_SEP + mo, m))
    if len(series) == 1:
        rows = []
    agg_names = tuple(r[0] for r in rows)
    S = np.vstack([r[1] for r in rows] + [np.eye(len(series))]) if rows else np.eye(len(series))
    return Hierarchy(agg_names + tuple(series), S, len(series))


def augment(panel: Panel, hier: Hierarchy) -> Panel:
    """The panel with the aggregate series prepended (a slot is masked in an aggregate when any
    of its bottom series is masked there)."""
    n_agg = len(hier.nodes) - hier.n_bottom
    if n_agg == 0:
        return panel
    A = hier.S[:n_agg]
    y = np.vstack([A @ panel.y, panel.y])
    m = np.vstack([(A @ panel.masked.astype(float)) > 0, panel.masked])
    return Panel(hier.nodes, panel.first_slot, y, m)


def mint_shrink_projection(hier: Hierarchy, y_true: np.ndarray, y_fit: np.ndarray) -> np.ndarray:
    """P (n_bottom, n_nodes) of MinTrace-shrink from base forecast errors: y_true, y_fit are
    (n_nodes, n_points) with NaN where a target is masked."""
    from hierarchicalforecast.methods import MinTrace

    r = MinTrace(method="mint_shrink")
    n = hier.S.shape[0]
    r.fit(S=hier.S, y_hat=np.zeros((n, 1)), y_insample=y_true, y_hat_insample=y_fit)
    return np.asarray(r.P, dtype=float)


def reconcile(P: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Bottom forecasts from base forecasts of every node: base (n_nodes, ...) -> (n_bottom, ...),
    clipped at 0."""
    n = base.shape[0]
    flat = base.reshape(n, -1)
    return np.maximum(P @ flat, 0.0).reshape((P.shape[0],) + base.shape[1:])
