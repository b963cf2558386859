"""Tests for gateway.sip.sdp: parsing, RFC 3264 negotiation, answer rendering, hold detection.

The offers below are written by hand in the shape real user agents send them; expected values
come from reading those offers and RFC 3264/3551, never from running the code under test.
"""

from __future__ import annotations

import pytest

from gateway.sip.sdp import (
    MAX_SDP_BYTES,
    AnswerPlan,
    NoAcceptableMedia,
    RtpMap,
    SdpError,
    SessionDescription,
    build_answer,
    is_hold,
    negotiate,
    parse_sdp,
)


def crlf(text: str) -> str:
    """Dedent-free helper: the offers are written one line per source line, joined with CRLF."""
    return "\r\n".join(line.strip() for line in text.strip().splitlines()) + "\r\n"


ASTERISK = crlf("""
    v=0
    o=- 1623480117 1623480118 IN IP4 192.0.2.10
    s=Asterisk
    c=IN IP4 192.0.2.10
    t=0 0
    m=audio 10000 RTP/AVP 0 8 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=ptime:20
    a=maxptime:150
    a=sendrecv
""")

FREESWITCH = crlf("""
    v=0
    o=FreeSWITCH 1700000000 1700000001 IN IP4 198.51.100.5
    s=FreeSWITCH
    c=IN IP4 198.51.100.5
    t=0 0
    m=audio 24566 RTP/AVP 102 9 0 8 103 101 13
    a=rtpmap:102 opus/48000/2
    a=fmtp:102 useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000; ptime=20
    a=rtpmap:9 G722/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:103 telephone-event/48000
    a=fmtp:103 0-16
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=rtpmap:13 CN/8000
    a=ptime:20
""")

RTPENGINE = crlf("""
    v=0
    o=- 3912345678 3912345679 IN IP4 203.0.113.20
    s=-
    c=IN IP4 203.0.113.20
    t=0 0
    m=audio 30000 RTP/AVP 8 0 101
    a=maxptime:150
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=sendrecv
    a=rtcp:30001
    a=rtcp-mux
    a=ptime:30
""")

PJSUA2 = crlf("""
    v=0
    o=- 3896354112 3896354112 IN IP4 192.168.1.50
    s=pjmedia
    b=AS:84
    t=0 0
    a=X-nat:0
    m=audio 4000 RTP/AVP 98 97 99 104 3 0 8 9 96 100
    c=IN IP4 192.168.1.50
    b=TIAS:64000
    a=rtcp:4005 IN IP4 192.168.1.50
    a=sendrecv
    a=rtpmap:98 speex/16000
    a=rtpmap:97 speex/8000
    a=rtpmap:99 speex/32000
    a=rtpmap:104 iLBC/8000
    a=fmtp:104 mode=30
    a=rtpmap:3 GSM/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:9 G722/8000
    a=rtpmap:96 telephone-event/16000
    a=fmtp:96 0-16
    a=rtpmap:100 telephone-event/8000
    a=fmtp:100 0-16
    a=ssrc:1234567890 cname:2b0f2e5d1b6c4f1e
""")

# sipp's built-in uac scenario, as a scenario file usually carries it: LF endings, no rtpmap.
SIPP = "v=0\no=user1 53655765 2353687637 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n" \
    "m=audio 6000 RTP/AVP 0\n"

SIPREC = crlf("""
    v=0
    o=SRC 2890844526 2890844526 IN IP4 198.51.100.1
    s=-
    c=IN IP4 198.51.100.1
    t=0 0
    m=audio 12240 RTP/AVP 0 8 101
    a=rtpmap:0 PCMU/8000
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
    a=label:1
    a=sendonly
    m=audio 12242 RTP/AVP 8 0 101
    a=rtpmap:8 PCMA/8000
    a=rtpmap:0 PCMU/8000
    a=rtpmap:101 telephone-event/8000
    a=label:2
    a=sendonly
""")

VIDEO_THEN_AUDIO = crlf("""
    v=0
    o=alice 2890844526 2890844526 IN IP4 192.0.2.33
    s=call
    c=IN IP4 192.0.2.33
    t=0 0
    m=video 51372 RTP/AVP 96 97
    a=rtpmap:96 H264/90000
    a=fmtp:96 profile-level-id=42e01f;packetization-mode=1
    a=rtpmap:97 VP8/90000
    m=audio 49170 RTP/AVP 8 0
""")

IPV6 = crlf("""
    v=0
    o=- 20518 0 IN IP6 2001:db8::10
    s=-
    c=IN IP6 2001:db8::10
    t=0 0
    m=audio 7078 RTP/AVP 8 101
    a=rtpmap:8 PCMA/8000
    a=rtpmap:101 telephone-event/8000
""")


def offer_with(media_block: str, *, session: str = "c=IN IP4 192.0.2.1") -> str:
    head = f"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n{session}\nt=0 0\n"
    return head + "\n".join(line.strip() for line in media_block.strip().splitlines()) + "\n"


def answer_for(offer: SessionDescription, plan: AnswerPlan, ports: list[int | None]) -> bytes:
    return build_answer(
        offer, plan, local_address="10.0.0.5", ports=ports, session_id=42, session_version=7
    )


# --------------------------------------------------------------------------- parsing


def test_parse_asterisk_offer_fields() -> None:
    sdp = parse_sdp(ASTERISK.encode())
    assert (sdp.origin_username, sdp.session_id, sdp.session_version) == (
        "-", "1623480117", 1623480118,
    )
    assert (sdp.origin_address, sdp.session_name) == ("192.0.2.10", "Asterisk")
    assert sdp.connection == "192.0.2.10"
    assert sdp.addr_type == "IP4"
    (audio,) = sdp.media
    assert (audio.media, audio.port, audio.port_count) == ("audio", 10000, 1)
    assert audio.proto == "RTP/AVP"
    assert audio.formats == ("0", "8", "101")
    assert audio.rtpmaps[2] == RtpMap(101, "telephone-event", 8000)
    assert audio.fmtp == ((101, "0-16"),)
    assert (audio.ptime_ms, audio.direction, audio.connection) == (20, "sendrecv", None)
    assert audio.other_attrs == ("maxptime:150",)
    assert sdp.media_address(0) == "192.0.2.10"


def test_static_payload_types_without_rtpmap() -> None:
    audio = parse_sdp(SIPP).media[0]
    assert audio.rtpmaps == ()
    assert audio.rtpmap_for(0) == RtpMap(0, "PCMU", 8000, 1)
    assert audio.rtpmap_for(8) == RtpMap(8, "PCMA", 8000, 1)
    assert audio.rtpmap_for(18) == RtpMap(18, "G729", 8000, 1)
    assert audio.rtpmap_for(9) == RtpMap(9, "G722", 8000, 1)
    assert audio.rtpmap_for(96) is None


def test_explicit_rtpmap_wins_over_static_assignment() -> None:
    audio = parse_sdp(offer_with("m=audio 5000 RTP/AVP 96 0\na=rtpmap:0 PCMU/16000")).media[0]
    assert audio.rtpmap_for(0) == RtpMap(0, "PCMU", 16000)


def test_pjsua_media_level_connection_and_rtcp_attribute() -> None:
    sdp = parse_sdp(PJSUA2)
    audio = sdp.media[0]
    assert sdp.connection is None
    assert audio.connection == "192.168.1.50"
    assert sdp.media_address(0) == "192.168.1.50"
    assert audio.rtcp_port == 4005
    assert audio.rtcp_mux is False
    assert audio.rtpmap_for(98) == RtpMap(98, "speex", 16000)
    assert audio.rtpmap_for(96) == RtpMap(96, "telephone-event", 16000)
    assert "ssrc:1234567890 cname:2b0f2e5d1b6c4f1e" in audio.other_attrs


def test_rtcp_mux_and_rtcp_port_parsed() -> None:
    audio = parse_sdp(RTPENGINE).media[0]
    assert (audio.rtcp_mux, audio.rtcp_port, audio.ptime_ms) == (True, 30001, 30)


def test_opus_channels_parsed() -> None:
    assert parse_sdp(FREESWITCH).media[0].rtpmap_for(102) == RtpMap(102, "opus", 48000, 2)


def test_siprec_labels_and_directions() -> None:
    sdp = parse_sdp(SIPREC)
    assert [m.label for m in sdp.media] == ["1", "2"]
    assert [m.direction for m in sdp.media] == ["sendonly", "sendonly"]
    assert [m.port for m in sdp.media] == [12240, 12242]


def test_ipv6_offer() -> None:
    sdp = parse_sdp(IPV6)
    assert sdp.addr_type == "IP6"
    assert sdp.media_address(0) == "2001:db8::10"


def test_session_level_direction_applies_to_media_without_own() -> None:
    sdp = parse_sdp(offer_with(
        "m=audio 5000 RTP/AVP 0\nm=audio 5002 RTP/AVP 0\na=sendrecv",
        session="c=IN IP4 192.0.2.1\na=sendonly",
    ))
    assert sdp.direction == "sendonly"
    assert [m.direction for m in sdp.media] == ["sendonly", "sendrecv"]


def test_connection_ttl_and_port_count_stripped() -> None:
    sdp = parse_sdp(offer_with("m=audio 5000/2 RTP/AVP 0", session="c=IN IP4 233.252.0.1/127"))
    assert sdp.connection == "233.252.0.1"
    assert (sdp.media[0].port, sdp.media[0].port_count) == (5000, 2)


def test_tolerates_unknown_lines_and_malformed_optional_attributes() -> None:
    sdp = parse_sdp(offer_with("""
        m=audio 5000 RTP/AVP 0
        i=audio stream
        b=AS:64
        k=prompt
        a=ptime:abc
        a=rtpmap:bogus
        a=x-custom:1
        a=ice-lite
    """) + "z=0 0\n")
    audio = sdp.media[0]
    assert audio.ptime_ms is None
    assert audio.rtpmaps == ()
    assert audio.other_attrs == ("ptime:abc", "rtpmap:bogus", "x-custom:1", "ice-lite")


def test_invalid_utf8_in_session_name_is_tolerated() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=caf\xe9\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" \
        b"m=audio 5000 RTP/AVP 0\r\n"
    assert parse_sdp(body).media[0].port == 5000


def test_port_zero_stream_needs_no_connection() -> None:
    body = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 0 RTP/AVP 0\n"
    assert parse_sdp(body).media_address(0) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "v="),
        ("o=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nm=audio 5000 RTP/AVP 0\n", "v="),
        ("v=1\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 5000 RTP/AVP 0\n", "version"),
        ("v=0\ns=-\nc=IN IP4 192.0.2.1\nm=audio 5000 RTP/AVP 0\n", "o= line"),
        ("v=0\no=- 1 1 IN IP4\nc=IN IP4 192.0.2.1\nm=audio 5000 RTP/AVP 0\n", "6 fields"),
        ("v=0\no=- 1 x IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 5000 RTP/AVP 0\n", "version"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nt=0 0\n", "no m= line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio abc RTP/AVP 0\n", "port"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 70000 RTP/AVP 0\n", "port"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 5000 RTP/AVP\n", "m= line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\nm=audio 5000/x RTP/AVP 0\n", "count"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\nm=audio 5000 RTP/AVP 0\n", "no c= address"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4\nm=audio 5000 RTP/AVP 0\n", "c= line"),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\ngarbage\nm=audio 5000 RTP/AVP 0\n", "line 3"),
        ("v=0\nm=audio 5000 RTP/AVP 0\no=- 1 1 IN IP4 192.0.2.1\nc=IN IP4 192.0.2.1\n", "o= line"),
    ],
)
def test_malformed_sdp_raises(body: str, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        parse_sdp(body)


def test_size_limit() -> None:
    base = offer_with("m=audio 5000 RTP/AVP 0")
    padding_line_overhead = len("a=x:\n")
    at_limit = base + "a=x:" + "y" * (MAX_SDP_BYTES - len(base) - padding_line_overhead) + "\n"
    assert len(at_limit.encode()) == MAX_SDP_BYTES
    assert parse_sdp(at_limit.encode()).media[0].port == 5000
    with pytest.raises(SdpError, match="limit"):
        parse_sdp((at_limit + "a=z\n").encode())
    with pytest.raises(SdpError, match="limit"):
        parse_sdp(at_limit + "a=z\n")


# --------------------------------------------------------------------------- negotiation


def test_negotiate_asterisk() -> None:
    offer = parse_sdp(ASTERISK)
    (stream,) = negotiate(offer).streams
    assert stream.accepted
    assert (stream.pt, stream.encoding, stream.dtmf_pt) == (0, "PCMU", 101)
    assert (stream.remote_address, stream.remote_port, stream.remote_rtcp_port) == (
        "192.0.2.10", 10000, 10001,
    )
    assert stream.ptime_ms == 20
    assert (stream.direction, stream.remote_direction) == ("sendrecv", "sendrecv")
    assert stream.rtcp_mux is False


def test_negotiate_freeswitch_skips_opus_g722_and_wideband_dtmf() -> None:
    offer = parse_sdp(FREESWITCH)
    stream = negotiate(offer).streams[0]
    assert (stream.pt, stream.encoding, stream.dtmf_pt) == (0, "PCMU", 101)
    pcma = negotiate(offer, codecs=("PCMA", "PCMU")).streams[0]
    assert (pcma.pt, pcma.encoding) == (8, "PCMA")


def test_negotiate_prefers_our_order_over_offer_order() -> None:
    stream = negotiate(parse_sdp(RTPENGINE)).streams[0]
    assert (stream.pt, stream.encoding) == (0, "PCMU")
    assert stream.rtcp_mux is True
    assert stream.remote_rtcp_port == 30000  # muxed: RTCP shares the RTP port
    assert stream.ptime_ms == 30


def test_negotiate_pjsua_rtcp_port_and_default_ptime() -> None:
    stream = negotiate(parse_sdp(PJSUA2), default_ptime_ms=30).streams[0]
    assert (stream.pt, stream.dtmf_pt) == (0, 100)
    assert stream.remote_rtcp_port == 4005
    assert stream.ptime_ms == 30


def test_negotiate_sipp_static_pcmu_only() -> None:
    stream = negotiate(parse_sdp(SIPP)).streams[0]
    assert (stream.pt, stream.encoding, stream.dtmf_pt) == (0, "PCMU", None)
    assert (stream.remote_address, stream.remote_port) == ("127.0.0.1", 6000)


def test_negotiate_dynamic_pt_for_pcmu_and_case_insensitive_name() -> None:
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVP 96 97\na=rtpmap:96 PCMU/16000\n"
                                 "a=rtpmap:97 pcma/8000"))
    stream = negotiate(offer).streams[0]
    assert (stream.pt, stream.encoding) == (97, "PCMA")


def test_telephone_event_can_be_disabled() -> None:
    assert negotiate(parse_sdp(ASTERISK), telephone_event=False).streams[0].dtmf_pt is None


@pytest.mark.parametrize(("ptime", "expected_ms"), [("10", 10), ("30", 30), ("40", 20), ("60", 20)])
def test_ptime_outside_allowed_set_falls_back_to_default(ptime: str, expected_ms: int) -> None:
    offer = parse_sdp(offer_with(f"m=audio 5000 RTP/AVP 0\na=ptime:{ptime}"))
    assert negotiate(offer).streams[0].ptime_ms == expected_ms


@pytest.mark.parametrize(
    ("offered", "recv_only", "ours"),
    [
        ("sendrecv", False, "sendrecv"),
        ("sendrecv", True, "recvonly"),
        ("sendonly", False, "recvonly"),
        ("sendonly", True, "recvonly"),
        ("recvonly", False, "sendonly"),
        ("recvonly", True, "inactive"),
        ("inactive", False, "inactive"),
    ],
)
def test_direction_mirrors_offer(offered: str, recv_only: bool, ours: str) -> None:
    offer = parse_sdp(offer_with(f"m=audio 5000 RTP/AVP 0\na={offered}"))
    stream = negotiate(offer, recv_only=recv_only).streams[0]
    assert (stream.remote_direction, stream.direction) == (offered, ours)


def test_session_level_direction_used_in_negotiation() -> None:
    session = "c=IN IP4 192.0.2.1\na=recvonly"
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVP 0", session=session))
    assert negotiate(offer).streams[0].direction == "sendonly"


def test_negotiate_siprec_two_streams() -> None:
    plan = negotiate(parse_sdp(SIPREC), recv_only=True)
    assert [s.label for s in plan.accepted] == ["1", "2"]
    assert [s.direction for s in plan.accepted] == ["recvonly", "recvonly"]
    assert [(s.pt, s.remote_port) for s in plan.accepted] == [(0, 12240), (0, 12242)]


def test_max_streams_refuses_extra_audio() -> None:
    plan = negotiate(parse_sdp(SIPREC), max_streams=1)
    assert [s.accepted for s in plan.streams] == [True, False]
    assert plan.streams[1].label == "2"


def test_video_refused_audio_accepted() -> None:
    plan = negotiate(parse_sdp(VIDEO_THEN_AUDIO))
    assert [s.accepted for s in plan.streams] == [False, True]
    assert [s.index for s in plan.streams] == [0, 1]
    assert plan.accepted[0].encoding == "PCMU"


def test_avpf_accepted() -> None:
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVPF 8"))
    assert negotiate(offer).streams[0].encoding == "PCMA"


@pytest.mark.parametrize(
    ("media_block", "named"),
    [
        ("m=audio 5000 RTP/AVP 18 101\na=rtpmap:18 G729/8000\na=rtpmap:101 telephone-event/8000",
         "G729/8000"),
        ("m=audio 5000 RTP/SAVP 0 8\n"
         "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR",
         "RTP/SAVP"),
        ("m=audio 0 RTP/AVP 0\nm=audio 0 RTP/AVP 8", "port 0"),
        ("m=video 5000 RTP/AVP 96\na=rtpmap:96 H264/90000", "video"),
        ("m=audio 5000 RTP/AVP 96\na=rtpmap:96 PCMU/16000", "PCMU/16000"),
    ],
)
def test_no_acceptable_media(media_block: str, named: str) -> None:
    with pytest.raises(NoAcceptableMedia, match=named) as excinfo:
        negotiate(parse_sdp(offer_with(media_block)))
    assert isinstance(excinfo.value, SdpError)


def test_codec_restriction_can_cause_488() -> None:
    offer = parse_sdp(SIPP)
    with pytest.raises(NoAcceptableMedia, match="PCMU/8000"):
        negotiate(offer, codecs=("PCMA",))


@pytest.mark.parametrize("codecs", [(), ("G729",), ("PCMU", "opus")])
def test_unsupported_codec_configuration_rejected(codecs: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="codecs"):
        negotiate(parse_sdp(ASTERISK), codecs=codecs)


# --------------------------------------------------------------------------- answers


def lines_of(answer: bytes) -> list[str]:
    text = answer.decode()
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    return text[:-2].split("\r\n")


def test_answer_for_asterisk_round_trips() -> None:
    offer = parse_sdp(ASTERISK)
    answer_bytes = answer_for(offer, negotiate(offer), [40000])
    lines = lines_of(answer_bytes)
    assert lines[:5] == [
        "v=0", "o=asr-gateway 42 7 IN IP4 10.0.0.5", "s=-", "c=IN IP4 10.0.0.5", "t=0 0",
    ]
    assert lines[5] == "m=audio 40000 RTP/AVP 0 101"
    answer = parse_sdp(answer_bytes)
    (audio,) = answer.media
    assert (answer.session_id, answer.session_version) == ("42", 7)
    assert answer.media_address(0) == "10.0.0.5"
    assert audio.rtpmap_for(0) == RtpMap(0, "PCMU", 8000)
    assert audio.rtpmap_for(101) == RtpMap(101, "telephone-event", 8000)
    assert audio.fmtp == ((101, "0-16"),)
    assert (audio.ptime_ms, audio.direction) == (20, "sendrecv")
    assert (audio.rtcp_mux, audio.label) == (False, None)


def test_answer_copies_dtmf_fmtp_from_offer() -> None:
    offer = parse_sdp(FREESWITCH)
    audio = parse_sdp(answer_for(offer, negotiate(offer), [40000])).media[0]
    assert audio.formats == ("0", "101", "13")          # CN offered: accepted (RFC 3389)
    assert audio.fmtp == ((101, "0-15"),)


def test_answer_default_dtmf_fmtp_when_offer_has_none() -> None:
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVP 8 126\na=rtpmap:126 telephone-event/8000"))
    audio = parse_sdp(answer_for(offer, negotiate(offer), [40000])).media[0]
    assert audio.formats == ("8", "126")
    assert audio.fmtp == ((126, "0-16"),)


def test_answer_rtcp_mux_echoed() -> None:
    offer = parse_sdp(RTPENGINE)
    audio = parse_sdp(answer_for(offer, negotiate(offer), [40000])).media[0]
    assert audio.rtcp_mux is True
    assert audio.ptime_ms == 30


def test_answer_without_dtmf_for_sipp() -> None:
    offer = parse_sdp(SIPP)
    audio = parse_sdp(answer_for(offer, negotiate(offer), [40000])).media[0]
    assert audio.formats == ("0",)
    assert audio.fmtp == ()


def test_siprec_answer_keeps_order_labels_and_recvonly() -> None:
    offer = parse_sdp(SIPREC)
    answer = parse_sdp(answer_for(offer, negotiate(offer), [40000, 40002]))
    assert [(m.port, m.label, m.direction) for m in answer.media] == [
        (40000, "1", "recvonly"), (40002, "2", "recvonly"),
    ]
    assert [m.formats for m in answer.media] == [("0", "101"), ("0", "101")]


def test_refused_stream_gets_port_zero_and_first_format() -> None:
    offer = parse_sdp(VIDEO_THEN_AUDIO)
    lines = lines_of(answer_for(offer, negotiate(offer), [None, 40000]))
    m_lines = [line for line in lines if line.startswith("m=")]
    assert m_lines == ["m=video 0 RTP/AVP 96", "m=audio 40000 RTP/AVP 0"]
    answer = parse_sdp("\r\n".join(lines))
    assert [m.port for m in answer.media] == [0, 40000]


def test_siprec_answer_with_stream_limit() -> None:
    offer = parse_sdp(SIPREC)
    answer = parse_sdp(answer_for(offer, negotiate(offer, max_streams=1), [40000, None]))
    assert [(m.port, m.formats) for m in answer.media] == [(40000, ("0", "101")), (0, ("8",))]


def test_ipv6_answer() -> None:
    offer = parse_sdp(IPV6)
    answer_bytes = build_answer(
        offer, negotiate(offer), local_address="2001:db8::1", ports=[40000],
        session_id=1, session_version=2, username="gw",
    )
    lines = lines_of(answer_bytes)
    assert "o=gw 1 2 IN IP6 2001:db8::1" in lines
    assert "c=IN IP6 2001:db8::1" in lines
    answer = parse_sdp(answer_bytes)
    assert (answer.addr_type, answer.media_address(0)) == ("IP6", "2001:db8::1")
    assert answer.media[0].rtpmap_for(8) == RtpMap(8, "PCMA", 8000)


def test_reanswer_carries_new_version() -> None:
    offer = parse_sdp(ASTERISK)
    plan = negotiate(offer)
    first = parse_sdp(build_answer(offer, plan, local_address="10.0.0.5", ports=[40000],
                                   session_id=9, session_version=1))
    second = parse_sdp(build_answer(offer, plan, local_address="10.0.0.5", ports=[40000],
                                    session_id=9, session_version=2))
    assert (first.session_id, first.session_version) == ("9", 1)
    assert (second.session_id, second.session_version) == ("9", 2)


@pytest.mark.parametrize(
    ("ports", "local_address"),
    [([], "10.0.0.5"), ([None], "10.0.0.5"), ([0], "10.0.0.5"), ([40000], ""), ([40000], "a b")],
)
def test_build_answer_rejects_bad_arguments(ports: list[int | None], local_address: str) -> None:
    offer = parse_sdp(ASTERISK)
    with pytest.raises(ValueError):
        build_answer(offer, negotiate(offer), local_address=local_address, ports=ports,
                     session_id=1, session_version=1)


# --------------------------------------------------------------------------- hold / resume


def test_hold_and_resume_via_direction() -> None:
    hold = parse_sdp(ASTERISK.replace("a=sendrecv", "a=sendonly"))
    assert is_hold(hold, 0)
    assert negotiate(hold).streams[0].direction == "recvonly"
    resume = parse_sdp(ASTERISK)
    assert not is_hold(resume, 0)
    assert negotiate(resume).streams[0].direction == "sendrecv"


def test_hold_via_inactive() -> None:
    offer = parse_sdp(ASTERISK.replace("a=sendrecv", "a=inactive"))
    assert is_hold(offer, 0)
    assert negotiate(offer).streams[0].direction == "inactive"


def test_hold_via_zero_address_rfc2543() -> None:
    offer = parse_sdp(ASTERISK.replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0"))
    assert offer.media[0].direction == "sendrecv"
    assert is_hold(offer, 0)
    assert negotiate(offer).streams[0].remote_address == "0.0.0.0"


def test_hold_via_session_level_sendonly() -> None:
    session = "c=IN IP4 192.0.2.1\na=sendonly"
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVP 0", session=session))
    assert is_hold(offer, 0)


def test_recvonly_offer_is_not_hold() -> None:
    offer = parse_sdp(ASTERISK.replace("a=sendrecv", "a=recvonly"))
    assert not is_hold(offer, 0)


# ----------------------------------------------------------------- comfort noise, DTMF events


def test_comfort_noise_is_accepted_when_offered() -> None:
    offer = parse_sdp(FREESWITCH)
    stream = negotiate(offer).streams[0]
    assert stream.cn_pt == 13 and stream.dtmf_events == "0-15"
    audio = parse_sdp(answer_for(offer, negotiate(offer), [40000])).media[0]
    assert audio.rtpmap_for(13) is not None and audio.rtpmap_for(13).encoding == "CN"
    assert any(m.encoding == "CN" for m in audio.rtpmaps)        # written, not only static


def test_dynamic_comfort_noise_payload_type() -> None:
    offer = parse_sdp(offer_with("m=audio 5000 RTP/AVP 0 97\na=rtpmap:97 CN/8000"))
    assert negotiate(offer).streams[0].cn_pt == 97


def test_no_comfort_noise_unless_offered() -> None:
    offer = parse_sdp(SIPP)
    assert negotiate(offer).streams[0].cn_pt is None
    assert b"CN/8000" not in answer_for(offer, negotiate(offer), [40000])


@pytest.mark.parametrize(("fmtp", "answered"), [
    ("0-15,66,70", "0-15,66,70"), ("0-15", "0-15"), ("garbage", "0-16"), ("0-15;x", "0-16")])
def test_dtmf_events_list_answered_is_the_offered_one_when_valid(fmtp: str, answered: str
                                                                  ) -> None:
    offer = parse_sdp(offer_with(
        f"m=audio 5000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 {fmtp}"))
    plan = negotiate(offer)
    assert plan.streams[0].dtmf_events == answered
    assert parse_sdp(answer_for(offer, plan, [40000])).media[0].fmtp == ((101, answered),)
