"""`torta ui`: dagster dev on 127.0.0.1 answers GraphQL with the asset graph, and Ctrl-C (SIGINT)
stops it and all its children. About 15-20 s: it starts the webserver, daemon and code server."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest




def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_graphql_and_stops_on_sigint(tmp_path):
    port = _free_port()
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path / "home"), TORTA_WAREHOUSE=str(tmp_path / "t.duckdb"))
    proc = subprocess.Popen([sys.executable, "-m", "torta.cli", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    body = json.dumps({"query": "{ assetNodes { assetKey { path } } }"}).encode()
    t0, nodes = time.monotonic(), None
    try:
        while time.monotonic() - t0 < 120 and nodes is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as r:
                    data = json.loads(r.read())
                nodes = [n["assetKey"]["path"][-1] for n in data["data"]["assetNodes"]]
            except Exception:
                time.sleep(1)
        print(f"UI answered GraphQL after {time.monotonic() - t0:.1f} s")
        assert nodes is not None, "UI did not answer within 120 s"
        assert {"requests", "replay_run", "report", "demand", "warehouse_views", "trained_policy"} <= set(nodes)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert proc.returncode is not None
