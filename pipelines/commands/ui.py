"""`torta ui [--port N]`: `dagster dev` on 127.0.0.1, stopped cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import click

from pipelines.instance import dagster_home, workspace_file


@click.command()
@click.option("--port", default=3000, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
def cli(port: int, host: str) -> None:
    """Start the Dagster UI and daemon (asset graph, partitions, schedules, checks)."""
    home = dagster_home()
    env = dict(os.environ, DAGSTER_HOME=str(home))
    # code location `torta` (the name the runs of `torta run` / `torta experiment paper` carry: the Timeline)
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace_file(home)), "-h", host, "-p", str(port)]
    click.echo(f"Dagster UI on http://{host}:{port} (Ctrl-C stops it)", err=True)
    # Own process group, so Ctrl-C reaches dagster dev and all its children (see notes on stopping it).
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def _stop(signum, frame):  # forward as SIGINT to the whole group: dagster's clean shutdown path
        try:
            os.killpg(proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        rc = proc.wait()
    finally:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    sys.exit(0 if rc in (0, -signal.SIGINT, 130) else rc)
