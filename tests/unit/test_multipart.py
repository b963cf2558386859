"""Tests for gateway.sip.multipart (RFC 2046 multipart bodies as SIPREC INVITEs carry them).

The bodies are written by hand; the full INVITEs in tests/siprec_corpus were assembled from the
corpus .sdp/.xml files, so each part must come back byte-for-byte equal to its source file
(with the message's line ends).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.sip.multipart import (
    BodyPart,
    MultipartError,
    find_part,
    parse_content_type,
    parse_multipart,
)

CORPUS = Path(__file__).resolve().parents[1] / "siprec_corpus"


def split_message(raw: bytes) -> tuple[str, bytes]:
    """(Content-Type value, body) of a stored SIP message, without the SIP parser."""
    eol = b"\r\n" if b"\r\n\r\n" in raw else b"\n"
    head, _, body = raw.partition(eol + eol)
    for line in head.split(eol):
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-type":
            return value.strip(), body
    raise AssertionError("no Content-Type in the stored message")


def source(name: str, eol: str) -> bytes:
    """A corpus file as it sits in a part: the file's last line end precedes the next delimiter
    line, so it belongs to the delimiter (RFC 2046 section 5.1.1), not to the part."""
    text = (CORPUS / name).read_text()
    assert text.endswith("\n")
    return text[:-1].replace("\n", eol).encode()


def body(*lines: str, eol: str = "\r\n") -> bytes:
    return eol.join(lines).encode()


# --------------------------------------------------------------------------- corpus messages


@pytest.mark.parametrize(
    ("message", "sdp", "xml", "eol"),
    [
        ("invite_generic_crlf.sip", "generic.sdp", "generic_rfc7866.xml", "\r\n"),
        ("invite_broadworks_lf.sip", "broadworks.sdp", "broadworks.xml", "\n"),
        ("invite_cube_crlf.sip", "cisco_cube.sdp", "cisco_cube.xml", "\r\n"),
    ],
)
def test_corpus_invite_parts_equal_their_sources(message: str, sdp: str, xml: str,
                                                 eol: str) -> None:
    content_type, raw = split_message((CORPUS / message).read_bytes())
    parts = parse_multipart(content_type, raw)
    assert [part.content_type for part in parts] == ["application/sdp",
                                                     "application/rs-metadata+xml"]
    assert parts[0].body == source(sdp, eol)
    assert parts[1].body == source(xml, eol)
    assert parts[1].disposition == "recording-session"


def test_cube_sdp_part_disposition_drops_params_and_headers_are_kept() -> None:
    content_type, raw = split_message((CORPUS / "invite_cube_crlf.sip").read_bytes())
    sdp_part = parse_multipart(content_type, raw)[0]
    assert sdp_part.disposition == "session"
    assert sdp_part.header("Content-Disposition") == "session;handling=required"
    assert sdp_part.headers == (("content-type", "application/sdp"),
                                ("content-disposition", "session;handling=required"))


def test_sdp_only_invite_has_one_part_and_no_metadata() -> None:
    content_type, raw = split_message((CORPUS / "invite_no_metadata.sip").read_bytes())
    parts = parse_multipart(content_type, raw)
    assert len(parts) == 1
    assert find_part(parts, "application/rs-metadata+xml") is None
    assert parts[0].body == source("broadworks.sdp", "\r\n")


# --------------------------------------------------------------------------- Content-Type


def test_parse_content_type_quoted_boundary_with_semicolon() -> None:
    media_type, params = parse_content_type('Multipart/Mixed; BOUNDARY="a;b \\"c\\""; x=1')
    assert media_type == "multipart/mixed"
    assert params == (("boundary", 'a;b "c"'), ("x", "1"))


@pytest.mark.parametrize("value", ["multipart", "/mixed", "multipart/mixed; boundary",
                                   'multipart/mixed; boundary="open', "multi part/mixed"])
def test_parse_content_type_rejects_malformed(value: str) -> None:
    with pytest.raises(MultipartError):
        parse_content_type(value)


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("application/sdp", "not multipart"),
        ("multipart/mixed", "without a boundary"),
        ("multipart/mixed; boundary=" + "b" * 71, "1..70"),
        ('multipart/mixed; boundary=""', "1..70"),
        ('multipart/mixed; boundary="caf\u00e9"', "not ASCII"),
    ],
)
def test_bad_outer_content_type(content_type: str, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parse_multipart(content_type, body("--b", "", "x", "--b--"))


def test_seventy_char_boundary_is_accepted() -> None:
    boundary = "b" * 70
    parts = parse_multipart(f"multipart/mixed;boundary={boundary}",
                            body(f"--{boundary}", "", "x", f"--{boundary}--"))
    assert parts[0].body == b"x"


# --------------------------------------------------------------------------- delimiters

CT = "multipart/mixed;boundary=sep"


def test_preamble_and_epilogue_are_ignored() -> None:
    raw = body("preamble line", "--sep", "Content-Type: text/plain", "", "hello", "--sep--",
               "epilogue", "--sep", "not a part")
    parts = parse_multipart(CT, raw)
    assert [part.body for part in parts] == [b"hello"]


def test_line_break_before_delimiter_belongs_to_delimiter() -> None:
    raw = body("--sep", "", "line1", "", "--sep--")
    assert parse_multipart(CT, raw)[0].body == b"line1\r\n"


def test_lf_only_body() -> None:
    raw = body("--sep", "Content-Type: application/sdp", "", "v=0", "--sep", "", "two",
               "--sep--", eol="\n")
    parts = parse_multipart(CT, raw)
    assert [part.body for part in parts] == [b"v=0", b"two"]
    assert parts[1].content_type == "text/plain"


def test_transport_padding_after_boundary() -> None:
    raw = b"--sep \t\r\n\r\none\r\n--sep--  \r\n"
    assert parse_multipart(CT, raw)[0].body == b"one"


def test_boundary_prefix_inside_content_is_not_a_delimiter() -> None:
    raw = body("--sep", "", "--sepx is content", "text --sep too", "--sep--")
    assert parse_multipart(CT, raw)[0].body == b"--sepx is content\r\ntext --sep too"


def test_close_delimiter_required() -> None:
    with pytest.raises(MultipartError, match="missing close delimiter"):
        parse_multipart(CT, body("--sep", "", "truncated"))


def test_boundary_absent_from_body() -> None:
    with pytest.raises(MultipartError, match="not found"):
        parse_multipart(CT, b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n")


def test_close_delimiter_without_parts() -> None:
    with pytest.raises(MultipartError, match="before any body part"):
        parse_multipart(CT, body("--sep--"))


def test_empty_part_between_delimiters() -> None:
    parts = parse_multipart(CT, body("--sep", "--sep", "", "x", "--sep--"))
    assert [part.body for part in parts] == [b"", b"x"]
    assert parts[0].content_type == "text/plain"


# --------------------------------------------------------------------------- part headers


def test_part_headers_are_case_insensitive_and_type_lowercased() -> None:
    raw = body("--sep", "content-TYPE: Application/SDP; Charset=UTF-8",
               "CONTENT-disposition: Session", "", "v=0", "--sep--")
    part = parse_multipart(CT, raw)[0]
    assert part.content_type == "application/sdp"
    assert part.param("charset") == "UTF-8"
    assert part.disposition == "session"
    assert part.header("Content-Type") == "Application/SDP; Charset=UTF-8"


def test_duplicate_part_content_type_first_wins() -> None:
    raw = body("--sep", "Content-Type: application/sdp", "Content-Type: text/html", "", "v=0",
               "--sep--")
    assert parse_multipart(CT, raw)[0].content_type == "application/sdp"


def test_folded_part_header() -> None:
    raw = body("--sep", "Content-Type: application/rs-metadata+xml", "Content-Disposition:",
               "\trecording-session", "", "<x/>", "--sep--")
    assert parse_multipart(CT, raw)[0].disposition == "recording-session"


def test_headers_only_part_has_empty_body() -> None:
    part = parse_multipart(CT, body("--sep", "Content-Type: application/sdp", "--sep--"))[0]
    assert (part.content_type, part.body) == ("application/sdp", b"")


def test_part_without_blank_line_and_not_headers_is_rejected() -> None:
    with pytest.raises(MultipartError, match="bad body part header"):
        parse_multipart(CT, body("--sep", "v=0", "o=- 1 1 IN IP4 192.0.2.1", "--sep--"))


def test_continuation_before_any_header_is_rejected() -> None:
    with pytest.raises(MultipartError, match="continuation"):
        parse_multipart(CT, body("--sep", " folded", "", "x", "--sep--"))


def test_non_utf8_part_headers_are_rejected() -> None:
    raw = b"--sep\r\nContent-Type: text/plain\xff\r\n\r\nx\r\n--sep--"
    with pytest.raises(MultipartError, match="UTF-8"):
        parse_multipart(CT, raw)


def test_nested_multipart_is_an_opaque_part() -> None:
    inner = body("--in", "", "inner", "--in--")
    head = body("--sep", "Content-Type: multipart/alternative; boundary=in", "", "")
    raw = head + inner + body("", "--sep--")
    part = parse_multipart(CT, raw)[0]
    assert part.content_type == "multipart/alternative"
    assert part.param("boundary") == "in"
    assert part.body == inner


# --------------------------------------------------------------------------- limits


def test_max_parts() -> None:
    raw = body(*(line for _ in range(3) for line in ("--sep", "", "x")), "--sep--")
    assert len(parse_multipart(CT, raw, max_parts=3)) == 3
    with pytest.raises(MultipartError, match="more than 2 body parts"):
        parse_multipart(CT, raw, max_parts=2)


def test_max_bytes() -> None:
    raw = body("--sep", "", "x" * 100, "--sep--")
    with pytest.raises(MultipartError, match="limit is 64"):
        parse_multipart(CT, raw, max_bytes=64)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        parse_multipart(CT, body("--sep", "", "x", "--sep--"), max_parts=0)


# --------------------------------------------------------------------------- find_part


def test_find_part_by_type_and_disposition() -> None:
    parts = (
        BodyPart("application/sdp", (), "session", (), b"a"),
        BodyPart("application/rs-metadata+xml", (), None, (), b"b"),
        BodyPart("application/rs-metadata+xml", (), "recording-session", (), b"c"),
    )
    assert find_part(parts, "Application/SDP") is parts[0]
    assert find_part(parts, "application/rs-metadata+xml") is parts[1]
    found = find_part(parts, "application/rs-metadata+xml", disposition="Recording-Session")
    assert found is parts[2]
    assert find_part(parts, "text/plain") is None
