"""The paper-reproduction experiment: definition (frozen dataclasses), a pure cell runner and the
aggregation/rendering of RESULTS.md. The warehouse glue lives in `pipelines/experiment.py`."""

from torta.runs.experiment.definition import BASELINES, TORTA_FAMILY, Cell, Experiment, paper_experiment

__all__ = ["BASELINES", "TORTA_FAMILY", "Cell", "Experiment", "paper_experiment"]
