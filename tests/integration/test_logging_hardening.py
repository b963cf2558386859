"""Logging never wedges the daemon (issue 13 items 1, 5, 26): a stdout whose reader went away,
non-JSON lines on stdout, the start-up summary. The real daemon runs as a child process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import _next_rtp_range
from tests.gateway_proc import REPO, base_config, merge, to_toml
from tests.rawsip import UdpPeer, request

EXIT_BOUND_S = 30.0       # drain grace 0.5 s plus bounded shutdown steps, generous for CI
NO_TRITON: dict[str, Any] = {"triton": {"asr_enabled": False, "required_for_ready": False},
                             "tts": {"enabled": False},
                             "sip": {"drain_grace_s": 0.5}}


class Daemon:
    """The gateway with its stdout in a pipe this test controls (and may close)."""

    def __init__(self, tmp: Path, extra: dict[str, Any], *, stderr: IO[bytes] | int,
                 args: tuple[str, ...] = ()) -> None:
        cfg = merge(base_config(tmp, _next_rtp_range()), merge(NO_TRITON, extra))
        (tmp / "gateway.toml").write_text(to_toml(cfg))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(tmp / "gateway.toml"),
             *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr)
        self.started = self._read_until("gateway.started", 240.0)
        self.sip_port = int(self.started["sip"]["port"])
        self.http_port = int(self.started["http_port"])

    def _read_until(self, event: str, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        seen: list[bytes] = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if item.get("event") == event:
                return dict(item)
        raise AssertionError(f"no {event}; output:\n" + b"".join(seen[-30:]).decode())

    def close_reader(self) -> None:
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def http(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}",
                                        timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


def _make_it_log(d: Daemon) -> None:
    """Messages that log at info: an unparsable datagram (sip.dropped), then an OPTIONS that
    must still be answered."""
    peer = UdpPeer()
    try:
        for _ in range(3):
            peer.send(b"NOT SIP AT ALL\r\n\r\n", d.sip_port)
            peer.send(request("OPTIONS", d.sip_port, local_port=peer.port), d.sip_port)
            replies = peer.replies(timeout_s=5.0)
            assert replies and replies[-1].status == 200, "OPTIONS unanswered after EPIPE"
    finally:
        peer.close()


def _metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _stop_within_bound(d: Daemon) -> int:
    d.proc.send_signal(signal.SIGTERM)
    try:
        return d.proc.wait(EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"SIGTERM ignored for {EXIT_BOUND_S} s after stdout broke") from None


def test_a_closed_stdout_pipe_neither_wedges_nor_kills_the_daemon(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    """`asr-gateway run 2>&1 | tee log`, then tee dies: stdout and stderr both hit EPIPE."""
    d = Daemon(tmp_path, {}, stderr=subprocess.STDOUT)
    daemons.append(d)
    d.close_reader()
    _make_it_log(d)
    status, body = d.http("/readyz")
    assert status == 200, body
    assert json.loads(body)["checks"]["sip_dispatch"]["ok"] is True
    metrics = d.http("/metrics")[1].decode()
    assert _metric(metrics, "gateway_log_write_errors_total") >= 1
    assert _metric(metrics, "gateway_log_lines_dropped_total") >= 1
    assert _stop_within_bound(d) == 0


def test_log_lines_fall_back_to_stderr_when_stdout_breaks(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    err_path = tmp_path / "stderr.log"
    with err_path.open("wb") as err:
        d = Daemon(tmp_path, {}, stderr=err)
        daemons.append(d)
        d.close_reader()
        _make_it_log(d)
        assert _stop_within_bound(d) == 0
    lines = [json.loads(x) for x in err_path.read_text().splitlines() if x.strip()]
    events = [x.get("event") for x in lines]
    assert "sip.dropped" in events and "shutdown.requested" in events
    assert events[-1] == "gateway.stopped"
