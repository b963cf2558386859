"""The RTP endpoint shell (gateway/media/endpoint.py) receiving and sending over loopback:
real UDP sockets, RTP built with the gateway's codec, RTCP on port+1 or muxed; and one
call's media leg (gateway/media/session.py) behind it, counting clock reads per datagram."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gateway.asr.stream import AsrHub
from gateway.calls.timeline import ChannelSink, ConversationMedia
from gateway.config import GatewayConfig
from gateway.media import endpoint as endpoint_module
from gateway.media.endpoint import RtpEndpoint
from gateway.media.ports import PortAllocator
from gateway.media.rtcp import build_sender_report
from gateway.media.rtp import RtcpReceiverReport, RtpPacket
from gateway.media.session import CallMedia
from gateway.metrics import Metrics
from gateway.sip.sdp import AnsweredStream, AnswerPlan
from tests.peers.ports import free_udp_port_pair

HOST = "127.0.0.1"
WAIT_S = 10.0                     # generous: a shared 2-core machine


async def until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.01)


def rtp(seq: int, *, pt: int = 0, ssrc: int = 0x1234, payload: bytes = b"\xff" * 160) -> bytes:
    return RtpPacket(payload_type=pt, sequence_number=seq, timestamp=seq * 160, ssrc=ssrc,
                     payload=payload).serialize()


class Peer:
    """The far end: one UDP socket on loopback."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, port))
        self.addr: tuple[str, int] = self.sock.getsockname()

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (HOST, port))

    async def recv(self, timeout_s: float = WAIT_S) -> bytes | None:
        def blocking() -> bytes | None:
            self.sock.settimeout(timeout_s)
            try:
                return self.sock.recv(65535)
            except TimeoutError:
                return None

        return await asyncio.to_thread(blocking)


class Received:
    """A :class:`~gateway.media.endpoint.PacketReceiver` that keeps what it is handed."""

    def __init__(self) -> None:
        self.packets: list[tuple[RtpPacket, float]] = []
        self.rtcp: list[bytes] = []

    def on_packet(self, packet: RtpPacket, now: float) -> None:
        self.packets.append((packet, now))

    def on_rtcp(self, data: bytes, now: float) -> None:
        self.rtcp.append(data)


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    made = [Peer(), Peer()]
    yield made
    for p in made:
        p.sock.close()


async def _endpoint(*, symmetric: bool = True, rtcp_mux: bool = False
                    ) -> tuple[RtpEndpoint, int, list[tuple[RtpPacket, float]], list[bytes]]:
    receiver = Received()
    ep = RtpEndpoint(frozenset({0, 101}), symmetric=symmetric, receiver=receiver)
    packets, rtcp = receiver.packets, receiver.rtcp
    port = free_udp_port_pair()
    await ep.open(HOST, port, rtcp_mux=rtcp_mux)
    return ep, port, packets, rtcp


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[RtpEndpoint, int, list[tuple[RtpPacket, float]],
                                             list[bytes]]]:
    made = await _endpoint()
    yield made
    made[0].close()


async def test_packets_arrive_parsed_in_order_with_the_loop_time(
        endpoint: tuple[RtpEndpoint, int, list[tuple[RtpPacket, float]], list[bytes]],
        peers: list[Peer]) -> None:
    ep, port, packets, _rtcp = endpoint
    loop = asyncio.get_running_loop()
    before = loop.time()
    for seq in range(100, 110):
        peers[0].send(rtp(seq), port)
    await until(lambda: len(packets) == 10)
    assert [p.sequence_number for p, _ in packets] == list(range(100, 110))
    assert all(p.payload == b"\xff" * 160 and p.ssrc == 0x1234 for p, _ in packets)
    times = [t for _, t in packets]
    assert times == sorted(times) and before <= times[0] <= loop.time()
    assert ep.stats.received == 10 and ep.stats.bytes_received == 1600
    assert ep.latched == peers[0].addr and ep.ssrc == 0x1234
    assert ep.stats.first_packet_at == times[0] and ep.stats.last_packet_at == times[-1]


async def test_garbage_and_unnegotiated_payload_types_are_counted_and_dropped(
        endpoint: tuple[RtpEndpoint, int, list[tuple[RtpPacket, float]], list[bytes]],
        peers: list[Peer]) -> None:
    ep, port, packets, _rtcp = endpoint
    for junk in (b"", b"\x80", b"\x00" * 20, b"\x80\x00\x00"):
        peers[0].send(junk, port)
    peers[0].send(rtp(1, pt=8), port)                        # PCMA was not negotiated
    peers[0].send(rtp(2), port)
    await until(lambda: ep.stats.received == 1)
    await until(lambda: ep.stats.dropped_malformed + ep.stats.dropped_payload_type == 5)
    assert ep.stats.dropped_payload_type == 1
    assert [p.sequence_number for p, _ in packets] == [2]


async def test_symmetric_latches_the_first_source_and_answers_it(
        endpoint: tuple[RtpEndpoint, int, list[tuple[RtpPacket, float]], list[bytes]],
        peers: list[Peer]) -> None:
    ep, port, packets, _rtcp = endpoint
    ep.remote = ("127.0.0.1", 9)                           # what SDP said: not used
    first, intruder = peers
    first.send(rtp(1), port)
    await until(lambda: len(packets) == 1)
    intruder.send(rtp(2, ssrc=0x9999), port)
    first.send(rtp(3), port)
    await until(lambda: len(packets) == 2)
    await until(lambda: ep.stats.dropped_source == 1)
    assert [p.sequence_number for p, _ in packets] == [1, 3]
    out = rtp(50, ssrc=0xABCD)
    ep.send(out)
    assert await first.recv() == out and ep.stats.sent == 1


async def test_without_symmetric_rtp_goes_to_the_sdp_address(peers: list[Peer]) -> None:
    ep, port, packets, _rtcp = await _endpoint(symmetric=False)
    try:
        sender, sdp_target = peers
        ep.remote = sdp_target.addr
        sender.send(rtp(1), port)
        sender.send(rtp(2, ssrc=0x4321), port)                 # a new SSRC: a new stream
        await until(lambda: len(packets) == 2)
        assert ep.ssrc == 0x4321 and ep.stats.dropped_source == 0
        ep.send(b"to-sdp")
        assert await sdp_target.recv() == b"to-sdp"
    finally:
        ep.close()


async def test_rtcp_on_port_plus_one_and_muxed_reaches_on_rtcp(
        endpoint: tuple[RtpEndpoint, int, list[tuple[RtpPacket, float]], list[bytes]],
        peers: list[Peer]) -> None:
    ep, port, packets, rtcp = endpoint
    report = RtcpReceiverReport(ssrc=0x1234).serialize()
    peers[0].send(report, port + 1)
    peers[0].send(report, port)                              # muxed on the RTP port
    await until(lambda: len(rtcp) == 2)
    assert rtcp == [report, report] and ep.stats.rtcp_received == 2
    assert packets == [] and ep.stats.dropped_malformed == 0


async def test_rtcp_goes_back_to_port_plus_one_of_the_latched_source() -> None:
    ep, port, packets, _rtcp = await _endpoint()
    far = free_udp_port_pair()
    far_rtp, far_rtcp = Peer(far), Peer(far + 1)
    try:
        far_rtp.send(rtp(1), port)                           # latches far:far
        await until(lambda: len(packets) == 1)
        ep.send_rtcp(b"\x81\xc9\x00\x01rtcp")
        assert await far_rtcp.recv() == b"\x81\xc9\x00\x01rtcp"
    finally:
        ep.close()
        far_rtp.sock.close()
        far_rtcp.sock.close()


async def test_with_rtcp_mux_rtcp_goes_back_on_the_rtp_port(peers: list[Peer]) -> None:
    ep, port, packets, rtcp = await _endpoint(rtcp_mux=True)
    try:
        report = RtcpReceiverReport(ssrc=0x1234).serialize()
        peers[0].send(rtp(1), port)
        peers[0].send(report, port)
        await until(lambda: len(packets) == 1 and len(rtcp) == 1)
        ep.send_rtcp(b"\x81\xc9\x00\x01mux!")
        assert await peers[0].recv() == b"\x81\xc9\x00\x01mux!"
    finally:
        ep.close()


async def test_close_releases_both_ports(peers: list[Peer]) -> None:
    ep, port, _packets, _rtcp = await _endpoint()
    ep.close()

    def bindable(p: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((HOST, p))
            except OSError:
                return False
            return True

    # asyncio closes a datagram socket on the next loop iteration, not inside close()
    await until(lambda: bindable(port) and bindable(port + 1))
    ep.close()                                               # twice is harmless
    ep.send(b"x")                                            # and sending does nothing
    assert ep.stats.sent == 0


class ClockReads:
    """The running loop's ``time()`` counted per datagram the endpoint handles: one entry per
    ``datagram_received``, the reads made inside it (the loop's own reads between datagrams,
    for its timers, are not counted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.per_datagram: list[int] = []
        self.read: list[float] = []           # what those reads returned
        self._inside: int | None = None
        loop = asyncio.get_running_loop()
        real_time = loop.time
        real_received = endpoint_module._Proto.datagram_received

        def time_() -> float:
            now = real_time()
            if self._inside is not None:
                self._inside += 1
                self.read.append(now)
            return now

        def received(proto: endpoint_module._Proto, data: bytes, addr: Any) -> None:
            self._inside = 0
            try:
                real_received(proto, data, addr)
            finally:
                self.per_datagram.append(self._inside)
                self._inside = None

        monkeypatch.setattr(loop, "time", time_)
        monkeypatch.setattr(endpoint_module._Proto, "datagram_received", received)


async def test_the_clock_is_read_once_per_datagram(
        monkeypatch: pytest.MonkeyPatch, peers: list[Peer]) -> None:
    clock = ClockReads(monkeypatch)
    ep, port, packets, rtcp = await _endpoint()
    try:
        report = RtcpReceiverReport(ssrc=0x1234).serialize()
        sent = [(rtp(1), port), (report, port), (report, port + 1), (rtp(2), port),
                (b"\x80", port), (rtp(3, pt=8), port)]
        for data, to in sent:
            peers[0].send(data, to)
        await until(lambda: len(clock.per_datagram) == len(sent))
        assert len(packets) == 2 and len(rtcp) == 2
        assert clock.per_datagram == [1] * len(sent)     # muxed RTCP too (it read twice)
    finally:
        ep.close()


def _stream(far: Peer) -> AnsweredStream:
    """PCMU from ``far`` (RTCP on port+1), as the SDP answer would have it."""
    return AnsweredStream(index=0, accepted=True, pt=0, encoding="PCMU", dtmf_pt=101,
                          remote_address=HOST, remote_port=far.addr[1], remote_rtcp_port=None,
                          rtcp_mux=False, ptime_ms=20, direction="sendrecv", label=None,
                          remote_direction="sendrecv")


class Heard:
    """A leg sink that keeps how much audio arrived (and reads no clock)."""

    channel = "caller"

    def __init__(self) -> None:
        self.samples = 0

    def audio(self, position: int, pcm8k: npt.NDArray[np.int16],
              pcm_model: npt.NDArray[np.float32], now: float) -> None:
        self.samples += len(pcm8k)

    def end(self) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {"channel": self.channel}


async def test_a_calls_media_leg_reads_the_clock_once_per_datagram(
        monkeypatch: pytest.MonkeyPatch, peers: list[Peer]) -> None:
    """Socket -> endpoint -> leg receiver -> pipeline (jitter, decode, resample) -> sink,
    RTCP into the leg's schedule: only the endpoint reads the clock, ``now`` is passed on."""
    clock = ClockReads(monkeypatch)
    first = free_udp_port_pair()
    media = CallMedia("clock-reads", GatewayConfig(), PortAllocator(first, first + 1))
    sink = Heard()
    await media.open(AnswerPlan((_stream(peers[0]),)), [sink], lambda _leg, _ev: None)
    try:
        (leg,) = media.legs
        assert leg.endpoint.port == first
        sender_report = build_sender_report(ssrc=0x1234, unix_s=time.time(), rtp_ts=1600,
                                            packets_sent=10, octets_sent=1600, cname="far")
        datagrams = [(rtp(seq), first) for seq in range(1, 11)] + [(sender_report, first + 1)]
        for data, to in datagrams:
            peers[0].send(data, to)
        await until(lambda: len(clock.per_datagram) == len(datagrams))
        assert sink.samples == 10 * 160 and leg.rtcp.lsr_dlsr(0.0)[0] != 0
        assert clock.per_datagram == [1] * len(datagrams)
    finally:
        media.close()


async def test_to_the_asr_push_the_clock_is_read_once_per_datagram(
        monkeypatch: pytest.MonkeyPatch, peers: list[Peer]) -> None:
    """Down to the ASR queue with the call side's real sink (recording timeline, ASR channel
    of a hub that is not connected): the audio is pushed with the endpoint's arrival time."""
    clock = ClockReads(monkeypatch)
    first = free_udp_port_pair()
    config = GatewayConfig()
    media = CallMedia("clock-asr", config, PortAllocator(first, first + 1))
    hub = AsrHub(config.triton, Metrics())
    asr = hub.open("clock-asr:caller", lambda _ch, _hyp, _lat: None)
    sink = ChannelSink(ConversationMedia("clock-asr", asyncio.get_running_loop().time(), None),
                       "caller", asr)
    await media.open(AnswerPlan((_stream(peers[0]),)), [sink], lambda _leg, _ev: None)
    try:
        for seq in range(1, 11):
            peers[0].send(rtp(seq), first)
        await until(lambda: len(clock.per_datagram) == 10)
        assert sink.samples == 10 * 160
        assert clock.per_datagram == [1] * 10
        chunk = asr.queue.next_chunk(final=True, max_chunks=1000, now=0.0)
        assert chunk is not None
        assert chunk.pushed_at in clock.read          # a datagram's time, not a later read
    finally:
        media.close()
