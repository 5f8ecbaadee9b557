"""The replay's progress bar (stderr): the set-up stages by name, then requests finished (completed
or dropped) as the engine hands them over, so the bar moves during the run and its rate is the
engine's throughput.

The engine hands completions over in chunks of `EngineConfig.chunk_requests`; `chunk_for(n)` asks
for about 100 updates per run (at least 2,048 requests each). Outputs do not depend on the chunk size (the completion sink writes
fixed row groups; tests/test_replay_progress.py checks the bytes)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def chunk_for(n_requests: int, default: int) -> int:
    return max(2048, min(default, n_requests // 100 or 1))


class ReplayProgress:
    def __init__(self, total: int, name: str, file=None) -> None:
        from tqdm import tqdm

        self.name = name
        self.total = total
        self.bar = tqdm(total=total, unit="req", unit_scale=True, file=file or sys.stderr, smoothing=0.1,
                        mininterval=0.25, desc=f"replay {name}: set-up")

    def stage(self, what: str) -> None:
        self.bar.set_description_str(f"replay {self.name}: {what}")

    def start(self) -> None:
        """Set-up done: the clock (and so the rate) starts with the first request."""
        self.bar.set_description_str(f"replay {self.name}")
        self.bar.reset(total=self.total)

    def sink(self, inner: Callable[[dict], None]) -> Callable[[dict], None]:
        update = self.bar.update

        def counted(batch: dict) -> None:
            inner(batch)
            update(len(batch["index"]))
        return counted

    def close(self) -> None:
        self.bar.close()
