"""The paper-reproduction experiment as frozen dataclasses (no I/O).

DESIGN.md, Evaluation protocol: multi-day workloads are tested on days 12-14 (`test_days`), one
*cell* per (scenario, workload, seed, day) in which every policy replays the identical requests: the
whole day (`hours` = 24), after `warmup_h` unscored hours through the same policy (the end of the day
before), with every gateway on the control-plane information model at `state_refresh_s` (issue 17).
The validation day 11 (`tune_day`, also whole and warm-started) tunes SkyLB's threshold and picks the
strongest deployable baseline (by mean response time) per scenario AND workload; PPO checkpoints are
trained on days 1-10 by `torta train` (another command): the windows are disjoint.

The Azure 2023 hour traces have no days: one cell per (scenario, trace, seed), the same requests for
every seed, origins drawn per seed by the replay. Their first `trace_warmup_h` hours are both their
validation window (a cell of day `tune_day`, cold-started, where the baseline is picked for the trace)
and the test cells' unscored warm-up; the test scores the rest of the trace, so what is tuned on is
never scored.

`references`: policies replayed a second time in every cell at S = 0 (instant global state, the
oracle no deployment has), recorded as `<policy>@S0`: a reference line, never a claim's baseline.

The ablation experiment (`ablation_experiment`, `torta experiment ablation`, issue 18 item 5) is the same
protocol on the multi-day test cells only, with `torta-horizon` and its registered one-setting variants
(`ABLATIONS`) and no baselines: `paired_against` names the policy each variant is paired with per cell,
so it has no validation cells (nothing is tuned or picked).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from torta.config import EVAL_PROTOCOL

BASELINES = ("round-robin", "local-only", "least-loaded", "least-loaded-d2", "least-loaded-d4", "skylb", "myopic-ot",
             "acs")
REFERENCES = ("least-loaded",)  # replayed again at S = 0 in every cell (the oracle reference line)
ORACLE_SUFFIX = "@S0"
# TORTA and its ablations, most complete first. PPO ones need a checkpoint per scenario.
# (`ppo-only` left: it never learned, checkpoints/README.md; its rows were deleted from docs/data/paper.)
TORTA_FAMILY = ("torta", "torta-no-forecast", "torta-no-micro", "torta-ot", "torta-ot-last", "torta-ot-oracle",
                "torta-ot-hungarian", "torta-horizon", "torta-horizon-ppo")
PPO_POLICIES = ("torta", "torta-no-forecast", "torta-no-micro", "torta-horizon-ppo")
# The policy whose differences are set against the paper's claims: the first one present. TORTA as issue 18
# builds it (receding-horizon planner on the forecast + PPO acting on its decision + the micro layer that
# pre-loads to its placement) first; then the paper's single-slot design (PPO + OT); then OT alone.
CLAIM_CANDIDATES = ("torta-horizon-ppo", "torta", "torta-ot")
TRACE_DAY = 0  # `day` of a cell of an hour trace (no calendar)
# The ablation experiment: torta-horizon (H = 8, forecast, pre-loading) and one-setting variants of it
# (torta.planner.horizon_policy), each paired against it per cell.
ABLATION_REFERENCE = "torta-horizon"
ABLATIONS = ("torta-horizon-h1", "torta-horizon-h4", "torta-horizon-h12", "torta-horizon-oracle",
             "torta-horizon-last", "torta-horizon-no-preload")
# Variants not run unless asked for with `--policies` (issue 18 item 3: PPO acting on the horizon
# planner's decision; registered by another change, with its checkpoints): dropped when not registered.
ABLATIONS_OPTIONAL = ("torta-horizon-ppo",)


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
    seeds: int = 1
    test_days: tuple[int, ...] = EVAL_PROTOCOL.test_days
    hours: float = 24.0  # scored window of each test day (its first `hours` hours: the whole day)
    trace_hours: float = 1.0  # of each hour trace (the whole trace)
    tune_day: int = EVAL_PROTOCOL.validation_day
    tune_hours: float = 24.0  # SkyLB tuning and baseline selection window on the validation day
    warmup_h: float = EVAL_PROTOCOL.warmup_h  # unscored hours before each multi-day window
    trace_warmup_h: float = 0.25  # an hour trace's first hours: its validation window and unscored warm-up
    state_refresh_s: float = EVAL_PROTOCOL.state_refresh_s  # control-plane load-report interval (infomodel)
    references: tuple[str, ...] = REFERENCES
    skylb_candidates: tuple[float, ...] = EVAL_PROTOCOL.skylb_candidates
    train_days: tuple[int, int] = EVAL_PROTOCOL.train_days  # PPO training window (torta train), recorded only
    paired_against: str = ""  # an ablation: the policy every other one is paired with (no baselines, no validation)

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.hours <= 0 or self.trace_hours <= 0 or self.tune_hours <= 0:
            raise ValueError("hours, trace_hours and tune_hours must be > 0")
        if self.warmup_h < 0 or self.state_refresh_s < 0:
            raise ValueError(f"warmup_h ({self.warmup_h}) and state_refresh_s ({self.state_refresh_s}) must be >= 0")
        if self.traces and not 0 < self.trace_warmup_h < self.trace_hours:
            raise ValueError(f"trace_warmup_h {self.trace_warmup_h} must be in (0, trace_hours = {self.trace_hours})")
        if not self.scenarios or not (self.workloads or self.traces):
            raise ValueError("an experiment needs at least one scenario and one workload or trace")
        if self.paired_against and self.paired_against not in self.torta:
            raise ValueError(f"paired_against {self.paired_against!r} must be one of the experiment's policies "
                             f"{self.torta}")
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
        """Seed 0, per scenario and workload: day 11 of a multi-day workload, the first `trace_warmup_h`
        of an hour trace (key day `tune_day`): SkyLB tuning and the strongest baseline. None for an
        ablation (`paired_against`): nothing is tuned or picked."""
        if self.paired_against:
            return []
        return [Cell(sc, wl, 0, self.tune_day, role="validation") for sc in self.scenarios
                for wl in (*self.workloads, *self.traces)]

    def reference_policies(self) -> tuple[str, ...]:
        """The S = 0 oracle runs of every cell (`<policy>@S0`); none when the experiment runs at S = 0."""
        if self.state_refresh_s == 0:
            return ()
        return tuple(f"{p}{ORACLE_SUFFIX}" for p in self.references if p in self.baselines)

    def with_policies(self, available: set[str]) -> "Experiment":
        """Drop the policies that are not available (unregistered, or PPO without a checkpoint)."""
        return replace(self, baselines=tuple(p for p in self.baselines if p in available),
                       torta=tuple(p for p in self.torta if p in available))

    def claim_policy(self) -> str | None:
        return next((p for p in CLAIM_CANDIDATES if p in self.torta), None)


def paper_experiment(*, reduced: bool = False, seeds: int | None = None, hours: float | None = None,
                     scenarios: tuple[str, ...] | None = None, workloads: tuple[str, ...] | None = None,
                     traces: tuple[str, ...] | None = None, policies: tuple[str, ...] | None = None,
                     days: int | None = None, warmup_h: float | None = None,
                     state_refresh_s: float | None = None) -> Experiment:
    """The full experiment, or with `reduced` the CI-sized one (1 topology, 2 seeds, 3 policies, a
    few minutes of one test day and of one hour trace). Options override either."""
    if reduced:
        exp = Experiment(name="paper-reduced", scenarios=("abilene",), traces=("azure-2023-code",), seeds=2,
                         test_days=(12,), hours=0.05, trace_hours=0.5, tune_hours=0.05, warmup_h=0.25,
                         trace_warmup_h=0.25, baselines=("least-loaded", "skylb"), torta=("torta-ot",),
                         skylb_candidates=(1.0, 4.0))
    else:
        exp = Experiment()
    changes: dict = {}
    if seeds is not None:
        changes["seeds"] = seeds
    if hours is not None:
        changes["hours"] = hours
        changes["tune_hours"] = hours
    if warmup_h is not None:
        changes["warmup_h"] = warmup_h
    if state_refresh_s is not None:
        changes["state_refresh_s"] = state_refresh_s
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


def ablation_experiment(*, seeds: int | None = None, hours: float | None = None,
                        scenarios: tuple[str, ...] | None = None, workloads: tuple[str, ...] | None = None,
                        policies: tuple[str, ...] | None = None, days: int | None = None,
                        warmup_h: float | None = None, state_refresh_s: float | None = None) -> Experiment:
    """The ablations of torta-horizon on the evaluation protocol: the paper experiment's multi-day test
    cells (abilene, geant, chinanet x days 12-14, seed 0; no hour traces), `torta-horizon` and `ABLATIONS`
    (or `policies`, which must include `torta-horizon`), each variant paired against it per cell."""
    chosen = tuple(policies) if policies else (ABLATION_REFERENCE, *ABLATIONS)
    valid = (ABLATION_REFERENCE, *ABLATIONS, *ABLATIONS_OPTIONAL)
    unknown = [p for p in chosen if p not in valid]
    if unknown:
        raise ValueError(f"unknown ablation policies {unknown}; valid: {list(valid)}")
    if ABLATION_REFERENCE not in chosen:
        raise ValueError(f"ablation policies {list(chosen)} must include {ABLATION_REFERENCE!r} (every variant "
                         "is paired against it)")
    base = paper_experiment(seeds=seeds, hours=hours, scenarios=scenarios, workloads=workloads, traces=(),
                            days=days, warmup_h=warmup_h, state_refresh_s=state_refresh_s)
    return replace(base, name="ablation", baselines=(), references=(),
                   torta=tuple(dict.fromkeys((ABLATION_REFERENCE, *chosen))), paired_against=ABLATION_REFERENCE)


__all__ = ["ABLATIONS", "ABLATIONS_OPTIONAL", "ABLATION_REFERENCE", "ablation_experiment", "BASELINES", "REFERENCES", "ORACLE_SUFFIX", "TORTA_FAMILY", "PPO_POLICIES", "CLAIM_CANDIDATES", "TRACE_DAY", "Cell", "Experiment",
           "paper_experiment"]
