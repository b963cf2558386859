"""RTCP report building/parsing/scheduling, checked against aiortc's parser and RFC 3550 layout."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
)

from gateway.media.rtcp import (
    ReceiverBlock,
    RtcpFieldError,
    RtcpParseError,
    RtcpScheduler,
    build_receiver_report,
    build_sender_report,
    ntp_timestamp,
    parse_compound,
)

RR_ARGS = dict(ssrc=0x11223344, media_ssrc=0xAABBCCDD, fraction_lost=51, packets_lost=-3,
               highest_sequence=0x0001_FFF0, jitter=1234, lsr=0xB7052000, dlsr=0x00054000,
               cname="gw@example")


# --------------------------------------------------------------------------- NTP

def test_ntp_epoch_and_fraction() -> None:
    seconds_1900_to_1970 = int((datetime(1970, 1, 1, tzinfo=UTC)
                                - datetime(1900, 1, 1, tzinfo=UTC)).total_seconds())
    assert ntp_timestamp(0.0) == seconds_1900_to_1970 << 32
    assert ntp_timestamp(1.5) == ((seconds_1900_to_1970 + 1) << 32) | 0x8000_0000
    assert ntp_timestamp(0.25) & 0xFFFF_FFFF == 0x4000_0000


def test_ntp_for_a_known_date() -> None:
    moment = datetime(2024, 2, 29, 12, 0, 0, tzinfo=UTC)
    expected_s = int((moment - datetime(1900, 1, 1, tzinfo=UTC)).total_seconds())
    assert ntp_timestamp(moment.timestamp()) >> 32 == expected_s


# --------------------------------------------------------------------------- RR

def test_receiver_report_parses_with_aiortc() -> None:
    packets = RtcpPacket.parse(build_receiver_report(**RR_ARGS))  # type: ignore[arg-type]
    assert [type(p) for p in packets] == [RtcpRrPacket, RtcpSdesPacket]
    rr, sdes = packets
    assert isinstance(rr, RtcpRrPacket) and isinstance(sdes, RtcpSdesPacket)
    assert rr.ssrc == 0x11223344 and len(rr.reports) == 1
    block = rr.reports[0]
    assert (block.ssrc, block.fraction_lost, block.packets_lost, block.highest_sequence,
            block.jitter, block.lsr, block.dlsr) == (0xAABBCCDD, 51, -3, 0x0001_FFF0, 1234,
                                                      0xB7052000, 0x00054000)
    assert sdes.chunks[0].ssrc == 0x11223344
    assert sdes.chunks[0].items == [(1, b"gw@example")]


def test_receiver_report_wire_layout_rfc3550() -> None:
    data = build_receiver_report(**RR_ARGS)  # type: ignore[arg-type]
    first, pt, length = struct.unpack_from("!BBH", data, 0)
    assert (first >> 6, first & 0x1F, pt, length) == (2, 1, 201, 7)  # V=2, RC=1, 32 bytes
    ssrc, media, fraction = struct.unpack_from("!LLB", data, 4)
    assert (ssrc, media, fraction) == (0x11223344, 0xAABBCCDD, 51)
    assert data[13:16] == b"\xff\xff\xfd"  # -3 as 24-bit two's complement
    assert struct.unpack_from("!LLLL", data, 16) == (0x0001_FFF0, 1234, 0xB7052000, 0x00054000)
    first, pt, length = struct.unpack_from("!BBH", data, 32)
    assert (first >> 6, first & 0x1F, pt) == (2, 1, 202)
    assert len(data) == 32 + 4 + 4 * length and len(data) % 4 == 0
    assert data[40:42] == bytes([1, len("gw@example")]) and data[42:52] == b"gw@example"
    assert data[52] == 0  # item list ends with a null octet


def test_receiver_report_parses_with_own_parser() -> None:
    summary = parse_compound(build_receiver_report(**RR_ARGS))  # type: ignore[arg-type]
    assert summary.sender_ssrc == 0x11223344 and summary.sr_ntp_middle is None
    assert summary.packets == 2 and not summary.bye
    (report,) = summary.reports
    assert (report.ssrc, report.fraction_lost, report.packets_lost, report.jitter) == (
        0xAABBCCDD, 51, -3, 1234)


def test_packets_lost_is_clamped_to_24_bits() -> None:
    data = build_receiver_report(**{**RR_ARGS, "packets_lost": 1 << 30})  # type: ignore[arg-type]
    assert parse_compound(data).reports[0].packets_lost == 0x7FFFFF


@pytest.mark.parametrize(("field", "value"), [
    ("fraction_lost", 256), ("fraction_lost", -1), ("ssrc", 1 << 32), ("media_ssrc", -1),
    ("jitter", 1 << 32), ("lsr", -5), ("cname", ""), ("cname", "x" * 256),
])
def test_out_of_range_fields_rejected(field: str, value: object) -> None:
    with pytest.raises(RtcpFieldError, match=field if field != "cname" else "cname"):
        build_receiver_report(**{**RR_ARGS, field: value})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- SR

def test_sender_report_fields_exact() -> None:
    block = ReceiverBlock(media_ssrc=7, fraction_lost=10, packets_lost=4, highest_sequence=99,
                          jitter=80, lsr=1, dlsr=2)
    data = build_sender_report(ssrc=42, unix_s=1.5, rtp_ts=(1 << 32) + 160, packets_sent=50,
                               octets_sent=8000, cname="c", report=block)
    sr, sdes = RtcpPacket.parse(data)
    assert isinstance(sr, RtcpSrPacket) and isinstance(sdes, RtcpSdesPacket)
    assert sr.ssrc == 42
    assert sr.sender_info == RtcpSenderInfo(ntp_timestamp=((2_208_988_800 + 1) << 32)
                                            | 0x8000_0000, rtp_timestamp=160,
                                            packet_count=50, octet_count=8000)
    (info,) = sr.reports
    assert (info.ssrc, info.fraction_lost, info.packets_lost, info.highest_sequence,
            info.jitter, info.lsr, info.dlsr) == (7, 10, 4, 99, 80, 1, 2)
    summary = parse_compound(data)
    assert summary.sender_ssrc == 42
    assert summary.sr_ntp_middle == ((2_208_988_800 + 1) & 0xFFFF) << 16 | 0x8000


def test_sender_report_without_block() -> None:
    data = build_sender_report(ssrc=1, unix_s=0.0, rtp_ts=0, packets_sent=0, octets_sent=0,
                               cname="c")
    first, pt, length = struct.unpack_from("!BBH", data, 0)
    assert (first & 0x1F, pt, length) == (0, 200, 6)
    assert parse_compound(data).reports == ()


# --------------------------------------------------------------------------- parsing

def _aiortc_sr(ssrc: int, ntp: int, blocks_for: list[int]) -> bytes:
    reports = [RtcpReceiverInfo(media, 1, 2, 3, 4, 5, 6) for media in blocks_for]
    return bytes(RtcpSrPacket(ssrc=ssrc, sender_info=RtcpSenderInfo(ntp, 0, 0, 0),
                              reports=reports))


def test_parse_sr_from_aiortc_with_bye_and_filter() -> None:
    ntp = 0x1234_5678_9ABC_DEF0
    data = _aiortc_sr(5, ntp, [100, 200]) + bytes(RtcpByePacket(sources=[5]))
    summary = parse_compound(data)
    assert summary.sender_ssrc == 5 and summary.sr_ntp_middle == 0x5678_9ABC
    assert summary.packets == 2 and summary.bye
    assert [r.ssrc for r in summary.reports] == [100, 200]
    assert [r.ssrc for r in parse_compound(data, media_ssrc=200).reports] == [200]


@pytest.mark.parametrize("data", [
    b"",
    b"\x00" * 8,                                   # version 0
    b"\x80\x00\x00\x01" + b"\x00" * 4,             # RTP-like: payload type 0 is not RTCP
    b"\x81\xc9\x00\x07" + b"\x00" * 8,             # RR length says 32 bytes, 12 given
    b"\x81\xc9\x00\x01" + b"\x00" * 4,             # RC=1 but no room for the block
    b"\x80\xc8\x00\x01" + b"\x00" * 4,             # SR too short for sender info
    b"\x81\xca",                                   # truncated header
    bytes(RtcpRrPacket(ssrc=1)) + b"\x00\x00",      # trailing bytes
    b"\xa0\xc9\x00\x01\x00\x00\x00\x00",           # padding bit with a zero pad count
])
def test_garbage_rejected(data: bytes) -> None:
    with pytest.raises(RtcpParseError):
        parse_compound(data)


def test_parse_error_is_value_error() -> None:
    assert issubclass(RtcpParseError, ValueError) and issubclass(RtcpFieldError, ValueError)


# --------------------------------------------------------------------------- scheduling

def test_scheduler_first_report_after_half_interval_then_interval() -> None:
    sched = RtcpScheduler(5.0, random=lambda: 0.5)  # factor 1.0
    assert sched.next_due() is None
    sched.start(100.0)
    assert sched.next_due() == pytest.approx(102.5)
    sched.sent(102.6)
    assert sched.next_due() == pytest.approx(107.6)


@pytest.mark.parametrize(("r", "factor"), [(0.0, 0.5), (0.999, 1.499)])
def test_scheduler_randomisation_bounds(r: float, factor: float) -> None:
    sched = RtcpScheduler(4.0, random=lambda: r)
    sched.start(0.0)
    assert sched.next_due() == pytest.approx(2.0 * factor)
    sched.sent(10.0)
    assert sched.next_due() == pytest.approx(10.0 + 4.0 * factor)


def test_lsr_dlsr_zero_before_any_sr() -> None:
    assert RtcpScheduler().lsr_dlsr(50.0) == (0, 0)


def test_lsr_dlsr_rfc3550_round_trip_example() -> None:
    # RFC 3550 6.4.1 figure 2: LSR 0xb705:2000, DLSR 0x0005:4000 (5.25 s),
    # report arrives at A = 0xb710:8000, so the round trip is 0x0006:2000 (6.125 s).
    sched = RtcpScheduler()
    sched.on_sender_report(0xB705_2000, now=40.0)
    lsr, dlsr = sched.lsr_dlsr(45.25)
    assert (lsr, dlsr) == (0xB705_2000, 0x0005_4000)
    assert 0xB710_8000 - lsr - dlsr == 0x0006_2000


def test_lsr_tracks_latest_sr() -> None:
    sched = RtcpScheduler()
    sched.on_sender_report(1, now=0.0)
    sched.on_sender_report(2, now=3.0)
    assert sched.lsr_dlsr(3.5) == (2, 32768)


def test_full_loop_sr_in_rr_out() -> None:
    """An SR parsed by parse_compound feeds the scheduler; our RR carries its LSR back."""
    far_sr = build_sender_report(ssrc=9, unix_s=1000.75, rtp_ts=0, packets_sent=1,
                                 octets_sent=160, cname="far")
    summary = parse_compound(far_sr)
    assert summary.sr_ntp_middle is not None
    sched = RtcpScheduler()
    sched.on_sender_report(summary.sr_ntp_middle, now=7.0)
    lsr, dlsr = sched.lsr_dlsr(8.0)
    rr = build_receiver_report(**{**RR_ARGS, "lsr": lsr, "dlsr": dlsr})  # type: ignore[arg-type]
    (report,) = parse_compound(rr).reports
    assert RtcpPacket.parse(rr)[0].reports[0].lsr == (  # type: ignore[union-attr]
        ((2_208_988_800 + 1000) & 0xFFFF) << 16 | 0xC000)
    assert report.ssrc == 0xAABBCCDD and dlsr == 65536


def test_bad_interval_rejected() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        RtcpScheduler(0.0)
