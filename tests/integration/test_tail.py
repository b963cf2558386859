"""``asr-gateway tail`` against the real daemon: the gateway goes away and comes back,
the token is refused, and spoken replies and the call summary show up."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from typing import IO, Any

import pytest

from tests.conftest import GatewayFactory
from tests.gateway_proc import REPO, GatewayProcess
from tests.integration.test_daemon import _answer_and_ack
from tests.peers.ports import free_tcp_port
from tests.rawsip import UdpPeer, request

pytestmark = pytest.mark.slow
TOKEN = "tail-test-token"
TOKEN_ENV = "TAIL_TEST_TOKEN"


class Tail:
    """``python -m gateway tail`` with its stdout and stderr read line by line."""

    def __init__(self, port: int, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "tail", "--url", f"http://127.0.0.1:{port}",
             "--token-env", TOKEN_ENV, *args], cwd=REPO, text=True,
            env={**os.environ, TOKEN_ENV: TOKEN, **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out: list[str] = []
        self.err: list[str] = []
        self._lines: queue.Queue[tuple[str, str]] = queue.Queue()
        for name, stream, sink in (("out", self.proc.stdout, self.out),
                                   ("err", self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(name, stream, sink), daemon=True).start()

    def _read(self, name: str, stream: IO[str] | None, sink: list[str]) -> None:
        assert stream is not None
        for line in stream:
            sink.append(line.rstrip("\n"))
            self._lines.put((name, line))

    def wait_for(self, stream: str, needle: str, timeout_s: float) -> str:
        lines = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = next((line for line in lines if needle in line), None)
            if found is not None:
                return found
            try:
                self._lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self._lines.empty():
                    time.sleep(0.2)               # let the readers finish
                    found = next((line for line in lines if needle in line), None)
                    if found is not None:
                        return found
                    break
        raise AssertionError(f"no {needle!r} on tail's std{stream} within {timeout_s} s:\n"
                             f"out: {self.out}\nerr: {self.err}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def _gateway(factory: GatewayFactory, http_port: int = 0, **extra: Any) -> GatewayProcess:
    cfg: dict[str, Any] = {"http": {"token": TOKEN, "port": http_port},
                           "triton": {"asr_enabled": False}}
    for key, value in extra.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    return factory(cfg)


def _call(gw: GatewayProcess, sip_call_id: str) -> str:
    """A raw SIP call that is answered and hung up by the caller; the gateway's call_id."""
    peer = UdpPeer()
    to_tag = _answer_and_ack(peer, gw, sip_call_id)
    time.sleep(0.5)
    peer.send(request("BYE", gw.sip_port, local_port=peer.port, call_id=sip_call_id,
                      to_tag=to_tag, cseq=2), gw.sip_port)
    ended = gw.wait_log("call.ended", 10, lambda e: e["sip_call_id"] == sip_call_id)
    return str(ended["call_id"])


def _connected(tail: Tail, gw: GatewayProcess, sip_call_id: str) -> str:
    """Calls until tail shows one (it may not be connected yet); the short call id."""
    for attempt in range(10):
        short = _call(gw, f"{sip_call_id}-{attempt}")[-6:]
        try:
            tail.wait_for("out", f"[{short}] call.ended", 3)
            return short
        except AssertionError:
            continue
    raise AssertionError(f"tail never showed a call: {tail.out} {tail.err}")


def test_tail_reconnects_when_the_gateway_restarts(gateway_factory: GatewayFactory) -> None:
    port = free_tcp_port()
    first = _gateway(gateway_factory, port)
    tail = Tail(port, "--reconnect-for", "60")
    try:
        short = _connected(tail, first, "before")
        line = tail.wait_for("out", f"[{short}] call.ended remote hangup: ", 1)
        assert "0 finals" in line and " RTP " in line, line
        assert first.stop() == 0
        tail.wait_for("err", "the gateway is shutting down (close code 1001); reconnecting", 10)
        time.sleep(1.5)                                    # a failed attempt or two
        assert tail.proc.poll() is None, "tail must keep trying"
        second = _gateway(gateway_factory, port)
        tail.wait_for("err", "reconnected to", 20)
        _connected(tail, second, "after")
        assert tail.proc.poll() is None
    finally:
        tail.close()


def test_tail_gives_up_after_reconnect_for(gateway_factory: GatewayFactory) -> None:
    gw = _gateway(gateway_factory)
    tail = Tail(gw.http_port, "--reconnect-for", "3")
    try:
        _connected(tail, gw, "give-up")
        assert gw.stop() == 0
        assert tail.proc.wait(20) == 1
        tail.wait_for("err", "no connection for 3 s; giving up", 2)
    finally:
        tail.close()


def test_tail_no_reconnect_exits_1_saying_why(gateway_factory: GatewayFactory) -> None:
    gw = _gateway(gateway_factory)
    tail = Tail(gw.http_port, "--no-reconnect")
    try:
        _connected(tail, gw, "no-reconnect")
        started = time.monotonic()
        assert gw.stop() == 0
        assert tail.proc.wait(15) == 1
        assert time.monotonic() - started < 10
        tail.wait_for("err", "the gateway is shutting down (close code 1001); exiting "
                      "(--no-reconnect)", 2)
    finally:
        tail.close()


def test_refused_token_names_the_variable(gateway_factory: GatewayFactory) -> None:
    gw = _gateway(gateway_factory)
    env = {k: v for k, v in os.environ.items() if k != "ASR_GW_HTTP_TOKEN"}
    unset = subprocess.run([sys.executable, "-m", "gateway", "tail", "--url",
                            f"http://127.0.0.1:{gw.http_port}"], cwd=REPO, env=env, text=True,
                           capture_output=True, timeout=30)
    assert unset.returncode == 2, unset
    assert "HTTP 401" in unset.stderr and "ASR_GW_HTTP_TOKEN is not set" in unset.stderr
    wrong = subprocess.run([sys.executable, "-m", "gateway", "tail", "--url",
                            f"http://127.0.0.1:{gw.http_port}"], cwd=REPO, text=True,
                           env={**env, "ASR_GW_HTTP_TOKEN": "wrong"}, capture_output=True,
                           timeout=30)
    assert wrong.returncode == 2, wrong
    assert "refused the token in ASR_GW_HTTP_TOKEN" in wrong.stderr, wrong.stderr


def test_unreachable_gateway_exits_1_at_once() -> None:
    port = free_tcp_port()
    result = subprocess.run([sys.executable, "-m", "gateway", "tail", "--url",
                             f"http://127.0.0.1:{port}"], cwd=REPO, text=True,
                            capture_output=True, timeout=30)
    assert result.returncode == 1, result
    assert "cannot connect" in result.stderr


def test_tail_shows_spoken_replies_and_the_summary(tts_loaded: str,
                                                   gateway_factory: GatewayFactory) -> None:
    gw = _gateway(gateway_factory, triton={"url": tts_loaded},
                  tts={"greeting": "Hello, how can I help?"})
    gw.wait_log("triton.ready", 20)
    tail = Tail(gw.http_port)
    try:
        time.sleep(1.5)                      # connected before the call (checked below)
        peer = UdpPeer()
        to_tag = _answer_and_ack(peer, gw, "tail-reply")
        gw.wait_log("tts.finished", 30)
        peer.send(request("BYE", gw.sip_port, local_port=peer.port, call_id="tail-reply",
                          to_tag=to_tag, cseq=2), gw.sip_port)
        ended = gw.wait_log("call.ended", 15)
        short = ended["call_id"][-6:]
        tail.wait_for("out", f"[{short}]    reply: Hello, how can I help? (greeting)", 5)
        tail.wait_for("out", f"[{short}]    reply: (finished, ", 5)
        summary = tail.wait_for("out", f"[{short}] call.ended remote hangup: ", 5)
        assert "1 reply (" in summary and " s spoken)" in summary, summary
    finally:
        tail.close()
