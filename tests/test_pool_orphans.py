"""A killed `torta experiment paper --workers N` (or `torta run`) must not leave its worker processes
replaying cells as orphans: `pipelines.pool.worker_pool` workers die with the process that started them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

PARENT = textwrap.dedent("""
    import os, sys, time
    from pipelines.pool import worker_pool

    with worker_pool(1) as pool:
        print(pool.submit(os.getpid).result(), flush=True)  # the worker's pid
        pool.submit(time.sleep, 120)
        print("busy", flush=True)
        time.sleep(120)
""")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its exit status waits to be collected


def _signals(pid: int) -> str:
    """The worker's blocked / ignored / caught signal masks, for the failure message."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return "status unreadable"
    return ", ".join(l for l in lines if l.startswith(("SigBlk", "SigIgn", "SigCgt", "PPid")))


def test_workers_die_even_when_sigterm_was_ignored_by_whoever_started_them(tmp_path):
    """SIG_IGN survives fork and exec: a sweep started from a process that ignores SIGTERM must still
    not leave orphans (the worker restores SIGTERM's default before asking for it on parent death)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    import signal as sig

    old = sig.signal(sig.SIGTERM, sig.SIG_IGN)
    try:
        _run_and_kill_parent()
    finally:
        sig.signal(sig.SIGTERM, old)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_workers_die_with_a_killed_parent():
    _run_and_kill_parent()


def _run_and_kill_parent() -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True, env=env,
                              cwd=root)
    try:
        worker = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "busy"
        assert _alive(worker)
        parent.send_signal(signal.SIGKILL)  # no clean-up runs in the parent
        parent.wait(timeout=10)
        deadline = time.monotonic() + 60.0  # generous: a loaded machine delivers the signal late
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), f"worker {worker} outlived its killed parent ({_signals(worker)})"
    finally:
        if parent.poll() is None:
            parent.kill()
