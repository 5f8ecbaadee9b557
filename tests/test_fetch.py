"""`torta traces fetch` against a loopback HTTP server (127.0.0.1, threads): full download, an
interrupted transfer resumed with Range, checksum and size mismatches. Never touches the internet."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from torta.cli import main
from torta.ingest.fetch import FetchError, fetch, part_path

DATA = os.urandom(3 * 1024 * 1024 + 12345)
SHA = hashlib.sha256(DATA).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802
        srv = self.server
        rng = self.headers.get("Range")
        srv.ranges.append(rng)
        if self.path != "/trace.csv":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        if rng and not srv.ignore_range:
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            if start >= len(DATA):
                self.send_response(416)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(DATA) - 1}/{len(DATA)}")
        else:
            self.send_response(200)
        body = DATA[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.cuts_left > 0:  # send part of the body, then drop the connection
            srv.cuts_left -= 1
            self.wfile.write(body[: srv.cut_at])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.ranges, srv.cuts_left, srv.cut_at, srv.ignore_range = [], 0, 1_500_000, False
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/trace.csv"
    yield srv
    srv.shutdown()
    srv.server_close()


def test_full_download_verified(server, tmp_path):
    dest = tmp_path / "t.csv"
    res = fetch(server.url, dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == DATA and res.sha256 == SHA and res.size_bytes == len(DATA)
    assert res.attempts == 1 and not res.resumed and not part_path(dest).exists()
    again = fetch(server.url, dest, sha256=SHA, progress=False)
    assert again.already_present and len(server.ranges) == 1


def test_interrupted_download_keeps_only_part_then_resumes(server, tmp_path):
    dest = tmp_path / "t.csv"
    server.cuts_left = 1
    with pytest.raises(FetchError, match="run the command again to resume"):
        fetch(server.url, dest, sha256=SHA, retries=0, progress=False)
    assert not dest.exists()
    assert part_path(dest).stat().st_size == 1_500_000
    res = fetch(server.url, dest, sha256=SHA, retries=0, progress=False)
    assert server.ranges == [None, "bytes=1500000-"]
    assert res.resumed and dest.read_bytes() == DATA and not part_path(dest).exists()


def test_resumes_within_one_call(server, tmp_path):
    dest = tmp_path / "t.csv"
    server.cuts_left = 2
    res = fetch(server.url, dest, expected_size=len(DATA), retries=3, progress=False)
    assert res.attempts == 3 and res.resumed and dest.read_bytes() == DATA
    assert server.ranges == [None, "bytes=1500000-", "bytes=3000000-"]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    dest = tmp_path / "t.csv"
    with pytest.raises(FetchError, match="sha256 mismatch"):
        fetch(server.url, dest, sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_with_manifest_leaves_nothing(server, tmp_path):
    dest = tmp_path / "t.csv"
    with pytest.raises(FetchError, match="manifest expects"):
        fetch(server.url, dest, expected_size=len(DATA) + 1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "t.csv"
    part_path(dest).write_bytes(b"stale bytes that must not survive")
    server.ignore_range = True
    res = fetch(server.url, dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == DATA and not res.resumed


def test_complete_part_answered_416_is_verified(server, tmp_path):
    dest = tmp_path / "t.csv"
    part_path(dest).write_bytes(DATA)
    res = fetch(server.url, dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == DATA and res.resumed


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(server.url.replace("trace.csv", "missing.csv"), tmp_path / "m.csv", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_file_that_does_not_verify_is_not_overwritten(server, tmp_path):
    dest = tmp_path / "t.csv"
    dest.write_bytes(b"something else")
    with pytest.raises(FetchError, match="does not verify"):
        fetch(server.url, dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == b"something else"


def test_cli_fetch_with_url_and_dest(server, tmp_path):
    r = CliRunner().invoke(main, ["traces", "fetch", "burstgpt-1", "--url", server.url, "--dest", str(tmp_path),
                                  "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["sha256"] == SHA and doc["size_bytes"] == len(DATA)
    assert (tmp_path / "BurstGPT_1.csv").read_bytes() == DATA
    assert (tmp_path / "BurstGPT_1.csv.sha256").read_text().split()[0] == SHA


def test_cli_fetch_interrupted_exits_2(server, tmp_path):
    server.cuts_left = 1
    r = CliRunner().invoke(main, ["traces", "fetch", "azure-2024-conv", "--url", server.url, "--dest", str(tmp_path),
                                  "--retries", "0", "--no-progress"])
    assert r.exit_code == 2 and "resume" in r.output
    assert not (tmp_path / "AzureLLMInferenceTrace_conv_1week.csv").exists()
    assert (tmp_path / "AzureLLMInferenceTrace_conv_1week.csv.part").exists()


def test_cli_fetch_unknown_name(tmp_path):
    r = CliRunner().invoke(main, ["traces", "fetch", "azure-2099", "--dest", str(tmp_path)])
    assert r.exit_code == 2 and "azure-2024-code" in r.output
