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
from tests.peers.ports import distinct_tcp_ports
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


_ORPHAN_MARKERS: list[str] = []


def request_cleanup(marker: str) -> None:
    """After the test, kill what still runs with ``marker`` (this test's own paths) in its
    command line: a failed test must not leave its Triton behind."""
    _ORPHAN_MARKERS.append(marker)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()
    while _ORPHAN_MARKERS:
        for pid in _processes_mentioning(_ORPHAN_MARKERS.pop()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


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


def _triton_args(venv: Path) -> tuple[str, ...]:
    """A local Triton on free HTTP/metrics ports (the defaults 8000/8002 may be taken)."""
    return ("--triton-venv", str(venv), "--triton-http-port", "0", "--triton-metrics-port", "0")


def test_a_closed_stdout_pipe_neither_wedges_nor_kills_the_daemon(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    """`asr-gateway run 2>&1 | tee log`, then tee dies: stdout and stderr both hit EPIPE."""
    d = Daemon(tmp_path, {}, stderr=subprocess.STDOUT)
    daemons.append(d)
    d.close_reader()
    _make_it_log(d)
    _call(d, "after-epipe", seconds=0.3)       # INVITEs are still answered, BYE too
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


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
def test_ctrl_c_through_a_closed_pipe_stops_the_daemon_and_its_triton(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    """`asr-gateway run --triton-venv ... 2>&1 | tee log`, tee dies, then SIGINT (Ctrl-C):
    the gateway exits cleanly and the Triton it started is gone."""
    venv = REPO / ".venv-triton"
    if not (venv / "bin" / "python").exists():
        pytest.fail(f"no Triton venv at {venv}: run make triton-venv", pytrace=False)
    (grpc,) = distinct_tcp_ports(1)
    extra = {"triton": {"url": f"127.0.0.1:{grpc}", "asr_model": "asr_ack",
                        "asr_enabled": True, "required_for_ready": True,
                        "connect_timeout_s": 5.0}}
    marker = str(tmp_path / "state" / "triton" / "backends")
    request_cleanup(marker)
    d = Daemon(tmp_path, extra, stderr=subprocess.STDOUT, args=_triton_args(venv))
    daemons.append(d)
    assert _processes_mentioning(marker), "Triton not found running"
    d.close_reader()
    _make_it_log(d)
    d.proc.send_signal(signal.SIGINT)
    try:
        assert d.proc.wait(EXIT_BOUND_S) == 0
    except subprocess.TimeoutExpired:
        raise AssertionError("SIGINT ignored after stdout broke") from None
    deadline = time.monotonic() + 15.0
    while _processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_mentioning(marker), "the gateway's Triton outlived it"


def _call(d: Daemon, call_id: str, seconds: float = 1.0) -> None:
    """One call: INVITE, ACK, paced RTP (a tone), BYE."""
    import re
    import socket

    import numpy as np

    from tests.media_tools import packets, send_paced
    from tests.rawsip import response_to, sdp_offer

    peer = UdpPeer()
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rtp.bind(("127.0.0.1", 0))
        peer.send(request("INVITE", d.sip_port, local_port=peer.port, call_id=call_id,
                          headers="Content-Type: application/sdp",
                          body=sdp_offer(rtp.getsockname()[1])), d.sip_port)
        final = peer.replies(timeout_s=10.0)[-1]
        assert final.status == 200, final.raw
        to_tag = (final.header("To") or "").split("tag=")[1]
        peer.send(request("ACK", d.sip_port, local_port=peer.port, call_id=call_id,
                          to_tag=to_tag), d.sip_port)
        match = re.search(rb"m=audio (\d+)", final.body)
        assert match is not None
        t = np.arange(int(8000 * seconds)) / 8000
        tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        send_paced(rtp, packets(tone, "PCMU"), ("127.0.0.1", int(match.group(1))))
        peer.send(request("BYE", d.sip_port, local_port=peer.port, call_id=call_id,
                          to_tag=to_tag, cseq=2), d.sip_port)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:       # answer requests the gateway sends us
            data = peer.recv(0.5)
            if data is None:
                break
            if not data.startswith(b"SIP/2.0"):
                peer.send(response_to(data), d.sip_port)
    finally:
        peer.close()
        rtp.close()


@pytest.mark.slow
def test_every_line_on_stdout_is_json_after_calls_and_sigterm(
        tmp_path: Path, daemons: list[Daemon]) -> None:
    """A --triton-venv gateway (the ASR path with a real Triton), calls, SIGTERM: stdout and
    stderr together hold only JSON lines (no nanobind leak report, no asyncio text)."""
    import threading

    venv = REPO / ".venv-triton"
    if not (venv / "bin" / "python").exists():
        pytest.fail(f"no Triton venv at {venv}: run make triton-venv", pytrace=False)
    (grpc,) = distinct_tcp_ports(1)
    extra = {"triton": {"url": f"127.0.0.1:{grpc}", "asr_model": "asr_ack",
                        "asr_enabled": True, "connect_timeout_s": 5.0},
             "logging": {"level": "info"}}
    request_cleanup(str(tmp_path / "state" / "triton" / "backends"))
    d = Daemon(tmp_path, extra, stderr=subprocess.STDOUT, args=_triton_args(venv))
    daemons.append(d)
    assert d.proc.stdout is not None
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.extend(d.proc.stdout or ()), daemon=True)
    reader.start()
    for n in range(2):
        _call(d, f"json-lines-{n}")
    assert _stop_within_bound(d) == 0
    reader.join(10)
    lines = [x for x in out if x.strip()]
    bad = [x for x in lines if not _is_json_object(x)]
    assert not bad, b"".join(bad[:20]).decode(errors="replace")
    events = [json.loads(x).get("event") for x in lines]
    assert events.count("call.ended") == 2 and events[-1] == "triton.stopped"


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


async def test_readyz_reflects_a_sip_side_that_stopped_answering(tmp_path: Path) -> None:
    """In-process gateway: dispatch that keeps raising, then a closed SIP socket, turn the
    readiness check red (the HTTP route serves exactly ``Gateway.readiness``)."""
    import asyncio

    from gateway.config import parse_config
    from gateway.server import Gateway

    cfg = parse_config(merge(base_config(tmp_path, _next_rtp_range()), NO_TRITON), {}, tmp_path)
    gw = Gateway(cfg)
    await gw.start()
    try:
        assert gw.readiness()[0] is True
        peer = UdpPeer()

        def broken(*_args: Any) -> Any:
            raise BrokenPipeError(32, "Broken pipe")

        gw.sip.core.receive = broken  # type: ignore[method-assign,assignment]
        for _ in range(3):
            peer.send(request("OPTIONS", gw.sip.port, local_port=peer.port), gw.sip.port)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if not gw.readiness()[0]:
                break
        ready, checks = gw.readiness()
        assert not ready and checks["sip_dispatch"]["consecutive_failures"] >= 3
        del gw.sip.core.receive                      # dispatch works again
        peer.send(request("OPTIONS", gw.sip.port, local_port=peer.port), gw.sip.port)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if gw.readiness()[0]:
                break
        assert gw.readiness()[0] is True
        peer.close()
        gw.sip._transports._udp.close()  # type: ignore[union-attr]
        await asyncio.sleep(0.05)
        ready, checks = gw.readiness()
        assert not ready and checks["sip_dispatch"]["sockets_open"] is False
    finally:
        await gw.shutdown()


def test_started_is_a_short_summary_with_resolved_paths(tmp_path: Path,
                                                        daemons: list[Daemon]) -> None:
    """Item 26: one short gateway.started line, paths without ``dir/..``; the whole config
    only at debug level (gateway.config)."""
    (tmp_path / "sub").mkdir()
    winding = f"{tmp_path}/sub/../state"
    d = Daemon(tmp_path, {"storage": {"state_dir": winding}, "logging": {"level": "debug"}},
               stderr=subprocess.STDOUT)
    daemons.append(d)
    line = json.dumps(d.started)
    assert len(line) < 1000, line
    assert "/../" not in line and "config" not in d.started
    assert d.started["state_dir"] == str((tmp_path / "state").resolve())
    assert d.started["config_file"] == str((tmp_path / "gateway.toml").resolve())
    assert d.started["logging"] == {"level": "debug", "format": "json", "sip_trace": False}
    full = d._read_until("gateway.config", 10.0)
    assert full["level"] == "debug"
    assert full["config"]["storage"]["state_dir"] == str((tmp_path / "state").resolve())
    assert full["config"]["sip"]["drain_grace_s"] == 0.5
    assert _stop_within_bound(d) == 0
