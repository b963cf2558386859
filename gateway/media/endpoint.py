"""One leg's RTP (+RTCP) sockets: receive, validate with :mod:`gateway.media.rtp`, count, latch.

Garbage, wrong payload types and foreign SSRCs are counted and dropped here; nothing
raised by a datagram ever reaches the event loop. What is accepted goes to the
:class:`PacketReceiver` the endpoint was made with (decoding, the jitter buffer, RTCP):
the clock is read once per datagram, here, and that ``now`` is handed on.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from gateway.media.rtp import RtpPacket

Address = tuple[str, int]
RTP_VERSION_BITS = 0x80


@dataclass(slots=True)
class LegStats:
    received: int = 0
    bytes_received: int = 0
    dropped_malformed: int = 0
    dropped_payload_type: int = 0
    dropped_source: int = 0
    rtcp_received: int = 0
    sent: int = 0
    first_packet_at: float | None = None
    last_packet_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PacketReceiver(Protocol):
    """Where an endpoint hands what it accepted, with the loop time the datagram arrived."""

    def on_packet(self, packet: RtpPacket, now: float) -> None: ...

    def on_rtcp(self, data: bytes, now: float) -> None: ...


class _Proto(asyncio.DatagramProtocol):
    def __init__(self, handler: Callable[[bytes, Address], None]) -> None:
        self._handler = handler

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._handler(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable etc.: ignore
        return None


class RtpEndpoint:
    """``receiver`` None: a send-only endpoint (what arrives is counted, then dropped)."""

    def __init__(self, payload_types: frozenset[int], symmetric: bool,
                 receiver: PacketReceiver | None = None) -> None:
        self.stats = LegStats()
        self.payload_types = payload_types
        self.symmetric = symmetric
        self.remote: Address | None = None
        self.latched: Address | None = None
        self.ssrc: int | None = None
        self.port: int | None = None
        self._receiver = receiver
        self.remote_rtcp: Address | None = None
        self.rtcp_mux = False
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()

    async def open(self, host: str, port: int, rtcp_mux: bool) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._rtp, _ = await self._loop.create_datagram_endpoint(
            lambda: _Proto(self._on_rtp), local_addr=(host, port), family=family)
        self.rtcp_mux = rtcp_mux
        if not rtcp_mux:
            try:
                self._rtcp, _ = await self._loop.create_datagram_endpoint(
                    lambda: _Proto(self._on_rtcp), local_addr=(host, port + 1), family=family)
            except OSError:
                self.close()
                raise

    def _on_rtp(self, data: bytes, addr: Address) -> None:
        now = self._loop.time()                           # the one clock read per datagram
        if len(data) >= 2 and 192 <= data[1] <= 223:      # RTCP muxed on the RTP port
            self._rtcp_received(data, now)
            return
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            self.stats.dropped_malformed += 1
            return
        if not self._accept_source(packet, addr):
            self.stats.dropped_source += 1
            return
        if packet.payload_type not in self.payload_types:
            self.stats.dropped_payload_type += 1
            return
        self.stats.received += 1
        self.stats.bytes_received += len(packet.payload)
        if self.stats.first_packet_at is None:
            self.stats.first_packet_at = now
        self.stats.last_packet_at = now
        if self._receiver is not None:
            self._receiver.on_packet(packet, now)

    def _accept_source(self, packet: RtpPacket, addr: Address) -> bool:
        if self.latched is None:
            self.latched, self.ssrc = addr, packet.ssrc
            return True
        if addr != self.latched and self.symmetric:
            return False
        if packet.ssrc != self.ssrc:
            self.ssrc = packet.ssrc            # SSRC change from the same source: a new stream
        return True

    def _on_rtcp(self, data: bytes, addr: Address) -> None:
        self._rtcp_received(data, self._loop.time())

    def _rtcp_received(self, data: bytes, now: float) -> None:
        self.stats.rtcp_received += 1
        if self._receiver is not None:
            self._receiver.on_rtcp(data, now)

    def send_rtcp(self, data: bytes) -> None:
        """To the far end's RTCP address: port+1 of where its RTP comes from, or muxed."""
        source = self.latched if (self.symmetric and self.latched) else self.remote
        if source is None:
            return
        if self.rtcp_mux:
            target, transport = source, self._rtp
        else:
            target = self.remote_rtcp if not self.symmetric and self.remote_rtcp else (
                source[0], source[1] + 1)
            transport = self._rtcp
        if transport is not None:
            transport.sendto(data, target)

    def send(self, data: bytes) -> None:
        target = self.latched if (self.symmetric and self.latched) else self.remote
        if self._rtp is None or target is None:
            return
        self._rtp.sendto(data, target)
        self.stats.sent += 1

    def close(self) -> None:
        for t in (self._rtp, self._rtcp):
            if t is not None:
                t.close()
        self._rtp = self._rtcp = None
