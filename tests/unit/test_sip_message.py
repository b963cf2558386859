"""Tests for gateway.sip.message: corpus-driven parsing, round trips, Headers, framing."""

from __future__ import annotations

import pathlib
import re

import pytest

from gateway.sip.message import (
    MAX_MESSAGE_BYTES,
    REASONS,
    Headers,
    NameAddr,
    SipHeaderError,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    SipUriError,
    StreamFramer,
    UnsupportedUriScheme,
    Via,
    build_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
    readable_via,
)

CORPUS = pathlib.Path(__file__).resolve().parent.parent / "sip_corpus"
VALID = sorted((CORPUS / "valid").glob("*.sip"))
INVALID = sorted((CORPUS / "invalid").glob("*.sip"))


def load(kind: str, name: str) -> bytes:
    return (CORPUS / kind / f"{name}.sip").read_bytes()


def parse_valid(name: str) -> SipRequest | SipResponse:
    return parse_message(load("valid", name))


def request(name: str) -> SipRequest:
    message = parse_valid(name)
    assert isinstance(message, SipRequest)
    return message


def response(name: str) -> SipResponse:
    message = parse_valid(name)
    assert isinstance(message, SipResponse)
    return message


SDP_FIRST_LINE = b"v=0\r\n"
SDP_LAST_LINE = b"a=ptime:20\r\n"
SDP_LEN = 216  # counted by hand from the SDP in the corpus files (11 lines)


# --------------------------------------------------------------------------- corpus: valid


def test_corpus_sizes() -> None:
    assert len(VALID) >= 12
    assert len(INVALID) >= 12


def test_corpus_files_use_crlf() -> None:
    for path in VALID:
        head = path.read_bytes().split(b"\r\n\r\n", 1)[0]
        assert b"\n" not in head.replace(b"\r\n", b""), path.name


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_corpus_round_trips(path: pathlib.Path) -> None:
    message = parse_message(path.read_bytes())
    wire = message.to_bytes()
    reparsed = parse_message(wire)
    expected_headers = message.headers.copy()
    expected_headers.set("Content-Length", str(len(message.body)))
    assert reparsed.headers == expected_headers
    assert reparsed.body == message.body
    assert type(reparsed) is type(message)
    if isinstance(message, SipRequest):
        assert isinstance(reparsed, SipRequest)
        assert (reparsed.method, reparsed.uri) == (message.method, message.uri)
    else:
        assert isinstance(reparsed, SipResponse)
        assert (reparsed.status, reparsed.reason) == (message.status, message.reason)
    assert reparsed.to_bytes() == wire


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_corpus_typed_views(path: pathlib.Path) -> None:
    message = parse_message(path.read_bytes())
    assert message.vias and all(via.branch for via in message.vias)
    assert message.top_via == message.vias[0]
    assert message.branch == message.vias[0].branch
    assert message.from_.tag is not None
    assert message.call_id
    number, method = message.cseq
    assert number >= 0 and re.fullmatch(r"[A-Za-z0-9\-.!%*_+`'~]+", method)
    if isinstance(message, SipRequest):
        assert method == message.method
        parse_uri(message.uri)
    assert message.to.uri.scheme in ("sip", "tel")


def test_invite_with_sdp() -> None:
    msg = request("invite_sdp")
    assert (msg.method, msg.uri) == ("INVITE", "sip:bob@biloxi.com")
    assert msg.cseq == (314159, "INVITE")
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.com"
    assert msg.body.startswith(SDP_FIRST_LINE) and msg.body.endswith(SDP_LAST_LINE)
    assert len(msg.body) == SDP_LEN == int(msg.headers.get("Content-Length") or -1)
    assert msg.headers.get("content-type") == "application/sdp"
    assert msg.from_ == NameAddr(
        "Alice", SipUri("sip", "alice", "atlanta.com", None), (("tag", "1928301774"),)
    )


def test_register_contacts_and_authorization_not_split() -> None:
    msg = request("register")
    contacts = [parse_name_addr(c) for c in msg.headers.get_all("Contact")]
    assert [c.uri.host for c in contacts] == ["192.0.2.4", "192.0.2.5"]
    assert contacts[0].param("expires") == "7200"
    assert contacts[1].uri.param("transport") == "tcp" and contacts[1].param("q") == "0.5"
    auth = msg.headers.get_all("Authorization")
    assert len(auth) == 1 and auth[0].count(",") == 4
    assert msg.top_via.port == 5060 and msg.top_via.has_param("rport")
    assert msg.top_via.param("rport") is None


def test_response_with_several_vias() -> None:
    msg = response("response_200_multi_via")
    assert (msg.status, msg.reason) == (200, "OK")
    assert [v.host for v in msg.vias] == [
        "server10.biloxi.com",
        "bigbox3.site3.atlanta.com",
        "pc33.atlanta.com",
    ]
    assert [v.param("received") for v in msg.vias] == ["192.0.2.3", "192.0.2.2", "192.0.2.1"]
    assert msg.branch == "z9hG4bKnashds8"
    assert len(msg.headers.get_all("Record-Route")) == 2
    assert msg.to.tag == "a6c85cf" and len(msg.body) == SDP_LEN


def test_compact_headers_are_expanded() -> None:
    msg = request("compact_headers")
    names = [name for name, _ in msg.headers.items()]
    assert names == [
        "Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq", "Contact", "Supported",
        "Subject", "Content-Type", "Content-Length",
    ]  # fmt: skip
    assert (
        msg.headers.get("i")
        == msg.headers.get("Call-ID")
        == ("3848276298220188511@atlanta.example.com")
    )
    assert msg.headers.get_all("k") == ["timer", "100rel"]
    assert msg.top_via.transport == "TCP"
    assert len(msg.body) == SDP_LEN
    assert b"\r\nContent-Length: 216\r\n" in msg.to_bytes()


def test_folded_headers_and_lws_around_colon() -> None:
    msg = request("folded_headers")
    assert msg.headers.get("Subject") == "I know you're there, pick up the phone and talk to me!"
    assert msg.headers.get("Max-Forwards") == "70"
    assert msg.headers.get("To") == "<sip:carol@chicago.com>"
    assert msg.branch == "z9hG4bKhjhs8ass877"
    assert msg.from_.display == "Alice" and msg.from_.tag == "1928301774"


def test_mixed_case_names() -> None:
    msg = request("mixed_case_names")
    names = [name for name, _ in msg.headers.items()]
    assert names[:7] == ["Via", "Max-Forwards", "From", "To", "Call-ID", "CSeq"] + [
        "x-GaTeWaY-Trace"
    ]
    assert names[7] == "x-GaTeWaY-Trace"  # unknown name: case first seen wins
    assert msg.headers.get_all("X-Gateway-Trace") == ["abc", "def"]
    assert msg.branch == "z9hG4bKnashds10"  # BRANCH= found case-insensitively
    assert msg.from_.tag == "1928301774"
    assert "CONTENT-LENGTH" in msg.headers


def test_vias_on_one_line_and_several_lines() -> None:
    msg = response("multi_via_lines")
    assert [(v.transport, v.host, v.port) for v in msg.vias] == [
        ("UDP", "proxy1.example.com", None),
        ("TCP", "proxy2.example.com", 5080),
        ("UDP", "pc33.atlanta.com", None),
    ]
    assert msg.vias[2].param("rport") == "5060"
    assert len(msg.headers.get_all("Via")) == 3
    assert (msg.headers.get("Via") or "").count(",") == 1  # raw value stays unsplit


def test_ipv6_via_contact_and_request_uri() -> None:
    msg = request("ipv6")
    via = msg.top_via
    assert (via.host, via.port) == ("2001:db8::9:1", 5061)
    assert via.param("received") == "2001:db8::9:255"
    assert str(via).startswith("SIP/2.0/UDP [2001:db8::9:1]:5061;")
    uri = parse_uri(msg.uri)
    assert (uri.host, uri.port, str(uri)) == ("2001:db8::10", 5070, "sip:[2001:db8::10]:5070")
    contact = parse_name_addr(msg.headers.get("Contact") or "")
    assert contact.uri.host == "2001:db8::9:1" and contact.uri.port == 5061


def test_escaped_uri_characters() -> None:
    msg = request("escaped_uri")
    uri = parse_uri(msg.uri)
    assert (uri.user, uri.host) == ("sips%3Auser%40example.com", "example.net")
    assert str(uri) == msg.uri
    assert msg.to.uri.user == "%61lice"
    assert msg.from_.uri.user == "I%20have%20spaces"
    contact = parse_name_addr(msg.headers.get("Contact") or "")
    assert contact.uri.user == "user;par=u%40example.net" and contact.uri.host == "example.com"


def test_tel_uri() -> None:
    msg = request("tel_uri")
    uri = parse_uri(msg.uri)
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert uri.param("phone-context") == "+1"
    assert str(uri) == msg.uri
    assert msg.to.uri == SipUri("tel", "+12015550123", "", None)
    assert msg.from_.uri.param("user") == "phone"


def test_unknown_headers_and_addr_spec_params() -> None:
    msg = request("unknown_headers")
    assert msg.headers.get_all("X-Unknown-Thing") == ['a, b, "c, d"']
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.from_.uri.params == () and msg.from_.tag == "49583"
    assert msg.body == b"Watson, come here."


def test_long_values() -> None:
    msg = request("long_values")
    assert msg.headers.get("X-Long") == "x" * 2000
    assert msg.call_id == "c" * 1000 + "@example.com"
    assert msg.cseq == (2**31 - 1, "OPTIONS")
    assert msg.from_.display == "L" * 500 and msg.from_.tag == "t" * 200
    assert msg.top_via.param("p" * 300) == "v" * 300


def test_quoted_display_names_with_escapes() -> None:
    msg = request("quoted_display")
    assert msg.to.display == 'Bob "Bobby" Biloxi, Esq.'
    assert msg.from_.display == "Alice \\ Smith \u00e9\u00e8"
    assert str(msg.from_) == '"Alice \\\\ Smith \u00e9\u00e8" <sip:alice@atlanta.com>;tag=q1'
    contacts = msg.headers.get_all("Contact")
    assert len(contacts) == 2 and parse_name_addr(contacts[0]).display == "comma, inside"


def test_response_with_empty_reason() -> None:
    msg = response("response_empty_reason")
    assert (msg.status, msg.reason) == (200, "")
    assert msg.to_bytes().startswith(b"SIP/2.0 200 \r\n")


def test_leading_crlf_is_skipped() -> None:
    data = load("valid", "leading_crlf")
    assert data.startswith(b"\r\n\r\n")
    assert request("leading_crlf").method == "INVITE"


def test_missing_content_length_takes_rest_as_body() -> None:
    msg = request("no_content_length_udp")
    assert "Content-Length" not in msg.headers
    assert len(msg.body) == SDP_LEN and msg.body.endswith(SDP_LAST_LINE)


def test_smaller_content_length_truncates_body() -> None:
    assert request("content_length_smaller").body == b"hello"


def test_route_set_date_allow() -> None:
    msg = request("route_set_bye")
    routes = [parse_name_addr(r).uri.host for r in msg.headers.get_all("Route")]
    assert routes == ["p1.example.com", "p2.example.com", "p3.example.com"]
    assert msg.headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert msg.headers.get_all("Allow") == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"]
    assert (msg.top_via.transport, msg.top_via.host, msg.top_via.port) == ("TLS", "::1", 5061)


# --------------------------------------------------------------------------- corpus: invalid

# name -> (reason prefix, status, whether .request is set so a response can be sent)
INVALID_EXPECTED: dict[str, tuple[str, int, bool]] = {
    "bad_from": ("Bad Header: From", 400, True),
    "bad_max_forwards": ("Bad Header: Max-Forwards", 400, True),
    "bad_request_uri": ("Bad Request-URI", 400, True),
    "bad_sip_version": ("Version Not Supported", 505, True),
    "bad_utf8_in_header": ("Bad Header: invalid UTF-8", 400, True),
    "bad_utf8_request_line": ("Bad Start-Line: invalid UTF-8", 400, True),
    "bad_via": ("Bad Header: Via", 400, False),
    "content_length_conflicting": ("Bad Header: Content-Length", 400, True),
    "content_length_huge": ("Bad Header: Content-Length", 400, True),
    "content_length_larger_than_body": ("Bad Header: Content-Length", 400, True),
    "content_length_negative": ("Bad Header: Content-Length", 400, True),
    "content_length_not_numeric": ("Bad Header: Content-Length", 400, True),
    "continuation_first": ("Bad Header: unexpected continuation", 400, True),
    "cseq_method_mismatch": ("CSeq Method Mismatch", 400, True),
    "cseq_not_numeric": ("Bad Header: CSeq", 400, True),
    "cseq_too_large": ("Bad Header: CSeq", 400, True),
    "garbage": ("Bad Start-Line", 400, False),
    "header_without_colon": ("Malformed Header Line", 400, True),
    "missing_call_id": ("Missing Header: Call-ID", 400, True),
    "missing_cseq": ("Missing Header: CSeq", 400, True),
    "missing_via": ("Missing Header: Via", 400, False),
    "nul_in_header": ("Bad Header: NUL", 400, True),
    "oversize": ("Message Too Large", 513, False),
    "request_line_bad_method": ("Bad Request-Line", 400, True),
    "request_line_extra_spaces": ("Bad Request-Line", 400, True),
    "request_line_missing_version": ("Bad Request-Line", 400, True),
    "response_bad_version": ("Version Not Supported", 505, False),
    "response_status_out_of_range": ("Bad Status-Line", 400, False),
    "unknown_uri_scheme": ("Unsupported URI Scheme", 416, True),
    # RFC 4475 3.1.2 (written for this corpus in the shapes the RFC describes)
    "rfc4475_badinv01": ("Bad Header: Via", 400, True),        # ;;,;,, after a readable Via
    "rfc4475_clerr": ("Bad Header: Content-Length", 400, True),
    "rfc4475_ncl": ("Bad Header: Content-Length", 400, True),
    "rfc4475_scalar02": ("Bad Header: CSeq", 400, True),
    "rfc4475_scalarlg": ("Bad Header: CSeq", 400, False),      # a response: never answered
    "rfc4475_quotbal": ("Bad Header: To", 400, True),
    "rfc4475_ltgtruri": ("Bad Request-URI", 400, True),
    "rfc4475_lwsruri": ("Bad Request-Line", 400, True),
    "rfc4475_lwsstart": ("Bad Request-Line", 400, True),
    "rfc4475_trws": ("Bad Request-Line", 400, True),
    "rfc4475_escruri": ("Bad Request-URI: headers not allowed", 400, True),
    "rfc4475_baddate": ("Bad Header: Date", 400, True),
    "rfc4475_regbadct": ("Bad Header: Contact", 400, True),
    "rfc4475_badaspec": ("Bad Header: To", 400, True),
    "rfc4475_baddn": ("Bad Header: From", 400, True),
    "rfc4475_badvers": ("Version Not Supported", 505, True),   # Via SIP/7.0/UDP is readable
    "rfc4475_mismatch01": ("CSeq Method Mismatch", 400, True),
    "rfc4475_mismatch02": ("CSeq Method Mismatch", 400, True),
    "rfc4475_bigcode": ("Bad Status-Line", 400, False),
    "rfc4475_insuf": ("Missing Header: From", 400, True),
}


def test_every_invalid_file_has_an_expectation() -> None:
    assert {p.stem for p in INVALID} == set(INVALID_EXPECTED)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_corpus(path: pathlib.Path) -> None:
    reason, status, has_request = INVALID_EXPECTED[path.stem]
    with pytest.raises(SipParseError) as info:
        parse_message(path.read_bytes())
    assert info.value.reason.startswith(reason)
    assert str(info.value) == info.value.reason
    assert info.value.status == status
    assert (info.value.request is not None) == has_request
    if info.value.request is not None:
        wire = build_response(info.value.request, status, to_tag="t400").to_bytes()
        assert wire.startswith(f"SIP/2.0 {status} ".encode())
        call_id = info.value.request.headers.get("Call-ID")
        assert call_id is None or f"\r\nCall-ID: {call_id}\r\n".encode() in wire
        to = info.value.request.headers.get("To")
        if to is not None and _tagless(to):      # an unreadable To is copied as it came
            assert b"tag=t400" in wire


def _tagless(to: str) -> bool:
    try:
        return parse_name_addr(to).tag is None
    except SipHeaderError:
        return False


def test_oversize_file_really_exceeds_the_cap() -> None:
    assert len(load("invalid", "oversize")) > MAX_MESSAGE_BYTES


def test_unknown_scheme_request_keeps_method_and_uri() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(load("invalid", "unknown_uri_scheme"))
    assert info.value.request is not None
    assert info.value.request.method == "OPTIONS"
    assert info.value.request.uri == "nobodyKnowsThisScheme:totallyopaquecontent"


MINIMAL = (
    b"OPTIONS sip:u@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmin\r\n"
    b"From: <sip:a@example.com>;tag=1\r\n"
    b"To: <sip:u@example.com>\r\n"
    b"Call-ID: min@192.0.2.1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_max_size_parameter() -> None:
    assert isinstance(parse_message(MINIMAL, max_size=len(MINIMAL)), SipRequest)
    with pytest.raises(SipParseError) as info:
        parse_message(MINIMAL, max_size=len(MINIMAL) - 1)
    assert info.value.status == 513


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "Empty Message"),
        (b"\r\n\r\n", "Empty Message"),
        (MINIMAL.replace(b"\r\n\r\n", b"\r\n"), "Missing Empty Line"),
        (b"\xffOPTIONS sip:u@example.com SIP/2.0\r\n\r\n", "Bad Start-Line"),
        (MINIMAL.replace(b"CSeq: 1", b"CSeq: 1\rX"), "Bad Header: bare CR"),
        (MINIMAL.replace(b"To:", b"T o:"), "Bad Header Name"),
        (MINIMAL.replace(b"SIP/2.0\r\n", b"SIP/2.0 \r\n", 1), "Bad Request-Line"),
        (b"SIP/2.0 2000 OK\r\n\r\n", "Bad Status-Line"),
        (b"SIP/2.0 abc OK\r\n\r\n", "Bad Status-Line"),
    ],
)
def test_more_invalid_messages(data: bytes, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.reason.startswith(reason)


def test_bare_lf_line_endings_are_tolerated() -> None:
    msg = parse_message(MINIMAL.replace(b"\r\n", b"\n") + b"")
    assert isinstance(msg, SipRequest) and msg.call_id == "min@192.0.2.1"


def test_max_forwards_is_optional() -> None:
    assert "Max-Forwards" not in parse_message(MINIMAL).headers


def test_sips_request_uri_and_lower_case_version_ok() -> None:
    msg = parse_message(MINIMAL.replace(b"sip:u@", b"sips:u@", 1))
    assert isinstance(msg, SipRequest) and parse_uri(msg.uri).scheme == "sips"


def test_to_bytes_recomputes_content_length() -> None:
    msg = parse_message(MINIMAL)
    msg.body = b"0123456789"
    wire = msg.to_bytes()
    assert wire.count(b"Content-Length") == 1
    assert wire.endswith(b"\r\nContent-Length: 10\r\n\r\n0123456789")
    no_length = SipRequest("OPTIONS", "sip:x@example.com", Headers(), b"abc")
    assert no_length.to_bytes() == (
        b"OPTIONS sip:x@example.com SIP/2.0\r\nContent-Length: 3\r\n\r\nabc"
    )


def test_properties_raise_header_error_when_missing() -> None:
    empty = SipRequest("OPTIONS", "sip:x@example.com", Headers())
    for prop in ("call_id", "cseq", "top_via", "from_", "to"):
        with pytest.raises(SipHeaderError):
            getattr(empty, prop)
    assert empty.vias == [] and empty.branch is None


# --------------------------------------------------------------------------- Headers


def test_headers_canonical_names() -> None:
    headers = Headers([("call-id", "1"), ("CSEQ", "1 INVITE"), ("www-authenticate", "x")])
    headers.add("v", "SIP/2.0/UDP h")
    headers.add("l", "0")
    headers.add("y", "sig")
    assert [n for n, _ in headers.items()] == [
        "Call-ID", "CSeq", "WWW-Authenticate", "Via", "Content-Length", "Identity",
    ]  # fmt: skip


def test_headers_unknown_name_keeps_first_case() -> None:
    headers = Headers()
    headers.add("X-Foo", "1")
    headers.add("x-FOO", "2")
    assert headers.items() == [("X-Foo", "1"), ("X-Foo", "2")]
    assert headers.get("X-FOO") == "1"


def test_headers_get_default_and_contains() -> None:
    headers = Headers([("To", "<sip:a@b>")])
    assert headers.get("From") is None
    assert headers.get("From", "dflt") == "dflt"
    assert "to" in headers and "t" in headers and "From" not in headers
    assert 5 not in headers


def test_headers_get_all_splits_only_list_headers() -> None:
    challenge = 'Digest realm="a,b", nonce="n", qop="auth,auth-int"'
    headers = Headers(
        [
            ("Contact", '"A, B" <sip:a@h;x=1,2>, <sip:b@h>'),
            ("Supported", "timer,  replaces ,path"),
            ("WWW-Authenticate", challenge),
            ("Proxy-Authenticate", challenge),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("Require", ""),
        ]
    )
    assert headers.get_all("m") == ['"A, B" <sip:a@h;x=1,2>', "<sip:b@h>"]
    assert headers.get_all("Supported") == ["timer", "replaces", "path"]
    assert headers.get_all("WWW-Authenticate") == [challenge]
    assert headers.get_all("Proxy-Authenticate") == [challenge]
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.get_all("Require") == []


def test_headers_set_keeps_position_of_first() -> None:
    headers = Headers([("Via", "a"), ("To", "t"), ("Via", "b"), ("From", "f")])
    headers.set("via", "c")
    assert headers.items() == [("Via", "c"), ("To", "t"), ("From", "f")]
    headers.set("Contact", "<sip:x@y>")
    assert headers.items()[-1] == ("Contact", "<sip:x@y>")


def test_headers_remove_and_prepend() -> None:
    headers = Headers([("To", "t"), ("Via", "a"), ("Via", "b")])
    headers.prepend("v", "z")
    assert headers.get_all("Via") == ["z", "a", "b"]
    assert headers.items()[0] == ("To", "t")
    headers.prepend("Record-Route", "<sip:p;lr>")
    assert headers.items()[0] == ("Record-Route", "<sip:p;lr>")
    headers.remove("VIA")
    assert "Via" not in headers and len(headers) == 2


def test_headers_copy_is_independent_and_equality() -> None:
    original = Headers([("To", "t")])
    clone = original.copy()
    assert clone == original
    clone.add("From", "f")
    assert clone != original and len(original) == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Subject", "hi\r\nVia: SIP/2.0/UDP evil"),
        ("Subject", "hi\nX: y"),
        ("Subject", "hi\rX"),
        ("Subject", "nul\0"),
        ("Sub ject", "x"),
        ("Subject:", "x"),
        ("", "x"),
        ("X\r\nY", "x"),
    ],
)
def test_header_injection_guard(name: str, value: str) -> None:
    headers = Headers()
    for method in (headers.add, headers.set, headers.prepend):
        with pytest.raises(ValueError):
            method(name, value)
    with pytest.raises(ValueError):
        Headers([(name, value)])
    assert len(headers) == 0


# --------------------------------------------------------------------------- Via / URI / name-addr


def test_parse_via_with_lws_and_comment() -> None:
    via = parse_via("SIP / 2.0 / udp first.example.com: 4000;ttl=16 ;branch=z9hG4bKa (cmt)")
    assert via == Via("UDP", "first.example.com", 4000, (("ttl", "16"), ("branch", "z9hG4bKa")))
    assert str(via) == "SIP/2.0/UDP first.example.com:4000;ttl=16;branch=z9hG4bKa"


def test_via_with_params() -> None:
    via = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport")
    updated = via.with_params(received="192.0.2.9", rport="5062")
    assert str(updated) == (
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5062;received=192.0.2.9"
    )
    assert via.param("rport") is None and via.has_param("rport")
    assert parse_via(str(updated)) == updated
    assert parse_via("SIP/2.0/UDP [::1]:5060").host == "::1"


@pytest.mark.parametrize(
    "value",
    [
        "SIP/2.0/UDP",
        "SIP/3.0/UDP host",
        "XIP/2.0/UDP host",
        "SIP/2.0 host",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP host:abc",
        "SIP/2.0/UDP ::1",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP [nothex]:5060",
        "SIP/2.0/UDP host;=x",
        "SIP/2.0/UDP a, SIP/2.0/UDP b",
    ],
)
def test_bad_via(value: str) -> None:
    with pytest.raises(SipHeaderError):
        parse_via(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:alice@atlanta.com", SipUri("sip", "alice", "atlanta.com", None)),
        ("SIP:alice@ATLANTA.com:5070", SipUri("sip", "alice", "ATLANTA.com", 5070)),
        ("sips:host.example", SipUri("sips", None, "host.example", None)),
        ("sip:u:pw@h", SipUri("sip", "u", "h", None, password="pw")),
        (
            "sip:u@h;transport=tcp;lr?Subject=x&Priority=urgent",
            SipUri(
                "sip", "u", "h", None, (("transport", "tcp"), ("lr", None)),
                (("Subject", "x"), ("Priority", "urgent")),
            ),
        ),
        ("sip:[2001:db8::1]:5060", SipUri("sip", None, "2001:db8::1", 5060)),
        ("tel:+358-555-1234567;postd=pp22", SipUri("tel", "+358-555-1234567", "", None,
                                                    (("postd", "pp22"),))),
    ],
)  # fmt: skip
def test_parse_uri(text: str, expected: SipUri) -> None:
    assert parse_uri(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sips:alice:secret@atlanta.com:5061;transport=tls;lr?h=v&x=",
        "sip:[2001:db8::1]:5060;maddr=[2001:db8::2]",
        "sip:%61lice@h",
        "tel:+1-201-555-0123;phone-context=+1",
    ],
)
def test_uri_str_round_trips(text: str) -> None:
    assert str(parse_uri(text)) == text


@pytest.mark.parametrize(
    "text",
    ["sip:", "sip:@host", "sip:u@", "sip:u@h:99999", "sip:u@h o", "sip:u%zz@h", "nocolon",
     "sip:u@h?noequals", "tel:", "1sip:u@h", "sip:u@h;;x"],
)  # fmt: skip
def test_bad_uri(text: str) -> None:
    with pytest.raises(SipUriError):
        parse_uri(text)


def test_unsupported_scheme_is_distinct() -> None:
    with pytest.raises(UnsupportedUriScheme):
        parse_uri("http://example.com/")
    with pytest.raises(UnsupportedUriScheme):
        parse_uri("mailto:a@b")


def test_uri_aor() -> None:
    assert parse_uri("sip:Bob@Biloxi.COM:5060;transport=udp").aor() == "sip:Bob@biloxi.com"
    assert parse_uri("tel:+123;x=y").aor() == "tel:+123"


@pytest.mark.parametrize(
    ("text", "display", "uri", "params"),
    [
        ('"Bob" <sip:b@h>;tag=x', "Bob", "sip:b@h", (("tag", "x"),)),
        ("Bob  Smith <sip:b@h>", "Bob Smith", "sip:b@h", ()),
        ("<sip:b@h;lr>;expires=60", None, "sip:b@h;lr", (("expires", "60"),)),
        ("sip:b@h;tag=x", None, "sip:b@h", (("tag", "x"),)),
        ('"" <sip:b@h>', "", "sip:b@h", ()),
        ('"a\\"b" <sip:b@h>', 'a"b', "sip:b@h", ()),
        ('<sip:b@h>;x="quoted;semi"', None, "sip:b@h", (("x", '"quoted;semi"'),)),
    ],
)
def test_parse_name_addr(
    text: str, display: str | None, uri: str, params: tuple[tuple[str, str | None], ...]
) -> None:
    parsed = parse_name_addr(text)
    assert (parsed.display, str(parsed.uri), parsed.params) == (display, uri, params)
    assert parse_name_addr(str(parsed)) == parsed


def test_name_addr_str_and_tag() -> None:
    parsed = parse_name_addr("sip:b@h;tag=x")
    assert str(parsed) == "<sip:b@h>;tag=x"
    assert parsed.with_tag("y").tag == "y"
    assert str(parse_name_addr("<sip:b@h>").with_tag("z")) == "<sip:b@h>;tag=z"


@pytest.mark.parametrize("text", ['"unterminated <sip:b@h>', "<sip:b@h", "<sip:b@h> junk",
                                  '"x" sip:b@h', "<http://x>"])  # fmt: skip
def test_bad_name_addr(text: str) -> None:
    with pytest.raises(SipHeaderError):
        parse_name_addr(text)


# --------------------------------------------------------------------------- build_response


def test_build_response_copies_dialog_headers() -> None:
    req = request("folded_headers")
    resp = build_response(req, 486, to_tag="as83kd9")
    assert (resp.status, resp.reason) == (486, "Busy Here")
    assert [n for n, _ in resp.headers.items()] == [
        "Via", "To", "From", "Call-ID", "CSeq", "Content-Length",
    ]  # fmt: skip
    assert resp.headers.get("Via") == req.headers.get("Via")
    assert resp.to.tag == "as83kd9" and resp.to.uri == req.to.uri
    assert resp.headers.get("From") == req.headers.get("From")
    assert resp.headers.get("Content-Length") == "0" and resp.body == b""
    assert parse_message(resp.to_bytes()) == resp


def test_build_response_keeps_via_order_and_existing_tag() -> None:
    req = parse_valid("mixed_case_names")
    assert isinstance(req, SipRequest)
    req.headers.prepend("Via", "SIP/2.0/TCP a.example;branch=z9hG4bK0, SIP/2.0/UDP b;branch=1")
    resp = build_response(req, 200, "Fine", to_tag="new")
    assert [v.host for v in resp.vias] == ["a.example", "b", "pc33.atlanta.com"]
    assert resp.to.tag == "a6c85cf" and resp.reason == "Fine"


def test_build_response_100_echoes_timestamp_only() -> None:
    req = parse_message(MINIMAL.replace(b"Content-Length", b"Timestamp: 54\r\nContent-Length"))
    assert isinstance(req, SipRequest)
    assert build_response(req, 100).headers.get("Timestamp") == "54"
    assert "Timestamp" not in build_response(req, 200).headers
    assert build_response(req, 100).to.tag is None


def test_reasons_table() -> None:
    for code, phrase in [(100, "Trying"), (180, "Ringing"), (200, "OK"), (401, "Unauthorized"),
                         (407, "Proxy Authentication Required"), (416, "Unsupported URI Scheme"),
                         (481, "Call/Transaction Does Not Exist"), (487, "Request Terminated"),
                         (503, "Service Unavailable"), (603, "Decline")]:  # fmt: skip
        assert REASONS[code] == phrase
    req = parse_message(MINIMAL)
    assert isinstance(req, SipRequest)
    assert build_response(req, 499).reason == "Bad Request"  # class default


def test_identifiers() -> None:
    branches = {new_branch() for _ in range(50)}
    assert len(branches) == 50 and all(b.startswith("z9hG4bK") and len(b) > 20 for b in branches)
    assert new_tag() != new_tag()
    call_id = new_call_id("gw.example.com")
    assert call_id.endswith("@gw.example.com") and len(call_id) > 30


# --------------------------------------------------------------------------- StreamFramer

STREAM_MESSAGES = [load("valid", "invite_sdp"), MINIMAL, load("valid", "response_200_multi_via")]
STREAM = b"".join(STREAM_MESSAGES)


def test_framer_one_chunk_with_several_messages() -> None:
    framer = StreamFramer()
    assert framer.feed(STREAM) == STREAM_MESSAGES
    assert framer.feed(b"") == []


def test_framer_split_at_every_byte_boundary() -> None:
    for cut in range(len(STREAM) + 1):
        framer = StreamFramer()
        out = framer.feed(STREAM[:cut]) + framer.feed(STREAM[cut:])
        assert out == STREAM_MESSAGES, cut


def test_framer_byte_by_byte_with_keepalives() -> None:
    data = b"\r\n\r\n" + STREAM_MESSAGES[0] + b"\r\n\r\n\r\n\r\n" + MINIMAL + b"\r\n" + MINIMAL
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(data)):
        out += framer.feed(data[i : i + 1])
    assert out == [STREAM_MESSAGES[0], MINIMAL, MINIMAL]
    assert framer.pings == 3
    assert framer.pop_pings() == 3 and framer.pings == 0


def test_framer_partial_ping_waits() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r") == [] and framer.pings == 0
    assert framer.feed(b"\n") == [] and framer.pings == 1


def test_framer_messages_parse() -> None:
    for raw in StreamFramer().feed(STREAM):
        parse_message(raw)


@pytest.mark.parametrize(
    "data",
    [
        MINIMAL.replace(b"Content-Length: 0\r\n", b""),
        MINIMAL.replace(b"Content-Length: 0", b"Content-Length: -1"),
        MINIMAL.replace(b"Content-Length: 0", b"Content-Length: zero"),
        MINIMAL.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 4"),
    ],
)
def test_framer_rejects_bad_content_length(data: bytes) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(data)


def test_framer_compact_content_length() -> None:
    data = MINIMAL.replace(b"Content-Length: 0", b"l : 3") + b"abc"
    assert StreamFramer().feed(data + MINIMAL) == [data, MINIMAL]


def test_framer_size_limits() -> None:
    framer = StreamFramer(max_size=200)
    with pytest.raises(SipParseError):
        framer.feed(b"OPTIONS sip:x SIP/2.0\r\nX: " + b"a" * 300)
    body_too_big = MINIMAL.replace(b"Content-Length: 0", b"Content-Length: 100000")
    with pytest.raises(SipParseError):
        StreamFramer().feed(body_too_big)


# --------------------------------------------------------------------------- RFC 4475 details


@pytest.mark.parametrize(("value", "readable"), [
    ("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", True),
    ("SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw", True),     # any version: answer 505
    ("SIP/2.0/UDP 192.0.2.15;;,;,,", True),                      # broken params
    ("SIP  /  2.0 / TCP  spindle.example.com", True),
    ("SIP/2.0/UDP [2001:db8::9]:5070", True),
    ("SIP/2.0/UDP", False),
    ("nonsense", False),
    ("SIP/2.0/UDP bad host", True),                               # 'bad' is a host name
    ("SIP/2.0/UDP [zz::", False),
    ("SIP/2.0/UDP host:99999", False),
])  # fmt: skip
def test_readable_via(value: str, readable: bool) -> None:
    assert readable_via(value) is readable


def test_semicolon_in_an_addr_spec_user_part() -> None:
    addr = parse_name_addr("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com"
                           ";tag=x;q=1")
    assert addr.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert addr.uri.host == "example.com" and addr.tag == "x"


@pytest.mark.parametrize("value", [
    "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",          # 3.1.2.15
    '"Watson, Thomas" < sip:t.watson@example.org >',             # 3.1.2.14
    "sip:user@example.com?Route=%3Csip:sip.example.com%3E",      # 3.1.2.13
])  # fmt: skip
def test_rfc4475_name_addr_rejections(value: str) -> None:
    with pytest.raises(SipHeaderError):
        parse_name_addr(value)


def test_unquoted_non_ascii_display_name_is_tolerated() -> None:
    assert parse_name_addr("José Müller <sip:jm@example.com>").display == "José Müller"


def test_nul_only_as_an_escaped_quoted_pair() -> None:
    ok = MINIMAL.replace(b"From: <", b'From: "a\\\x00b" <', 1)
    assert parse_message(ok).from_.display == "a\x00b"
    for bad in (b'From: "a\x00b" <', b"From: a\x00b <"):
        with pytest.raises(SipParseError):
            parse_message(MINIMAL.replace(b"From: <", bad, 1))
