"""The TTS playout shell (gateway/tts/playout.py): a real TtsClient (tts_cpu_default) into a
real RtpEndpoint on loopback, paced G.711 packets received by a UDP peer; barge-in; a TTS
that cannot be reached fails each reply and the playout goes on."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest

from gateway.config import TritonConfig
from gateway.events.types import (
    GatewayEvent,
    ReplyFailed,
    ReplyFinished,
    ReplyInterrupted,
    ReplyStarted,
)
from gateway.media.endpoint import RtpEndpoint
from gateway.media.rtp import RtpPacket
from gateway.triton_launcher import TritonProcess
from gateway.tts.client import TtsClient
from gateway.tts.playout import Playout
from tests.peers.ports import free_tcp_port, free_udp_port_pair

HOST = "127.0.0.1"
WAIT_S = 60.0                     # synthesis plus real-time playout on a shared machine


async def until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.02)


class Listener(asyncio.DatagramProtocol):
    """The far end: records every RTP packet with its arrival time."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, RtpPacket]] = []

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.packets.append((time.monotonic(), RtpPacket.parse(data)))


@pytest.fixture
async def leg() -> AsyncIterator[tuple[RtpEndpoint, Listener]]:
    loop = asyncio.get_running_loop()
    listener = Listener()
    transport, _ = await loop.create_datagram_endpoint(lambda: listener,
                                                       local_addr=(HOST, 0),
                                                       family=socket.AF_INET)
    endpoint = RtpEndpoint(frozenset({0}), symmetric=False)
    await endpoint.open(HOST, free_udp_port_pair(), rtcp_mux=False)
    endpoint.remote = transport.get_extra_info("sockname")[:2]
    try:
        yield endpoint, listener
    finally:
        endpoint.close()
        transport.close()


def _playout(endpoint: RtpEndpoint, tts: TtsClient, events: list[GatewayEvent]) -> Playout:
    return Playout("c-1", endpoint, encoding="PCMU", payload_type=0, ptime_ms=20, tts=tts,
                   emit=events.append)


def of(events: list[GatewayEvent], kind: type) -> list[GatewayEvent]:
    return [e for e in events if isinstance(e, kind)]


async def test_a_reply_is_sent_as_paced_pcmu_packets(
        shell_triton: TritonProcess, leg: tuple[RtpEndpoint, Listener]) -> None:
    endpoint, listener = leg
    tts = TtsClient(TritonConfig(url=shell_triton.grpc_url, tts_model="tts_cpu_default"))
    events: list[GatewayEvent] = []
    playout = _playout(endpoint, tts, events)
    try:
        reply = playout.say("Hello, this is the help desk.", barge_in=True, source="api")
        await until(lambda: bool(of(events, ReplyFinished)))
    finally:
        await playout.close()
        await tts.close()
    assert [type(e) for e in events] == [ReplyStarted, ReplyFinished]
    finished = of(events, ReplyFinished)[0]
    assert isinstance(finished, ReplyFinished) and finished.reply_id == reply.reply_id
    packets = [p for _, p in listener.packets]
    assert len(packets) == reply.sent_packets and finished.played_ms == 20 * len(packets)
    assert len(packets) > 50                                  # over a second of speech
    assert all(p.payload_type == 0 and len(p.payload) == 160 for p in packets)
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    stamps = [p.timestamp for p in packets]
    assert all((b - a) % 2**32 == 160 for a, b in zip(stamps, stamps[1:], strict=False))
    # paced in real time, not sent in a burst (generous: a shared 2-core machine)
    span = listener.packets[-1][0] - listener.packets[0][0]
    assert span > 0.5 * 0.02 * (len(packets) - 1), span


async def test_barge_in_cuts_the_reply_and_drops_the_queue(
        shell_triton: TritonProcess, leg: tuple[RtpEndpoint, Listener]) -> None:
    endpoint, listener = leg
    tts = TtsClient(TritonConfig(url=shell_triton.grpc_url, tts_model="tts_cpu_default"))
    events: list[GatewayEvent] = []
    playout = _playout(endpoint, tts, events)
    try:
        playout.say("Thanks. I have found your account and I can see that the replacement "
                    "part was sent last Tuesday by express courier.", barge_in=True,
                    source="api")
        playout.say("This queued reply is never played.", barge_in=True, source="api")
        await until(lambda: len(listener.packets) >= 10)
        assert playout.interrupt("barge_in") is True
        assert not playout.speaking                           # cut at once, not at the next chunk
        assert playout.interrupt("barge_in") is False         # nothing left to cut: no 2nd event
        sent = len(listener.packets)
        await asyncio.sleep(0.5)
        assert len(listener.packets) <= sent + 1              # at most one in flight
        assert not playout.speaking
    finally:
        await playout.close()
        await tts.close()
    assert [type(e) for e in events] == [ReplyStarted, ReplyInterrupted]
    cut = events[1]
    assert isinstance(cut, ReplyInterrupted) and cut.reason == "barge_in"


async def test_unreachable_tts_fails_each_reply_and_the_playout_goes_on(
        leg: tuple[RtpEndpoint, Listener]) -> None:
    endpoint, listener = leg
    tts = TtsClient(TritonConfig(url=f"{HOST}:{free_tcp_port()}", tts_model="tts_cpu_default"))
    events: list[GatewayEvent] = []
    playout = _playout(endpoint, tts, events)
    try:
        first = playout.say("One.", barge_in=True, source="api")
        second = playout.say("Two.", barge_in=True, source="bot")
        await until(lambda: len(events) == 2, 30)
    finally:
        await playout.close()
        await tts.close()
    assert [(type(e), getattr(e, "reply_id", None)) for e in events] == [
        (ReplyFailed, first.reply_id), (ReplyFailed, second.reply_id)]
    assert all("UNAVAILABLE" in getattr(e, "error", "") for e in events)
    assert listener.packets == []


async def test_close_right_after_a_barge_in_returns_promptly(
        shell_triton: TritonProcess, leg: tuple[RtpEndpoint, Listener]) -> None:
    """The caller barges in and hangs up: close() must not wait for a next reply (its cancel
    arrives while the cut reply awaits its next TTS chunk, and grpc then just ends the
    stream, so the run loop went back to waiting for the queue)."""
    endpoint, listener = leg
    tts = TtsClient(TritonConfig(url=shell_triton.grpc_url, tts_model="tts_cpu_default"))
    playout = _playout(endpoint, tts, [])
    try:
        playout.say("Thanks. I have found your account and I can see that the replacement "
                    "part was sent last Tuesday by express courier.", barge_in=True,
                    source="api")
        await until(lambda: len(listener.packets) >= 10)
        assert playout.interrupt("barge_in") is True
        await asyncio.wait_for(playout.close(), 3.0)
    finally:
        await tts.close()
