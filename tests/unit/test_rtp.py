"""gateway.media.rtp: RTP/RTCP wire format, byte for byte against aiortc's ``aiortc.rtp``.

aiortc stays the reference here (test extra): every packet aiortc builds parses to the same
fields, every packet we build is the bytes aiortc builds (where aiortc's output is the RFC's
layout), and on mutated/random datagrams both accept and reject the same ones. Real traffic:
``tests/rtp_corpus/captured.json`` holds datagrams pjsua2 and sipp sent (see its "about").
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
from aiortc import rtp as aio

from gateway.media.rtp import (
    SDES_CNAME,
    HeaderExtension,
    PacketError,
    ReceptionReport,
    RtcpBye,
    RtcpOther,
    RtcpPacket,
    RtcpReceiverReport,
    RtcpSdes,
    RtcpSenderReport,
    RtpPacket,
    SdesChunk,
    SenderInfo,
    clamp_packets_lost,
    parse_rtcp,
)

# --------------------------------------------------------------------------- RTP

HEADERS = [  # payload_type, marker, seq, ts, ssrc, payload length
    (0, False, 0, 0, 0, 160),
    (8, True, 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF, 160),
    (101, True, 1234, 99_999, 0xDEADBEEF, 4),          # RFC 4733 event
    (13, False, 7, 160, 1, 1),                          # comfort noise
    (127, False, 40_000, 1 << 31, 1 << 31, 0),
]


def _aio_packet(pt: int, marker: bool, seq: int, ts: int, ssrc: int,
                payload: bytes) -> aio.RtpPacket:
    return aio.RtpPacket(payload_type=pt, marker=int(marker), sequence_number=seq,
                         timestamp=ts, ssrc=ssrc, payload=payload)


def _same_fields(ours: RtpPacket, theirs: aio.RtpPacket) -> None:
    assert (ours.payload_type, ours.marker, ours.sequence_number, ours.timestamp, ours.ssrc,
            ours.payload, list(ours.csrc), ours.padding_size) == (
        theirs.payload_type, bool(theirs.marker), theirs.sequence_number, theirs.timestamp,
        theirs.ssrc, theirs.payload, theirs.csrc, theirs.padding_size)


@pytest.mark.parametrize("header", HEADERS)
@pytest.mark.parametrize("csrc", [(), (0x01020304,), tuple(range(1, 16))])
def test_rtp_serialize_is_aiortc_bytes(header: tuple[int, bool, int, int, int, int],
                                       csrc: tuple[int, ...]) -> None:
    pt, marker, seq, ts, ssrc, size = header
    payload = bytes(random.Random(seq).randrange(256) for _ in range(size))
    theirs = _aio_packet(pt, marker, seq, ts, ssrc, payload)
    theirs.csrc = list(csrc)
    ours = RtpPacket(pt, marker, seq, ts, ssrc, payload, csrc)
    wire = theirs.serialize()
    assert ours.serialize() == wire
    _same_fields(RtpPacket.parse(wire), aio.RtpPacket.parse(wire))
    assert RtpPacket.parse(wire) == ours


def test_rtp_padding_parsed_like_aiortc_and_written_as_zeros() -> None:
    theirs = _aio_packet(0, False, 5, 800, 9, b"\x7f" * 160)
    theirs.padding_size = 7
    wire = theirs.serialize()                   # aiortc pads with random octets
    ours = RtpPacket.parse(wire)
    _same_fields(ours, aio.RtpPacket.parse(wire))
    assert ours.serialize() == wire[:-7] + bytes(6) + b"\x07"
    assert ours.serialize()[0] & 0x20


def test_rtp_header_extension_kept_and_round_trips() -> None:
    # RFC 8285 one-byte form: id 1 (2 bytes), id 2 (1 byte), one padding byte
    body = bytes([0x11, 0xAA, 0xBB, 0x20, 0xCC, 0x00, 0x00, 0x00])
    ours = RtpPacket(0, True, 10, 1600, 77, b"\xff" * 160, (5, 6),
                     HeaderExtension(0xBEDE, body))
    wire = ours.serialize()
    assert wire[0] == 0x80 | 0x10 | 2
    assert wire[20:24] == b"\xbe\xde\x00\x02" and wire[24:32] == body
    parsed = RtpPacket.parse(wire)
    assert parsed == ours and parsed.serialize() == wire
    _same_fields(parsed, aio.RtpPacket.parse(wire))   # aiortc drops unmapped elements


def test_rtp_empty_extension_body() -> None:
    ours = RtpPacket(0, False, 1, 2, 3, b"x", extension=HeaderExtension(0x1234, b""))
    wire = ours.serialize()
    assert wire[12:16] == b"\x12\x34\x00\x00"
    assert RtpPacket.parse(wire) == ours


@pytest.mark.parametrize(("data", "message"), [
    (b"", "0 bytes, shorter than the 12-byte header"),
    (b"\x80\x00" + b"\x00" * 9, "11 bytes, shorter than the 12-byte header"),
    (b"\x40" + b"\x00" * 20, "RTP version 1, expected 2"),
    (b"\x00" * 20, "RTP version 0, expected 2"),
    (b"\x83" + b"\x00" * 15, "CSRC list of 3 truncated: 16 bytes, need 24"),
    (b"\x90" + b"\x00" * 13, "extension header truncated at byte 12"),
    (b"\x90" + b"\x00" * 11 + b"\xbe\xde\x00\x02" + b"\x00" * 4,
     "extension of 8 bytes truncated: 20 bytes, need 24"),
    (b"\xa0" + b"\x00" * 11 + b"\x01\x00", "padding count 0 does not fit the 2 bytes"),
    (b"\xa0" + b"\x00" * 11 + b"\x01\x03", "padding count 3 does not fit the 2 bytes"),
])
def test_rtp_parse_errors_are_precise(data: bytes, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        RtpPacket.parse(data)
    with pytest.raises(ValueError):
        aio.RtpPacket.parse(data)


def test_rtp_padding_may_fill_everything_after_the_header() -> None:
    wire = b"\xa0" + b"\x00" * 11 + b"\x00\x00\x03"
    ours = RtpPacket.parse(wire)
    assert ours.payload == b"" and ours.padding_size == 3
    assert aio.RtpPacket.parse(wire).payload == b""


def test_rtp_accepts_and_rejects_what_aiortc_does() -> None:
    """Mutated real-looking packets: same verdict, same fields when both accept.

    The one known difference: aiortc also walks RFC 8285 extension elements (and rejects
    a truncated one) even when it maps none of them; we keep the extension body as is.
    """
    rng = random.Random(3550)
    base = [_aio_packet(*h[:5], bytes(h[5])) for h in HEADERS]
    for p in base[:2]:
        p.csrc = [1, 2]
    seeds = [p.serialize() for p in base]
    seeds.append(RtpPacket(0, False, 1, 2, 3, b"ab" * 20, (),
                           HeaderExtension(0xBEDE, b"\x10\x01\x00\x00")).serialize())
    checked = 0
    for _ in range(4000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            if data and rng.random() < 0.7:
                data[rng.randrange(min(len(data), 24))] = rng.randrange(256)
            else:
                del data[rng.randrange(len(data) + 1):]
        data_b = bytes(data)
        try:
            theirs: aio.RtpPacket | None = aio.RtpPacket.parse(data_b)
        except ValueError as exc:
            theirs, their_error = None, str(exc)
        try:
            ours: RtpPacket | None = RtpPacket.parse(data_b)
        except PacketError:
            ours = None
        if theirs is None and ours is not None:
            assert "header extension" in their_error, (data_b.hex(), their_error)
            continue
        assert (ours is None) == (theirs is None), data_b.hex()
        if ours is not None and theirs is not None:
            _same_fields(ours, theirs)
            checked += 1
            if ours.padding_size == 0:
                assert ours.serialize() == data_b
    assert checked > 500


@pytest.mark.parametrize(("packet", "message"), [
    (RtpPacket(payload_type=128), "payload_type must be 0..127"),
    (RtpPacket(sequence_number=1 << 16), "field out of range"),
    (RtpPacket(timestamp=-1), "field out of range"),
    (RtpPacket(csrc=tuple(range(16))), "at most 15 CSRCs"),
    (RtpPacket(csrc=(1 << 32,)), "field out of range"),
    (RtpPacket(padding_size=256), "padding_size must be 0..255"),
    (RtpPacket(extension=HeaderExtension(0xBEDE, b"\x00")), "whole 32-bit words"),
    (RtpPacket(extension=HeaderExtension(1 << 16, b"")), "profile must be 16 bits"),
])
def test_rtp_serialize_rejects_fields_that_do_not_fit(packet: RtpPacket, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        packet.serialize()


# --------------------------------------------------------------------------- RTCP

REPORT = ReceptionReport(0xAABBCCDD, 51, -3, 0x0001_FFF0, 1234, 0xB7052000, 0x00054000)
AIO_REPORT = aio.RtcpReceiverInfo(0xAABBCCDD, 51, -3, 0x0001_FFF0, 1234, 0xB7052000,
                                  0x00054000)


def test_rr_is_aiortc_bytes() -> None:
    for reports, theirs in [((), []), ((REPORT,), [AIO_REPORT]),
                            ((REPORT, REPORT), [AIO_REPORT, AIO_REPORT])]:
        wire = bytes(aio.RtcpRrPacket(ssrc=0x11223344, reports=theirs))
        assert RtcpReceiverReport(0x11223344, reports).serialize() == wire
        assert parse_rtcp(wire) == [RtcpReceiverReport(0x11223344, reports)]


def test_sr_is_aiortc_bytes() -> None:
    info = SenderInfo(0x1234_5678_9ABC_DEF0, 160, 50, 8000)
    theirs = aio.RtcpSrPacket(ssrc=42, sender_info=aio.RtcpSenderInfo(
        0x1234_5678_9ABC_DEF0, 160, 50, 8000), reports=[AIO_REPORT])
    ours = RtcpSenderReport(42, info, (REPORT,))
    assert ours.serialize() == bytes(theirs)
    assert parse_rtcp(bytes(theirs)) == [ours]


@pytest.mark.parametrize("lost", [0, 1, -1, -3, clamp_packets_lost(1 << 30),
                                  clamp_packets_lost(-(1 << 30))])
def test_packets_lost_24_bit_signed_like_aiortc(lost: int) -> None:
    ours = ReceptionReport(1, 2, lost, 3, 4, 5, 6)
    theirs = aio.RtcpReceiverInfo(1, 2, lost, 3, 4, 5, 6)
    assert ours.serialize() == bytes(theirs)
    assert ReceptionReport.parse(bytes(theirs), 0) == ours
    assert clamp_packets_lost(1 << 30) == aio.clamp_packets_lost(1 << 30) == (1 << 23) - 1


@pytest.mark.parametrize("cname_len", [2, 3, 4, 6, 7, 8, 10, 32, 36, 255])
def test_sdes_cname_is_aiortc_bytes(cname_len: int) -> None:
    cname = bytes(range(97, 97 + 26)) * 10
    chunk = SdesChunk(0x01020304, ((SDES_CNAME, cname[:cname_len]),))
    theirs = bytes(aio.RtcpSdesPacket(chunks=[aio.RtcpSourceInfo(0x01020304,
                                                                 [(1, cname[:cname_len])])]))
    assert RtcpSdes((chunk,)).serialize() == theirs
    assert parse_rtcp(theirs) == [RtcpSdes((chunk,))]


@pytest.mark.parametrize("cname_len", [1, 5, 9, 13, 253])
def test_sdes_pads_to_the_next_word_only(cname_len: int) -> None:
    """RFC 3550 6.5: null octets only up to the next 32-bit boundary.

    aiortc always writes two nulls and then pads, so for these lengths it adds a whole
    extra zero word; both forms parse to the same chunk, here and in aiortc.
    """
    value = b"x" * cname_len
    ours = RtcpSdes((SdesChunk(9, ((SDES_CNAME, value),)),)).serialize()
    theirs = bytes(aio.RtcpSdesPacket(chunks=[aio.RtcpSourceInfo(9, [(1, value)])]))
    assert len(ours) == len(theirs) - 4 and ours[4:] == theirs[4:-4]
    assert ours[-1] == 0 and ours[4 + 4 + 2 + cname_len] == 0 and len(ours) % 4 == 0
    assert parse_rtcp(ours) == parse_rtcp(theirs)
    assert aio.RtcpPacket.parse(ours)[0].chunks[0].items == [(1, value)]  # type: ignore


def test_sdes_several_chunks_each_word_aligned() -> None:
    sdes = RtcpSdes((SdesChunk(1, ((1, b"abc"), (2, b"name"))), SdesChunk(2, ()),
                     SdesChunk(3, ((1, b"z"),))))
    wire = sdes.serialize()
    assert wire[4:8] == b"\x00\x00\x00\x01" and wire[8:13] == b"\x01\x03abc"
    assert parse_rtcp(wire) == [sdes]
    assert len(wire) % 4 == 0 and wire[0] & 0x1F == 3


def test_bye_is_aiortc_bytes_and_reason_round_trips() -> None:
    for sources in ([], [5], [5, 6, 7]):
        wire = bytes(aio.RtcpByePacket(sources=sources))
        assert RtcpBye(tuple(sources)).serialize() == wire
        assert parse_rtcp(wire) == [RtcpBye(tuple(sources))]
    bye = RtcpBye((5,), b"call ended")
    wire = bye.serialize()
    assert wire[8:19] == b"\x0acall ended" and len(wire) == 20
    assert parse_rtcp(wire) == [bye]
    assert aio.RtcpPacket.parse(wire)[0].sources == [5]  # type: ignore[union-attr]


def test_feedback_and_unknown_types_come_back_untouched() -> None:
    nack = bytes(aio.RtcpRtpfbPacket(fmt=1, ssrc=1, media_ssrc=2, lost=[10, 12]))
    pli = bytes(aio.RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=2))
    app = b"\x81\xcc\x00\x02" + b"\x00\x00\x00\x07" + b"NAME"
    packets = parse_rtcp(nack + pli + app)
    assert packets == [RtcpOther(205, 1, nack[4:]), RtcpOther(206, 1, pli[4:]),
                       RtcpOther(204, 1, app[4:])]
    assert b"".join(p.serialize() for p in packets) == nack + pli + app


def test_compound_with_padding_matches_aiortc() -> None:
    rr = RtcpReceiverReport(7, (REPORT,)).serialize()
    padded = bytearray(rr + b"\x00\x00\x00\x04")
    padded[0] |= 0x20
    padded[3] += 1
    data = bytes(padded) + bytes(aio.RtcpByePacket(sources=[7]))
    theirs = aio.RtcpPacket.parse(data)
    assert parse_rtcp(data) == [RtcpReceiverReport(7, (REPORT,)), RtcpBye((7,))]
    assert [type(p) for p in theirs] == [aio.RtcpRrPacket, aio.RtcpByePacket]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty RTCP datagram"),
    (b"\x81\xca", "header truncated at byte 0"),
    (b"\x00\xc9\x00\x00", "RTCP version 0 at byte 0"),
    (b"\x81\xc9\x00\x07" + b"\x00" * 8, "claims 28 payload bytes, 8 left"),
    (b"\x81\xc9\x00\x01" + b"\x00" * 4, "RR at byte 0 with 1 report blocks must have 28"),
    (b"\x80\xc8\x00\x01" + b"\x00" * 4, "SR at byte 0 with 0 report blocks must have 24"),
    (b"\xa0\xc9\x00\x01\x00\x00\x00\x00", "padding count 0 at byte 0"),
    (b"\xa0\xc9\x00\x01\x00\x00\x00\x09", "padding count 9 at byte 0"),
    (b"\x82\xcb\x00\x01\x00\x00\x00\x01", "BYE at byte 0 lists 2 sources in 4 bytes"),
    (b"\x81\xcb\x00\x02\x00\x00\x00\x01\x09abc", "reason of 9 bytes truncated"),
    (b"\x82\xca\x00\x02\x00\x00\x00\x01\x01\x00\x00\x00", "chunk 2 of 2 truncated"),
    (b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x09ab", "item truncated at payload byte 4"),
    (bytes(aio.RtcpRrPacket(ssrc=1)) + b"\x81\xc9",
     "header truncated at byte 8"),
])
def test_rtcp_parse_errors_are_precise(data: bytes, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        parse_rtcp(data)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: ReceptionReport(1 << 32, 0, 0, 0, 0, 0, 0).serialize(), "ssrc must fit 32"),
    (lambda: ReceptionReport(1, 256, 0, 0, 0, 0, 0).serialize(), "fraction_lost must fit 8"),
    (lambda: ReceptionReport(1, 0, 1 << 23, 0, 0, 0, 0).serialize(), "24 signed bits"),
    (lambda: SenderInfo(1 << 64, 0, 0, 0).serialize(), "ntp_timestamp must fit 64"),
    (lambda: RtcpReceiverReport(1, (REPORT,) * 32).serialize(), "at most 31"),
    (lambda: SdesChunk(1, ((0, b"x"),)).serialize(), "item type must be 1..255"),
    (lambda: SdesChunk(1, ((1, b"x" * 256),)).serialize(), "256 bytes"),
    (lambda: RtcpBye((1,), b"x" * 256).serialize(), "reason is at most 255"),
    (lambda: RtcpOther(204, 0, b"abc").serialize(), "whole 32-bit words"),
])
def test_rtcp_builders_reject_fields_that_do_not_fit(build: object, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        build()  # type: ignore[operator]


def test_rtcp_fuzz_never_raises_anything_but_packet_error() -> None:
    rng = random.Random(6)
    seed = (RtcpSenderReport(1, SenderInfo(2, 3, 4, 5), (REPORT,)).serialize()
            + RtcpSdes((SdesChunk(1, ((1, b"cname@x"),)),)).serialize()
            + RtcpBye((1,), b"bye").serialize())
    accepted = 0
    for _ in range(3000):
        data = bytearray(seed)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            parse_rtcp(bytes(data))
            accepted += 1
        except PacketError:
            pass
    assert accepted > 100


def test_packet_error_is_value_error() -> None:
    assert issubclass(PacketError, ValueError)


# --------------------------------------------------------------------------- captured

CAPTURED = json.loads((Path(__file__).parents[1] / "rtp_corpus" / "captured.json").read_text())
CAPTURED_RTP = [(stack, bytes.fromhex(h)) for stack in ("pjsua2", "sipp")
                for h in CAPTURED[stack]["rtp"]]
CAPTURED_RTCP = [bytes.fromhex(h) for h in CAPTURED["pjsua2"]["rtcp"]]


@pytest.mark.parametrize(("stack", "wire"), CAPTURED_RTP,
                         ids=[f"{s}-{i}" for i, (s, _w) in enumerate(CAPTURED_RTP)])
def test_captured_rtp_parses_like_aiortc_and_serializes_to_the_same_bytes(
        stack: str, wire: bytes) -> None:
    ours, theirs = RtpPacket.parse(wire), aio.RtpPacket.parse(wire)
    _same_fields(ours, theirs)
    assert ours.serialize() == wire == theirs.serialize()
    assert ours.payload_type == 0 and len(ours.payload) == 160


def test_captured_rtp_has_the_marker_where_the_talkspurt_starts() -> None:
    first = RtpPacket.parse(bytes.fromhex(CAPTURED["pjsua2"]["rtp"][0]))
    assert first.marker and not RtpPacket.parse(bytes.fromhex(CAPTURED["pjsua2"]["rtp"][1])).marker


def _aio_summary(packets: list[object]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for p in packets:
        if isinstance(p, aio.RtcpSrPacket):
            info = p.sender_info
            out.append(("SR", p.ssrc, info.ntp_timestamp, info.rtp_timestamp,
                        info.packet_count, info.octet_count,
                        [dataclasses.astuple(r) for r in p.reports]))
        elif isinstance(p, aio.RtcpRrPacket):
            out.append(("RR", p.ssrc, [dataclasses.astuple(r) for r in p.reports]))
        elif isinstance(p, aio.RtcpSdesPacket):
            out.append(("SDES", [(c.ssrc, c.items) for c in p.chunks]))
        elif isinstance(p, aio.RtcpByePacket):
            out.append(("BYE", p.sources))
    return out


def _our_summary(packets: list[RtcpPacket]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for p in packets:
        if isinstance(p, RtcpSenderReport):
            info = p.sender_info
            out.append(("SR", p.ssrc, info.ntp_timestamp, info.rtp_timestamp,
                        info.packet_count, info.octet_count,
                        [dataclasses.astuple(r) for r in p.reports]))
        elif isinstance(p, RtcpReceiverReport):
            out.append(("RR", p.ssrc, [dataclasses.astuple(r) for r in p.reports]))
        elif isinstance(p, RtcpSdes):
            out.append(("SDES", [(c.ssrc, list(c.items)) for c in p.chunks]))
        elif isinstance(p, RtcpBye):
            out.append(("BYE", list(p.sources)))
    return out


@pytest.mark.parametrize("wire", CAPTURED_RTCP, ids=[f"pjsua2-{i}" for i in
                                                     range(len(CAPTURED_RTCP))])
def test_captured_rtcp_parses_like_aiortc_and_serializes_to_the_same_bytes(wire: bytes) -> None:
    ours = parse_rtcp(wire)
    assert _our_summary(ours) == _aio_summary(aio.RtcpPacket.parse(wire))  # type: ignore[arg-type]
    assert b"".join(p.serialize() for p in ours) == wire
    kinds = [type(p).__name__ for p in ours]
    assert kinds[:2] in (["RtcpReceiverReport", "RtcpSdes"], ["RtcpSenderReport", "RtcpSdes"])


def test_captured_rtcp_covers_sr_rr_sdes_and_bye() -> None:
    kinds = {type(p) for wire in CAPTURED_RTCP for p in parse_rtcp(wire)}
    assert kinds == {RtcpSenderReport, RtcpReceiverReport, RtcpSdes, RtcpBye}


def test_captured_rtcp_through_the_gateways_summary() -> None:
    from gateway.media.rtcp import parse_compound

    summaries = [parse_compound(wire) for wire in CAPTURED_RTCP]
    assert {s.sender_ssrc for s in summaries} == {0x0853D96F}
    with_sr = [s for s in summaries if s.sr_ntp_middle is not None]
    assert len(with_sr) == 2 and [s.bye for s in summaries] == [False, False, False, True, True]
    first_sr = aio.RtcpPacket.parse(CAPTURED_RTCP[2])[0]
    assert isinstance(first_sr, aio.RtcpSrPacket)
    assert with_sr[0].sr_ntp_middle == (first_sr.sender_info.ntp_timestamp >> 16) & 0xFFFF_FFFF
