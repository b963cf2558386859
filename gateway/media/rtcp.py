"""RTCP reports for one G.711 stream (RFC 3550 section 6), pure (no sockets, no clocks).

Packet formats are :mod:`gateway.media.rtp`'s (``RtcpReceiverReport``, ``RtcpSenderReport``,
``RtcpSdes``...); this module only decides what goes into them, summarises what the
far end sent, and says when the next report is due.

Units: ``lsr`` is the middle 32 bits of an NTP timestamp (16.16 fixed point seconds),
``dlsr`` is in 1/65536 s, ``jitter`` is in RTP timestamp units, ``fraction_lost`` is an
8-bit fixed point fraction (lost/expected * 256), ``packets_lost`` is cumulative (24-bit
signed on the wire; values outside that range are clamped as RFC 3550 6.4.1 says).

Layer: pure core.
"""

from __future__ import annotations

import math
import random as _random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from gateway.media.rtp import (
    SDES_CNAME,
    PacketError,
    ReceptionReport,
    RtcpBye,
    RtcpReceiverReport,
    RtcpSdes,
    RtcpSenderReport,
    SdesChunk,
    SenderInfo,
    clamp_packets_lost,
    parse_rtcp,
)

NTP_EPOCH_OFFSET_S: Final = 2_208_988_800  # 1900-01-01 to 1970-01-01
_U32: Final = 0xFFFF_FFFF
# RTCP packet types registered by IANA (SR 200 .. 213); others are not RTCP at all.
_KNOWN_TYPES: Final = range(200, 214)


class RtcpError(ValueError):
    """Base class of this module's errors."""


class RtcpFieldError(RtcpError):
    """A value given to a report builder does not fit its RTCP field."""


class RtcpParseError(RtcpError):
    """A datagram is not a well-formed RTCP compound packet."""


# --------------------------------------------------------------------------- building

@dataclass(frozen=True, slots=True)
class ReceiverBlock:
    """One reception report block: what we saw of ``media_ssrc``'s stream."""

    media_ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0


def ntp_timestamp(unix_s: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point seconds since 1900) for a Unix time."""
    if unix_s < -NTP_EPOCH_OFFSET_S:
        raise RtcpFieldError(f"unix_s {unix_s} is before the NTP epoch")
    whole_s = math.floor(unix_s)
    fraction = int((unix_s - whole_s) * (1 << 32))
    return (((whole_s + NTP_EPOCH_OFFSET_S) & _U32) << 32) | min(fraction, _U32)


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (what LSR carries)."""
    return (ntp >> 16) & _U32


def _check_u32(name: str, value: int) -> int:
    if not 0 <= value <= _U32:
        raise RtcpFieldError(f"{name} must be 0..{_U32}, got {value}")
    return value


def _check_fraction(value: int) -> int:
    if not 0 <= value <= 255:
        raise RtcpFieldError(f"fraction_lost must be 0..255, got {value}")
    return value


def _receiver_info(block: ReceiverBlock) -> ReceptionReport:
    return ReceptionReport(
        ssrc=_check_u32("media_ssrc", block.media_ssrc),
        fraction_lost=_check_fraction(block.fraction_lost),
        packets_lost=clamp_packets_lost(block.packets_lost),
        highest_sequence=_check_u32("highest_sequence", block.highest_sequence),
        jitter=_check_u32("jitter", block.jitter),
        lsr=_check_u32("lsr", block.lsr),
        dlsr=_check_u32("dlsr", block.dlsr),
    )


def _sdes_cname(ssrc: int, cname: str) -> bytes:
    value = cname.encode("utf-8")
    if not 0 < len(value) <= 255:
        raise RtcpFieldError(f"cname must be 1..255 bytes in UTF-8, got {len(value)}")
    chunk = SdesChunk(ssrc=ssrc, items=((SDES_CNAME, value),))
    return RtcpSdes(chunks=(chunk,)).serialize()


def build_receiver_report(*, ssrc: int, media_ssrc: int, fraction_lost: int, packets_lost: int,
                          highest_sequence: int, jitter: int, lsr: int, dlsr: int,
                          cname: str) -> bytes:
    """Compound RTCP packet: RR with one report block about ``media_ssrc``, then SDES CNAME."""
    block = ReceiverBlock(media_ssrc, fraction_lost, packets_lost, highest_sequence, jitter,
                          lsr, dlsr)
    rr = RtcpReceiverReport(ssrc=_check_u32("ssrc", ssrc), reports=(_receiver_info(block),))
    return rr.serialize() + _sdes_cname(ssrc, cname)


def build_sender_report(*, ssrc: int, unix_s: float, rtp_ts: int, packets_sent: int,
                        octets_sent: int, cname: str,
                        report: ReceiverBlock | None = None) -> bytes:
    """Compound RTCP packet: SR (with ``report`` as its block, if any), then SDES CNAME.

    ``rtp_ts`` and the counters wrap modulo 2**32 as RFC 3550 6.4.1 allows.
    """
    info = SenderInfo(ntp_timestamp=ntp_timestamp(unix_s), rtp_timestamp=rtp_ts & _U32,
                      packet_count=packets_sent & _U32, octet_count=octets_sent & _U32)
    reports = () if report is None else (_receiver_info(report),)
    sr = RtcpSenderReport(ssrc=_check_u32("ssrc", ssrc), sender_info=info, reports=reports)
    return sr.serialize() + _sdes_cname(ssrc, cname)


# --------------------------------------------------------------------------- parsing

@dataclass(frozen=True, slots=True)
class FarEndReport:
    """A report block the far end sent: how it received the stream ``ssrc``."""

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    lsr: int
    dlsr: int


@dataclass(frozen=True, slots=True)
class RtcpSummary:
    """What one compound RTCP datagram said.

    ``sender_ssrc``: SSRC of the first SR/RR (None if the datagram had neither);
    ``sr_ntp_middle``: the middle 32 bits of the SR's NTP timestamp (our next LSR), or None;
    ``packets``: RTCP packets in the datagram; ``reports``: its report blocks (only those
    about ``media_ssrc`` when :func:`parse_compound` was given one); ``bye``: a BYE was in it.
    """

    sender_ssrc: int | None
    sr_ntp_middle: int | None
    packets: int
    reports: tuple[FarEndReport, ...]
    bye: bool


def _check_headers(data: bytes) -> int:
    """Walk the RTCP headers: version 2, known types, lengths adding up; return the count."""
    if not data:
        raise RtcpParseError("empty RTCP datagram")
    pos = count = 0
    while pos < len(data):
        if len(data) - pos < 4:
            raise RtcpParseError(f"truncated RTCP header at byte {pos}")
        first, packet_type, length = struct.unpack_from("!BBH", data, pos)
        if first >> 6 != 2:
            raise RtcpParseError(f"RTCP version {first >> 6} at byte {pos}, expected 2")
        if packet_type not in _KNOWN_TYPES:
            raise RtcpParseError(f"unknown RTCP packet type {packet_type} at byte {pos}")
        pos += 4 + 4 * length
        count += 1
    if pos != len(data):
        raise RtcpParseError(f"RTCP length fields add up to {pos} bytes, got {len(data)}")
    return count


def _far_end(info: ReceptionReport) -> FarEndReport:
    return FarEndReport(info.ssrc, info.fraction_lost, info.packets_lost,
                        info.highest_sequence, info.jitter, info.lsr, info.dlsr)


def parse_compound(data: bytes, *, media_ssrc: int | None = None) -> RtcpSummary:
    """Summarise a (compound or reduced-size) RTCP datagram; :class:`RtcpParseError` if bad.

    With ``media_ssrc`` (our sending SSRC), only report blocks about our stream are kept.
    """
    count = _check_headers(data)
    try:
        packets = parse_rtcp(data)
    except PacketError as exc:
        raise RtcpParseError(f"malformed RTCP: {exc}") from None
    sender: int | None = None
    middle: int | None = None
    blocks: list[FarEndReport] = []
    for packet in packets:
        if isinstance(packet, RtcpSenderReport | RtcpReceiverReport):
            sender = packet.ssrc if sender is None else sender
            blocks += [_far_end(r) for r in packet.reports
                       if media_ssrc is None or r.ssrc == media_ssrc]
        if isinstance(packet, RtcpSenderReport) and middle is None:
            middle = ntp_middle(packet.sender_info.ntp_timestamp)
    bye = any(isinstance(packet, RtcpBye) for packet in packets)
    return RtcpSummary(sender, middle, count, tuple(blocks), bye)


# --------------------------------------------------------------------------- scheduling

class RtcpScheduler:
    """When to send our next report, and the LSR/DLSR to put in it.

    A simplification of RFC 3550 6.2/6.3 for a two-party session with one sender each way:
    the interval is ``interval_s`` (5 s nominal) times a random factor in [0.5, 1.5); the
    first report after :meth:`start` comes after half the interval (2.5 s nominal, same
    randomisation). No bandwidth-share computation, no reconsideration, no 1/(e-1.5) factor:
    with two members the RFC's deterministic interval is its 5 s minimum anyway.
    """

    def __init__(self, interval_s: float = 5.0,
                 random: Callable[[], float] = _random.random) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = interval_s
        self._random = random
        self._due: float | None = None
        self._lsr = 0
        self._sr_received_at: float | None = None

    def _randomised(self, base_s: float) -> float:
        return base_s * (0.5 + self._random())

    def next_due(self) -> float | None:
        """Monotonic time the next report is due; None before :meth:`start`."""
        return self._due

    def start(self, now: float) -> None:
        self._due = now + self._randomised(self.interval_s / 2)

    def sent(self, now: float) -> None:
        """A report went out at ``now``: schedule the next one."""
        self._due = now + self._randomised(self.interval_s)

    def on_sender_report(self, ntp_middle: int, now: float) -> None:
        """An SR arrived at ``now``; ``ntp_middle`` is :attr:`RtcpSummary.sr_ntp_middle`."""
        self._lsr = ntp_middle & _U32
        self._sr_received_at = now

    def lsr_dlsr(self, now: float) -> tuple[int, int]:
        """(LSR, DLSR) for a report block sent at ``now``; (0, 0) before any SR."""
        if self._sr_received_at is None:
            return 0, 0
        delay_s = max(0.0, now - self._sr_received_at)
        return self._lsr, min(int(delay_s * 65536), _U32)
