"""The evaluation protocol as one frozen value (DESIGN.md, Evaluation protocol): which days train, tune and
test, and what is tuned on the validation day. Compare, run specs, the experiment and the Dagster assets
read `EVAL_PROTOCOL`; a different protocol is a different `EvalProtocol` passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalProtocol:
    """Days are 1-based days of a 14-day multi-day workload (torta.workload)."""

    train_days: tuple[int, int] = (1, 10)
    """Inclusive range of days the learned policy trains on (`torta train`); never validated or tested on."""

    validation_day: int = 11
    """The day hyperparameters are chosen on (SkyLB's threshold, the strongest baseline, the micro
    allocator's settings in torta.allocator.config): disjoint from training and test days."""

    test_days: tuple[int, ...] = (12, 13, 14)
    """The days results are reported on; the first is where a window starts unless told otherwise."""

    skylb_candidates: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    """SkyLB thresholds (pending requests per server) tried on the validation day; the one with the lowest
    mean response time is used on the test days. Doubling steps around the policy's default of 2."""

    history_days: int = 4
    """Days of demand history before a window that a policy gets through `prepare` (its forecaster's
    input): enough for a daily season."""

    warmup_h: float = 2.0
    """Hours of unscored warm-up through the same policy before every scored window (the end of the
    previous day before a test day's start): queues, loaded models and backlog carry over, so a window
    scores the policies, not the start from the initial placement (issue 17). `torta compare`'s and
    `torta replay`'s `--warmup-hours` default to 0 for quick looks; the experiment uses this."""

    state_refresh_s: float = 5.0
    """The control-plane information model's load-report interval (seconds; torta.sim.infomodel): each
    origin's gateway sees other regions as of their last report, delayed by the one-way latency. An
    assumption, not a cited figure: deployed balancers make it a configured interval (Envoy's LRS
    `load_reporting_interval`, ORCA's `oob_reporting_period`) and no default for cross-region routing
    was found; 5 s is a few seconds of aggregation on top of the network delay. 0 = instant global
    state (the oracle, reported as a reference line). The CLI's `--state-refresh-s` defaults to 0."""

    def __post_init__(self) -> None:
        lo, hi = self.train_days
        if not 1 <= lo <= hi:
            raise ValueError(f"EvalProtocol.train_days must be (lo, hi) with 1 <= lo <= hi, got {self.train_days}")
        if not self.test_days:
            raise ValueError("EvalProtocol.test_days must not be empty")
        if self.validation_day in self.test_days:
            raise ValueError(f"EvalProtocol.validation_day {self.validation_day} overlaps the test days "
                             f"{self.test_days}")
        if any(lo <= d <= hi for d in (*self.test_days, self.validation_day)):
            raise ValueError(f"EvalProtocol.train_days {self.train_days} overlap validation/test days")
        if not self.skylb_candidates or any(not c > 0 for c in self.skylb_candidates):
            raise ValueError(f"EvalProtocol.skylb_candidates must be positive, got {self.skylb_candidates}")
        if not self.warmup_h >= 0:
            raise ValueError(f"EvalProtocol.warmup_h must be >= 0, got {self.warmup_h}")
        if not self.state_refresh_s >= 0:
            raise ValueError(f"EvalProtocol.state_refresh_s must be >= 0, got {self.state_refresh_s}")
        if self.history_days < 1:
            raise ValueError(f"EvalProtocol.history_days must be >= 1, got {self.history_days}")

    @property
    def first_test_day(self) -> int:
        return self.test_days[0]


EVAL_PROTOCOL = EvalProtocol()
