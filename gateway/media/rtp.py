"""RTP and RTCP packets on the wire (RFC 3550 sections 5.1 and 6.4-6.6): bytes in, bytes out.

Layer: pure core (no I/O, no clock; the wire format only, no policy).

:meth:`RtpPacket.parse` and :func:`parse_rtcp` raise :class:`PacketError` (a ``ValueError``)
with a message naming the field and the byte offset; the socket shell counts and drops.
An RTP header extension is kept as it came (profile + body, not interpreted), so a packet
serializes back to the bytes it was parsed from; padding is written as zero octets.
RTCP covers what the gateway sends and reads: SR, RR, SDES, BYE; other RTCP packet types
come back as :class:`RtcpOther` with their payload untouched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "SDES_CNAME",
    "HeaderExtension",
    "PacketError",
    "ReceptionReport",
    "RtcpBye",
    "RtcpOther",
    "RtcpPacket",
    "RtcpReceiverReport",
    "RtcpSdes",
    "RtcpSenderReport",
    "RtpPacket",
    "SdesChunk",
    "SenderInfo",
    "clamp_packets_lost",
    "parse_rtcp",
]

RTP_VERSION: Final = 2
RTP_HEADER_BYTES: Final = 12
RTCP_HEADER_BYTES: Final = 4
RTCP_SR: Final = 200
RTCP_RR: Final = 201
RTCP_SDES: Final = 202
RTCP_BYE: Final = 203
SDES_CNAME: Final = 1
PACKETS_LOST_MIN: Final = -(1 << 23)
PACKETS_LOST_MAX: Final = (1 << 23) - 1
_REPORT_BYTES: Final = 24
_SENDER_INFO_BYTES: Final = 20

_RTP_HEADER: Final = struct.Struct("!BBHII")
_U16_PAIR: Final = struct.Struct("!HH")
_U32: Final = struct.Struct("!I")
_RTCP_HEADER: Final = struct.Struct("!BBH")
_REPORT: Final = struct.Struct("!IIIIII")   # ssrc, fraction|lost, highest, jitter, lsr, dlsr
_SENDER_INFO: Final = struct.Struct("!QIII")


class PacketError(ValueError):
    """Bytes that are not a well-formed RTP or RTCP packet, or a field that does not fit."""


# --------------------------------------------------------------------------- RTP

@dataclass(frozen=True, slots=True)
class HeaderExtension:
    """The RTP header extension (RFC 3550 5.3.1): 16 profile-defined bits and the body.

    ``data`` is a whole number of 32-bit words; 0xBEDE / 0x100x profiles are RFC 8285's
    one-/two-byte element formats, which this module does not take apart.
    """

    profile: int
    data: bytes


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet: the fixed header, CSRC list, header extension, payload, padding."""

    payload_type: int = 0
    marker: bool = False
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    payload: bytes = field(default=b"", repr=False)
    csrc: tuple[int, ...] = ()
    extension: HeaderExtension | None = None
    padding_size: int = 0        # padding octets at the end, the count octet included

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """One RTP packet from a datagram; :class:`PacketError` says what is wrong."""
        size = len(data)
        if size < RTP_HEADER_BYTES:
            raise PacketError(f"RTP packet is {size} bytes, shorter than the 12-byte header")
        first, second, seq, ts, ssrc = _RTP_HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise PacketError(f"RTP version {first >> 6}, expected 2")
        pos = RTP_HEADER_BYTES
        csrc: tuple[int, ...] = ()
        if cc := first & 0x0F:
            pos += 4 * cc
            if size < pos:
                raise PacketError(f"RTP CSRC list of {cc} truncated: {size} bytes, need {pos}")
            csrc = struct.unpack_from(f"!{cc}I", data, RTP_HEADER_BYTES)
        extension = None
        if first & 0x10:
            extension, pos = _parse_extension(data, pos)
        end = size
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if not padding or padding > size - pos:
                raise PacketError(f"RTP padding count {padding} does not fit the "
                                  f"{size - pos} bytes after the header")
            end -= padding
        return cls(second & 0x7F, bool(second & 0x80), seq, ts, ssrc, data[pos:end], csrc,
                   extension, padding)

    def serialize(self) -> bytes:
        """The packet on the wire; :class:`PacketError` if a field does not fit its width."""
        if len(self.csrc) > 15:
            raise PacketError(f"RTP carries at most 15 CSRCs, got {len(self.csrc)}")
        if not 0 <= self.padding_size <= 255:
            raise PacketError(f"RTP padding_size must be 0..255, got {self.padding_size}")
        if not 0 <= self.payload_type <= 127:
            raise PacketError(f"RTP payload_type must be 0..127, got {self.payload_type}")
        first = ((RTP_VERSION << 6) | (0x20 if self.padding_size else 0)
                 | (0x10 if self.extension is not None else 0) | len(self.csrc))
        try:
            head = _RTP_HEADER.pack(first, (0x80 if self.marker else 0) | self.payload_type,
                                    self.sequence_number, self.timestamp, self.ssrc)
            if self.csrc:
                head += struct.pack(f"!{len(self.csrc)}I", *self.csrc)
        except struct.error as exc:
            raise PacketError(f"RTP header field out of range: {exc}") from None
        if self.extension is not None:
            head += _serialize_extension(self.extension)
        if not self.padding_size:
            return head + self.payload
        return head + self.payload + bytes(self.padding_size - 1) + bytes([self.padding_size])


def _parse_extension(data: bytes, pos: int) -> tuple[HeaderExtension, int]:
    if len(data) < pos + 4:
        raise PacketError(f"RTP header extension header truncated at byte {pos}")
    profile, words = _U16_PAIR.unpack_from(data, pos)
    start, end = pos + 4, pos + 4 + 4 * words
    if len(data) < end:
        raise PacketError(f"RTP header extension of {4 * words} bytes truncated: "
                          f"{len(data)} bytes, need {end}")
    return HeaderExtension(profile, data[start:end]), end


def _serialize_extension(extension: HeaderExtension) -> bytes:
    size = len(extension.data)
    if size % 4 or size > 4 * 0xFFFF:
        raise PacketError(f"RTP header extension body must be whole 32-bit words "
                          f"(at most {4 * 0xFFFF} bytes), got {size} bytes")
    if not 0 <= extension.profile <= 0xFFFF:
        raise PacketError(f"RTP header extension profile must be 16 bits, "
                          f"got {extension.profile}")
    return _U16_PAIR.pack(extension.profile, size // 4) + extension.data


# --------------------------------------------------------------------------- RTCP pieces

def clamp_packets_lost(count: int) -> int:
    """Cumulative loss clamped to the 24-bit signed field (RFC 3550 6.4.1)."""
    return max(PACKETS_LOST_MIN, min(count, PACKETS_LOST_MAX))


def _check_width(name: str, value: int, bits: int) -> None:
    if not 0 <= value < (1 << bits):
        raise PacketError(f"{name} must fit {bits} bits, got {value}")


@dataclass(frozen=True, slots=True)
class ReceptionReport:
    """One report block (RFC 3550 6.4.1), 24 bytes; ``packets_lost`` is signed 24-bit."""

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int

    def serialize(self) -> bytes:
        _check_width("fraction_lost", self.fraction_lost, 8)
        if not PACKETS_LOST_MIN <= self.packets_lost <= PACKETS_LOST_MAX:
            raise PacketError(f"packets_lost must fit 24 signed bits, got {self.packets_lost}")
        for name in ("ssrc", "highest_sequence", "jitter", "lsr", "dlsr"):
            _check_width(name, getattr(self, name), 32)
        lost = self.packets_lost & 0xFF_FFFF
        return _REPORT.pack(self.ssrc, (self.fraction_lost << 24) | lost,
                            self.highest_sequence, self.jitter, self.lsr, self.dlsr)

    @classmethod
    def parse(cls, data: bytes, pos: int) -> ReceptionReport:
        ssrc, loss, highest, jitter, lsr, dlsr = _REPORT.unpack_from(data, pos)
        lost = loss & 0xFF_FFFF
        if lost & 0x80_0000:
            lost -= 1 << 24
        return cls(ssrc, loss >> 24, lost, highest, jitter, lsr, dlsr)


@dataclass(frozen=True, slots=True)
class SenderInfo:
    """The sender information of an SR (RFC 3550 6.4.1): 64-bit NTP time, RTP time, counts."""

    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int

    def serialize(self) -> bytes:
        _check_width("ntp_timestamp", self.ntp_timestamp, 64)
        for name in ("rtp_timestamp", "packet_count", "octet_count"):
            _check_width(name, getattr(self, name), 32)
        return _SENDER_INFO.pack(self.ntp_timestamp, self.rtp_timestamp, self.packet_count,
                                 self.octet_count)


def _rtcp_header(packet_type: int, count: int, payload: bytes) -> bytes:
    if count > 31:
        raise PacketError(f"RTCP count field holds at most 31, got {count}")
    return _RTCP_HEADER.pack(0x80 | count, packet_type, len(payload) // 4) + payload


def _reports(packet_type: int, reports: tuple[ReceptionReport, ...], fixed: bytes) -> bytes:
    return _rtcp_header(packet_type, len(reports),
                        fixed + b"".join(r.serialize() for r in reports))


# --------------------------------------------------------------------------- RTCP packets

@dataclass(frozen=True, slots=True)
class RtcpSenderReport:
    ssrc: int
    sender_info: SenderInfo
    reports: tuple[ReceptionReport, ...] = ()

    def serialize(self) -> bytes:
        _check_width("ssrc", self.ssrc, 32)
        return _reports(RTCP_SR, self.reports, _U32.pack(self.ssrc)
                        + self.sender_info.serialize())


@dataclass(frozen=True, slots=True)
class RtcpReceiverReport:
    ssrc: int
    reports: tuple[ReceptionReport, ...] = ()

    def serialize(self) -> bytes:
        _check_width("ssrc", self.ssrc, 32)
        return _reports(RTCP_RR, self.reports, _U32.pack(self.ssrc))


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk: a source and its (item type, value) items, e.g. ``(SDES_CNAME, b"..")``."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    def serialize(self) -> bytes:
        _check_width("ssrc", self.ssrc, 32)
        out = bytearray(_U32.pack(self.ssrc))
        for item_type, value in self.items:
            if not 1 <= item_type <= 255 or len(value) > 255:
                raise PacketError(f"SDES item type must be 1..255 and its value at most "
                                  f"255 bytes, got type {item_type}, {len(value)} bytes")
            out += bytes([item_type, len(value)]) + value
        out += bytes(4 - len(out) % 4)      # the null item ending the list, then to 32 bits
        return bytes(out)


@dataclass(frozen=True, slots=True)
class RtcpSdes:
    chunks: tuple[SdesChunk, ...] = ()

    def serialize(self) -> bytes:
        return _rtcp_header(RTCP_SDES, len(self.chunks),
                            b"".join(c.serialize() for c in self.chunks))


@dataclass(frozen=True, slots=True)
class RtcpBye:
    sources: tuple[int, ...] = ()
    reason: bytes = b""

    def serialize(self) -> bytes:
        for ssrc in self.sources:
            _check_width("BYE source", ssrc, 32)
        payload = b"".join(_U32.pack(s) for s in self.sources)
        if self.reason:
            if len(self.reason) > 255:
                raise PacketError(f"BYE reason is at most 255 bytes, got {len(self.reason)}")
            text = bytes([len(self.reason)]) + self.reason
            payload += text + bytes(-len(text) % 4)
        return _rtcp_header(RTCP_BYE, len(self.sources), payload)


@dataclass(frozen=True, slots=True)
class RtcpOther:
    """An RTCP packet of a type this module does not take apart (APP, feedback, XR...)."""

    packet_type: int
    count: int
    payload: bytes = field(repr=False)

    def serialize(self) -> bytes:
        if len(self.payload) % 4:
            raise PacketError(f"RTCP payload must be whole 32-bit words, "
                              f"got {len(self.payload)} bytes")
        return _rtcp_header(self.packet_type, self.count, self.payload)


RtcpPacket = RtcpSenderReport | RtcpReceiverReport | RtcpSdes | RtcpBye | RtcpOther


# --------------------------------------------------------------------------- RTCP parsing

def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Every packet of a compound (or single) RTCP datagram, in order."""
    if not data:
        raise PacketError("empty RTCP datagram")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < RTCP_HEADER_BYTES:
            raise PacketError(f"RTCP header truncated at byte {pos}")
        first, packet_type, words = _RTCP_HEADER.unpack_from(data, pos)
        if first >> 6 != RTP_VERSION:
            raise PacketError(f"RTCP version {first >> 6} at byte {pos}, expected 2")
        end = pos + RTCP_HEADER_BYTES + 4 * words
        if end > len(data):
            raise PacketError(f"RTCP packet at byte {pos} claims {4 * words} payload bytes, "
                              f"{len(data) - pos - RTCP_HEADER_BYTES} left")
        payload = data[pos + RTCP_HEADER_BYTES:end]
        if first & 0x20:
            payload = _strip_padding(payload, pos)
        packets.append(_parse_one(packet_type, first & 0x1F, payload, pos))
        pos = end
    return packets


def _strip_padding(payload: bytes, pos: int) -> bytes:
    count = payload[-1] if payload else 0
    if not count or count > len(payload):
        raise PacketError(f"RTCP padding count {count} at byte {pos} does not fit its "
                          f"{len(payload)}-byte payload")
    return payload[:-count]


def _parse_one(packet_type: int, count: int, payload: bytes, pos: int) -> RtcpPacket:
    if packet_type == RTCP_SR:
        return _parse_sr(payload, count, pos)
    if packet_type == RTCP_RR:
        return _parse_rr(payload, count, pos)
    if packet_type == RTCP_SDES:
        return _parse_sdes(payload, count, pos)
    if packet_type == RTCP_BYE:
        return _parse_bye(payload, count, pos)
    return RtcpOther(packet_type, count, payload)


def _report_blocks(payload: bytes, start: int, count: int) -> tuple[ReceptionReport, ...]:
    return tuple(ReceptionReport.parse(payload, start + _REPORT_BYTES * i) for i in range(count))


def _parse_sr(payload: bytes, count: int, pos: int) -> RtcpSenderReport:
    fixed = 4 + _SENDER_INFO_BYTES
    if len(payload) != fixed + _REPORT_BYTES * count:
        raise PacketError(f"RTCP SR at byte {pos} with {count} report blocks must have "
                          f"{fixed + _REPORT_BYTES * count} payload bytes, got {len(payload)}")
    info = SenderInfo(*_SENDER_INFO.unpack_from(payload, 4))
    return RtcpSenderReport(_U32.unpack_from(payload)[0], info,
                            _report_blocks(payload, fixed, count))


def _parse_rr(payload: bytes, count: int, pos: int) -> RtcpReceiverReport:
    if len(payload) != 4 + _REPORT_BYTES * count:
        raise PacketError(f"RTCP RR at byte {pos} with {count} report blocks must have "
                          f"{4 + _REPORT_BYTES * count} payload bytes, got {len(payload)}")
    return RtcpReceiverReport(_U32.unpack_from(payload)[0], _report_blocks(payload, 4, count))


def _parse_sdes(payload: bytes, count: int, pos: int) -> RtcpSdes:
    chunks: list[SdesChunk] = []
    at = 0
    for _ in range(count):
        if len(payload) < at + 4:
            raise PacketError(f"RTCP SDES at byte {pos}: chunk {len(chunks) + 1} of {count} "
                              f"truncated")
        ssrc = _U32.unpack_from(payload, at)[0]
        items, at = _sdes_items(payload, at + 4, pos)
        chunks.append(SdesChunk(ssrc, items))
    return RtcpSdes(tuple(chunks))


def _sdes_items(payload: bytes, at: int,
                pos: int) -> tuple[tuple[tuple[int, bytes], ...], int]:
    """A chunk's items up to its null octet; returns them and the next chunk's offset."""
    items: list[tuple[int, bytes]] = []
    while at < len(payload) and payload[at] != 0:
        if at + 2 > len(payload) or at + 2 + payload[at + 1] > len(payload):
            raise PacketError(f"RTCP SDES at byte {pos}: item truncated at payload byte {at}")
        length = payload[at + 1]
        items.append((payload[at], payload[at + 2:at + 2 + length]))
        at += 2 + length
    return tuple(items), at + 4 - at % 4     # the null octet, then to the next 32-bit word


def _parse_bye(payload: bytes, count: int, pos: int) -> RtcpBye:
    need = 4 * count
    if len(payload) < need:
        raise PacketError(f"RTCP BYE at byte {pos} lists {count} sources in "
                          f"{len(payload)} bytes")
    sources = struct.unpack_from(f"!{count}I", payload) if count else ()
    reason = b""
    if len(payload) > need and payload[need]:
        length = payload[need]
        if need + 1 + length > len(payload):
            raise PacketError(f"RTCP BYE at byte {pos}: reason of {length} bytes truncated")
        reason = payload[need + 1:need + 1 + length]
    return RtcpBye(tuple(sources), reason)
