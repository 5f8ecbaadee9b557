"""The paper-reproduction experiment as frozen dataclasses (no I/O).

DESIGN.md, Evaluation protocol: multi-day workloads are tested on days 12-14 (`test_days`), one
*cell* per (scenario, workload, seed, day) in which every policy replays the identical requests; the
validation day 11 (`tune_day`) tunes SkyLB's threshold and picks the strongest baseline (by mean
response time); PPO checkpoints are trained on days 1-10 by `torta train` (another command): the
windows are disjoint. The Azure 2023 hour traces have no days: one cell per (scenario, trace, seed),
the same requests for every seed, origins drawn per seed by the replay.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torta.config import EVAL_PROTOCOL

BASELINES = ("round-robin", "local-only", "least-loaded", "skylb", "myopic-ot", "acs")
# TORTA and its ablations, most complete first. PPO ones need a checkpoint per scenario.
TORTA_FAMILY = ("torta", "torta-no-forecast", "ppo-only", "torta-no-micro",
                "torta-ot", "torta-ot-last", "torta-ot-oracle", "torta-ot-hungarian")
PPO_POLICIES = ("torta", "torta-no-forecast", "ppo-only", "torta-no-micro")
# The policy whose differences are set against the paper's claims: the first one present.
CLAIM_CANDIDATES = ("torta", "torta-ot")
TRACE_DAY = 0  # `day` of a cell of an hour trace (no calendar)


@dataclass(frozen=True)
class Cell:
    """One (scenario, workload, seed, day): every policy replays the same requests in it."""

    scenario: str
    workload: str
    seed: int
    day: int  # 12..14 test, 11 validation, TRACE_DAY for an hour trace
    role: str = "test"  # "test" | "validation"

    @property
    def key(self) -> str:
        return f"{self.scenario}|{self.workload}|{self.seed}|{self.day}"

    @classmethod
    def from_key(cls, key: str) -> "Cell":
        parts = key.split("|")
        if len(parts) != 4 or not parts[2].isdigit() or not parts[3].isdigit():
            raise ValueError(f"experiment cell key {key!r}: expected 'scenario|workload|seed|day' (integers)")
        return cls(parts[0], parts[1], int(parts[2]), int(parts[3]))


@dataclass(frozen=True)
class Experiment:
    name: str = "paper"
    scenarios: tuple[str, ...] = ("abilene", "geant", "chinanet")
    workloads: tuple[str, ...] = ("servegen-mix-14d",)  # multi-day (ServeGen-shaped, Azure token lengths)
    traces: tuple[str, ...] = ("azure-2023-conv", "azure-2023-code")  # the Azure 2023 hour traces
    baselines: tuple[str, ...] = BASELINES
    torta: tuple[str, ...] = TORTA_FAMILY
    seeds: int = 5
    test_days: tuple[int, ...] = EVAL_PROTOCOL.test_days
    hours: float = 0.25  # replayed window of each test day (first `hours` hours)
    trace_hours: float = 1.0  # of each hour trace (the whole trace)
    tune_day: int = EVAL_PROTOCOL.validation_day
    tune_hours: float = 0.25  # SkyLB tuning and baseline selection window on the validation day
    skylb_candidates: tuple[float, ...] = EVAL_PROTOCOL.skylb_candidates
    train_days: tuple[int, int] = EVAL_PROTOCOL.train_days  # PPO training window (torta train), recorded only

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.hours <= 0 or self.trace_hours <= 0 or self.tune_hours <= 0:
            raise ValueError("hours, trace_hours and tune_hours must be > 0")
        if not self.scenarios or not (self.workloads or self.traces):
            raise ValueError("an experiment needs at least one scenario and one workload or trace")
        if self.tune_day in self.test_days:
            raise ValueError(f"tune_day {self.tune_day} overlaps the test days {self.test_days}")
        lo, hi = self.train_days
        if any(lo <= d <= hi for d in (*self.test_days, self.tune_day)):
            raise ValueError(f"training days {self.train_days} overlap validation/test days")

    @property
    def policies(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.baselines, *self.torta)))

    def test_cells(self) -> list[Cell]:
        out = [Cell(sc, wl, s, d) for sc in self.scenarios for wl in self.workloads
               for d in self.test_days for s in range(self.seeds)]
        out += [Cell(sc, tr, s, TRACE_DAY) for sc in self.scenarios for tr in self.traces for s in range(self.seeds)]
        return out

    def validation_cells(self) -> list[Cell]:
        """Day 11, seed 0, per scenario: SkyLB tuning and the strongest baseline. Hour traces have no
        validation day: they use the choice made on the scenario's first multi-day workload."""
        wl = self.workloads[0] if self.workloads else None
        return [Cell(sc, wl, 0, self.tune_day, role="validation") for sc in self.scenarios] if wl else []

    def with_policies(self, available: set[str]) -> "Experiment":
        """Drop the policies that are not available (unregistered, or PPO without a checkpoint)."""
        return replace(self, baselines=tuple(p for p in self.baselines if p in available),
                       torta=tuple(p for p in self.torta if p in available))

    def claim_policy(self) -> str | None:
        return next((p for p in CLAIM_CANDIDATES if p in self.torta), None)


def paper_experiment(*, reduced: bool = False, seeds: int | None = None, hours: float | None = None,
                     scenarios: tuple[str, ...] | None = None, workloads: tuple[str, ...] | None = None,
                     traces: tuple[str, ...] | None = None, policies: tuple[str, ...] | None = None,
                     days: int | None = None) -> Experiment:
    """The full experiment, or with `reduced` the CI-sized one (1 topology, 2 seeds, 3 policies, a
    few minutes of one test day and of one hour trace). Options override either."""
    if reduced:
        exp = Experiment(name="paper-reduced", scenarios=("abilene",), traces=("azure-2023-code",), seeds=2,
                         test_days=(12,), hours=0.05, trace_hours=0.05, tune_hours=0.05,
                         baselines=("least-loaded", "skylb"), torta=("torta-ot",), skylb_candidates=(1.0, 4.0))
    else:
        exp = Experiment()
    changes: dict = {}
    if seeds is not None:
        changes["seeds"] = seeds
    if hours is not None:
        changes["hours"] = hours
    if scenarios:
        changes["scenarios"] = tuple(scenarios)
    if workloads is not None:
        changes["workloads"] = tuple(workloads)
    if traces is not None:
        changes["traces"] = tuple(traces)
    if days is not None:
        all_days = EVAL_PROTOCOL.test_days
        if not 1 <= days <= len(all_days):
            raise ValueError(f"days must be 1..{len(all_days)} (test days {all_days[0]}-{all_days[-1]}), got {days}")
        changes["test_days"] = all_days[:days]
    if policies:
        unknown = [p for p in policies if p not in (*BASELINES, *TORTA_FAMILY)]
        if unknown:
            raise ValueError(f"unknown experiment policies {unknown}; valid: {[*BASELINES, *TORTA_FAMILY]}")
        changes["baselines"] = tuple(p for p in policies if p in BASELINES)
        changes["torta"] = tuple(p for p in policies if p in TORTA_FAMILY)
    return replace(exp, **changes) if changes else exp


__all__ = ["BASELINES", "TORTA_FAMILY", "PPO_POLICIES", "CLAIM_CANDIDATES", "TRACE_DAY", "Cell", "Experiment",
           "paper_experiment"]
