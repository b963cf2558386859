"""The SIP shell (gateway/sip/service.py + transport.py) in-process on a loopback UDP socket.

A hand-written SIP peer (tests/rawsip.py, not the gateway's parser) talks to a started
SipService; the call side is a small in-process implementation of the
:class:`~gateway.sip.callside.CallSide` interface that answers or rejects as told and
records what SIP reports. No media: the answer names an RTP port nobody sends to.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from gateway.config import GatewayConfig
from gateway.events.bus import EventBus
from gateway.metrics import Metrics
from gateway.sip.callside import SipControl
from gateway.sip.service import SipService
from tests.rawsip import Reply, UdpPeer, request, response_to, sdp_offer

ANSWER_PORT = 40_000
REPLY_S = 10.0                    # generous: a shared 2-core machine


class ScriptedCalls:
    """A CallSide that answers (or rejects with ``reject_status``) every offer."""

    def __init__(self) -> None:
        self.sip: SipControl | None = None
        self.seen: list[tuple[str, Any]] = []
        self.reject_status: int | None = None
        self.changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    @property
    def active(self) -> int:
        offered = {c for name, c in self.seen if name == "offered"}
        ended = {c[0] for name, c in self.seen if name == "ended"}
        return len(offered - ended)

    def bind(self, sip: SipControl) -> None:
        self.sip = sip

    def _saw(self, name: str, detail: Any) -> None:
        self.seen.append((name, detail))
        self.changed.set()

    def offered(self, call_id: str, meta: Any, plan: Any, media: Any) -> None:
        self._saw("offered", call_id)
        assert self.sip is not None
        sip = self.sip
        if self.reject_status is not None:
            status = self.reject_status
            self._loop.call_soon(sip.reject, call_id, status, "Busy Here")
        else:
            ports = [ANSWER_PORT if s.accepted else None for s in plan.streams]
            self._loop.call_soon(sip.answer, call_id, ports)

    def metadata_updated(self, call_id: str, metadata: Any, error: str | None) -> None:
        self._saw("metadata_updated", call_id)

    def answered(self, call_id: str) -> None:
        self._saw("answered", call_id)

    def confirmed(self, call_id: str) -> None:
        self._saw("confirmed", call_id)

    def media_changed(self, call_id: str, plan: Any) -> None:
        self._saw("media_changed", call_id)

    def ended(self, call_id: str, reason: str, by: str, answered: bool) -> None:
        self._saw("ended", (call_id, reason, by, answered))

    async def wait_idle(self, timeout_s: float) -> bool:
        return self.active == 0

    async def stop(self) -> None:
        return None

    def summary(self, call_id: str) -> dict[str, Any] | None:
        return None

    def summaries(self) -> list[dict[str, Any]]:
        return []

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]

    async def wait_for(self, name: str, timeout_s: float = REPLY_S) -> Any:
        async def seen() -> Any:
            while True:
                for n, detail in self.seen:
                    if n == name:
                        return detail
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(seen(), timeout_s)


def _config() -> GatewayConfig:
    cfg = GatewayConfig()
    return dataclasses.replace(
        cfg, sip=dataclasses.replace(cfg.sip, bind_address="127.0.0.1", port=0,
                                     transports=("udp",), t1_ms=100),
        rtp=dataclasses.replace(cfg.rtp, bind_address="127.0.0.1"))


@pytest.fixture
async def sip() -> AsyncIterator[tuple[SipService, ScriptedCalls, Metrics]]:
    metrics = Metrics()
    calls = ScriptedCalls()
    service = SipService(_config(), metrics, EventBus(metrics), calls)
    await service.start()
    try:
        yield service, calls, metrics
    finally:
        await service.stop()


@pytest.fixture
def peer() -> Iterator[UdpPeer]:
    p = UdpPeer()
    yield p
    p.close()


async def replies(peer: UdpPeer) -> list[Reply]:
    return await asyncio.to_thread(peer.replies, True, REPLY_S)


def tag_of(header: str | None) -> str:
    m = re.search(r";tag=([^;>\s]+)", header or "")
    assert m, header
    return m.group(1)


async def invite(peer: UdpPeer, port: int, call_id: str) -> tuple[list[Reply], bytes]:
    raw = request("INVITE", port, local_port=peer.port, call_id=call_id,
                  headers="Content-Type: application/sdp", body=sdp_offer(30_000))
    peer.send(raw, port)
    return await replies(peer), raw


async def test_options_is_answered_on_the_bound_port(sip: tuple[SipService, Any, Metrics],
                                                     peer: UdpPeer) -> None:
    service, _calls, metrics = sip
    assert service.is_listening() and service.port > 0
    peer.send(request("OPTIONS", service.port, local_port=peer.port), service.port)
    got = await replies(peer)
    assert [r.status for r in got] == [200]
    assert metrics.registry.get_sample_value(
        "gateway_sip_messages_total", {"direction": "in", "transport": "udp"}) == 1


async def test_a_call_is_offered_answered_confirmed_and_ended_by_the_peers_bye(
        sip: tuple[SipService, ScriptedCalls, Metrics], peer: UdpPeer) -> None:
    service, calls, _metrics = sip
    call_id = secrets.token_hex(8)
    got, _raw = await invite(peer, service.port, call_id)
    assert [r.status for r in got][-1] == 200, [r.raw for r in got]
    assert 180 in [r.status for r in got]                  # send_ringing
    ok = got[-1]
    assert b"m=audio 40000 RTP/AVP 0" in ok.body and b"c=IN IP4 127.0.0.1" in ok.body
    to_tag = tag_of(ok.header("To"))
    peer.send(request("ACK", service.port, local_port=peer.port, call_id=call_id,
                      to_tag=to_tag), service.port)
    await calls.wait_for("confirmed")
    assert service.active_calls == 1
    peer.send(request("BYE", service.port, local_port=peer.port, call_id=call_id,
                      to_tag=to_tag, cseq=2), service.port)
    assert [r.status for r in await replies(peer)] == [200]
    gw_call, _reason, by, answered = await calls.wait_for("ended")
    assert (by, answered) == ("remote", True)
    assert calls.names() == ["offered", "answered", "confirmed", "ended"]
    assert {d for n, d in calls.seen if n != "ended"} == {gw_call}
    assert service.active_calls == 0


async def test_a_rejected_offer_gets_the_call_sides_status(
        sip: tuple[SipService, ScriptedCalls, Metrics], peer: UdpPeer) -> None:
    service, calls, _metrics = sip
    calls.reject_status = 486
    call_id = secrets.token_hex(8)
    got, _raw = await invite(peer, service.port, call_id)
    final = got[-1]
    assert final.status == 486 and final.reason == "Busy Here"
    _gw_call, _reason, _by, answered = await calls.wait_for("ended")
    assert answered is False and "answered" not in calls.names()


async def test_the_call_side_hangs_up_and_the_peer_gets_a_bye(
        sip: tuple[SipService, ScriptedCalls, Metrics], peer: UdpPeer) -> None:
    service, calls, _metrics = sip
    call_id = secrets.token_hex(8)
    got, _raw = await invite(peer, service.port, call_id)
    to_tag = tag_of(got[-1].header("To"))
    peer.send(request("ACK", service.port, local_port=peer.port, call_id=call_id,
                      to_tag=to_tag), service.port)
    gw_call = await calls.wait_for("confirmed")
    assert service.hangup(gw_call, "done") is True
    bye = await asyncio.to_thread(peer.recv, REPLY_S)
    assert bye is not None and bye.startswith(b"BYE sip:tester@127.0.0.1:")
    assert f"Call-ID: {call_id}".encode() in bye
    peer.send(response_to(bye), service.port)
    _c, _reason, by, answered = await calls.wait_for("ended")
    assert (by, answered) == ("local", True)
    assert service.hangup(gw_call, "again") is False         # SIP no longer knows it


async def test_garbage_datagrams_cost_nothing_but_themselves(
        sip: tuple[SipService, ScriptedCalls, Metrics], peer: UdpPeer) -> None:
    service, _calls, _metrics = sip
    for junk in (b"", b"\x00\xff" * 40, b"INVITE\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"):
        peer.send(junk, service.port)
    peer.send(request("OPTIONS", service.port, local_port=peer.port), service.port)
    assert [r.status for r in await replies(peer)] == [200]
    healthy, detail = service.health()
    assert healthy, detail
