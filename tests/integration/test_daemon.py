"""The daemon as an operator runs it: CLI, HTTP side port, sd_notify, signals, drain, reload."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import GatewayFactory
from tests.gateway_proc import REPO, GatewayProcess
from tests.rawsip import UdpPeer, request, response_to, sdp_offer

SAMPLE = REPO / "sip_configs" / "gateway.toml"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_check_config_accepts_the_sample() -> None:
    result = _cli("check-config", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_check_config_names_the_broken_key(tmp_path: Path) -> None:
    broken = tmp_path / "gateway.toml"
    text = SAMPLE.read_text().replace("ptime_ms = 20", "ptime_ms = 25", 1)
    assert text != SAMPLE.read_text(), "sample changed: update this test"
    broken.write_text(text + '\n[bogus]\nx = 1\n')
    result = _cli("check-config", str(broken))
    assert result.returncode == 2
    assert "rtp.ptime_ms: must be one of 10, 20, 30, got 25" in result.stderr
    assert "bogus: unknown key" in result.stderr


def test_run_refuses_a_broken_config_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip]\nport = 70000\n")
    result = _cli("run", "--config", str(bad))
    assert result.returncode == 2
    assert "sip.port" in result.stderr


def test_health_ready_and_metrics_over_http(gateway: GatewayProcess) -> None:
    status, body = gateway.http("/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    gateway.wait_log("triton.unavailable")
    status, body = gateway.http("/readyz")
    assert status == 503
    checks = json.loads(body)["checks"]
    assert checks["triton"]["ready"] is False and "unreachable" in checks["triton"]["reason"]
    status, body = gateway.http("/metrics")
    text = body.decode()
    assert status == 200
    assert "gateway_active_calls 0.0" in text
    assert "gateway_triton_ready 0.0" in text
    assert "gateway_triton_errors_total" in text


def test_ready_when_triton_not_required(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory({"triton": {"required_for_ready": False}})
    status, body = gw.http("/readyz")
    assert status == 200, body
    assert json.loads(body)["ready"] is True


def test_control_routes_need_the_token(gateway_factory: GatewayFactory) -> None:
    plain = gateway_factory()
    assert plain.http("/v1/calls")[0] == 403          # no token configured: disabled
    gw = gateway_factory({"http": {"token_env": "GW_TEST_TOKEN"}},
                         env={"GW_TEST_TOKEN": "s3cret-token"})
    assert gw.http("/v1/calls")[0] == 401
    assert gw.http("/v1/calls", token="wrong")[0] == 401
    status, body = gw.http("/v1/calls", token="s3cret-token")
    assert status == 200 and json.loads(body) == {"calls": []}
    assert gw.http("/v1/calls/nope", token="s3cret-token")[0] == 404
    assert "s3cret-token" not in "".join(gw.raw)       # secrets never logged


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def collect_until(self, needle: str, timeout_s: float) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            if needle in self.messages[-1]:
                return self.messages
        raise AssertionError(f"no {needle!r} in {self.messages}")


def test_sd_notify_ready_watchdog_stopping(gateway_factory: GatewayFactory,
                                           tmp_path: Path) -> None:
    ns = NotifySocket(tmp_path / "notify.sock")
    gw = gateway_factory(env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                              "WATCHDOG_USEC": "400000"})
    msgs = ns.collect_until("READY=1", 15)
    ready = next(m for m in msgs if "READY=1" in m)
    assert "STATUS=serving; 0 active calls; triton down" in ready
    assert f"MAINPID={gw.proc.pid}" in ready if gw.proc else False
    ns.collect_until("WATCHDOG=1", 5)
    ns.collect_until("WATCHDOG=1", 5)          # repeated, driven by the loop
    gw.signal(signal.SIGTERM)
    ns.collect_until("STOPPING=1", 10)
    assert gw.wait(20) == 0


def _invite(peer: UdpPeer, gw: GatewayProcess, call_id: str) -> bytes:
    return request("INVITE", gw.sip_port, local_port=peer.port, call_id=call_id,
                   headers="Content-Type: application/sdp\r\nX-Leg: agent",
                   body=sdp_offer(peer.port + 2))


def _answer_and_ack(peer: UdpPeer, gw: GatewayProcess, call_id: str) -> str:
    peer.send(_invite(peer, gw, call_id), gw.sip_port)
    replies = peer.replies()
    assert replies[-1].status == 200, [r.raw for r in replies]
    to = replies[-1].header("To") or ""
    to_tag = to.split("tag=")[1]
    peer.send(request("ACK", gw.sip_port, local_port=peer.port, call_id=call_id,
                      to_tag=to_tag), gw.sip_port)
    return to_tag


def test_drain_rejects_new_calls_then_byes_live_ones(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory({"sip": {"drain_grace_s": 3.0}})
    peer = UdpPeer()
    _answer_and_ack(peer, gw, "live-call-1")
    gw.wait_log("call.answered")
    gw.signal(signal.SIGTERM)
    gw.wait_log("gateway.draining")
    peer.send(request("OPTIONS", gw.sip_port, local_port=peer.port), gw.sip_port)
    assert peer.replies()[-1].status == 503
    newcomer = UdpPeer()
    newcomer.send(_invite(newcomer, gw, "too-late"), gw.sip_port)
    assert newcomer.replies()[-1].status == 503
    bye = peer.recv(timeout_s=10)          # after the grace period the gateway hangs up
    assert bye is not None and bye.startswith(b"BYE "), bye
    assert b"live-call-1" in bye
    peer.send(response_to(bye), gw.sip_port)
    assert gw.wait(20) == 0
    ended = gw.wait_log("call.ended")
    assert ended["reason"] == "shutdown" and ended["by"] == "local"
    gw.wait_log("gateway.stopped")


def test_second_signal_forces_exit(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory({"sip": {"drain_grace_s": 60.0}})
    peer = UdpPeer()
    _answer_and_ack(peer, gw, "held-open")
    gw.signal(signal.SIGTERM)
    gw.wait_log("gateway.draining")
    gw.signal(signal.SIGINT)
    assert gw.wait(10) == 1
    gw.wait_log("shutdown.forced")


def test_sighup_reloads_live_keys_and_refuses_the_rest(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory({"logging": {"level": "info"}})
    text = gw.config_path.read_text()
    new_sink = gw.tmp / "events-2.jsonl"
    text = text.replace('level = "info"', 'level = "debug"')
    text = text.replace("drain_grace_s = 2.0", "drain_grace_s = 2.0\nmax_calls = 7")
    text += f'\n[[events.sinks]]\ntype = "jsonl"\npath = "{new_sink}"\n'
    text = text.replace('url = "127.0.0.1:9"', 'url = "127.0.0.1:10"')
    gw.config_path.write_text(text)
    gw.signal(signal.SIGHUP)
    reloaded = gw.wait_log("config.reloaded")
    assert "logging.level" in reloaded["changed"] and "sip.max_calls" in reloaded["changed"]
    assert "events.sinks" in reloaded["changed"]
    assert any(r.startswith("triton.url") for r in reloaded["refused"])
    peer = UdpPeer()
    peer.send(request("OPTIONS", gw.sip_port, local_port=peer.port), gw.sip_port)
    assert peer.replies()[-1].status == 200
    _answer_and_ack(peer, gw, "after-reload")
    gw.wait_log("call.answered")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "after-reload" not in (
            new_sink.read_text() if new_sink.exists() else ""):
        time.sleep(0.1)
    assert "after-reload" in new_sink.read_text()     # the new sink receives events
    gw.config_path.write_text("[sip]\nport = 99999\n")
    gw.signal(signal.SIGHUP)
    refused = gw.wait_log("config.reload_refused")
    assert any("sip.port" in e for e in refused["errors"])
    assert gw.stop() == 0


def test_systemd_units_verify() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing: the Makefile installs systemd")
    for unit in ("asr-gateway.service", "triton.service"):
        result = subprocess.run(["systemd-analyze", "verify", str(REPO / "systemd" / unit)],
                                capture_output=True, text=True, timeout=60)
        problems = [line for line in result.stderr.splitlines()
                    if "is not executable" not in line and "No such file" not in line]
        assert not problems, result.stderr


def test_events_websocket_tail_and_per_call_file(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory({"http": {"token_env": "GW_TEST_TOKEN"},
                          "triton": {"asr_enabled": False}},
                         env={"GW_TEST_TOKEN": "tok-1"})
    tail = subprocess.Popen(
        [sys.executable, "-m", "gateway", "tail", "--url", f"http://127.0.0.1:{gw.http_port}",
         "--token-env", "GW_TEST_TOKEN"], cwd=REPO, env={**os.environ, "GW_TEST_TOKEN": "tok-1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    denied = subprocess.run(
        [sys.executable, "-m", "gateway", "tail", "--url", f"http://127.0.0.1:{gw.http_port}",
         "--token-env", "NO_SUCH_VAR"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert denied.returncode == 2 and "401" in denied.stderr
    time.sleep(1.5)                       # let tail connect before the call starts
    peer = UdpPeer()
    to_tag = _answer_and_ack(peer, gw, "ws-call")
    peer.send(request("BYE", gw.sip_port, local_port=peer.port, call_id="ws-call",
                      to_tag=to_tag, cseq=2), gw.sip_port)
    assert peer.replies()[-1].status == 200
    ended = gw.wait_log("call.ended")
    time.sleep(0.5)
    tail.terminate()
    out, err = tail.communicate(timeout=10)
    short = ended["call_id"][-6:]
    assert f"[{short}] call.answered" in out and f"[{short}] call.ended remote hangup" in out, (
        out, err)
    per_call = gw.tmp / "state" / "calls" / f"{ended['call_id']}.jsonl"
    kinds = [json.loads(line)["type"] for line in per_call.read_text().splitlines()]
    assert kinds[0] == "call.offered" and kinds[-1] == "call.ended" and "call.answered" in kinds
