"""MIME multipart bodies (RFC 2046 section 5.1) as carried in SIP, sans-I/O.

A SIPREC INVITE (RFC 7866) carries ``multipart/mixed``: an ``application/sdp`` part and an
``application/rs-metadata+xml`` part. :func:`parse_multipart` splits such a body into frozen
:class:`BodyPart` values:

* the boundary comes from the Content-Type ``boundary`` parameter (quoted or not, 1..70 chars);
* delimiter lines may end in CRLF or bare LF and may carry transport padding (spaces/tabs);
  the line break before a delimiter belongs to the delimiter, not to the part;
* preamble and epilogue are ignored; the close delimiter (``--boundary--``) is required;
* part headers are case-insensitive (names are stored lower-cased), folded lines are joined;
  a part without Content-Type is ``text/plain`` (RFC 2046 section 5.1);
* a nested multipart part is returned as an opaque part (its body is not split);
* Content-Transfer-Encoding is not decoded (SIP bodies are binary/8bit in practice); the
  header is kept in :attr:`BodyPart.headers` for a caller that cares.

Layer: pure core.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

MAX_BOUNDARY_CHARS = 70
DEFAULT_CONTENT_TYPE = "text/plain"

_TOKEN_RE = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")
_PADDING = b" \t"


class MultipartError(ValueError):
    """The multipart body or its Content-Type is malformed or over a limit."""


@dataclass(frozen=True, slots=True)
class BodyPart:
    """One body part: media type lower-cased without parameters, headers with lower-cased names."""

    content_type: str
    params: tuple[tuple[str, str], ...]
    disposition: str | None
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of part header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    def param(self, name: str) -> str | None:
        """Content-Type parameter ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.params if key == wanted), None)


# --------------------------------------------------------------------------- Content-Type


def _split_semicolons(text: str) -> list[str]:
    """Split at ';' outside quoted strings."""
    parts: list[str] = []
    start = 0
    in_quote = escaped = False
    for index, char in enumerate(text):
        if escaped:
            escaped = False
        elif in_quote and char == "\\":
            escaped = True
        elif char == '"':
            in_quote = not in_quote
        elif char == ";" and not in_quote:
            parts.append(text[start:index])
            start = index + 1
    if in_quote:
        raise MultipartError(f"unterminated quoted string in {text!r}")
    parts.append(text[start:])
    return parts


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _parse_param(segment: str) -> tuple[str, str]:
    name, eq, value = segment.partition("=")
    name = name.strip()
    if not eq or _TOKEN_RE.fullmatch(name) is None:
        raise MultipartError(f"bad parameter {segment.strip()!r}")
    return name.lower(), _unquote(value.strip())


def parse_content_type(value: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``type/subtype; name=value...`` -> (lower-cased media type, parameters).

    Parameter names are lower-cased, values unquoted; empty segments (``;;``) are skipped.
    """
    head, *segments = _split_semicolons(value)
    media_type = head.strip().lower()
    kind, slash, subtype = media_type.partition("/")
    if not slash or _TOKEN_RE.fullmatch(kind) is None or _TOKEN_RE.fullmatch(subtype) is None:
        raise MultipartError(f"bad media type {head.strip()!r}")
    params = tuple(_parse_param(segment) for segment in segments if segment.strip())
    return media_type, params


def _disposition_type(value: str | None) -> str | None:
    if value is None:
        return None
    kind = _split_semicolons(value)[0].strip().lower()
    return kind or None


def _boundary(content_type_header: str) -> bytes:
    media_type, params = parse_content_type(content_type_header)
    if not media_type.startswith("multipart/"):
        raise MultipartError(f"Content-Type {media_type!r} is not multipart")
    boundary = next((value for name, value in params if name == "boundary"), None)
    if boundary is None:
        raise MultipartError(f"{media_type} without a boundary parameter")
    if not 1 <= len(boundary) <= MAX_BOUNDARY_CHARS or boundary.endswith(" "):
        raise MultipartError(
            f"boundary must be 1..{MAX_BOUNDARY_CHARS} chars not ending in a space, "
            f"got {boundary!r}"
        )
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MultipartError(f"boundary {boundary!r} is not ASCII") from None


# --------------------------------------------------------------------------- splitting


@dataclass(frozen=True, slots=True)
class _Line:
    start: int
    end: int  # end of the content, before CRLF / LF
    next_start: int


def _lines(body: bytes) -> Iterator[_Line]:
    start = 0
    while start < len(body):
        newline = body.find(b"\n", start)
        if newline < 0:
            yield _Line(start, len(body), len(body))
            return
        end = newline - 1 if newline > start and body[newline - 1] == 0x0D else newline
        yield _Line(start, end, newline + 1)
        start = newline + 1


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int


def _part_spans(body: bytes, boundary: bytes, max_parts: int) -> list[_Span]:
    """Byte ranges of the parts between delimiter lines; raises if the close delimiter lacks."""
    delimiter = b"--" + boundary
    close = delimiter + b"--"
    spans: list[_Span] = []
    part_start: int | None = None
    previous_end = 0
    for line in _lines(body):
        text = body[line.start : line.end].rstrip(_PADDING)
        if text in (delimiter, close):
            if part_start is not None:
                spans.append(_Span(part_start, max(part_start, previous_end)))
                if len(spans) > max_parts:
                    raise MultipartError(f"more than {max_parts} body parts")
            if text == close:
                if part_start is None:
                    raise MultipartError("close delimiter before any body part")
                return spans
            part_start = line.next_start
        previous_end = line.end
    if part_start is None:
        raise MultipartError(f"boundary {boundary.decode()!r} not found in the body")
    raise MultipartError(f"missing close delimiter '--{boundary.decode()}--'")


# --------------------------------------------------------------------------- part headers


def _split_head(raw: bytes) -> tuple[bytes, bytes]:
    """(header block, body) of one part.

    A part starting with a blank line has no headers; one without a blank line is all
    headers and no body (``body-part := MIME-part-headers [CRLF *OCTET]``).
    """
    for line in _lines(raw):
        if line.start == line.end:
            return raw[: line.start], raw[line.next_start :]
    return raw, b""


def _header_lines(block: bytes) -> list[str]:
    """Header lines with folded continuations joined (RFC 5322 unfolding)."""
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        raise MultipartError("body part headers are not valid UTF-8") from None
    lines: list[str] = []
    for line in re.split(r"\r?\n", text):
        if not line:
            continue
        if line[0] in " \t":
            if not lines:
                raise MultipartError(f"continuation line before any part header: {line!r}")
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def _parse_headers(block: bytes) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for line in _header_lines(block):
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or _TOKEN_RE.fullmatch(name) is None:
            raise MultipartError(f"bad body part header line {line[:60]!r}")
        headers.append((name.lower(), value.strip()))
    return tuple(headers)


def _make_part(raw: bytes) -> BodyPart:
    block, body = _split_head(raw)
    headers = _parse_headers(block)
    found = {name: value for name, value in reversed(headers)}  # first occurrence wins
    content_type, params = parse_content_type(found.get("content-type", DEFAULT_CONTENT_TYPE))
    disposition = _disposition_type(found.get("content-disposition"))
    return BodyPart(content_type, params, disposition, headers, body)


# --------------------------------------------------------------------------- public API


def parse_multipart(
    content_type_header: str,
    body: bytes,
    *,
    max_parts: int = 8,
    max_bytes: int = 256 * 1024,
) -> tuple[BodyPart, ...]:
    """Split a multipart ``body`` (RFC 2046) described by ``content_type_header``."""
    if max_parts < 1 or max_bytes < 1:
        raise ValueError("max_parts and max_bytes must be positive")
    if len(body) > max_bytes:
        raise MultipartError(f"multipart body is {len(body)} bytes, limit is {max_bytes}")
    boundary = _boundary(content_type_header)
    spans = _part_spans(body, boundary, max_parts)
    return tuple(_make_part(body[span.start : span.end]) for span in spans)


def find_part(
    parts: Sequence[BodyPart], content_type: str, *, disposition: str | None = None
) -> BodyPart | None:
    """The first part of media type ``content_type`` (and ``disposition`` if given), or None."""
    wanted_type = content_type.strip().lower()
    wanted_disposition = disposition.lower() if disposition is not None else None
    for part in parts:
        if part.content_type != wanted_type:
            continue
        if wanted_disposition is None or part.disposition == wanted_disposition:
            return part
    return None
