"""Options shared by several commands, so they read the same everywhere."""

from __future__ import annotations

import sys

import click

PROGRESS_HELP = "Progress bar on stderr (default: on when stderr is a terminal)."


def progress_option(f):
    """`--progress/--no-progress`, default None: on when stderr is a terminal (`want_progress`)."""
    return click.option("--progress/--no-progress", "progress", default=None, help=PROGRESS_HELP)(f)


def want_progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


def stage(progress: bool, text: str) -> None:
    """Name a set-up stage on stderr (only with progress on)."""
    if progress:
        click.echo(text, err=True)


class StepBar:
    """Counts finished steps (replays, cells) with a bar on stderr when enabled; `log` lines go above
    it (or plainly to stderr without a bar)."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="run", file=sys.stderr, smoothing=0.0)

    def log(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg, file=sys.stderr)
        else:
            click.echo(msg, err=True)

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
