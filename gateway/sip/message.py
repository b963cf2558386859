"""SIP message model, parser and serializer (RFC 3261), sans-I/O.

Parsing is lenient where RFC 3261 / RFC 4475 ask for tolerance (leading CRLFs, header
folding, LWS around the colon, compact names, bare LF line ends) and strict where a
malformed message must be rejected (bad Content-Length, missing mandatory headers,
CSeq mismatch, bad SIP-Version, NUL or invalid UTF-8 in the header block).

Header values are kept as received (unfolded, trimmed); typed views (``Via``,
``SipUri``, ``NameAddr``) are parsed on demand from them, so ``to_bytes`` reproduces
the header values verbatim and a re-parse yields an equal message.

IPv6 hosts are stored *without* brackets in ``Via.host`` / ``SipUri.host`` (ready for
socket use); ``str()`` adds the brackets back.

Layer: pure core.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAX_MESSAGE_BYTES = 65535

Params = tuple[tuple[str, str | None], ...]

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SLASH_LWS_RE = re.compile(r"[ \t]*/[ \t]*")
_URI_FORBIDDEN = frozenset(' \t\r\n\0<>"')


def is_token(text: str) -> bool:
    """True when ``text`` is an RFC 3261 ``token`` (method names, header names...)."""
    return _TOKEN_RE.fullmatch(text) is not None


# --------------------------------------------------------------------------- errors


class SipParseError(ValueError):
    """A SIP message could not be parsed or is not acceptable.

    ``reason`` is short and suitable as a reason-phrase suffix; ``status`` is the
    response code a UAS should answer with (400, 416, 505, 513); ``request`` is set
    when enough of a request was parsed to build that response.
    """

    def __init__(self, reason: str, request: SipRequest | None = None, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.request = request
        self.status = status


class SipHeaderError(ValueError):
    """A header value (Via, From, To, CSeq...) is missing or malformed."""


class SipUriError(SipHeaderError):
    """A URI is malformed."""


class UnsupportedUriScheme(SipUriError):
    """The URI scheme is neither sip:, sips: nor tel: (answer 416)."""


# --------------------------------------------------------------------------- headers

_COMPACT = {
    "i": "call-id", "m": "contact", "f": "from", "t": "to", "v": "via",
    "l": "content-length", "c": "content-type", "e": "content-encoding",
    "k": "supported", "s": "subject", "o": "event", "r": "refer-to",
    "u": "allow-events", "x": "session-expires", "a": "accept-contact",
    "b": "referred-by", "j": "reject-contact", "d": "request-disposition",
    "y": "identity",
}  # fmt: skip

_WELL_KNOWN = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
    "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
    "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
    "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Diversion",
    "Error-Info", "Event", "Expires", "From", "History-Info", "Identity",
    "In-Reply-To", "Info-Package", "Max-Forwards", "MIME-Version", "Min-Expires",
    "Min-SE", "Organization", "P-Asserted-Identity", "P-Preferred-Identity", "Path",
    "Priority", "Privacy", "Proxy-Authenticate", "Proxy-Authorization",
    "Proxy-Require", "RAck", "Reason", "Record-Route", "Recv-Info", "Refer-To",
    "Referred-By", "Reject-Contact", "Replaces", "Reply-To", "Request-Disposition",
    "Require", "Retry-After", "Route", "RSeq", "Security-Client", "Security-Server",
    "Security-Verify", "Server", "Service-Route", "Session-Expires", "SIP-ETag",
    "SIP-If-Match", "Subject", "Subscription-State", "Supported", "Timestamp", "To",
    "Unsupported", "User-Agent", "Via", "Warning", "WWW-Authenticate",
)  # fmt: skip
_CANONICAL = {name.lower(): name for name in _WELL_KNOWN}

_LIST_HEADERS = frozenset(
    name.lower()
    for name in (
        "Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require",
        "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
        "Allow-Events", "Content-Encoding", "Content-Language", "Path", "Service-Route",
        "In-Reply-To", "Alert-Info", "Call-Info", "Error-Info", "Warning",
        "Accept-Contact", "Reject-Contact", "P-Asserted-Identity",
        "P-Preferred-Identity", "Security-Client", "Security-Server",
        "Security-Verify", "History-Info", "Reason", "Recv-Info", "Diversion",
    )
)  # fmt: skip


def _key(name: str) -> str:
    lower = name.lower()
    if len(lower) == 1:
        return _COMPACT.get(lower, lower)
    return lower


def split_header_list(value: str, sep: str = ",") -> list[str]:
    """Split ``value`` at ``sep`` outside quoted strings and ``<...>``; trims, drops empties."""
    return [part.strip() for part in _split_quoted(value, sep, angle=True) if part.strip()]


def _split_quoted(text: str, sep: str, angle: bool = False) -> list[str]:
    if '"' not in text and not (angle and "<" in text):
        return text.split(sep)
    parts: list[str] = []
    start = 0
    in_quote = escaped = False
    depth = 0
    for i, ch in enumerate(text):
        if in_quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif angle and ch == "<":
            depth += 1
        elif angle and ch == ">" and depth:
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _bare_nul(text: str) -> bool:
    """True when ``text`` has a NUL outside a quoted-pair (``\\`` + NUL inside quotes is
    valid RFC 3261 ``quoted-pair`` syntax, RFC 4475 3.1.1.2)."""
    if "\0" not in text:
        return False
    in_quote = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\0":
            return True
        elif in_quote and ch == "\\":
            escaped = True
        elif ch == '"':
            in_quote = not in_quote
    return False


def _check_header(name: str, value: str) -> None:
    if not is_token(name):
        raise ValueError(f"invalid header name {name!r}")
    if "\r" in value or "\n" in value or _bare_nul(value):
        raise ValueError(f"header {name} value contains CR, LF or NUL")


class Headers:
    """Ordered, case-insensitive multimap of SIP header fields.

    Names are canonicalised on insert: compact forms are expanded, well-known names get
    their RFC capitalisation, unknown names keep the case first seen in this instance.
    """

    __slots__ = ("_items", "_names")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []  # (key, display name, value)
        self._names: dict[str, str] = {}
        for name, value in items:
            self.add(name, value)

    def _canon(self, name: str) -> tuple[str, str]:
        key = _key(name)
        canon = _CANONICAL.get(key)
        if canon is None:
            canon = self._names.setdefault(key, name)
        return key, canon

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _key(name)
        for item_key, _, value in self._items:
            if item_key == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        key = _key(name)
        values = [value for item_key, _, value in self._items if item_key == key]
        if key not in _LIST_HEADERS:
            return values
        return [part for value in values for part in split_header_list(value)]

    def add(self, name: str, value: str) -> None:
        _check_header(name, value)
        key, canon = self._canon(name)
        self._items.append((key, canon, value))

    def set(self, name: str, value: str) -> None:
        _check_header(name, value)
        key, canon = self._canon(name)
        kept: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] != key:
                kept.append(item)
            elif not placed:
                kept.append((key, canon, value))
                placed = True
        if not placed:
            kept.append((key, canon, value))
        self._items = kept

    def remove(self, name: str) -> None:
        key = _key(name)
        self._items = [item for item in self._items if item[0] != key]

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first value of ``name``; at the very top if there is none."""
        _check_header(name, value)
        key, canon = self._canon(name)
        index = next((i for i, item in enumerate(self._items) if item[0] == key), 0)
        self._items.insert(index, (key, canon, value))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(item[0] == key for item in self._items)

    def items(self) -> list[tuple[str, str]]:
        return [(canon, value) for _, canon, value in self._items]

    def copy(self) -> Headers:
        clone = Headers()
        clone._items = list(self._items)
        clone._names = dict(self._names)
        return clone

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self.items() == other.items()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


# --------------------------------------------------------------------------- params / hosts


def _parse_params(text: str, error: type[SipHeaderError] = SipHeaderError) -> Params:
    """Parse ``name[=value]`` items separated by ';' (``text`` excludes the first ';')."""
    if not text.strip():
        return ()
    params: list[tuple[str, str | None]] = []
    for segment in _split_quoted(text, ";"):
        name, eq, value = segment.partition("=")
        name = name.strip()
        if not is_token(name):
            raise error(f"bad parameter {segment.strip()!r}")
        params.append((name, value.strip() if eq else None))
    return tuple(params)


def _format_params(params: Params) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


def _find_param(params: Params, name: str) -> str | None:
    lower = name.lower()
    for param_name, value in params:
        if param_name.lower() == lower:
            return value
    return None


def _has_param(params: Params, name: str) -> bool:
    lower = name.lower()
    return any(param_name.lower() == lower for param_name, _ in params)


def _replace_params(params: Params, updates: dict[str, str | None]) -> Params:
    result = list(params)
    for name, value in updates.items():
        lower = name.lower()
        index = next((i for i, p in enumerate(result) if p[0].lower() == lower), None)
        if index is None:
            result.append((name, value))
        else:
            result[index] = (result[index][0], value)
    return tuple(result)


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _parse_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise SipHeaderError(f"bad port {text!r}")
    return int(text)


def _split_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipHeaderError(f"unterminated IPv6 reference {text!r}")
        host, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SipHeaderError(f"bad IPv6 address {host!r}") from None
    else:
        host, colon, port_text = text.partition(":")
        rest = colon + port_text
        if _HOSTNAME_RE.fullmatch(host) is None:
            raise SipHeaderError(f"bad host {host!r}")
    if not rest:
        return host, None
    if not rest.startswith(":"):
        raise SipHeaderError(f"bad host:port {text!r}")
    return host, _parse_port(rest[1:])


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Unescape the quoted string at ``text[start] == '"'``; return it and the index after."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise SipHeaderError("unterminated quoted string")


def quote_string(text: str) -> str:
    """Render ``text`` as an RFC 3261 quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- Via


@dataclass(frozen=True, slots=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: Params = ()

    def param(self, name: str) -> str | None:
        return _find_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    def with_params(self, **kv: str | None) -> Via:
        """Set or replace parameters; a ``None`` value makes a flag (e.g. ``rport``)."""
        return Via(self.transport, self.host, self.port, _replace_params(self.params, kv))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {_format_host(self.host)}{port}" + _format_params(
            self.params
        )


def _strip_comment(value: str) -> str:
    text = value.rstrip()
    if text.endswith(")") and "(" in text:
        return text[: text.rfind("(")]
    return text


def parse_via(value: str) -> Via:
    """Parse one Via value, e.g. ``SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport``."""
    first, _, param_text = _strip_comment(value).partition(";")
    parts = _SLASH_LWS_RE.sub("/", first.strip()).split(None, 1)
    if len(parts) != 2:
        raise SipHeaderError(f"bad Via {value!r}")
    protocol = parts[0].split("/")
    if len(protocol) != 3 or protocol[0].upper() != "SIP" or protocol[1] != "2.0":
        raise SipHeaderError(f"bad Via protocol {parts[0]!r}")
    if not is_token(protocol[2]):
        raise SipHeaderError(f"bad Via transport {protocol[2]!r}")
    host, port = _split_hostport("".join(parts[1].split()))
    return Via(protocol[2].upper(), host, port, _parse_params(param_text))


# --------------------------------------------------------------------------- URIs


@dataclass(frozen=True, slots=True)
class SipUri:
    """sip:/sips:/tel: URI. Parts keep their %-escapes as written (so ``str`` round-trips)."""

    scheme: str
    user: str | None
    host: str
    port: int | None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()
    password: str | None = None

    def param(self, name: str) -> str | None:
        return _find_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return _has_param(self.params, name)

    def with_params(self, **kv: str | None) -> SipUri:
        return SipUri(
            self.scheme, self.user, self.host, self.port,
            _replace_params(self.params, kv), self.headers, self.password,
        )  # fmt: skip

    def aor(self) -> str:
        """Address-of-record form: ``scheme:user@host`` (host lower-cased, no port/params)."""
        if self.scheme == "tel":
            return f"tel:{self.user}"
        user = f"{self.user}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{_format_host(self.host.lower())}"

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{_format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            password = f":{self.password}" if self.password is not None else ""
            userinfo = f"{self.user}{password}@"
        port = f":{self.port}" if self.port is not None else ""
        headers = "&".join(f"{n}={v}" for n, v in self.headers)
        tail = f"?{headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{_format_host(self.host)}{port}" + (
            _format_params(self.params) + tail
        )


def _parse_uri_headers(text: str) -> tuple[tuple[str, str], ...]:
    result: list[tuple[str, str]] = []
    for item in text.split("&"):
        name, eq, value = item.partition("=")
        if not name or not eq:
            raise SipUriError(f"bad URI header {item!r}")
        result.append((name, value))
    return tuple(result)


def _parse_tel(rest: str) -> SipUri:
    number, _, param_text = rest.partition(";")
    if not number:
        raise SipUriError("empty tel: number")
    return SipUri("tel", number, "", None, _parse_params(param_text, SipUriError))


def _parse_userinfo(userinfo: str) -> tuple[str, str | None]:
    user, colon, password = userinfo.partition(":")
    if not user:
        raise SipUriError("empty user part")
    return user, password if colon else None


def parse_uri(value: str) -> SipUri:
    """Parse a sip:, sips: or tel: URI; other schemes raise ``UnsupportedUriScheme``."""
    text = value.strip()
    scheme, colon, rest = text.partition(":")
    if not colon or _SCHEME_RE.fullmatch(scheme) is None:
        raise SipUriError(f"bad URI {value!r}")
    if not rest or any(ch in _URI_FORBIDDEN for ch in rest):
        raise SipUriError(f"bad URI {value!r}")
    if _ESCAPE_RE.search(rest):
        raise SipUriError(f"bad %-escape in URI {value!r}")
    scheme = scheme.lower()
    if scheme == "tel":
        return _parse_tel(rest)
    if scheme not in ("sip", "sips"):
        raise UnsupportedUriScheme(f"unsupported URI scheme {scheme!r}")
    userinfo, at, hostpart = rest.rpartition("@") if "@" in rest else ("", "", rest)
    user, password = _parse_userinfo(userinfo) if at else (None, None)
    hostpart, question, header_text = hostpart.partition("?")
    hostport, _, param_text = hostpart.partition(";")
    try:
        host, port = _split_hostport(hostport)
    except SipHeaderError as exc:
        raise SipUriError(str(exc)) from None
    headers = _parse_uri_headers(header_text) if question else ()
    params = _parse_params(param_text, SipUriError)
    return SipUri(scheme, user, host, port, params, headers, password)


# --------------------------------------------------------------------------- name-addr


@dataclass(frozen=True, slots=True)
class NameAddr:
    """From/To/Contact-style value; ``display`` is unescaped (None when absent)."""

    display: str | None
    uri: SipUri
    params: Params = ()

    def param(self, name: str) -> str | None:
        return _find_param(self.params, name)

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.display, self.uri, _replace_params(self.params, {"tag": tag}))

    def __str__(self) -> str:
        display = f"{quote_string(self.display)} " if self.display is not None else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def _parse_bracketed(display: str | None, text: str) -> NameAddr:
    end = text.find(">")
    if not text.startswith("<") or end < 0:
        raise SipHeaderError(f"bad name-addr {text!r}")
    if text[1:end] != text[1:end].strip():
        raise SipHeaderError(f"whitespace inside <> in {text!r}")  # RFC 4475 3.1.2.14
    uri = parse_uri(text[1:end])
    rest = text[end + 1 :].strip()
    if rest and not rest.startswith(";"):
        raise SipHeaderError(f"junk after name-addr {rest!r}")
    return NameAddr(display, uri, _parse_params(rest[1:]))


def _is_display_word(word: str) -> bool:
    """An unquoted display-name word: a token; non-ASCII text is tolerated (seen in the wild)."""
    return is_token("".join(ch for ch in word if ord(ch) < 0x80) or "x")


def parse_name_addr(value: str) -> NameAddr:
    """Parse ``"Bob" <sip:b@h>;tag=x``, ``Bob <sip:b@h>`` or ``sip:b@h;tag=x``."""
    text = value.strip()
    if text.startswith('"'):
        display, end = _read_quoted(text, 0)
        return _parse_bracketed(display, text[end:].lstrip())
    angle = text.find("<")
    if angle >= 0:
        display_text = " ".join(text[:angle].split())
        if any(not _is_display_word(word) for word in display_text.split()):
            raise SipHeaderError(f"unquoted display name {display_text!r} is not tokens")
        return _parse_bracketed(display_text or None, text[angle:])
    at = text.find("@")          # ';' is legal in a user part: params start after the host
    cut = text.find(";", at + 1 if at >= 0 else 0)
    uri_text, param_text = (text, "") if cut < 0 else (text[:cut], text[cut + 1:])
    uri = parse_uri(uri_text)
    if uri.headers:    # RFC 3261 20.10: a URI with '?' must be in <> (RFC 4475 3.1.2.13)
        raise SipHeaderError(f"URI with headers outside <> in {value!r}")
    return NameAddr(None, uri, _parse_params(param_text))


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2 or not (parts[0].isascii() and parts[0].isdigit()):
        raise SipHeaderError(f"bad CSeq {value!r}")
    number = int(parts[0])
    if number >= 2**31 or not is_token(parts[1]):
        raise SipHeaderError(f"bad CSeq {value!r}")
    return number, parts[1]


# --------------------------------------------------------------------------- messages


def _required(headers: Headers, name: str) -> str:
    value = headers.get(name)
    if value is None or not value.strip():
        raise SipHeaderError(f"missing {name} header")
    return value


class _HeaderViews:
    """Typed accessors shared by requests and responses (raise ``SipHeaderError``)."""

    __slots__ = ()
    headers: Headers

    @property
    def call_id(self) -> str:
        return _required(self.headers, "Call-ID").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(_required(self.headers, "CSeq"))

    @property
    def vias(self) -> list[Via]:
        return [parse_via(value) for value in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise SipHeaderError("missing Via header")
        return parse_via(values[0])

    @property
    def branch(self) -> str | None:
        values = self.headers.get_all("Via")
        return parse_via(values[0]).branch if values else None

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(_required(self.headers, "From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(_required(self.headers, "To"))


def _serialize(start_line: str, headers: Headers, body: bytes) -> bytes:
    lines = [start_line]
    length_written = False
    for name, value in headers.items():
        if name == "Content-Length":
            if length_written:
                continue
            value = str(len(body))
            length_written = True
        lines.append(f"{name}: {value}")
    if not length_written:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8") + body


@dataclass(slots=True)
class SipRequest(_HeaderViews):
    method: str
    uri: str
    headers: Headers
    body: bytes = b""

    def to_bytes(self) -> bytes:
        """Serialise; Content-Length is (re)written from ``body``."""
        return _serialize(f"{self.method} {self.uri} SIP/2.0", self.headers, self.body)


@dataclass(slots=True)
class SipResponse(_HeaderViews):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def to_bytes(self) -> bytes:
        """Serialise; Content-Length is (re)written from ``body``."""
        return _serialize(f"SIP/2.0 {self.status} {self.reason}", self.headers, self.body)


SipMessage = SipRequest | SipResponse


# --------------------------------------------------------------------------- parsing


def _split_head(data: bytes) -> tuple[bytes, bytes, bool]:
    """Return (header block, rest, had empty line)."""
    end, sep_len = data.find(b"\r\n\r\n"), 4
    lf_end = data.find(b"\n\n")
    if lf_end >= 0 and (end < 0 or lf_end < end):
        end, sep_len = lf_end, 2
    if end < 0:
        return data.rstrip(b"\r\n"), b"", False
    return data[:end], data[end + sep_len :], True


def _decode_line(raw: bytes) -> str:
    line = raw[:-1] if raw.endswith(b"\r") else raw
    if b"\r" in line:
        raise SipHeaderError("bare CR")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise SipHeaderError("invalid UTF-8") from None
    if _bare_nul(text):
        raise SipHeaderError("NUL byte")
    return text


def _split_header_line(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name = name.rstrip(" \t")
    if not colon:
        raise SipHeaderError("Malformed Header Line")
    if not is_token(name):
        raise SipHeaderError("Bad Header Name")
    return name, value.strip(" \t")


def _parse_header_lines(lines: list[bytes], problems: list[str]) -> Headers:
    """Unfold and split header lines; malformed lines are skipped and noted in ``problems``."""
    fields: list[list[str]] = []
    continuable = False
    for raw in lines:
        try:
            text = _decode_line(raw)
        except SipHeaderError as exc:
            problems.append(f"Bad Header: {exc}")
            continuable = False
            continue
        if text[:1] in (" ", "\t"):
            if continuable:
                fields[-1][1] = (fields[-1][1] + " " + text.strip(" \t")).strip()
            else:
                problems.append("Bad Header: unexpected continuation line")
            continue
        try:
            fields.append(list(_split_header_line(text)))
            continuable = True
        except SipHeaderError as exc:
            problems.append(str(exc))
            continuable = False
    return Headers((name, value) for name, value in fields)


def _content_length(values: list[str]) -> int | None:
    if not values:
        return None
    distinct = {value.strip() for value in values}
    text = distinct.pop()
    if distinct or not (text.isascii() and text.isdigit()):
        raise SipParseError("Bad Header: Content-Length")
    return int(text)


def _extract_body(headers: Headers, rest: bytes) -> bytes:
    length = _content_length(headers.get_all("Content-Length"))
    if length is None:
        return rest
    if length > len(rest):
        raise SipParseError("Bad Header: Content-Length exceeds received body")
    return rest[:length]


_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")
_DATE_RE = re.compile(r"[A-Za-z]{3}, \d{1,2} [A-Za-z]{3} \d{4} \d{2}:\d{2}:\d{2} GMT")
# Enough of a Via to address a response: any SIP version (a SIP/7.0 request gets its 505),
# a transport token and a sent-by host; parameters may be broken.
_READABLE_VIA_RE = re.compile(r"\s*SIP\s*/\s*[^/\s;,]+\s*/\s*([^\s/;,]+)\s+([^\s;,]+)")


def _check_common(message: SipMessage) -> None:
    for name in _MANDATORY:
        if name not in message.headers or not (message.headers.get(name) or "").strip():
            raise SipParseError(f"Missing Header: {name}")
    checks = (
        ("Via", lambda: message.vias),
        ("From", lambda: message.from_),
        ("To", lambda: message.to),
        ("CSeq", lambda: message.cseq),
    )
    for name, check in checks:
        try:
            check()
        except SipHeaderError:
            raise SipParseError(f"Bad Header: {name}") from None
    max_forwards = message.headers.get("Max-Forwards")
    if max_forwards is not None and not _is_small_int(max_forwards.strip(), 255):
        raise SipParseError("Bad Header: Max-Forwards")
    if isinstance(message, SipRequest):
        _check_contacts(message.headers.get_all("Contact"), message.method == "REGISTER")
    date = message.headers.get("Date")
    if date is not None and _DATE_RE.fullmatch(date.strip()) is None:
        raise SipParseError("Bad Header: Date")     # RFC 3261 20.17: rfc1123-date in GMT


def _check_contacts(values: list[str], register: bool) -> None:
    """Every Contact is a name-addr / addr-spec (the core builds in-dialog requests from it),
    or ``*`` in a REGISTER (RFC 3261 10.2.2)."""
    try:
        for value in values:
            if not (register and value.strip() == "*"):
                parse_name_addr(value)
    except SipHeaderError:
        raise SipParseError("Bad Header: Contact") from None


def _is_small_int(text: str, limit: int) -> bool:
    return text.isascii() and text.isdigit() and int(text) <= limit


def _parse_request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("Bad Request-Line")
    if not is_token(parts[0]):
        raise SipParseError("Bad Request-Line: method")
    return parts[0], parts[1], parts[2]


def _check_request(request: SipRequest, version: str, rest: bytes, problems: list[str]) -> None:
    if problems:
        raise SipParseError(problems[0])
    if version.upper() != "SIP/2.0":
        raise SipParseError("Version Not Supported", status=505)
    try:
        uri = parse_uri(request.uri)
    except UnsupportedUriScheme:
        raise SipParseError("Unsupported URI Scheme", status=416) from None
    except SipUriError:
        raise SipParseError("Bad Request-URI") from None
    if uri.headers:     # RFC 3261 19.1.1: headers are not allowed in a Request-URI
        raise SipParseError("Bad Request-URI: headers not allowed")
    request.body = _extract_body(request.headers, rest)
    _check_common(request)
    if request.cseq[1] != request.method:
        raise SipParseError("CSeq Method Mismatch")


def readable_via(value: str) -> bool:
    """True when a Via value names where to answer (protocol/version/transport and a host),
    even if the rest of it (version, parameters) is invalid."""
    match = _READABLE_VIA_RE.match(value)
    if match is None or not is_token(match.group(1)):
        return False
    try:
        _split_hostport(match.group(2))
    except SipHeaderError:
        return False
    return True


def _answerable(request: SipRequest) -> SipRequest | None:
    """The request if a response can be addressed to it: its top Via is readable. The
    response copies whatever From/To/Call-ID/CSeq it has (RFC 3261 8.2.6 asks for them, but
    a 400 that lacks one tells the sender more than silence)."""
    vias = request.headers.get_all("Via")
    return request if vias and readable_via(vias[0]) else None


def _stub_request(start: str, headers: Headers) -> SipRequest:
    """A request whose start line is unusable: method from the start line's first word if it
    is a token, else from CSeq, so a response (and the never-answer-an-ACK rule) still works."""
    first = start.split(" ", 1)[0]
    method = first if is_token(first) else ""
    if not method:
        cseq = (headers.get("CSeq") or "").split()
        method = cseq[-1] if len(cseq) == 2 and is_token(cseq[-1]) else "UNKNOWN"
    return SipRequest(method, "", headers)


def _finish_request(start: str, headers: Headers, rest: bytes, problems: list[str]) -> SipRequest:
    try:
        method, uri, version = _parse_request_line(start)
    except SipParseError as exc:
        raise SipParseError(exc.reason, _answerable(_stub_request(start, headers))) from None
    request = SipRequest(method, uri, headers)
    try:
        _check_request(request, version, rest, problems)
    except SipParseError as exc:
        raise SipParseError(exc.reason, _answerable(request), exc.status) from None
    return request


def _finish_response(start: str, headers: Headers, rest: bytes, problems: list[str]) -> SipResponse:
    version, _, remainder = start.partition(" ")
    code, _, reason = remainder.partition(" ")
    if version.upper() != "SIP/2.0":
        raise SipParseError("Version Not Supported", status=505)
    if len(code) != 3 or not _is_small_int(code, 699) or int(code) < 100:
        raise SipParseError("Bad Status-Line")
    if problems:
        raise SipParseError(problems[0])
    response = SipResponse(int(code), reason, headers, _extract_body(headers, rest))
    _check_common(response)
    return response


def parse_message(data: bytes, max_size: int = MAX_MESSAGE_BYTES) -> SipMessage:
    """Parse one whole datagram / framed stream message. Raises ``SipParseError``."""
    if len(data) > max_size:
        raise SipParseError("Message Too Large", status=513)
    head, rest, terminated = _split_head(data.lstrip(b"\r\n"))
    if not head:
        raise SipParseError("Empty Message")
    lines = head.split(b"\n")
    problems: list[str] = []
    headers = _parse_header_lines(lines[1:], problems)
    try:
        start = _decode_line(lines[0])
    except SipHeaderError as exc:
        request = None if lines[0].startswith(b"SIP/") else _answerable(
            _stub_request(lines[0].decode("utf-8", "replace"), headers))
        raise SipParseError(f"Bad Start-Line: {exc}", request) from None
    if not terminated:
        problems.append("Missing Empty Line")
    if start.startswith("SIP/"):
        return _finish_response(start, headers, rest, problems)
    return _finish_request(start, headers, rest, problems)


# --------------------------------------------------------------------------- stream framing


class StreamFramer:
    """Cuts a TCP/TLS byte stream into whole SIP messages (header block + Content-Length body).

    CRLF keep-alives (RFC 5626): each ``"\\r\\n\\r\\n"`` ping between messages increments
    ``pings`` (the shell answers each with a ``"\\r\\n"`` pong; ``pop_pings`` returns and
    clears the count); a lone ``"\\r\\n"`` (a pong, or stray CRLF) is skipped silently.
    ``feed`` raises ``SipParseError`` on a missing/invalid Content-Length or when a message
    would exceed ``max_size``; the connection should then be closed.
    """

    def __init__(self, max_size: int = MAX_MESSAGE_BYTES) -> None:
        self.max_size = max_size
        self.pings = 0
        self._buffer = bytearray()
        self._scan_from = 0

    def pop_pings(self) -> int:
        count, self.pings = self.pings, 0
        return count

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        while self._skip_keepalives():
            message = self._next_message()
            if message is None:
                break
            messages.append(message)
        return messages

    def _skip_keepalives(self) -> bool:
        """Consume leading CRLFs; False when the buffer holds only a possible partial ping."""
        buf = self._buffer
        while buf and buf[0] in b"\r\n":
            if buf.startswith(b"\r\n\r\n"):
                del buf[:4]
                self.pings += 1
            elif len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                return False
            elif buf.startswith(b"\r\n"):
                del buf[:2]
            else:
                del buf[:1]
        return bool(buf)

    def _next_message(self) -> bytes | None:
        buf = self._buffer
        end = buf.find(b"\r\n\r\n", max(self._scan_from - 3, 0))
        if end < 0:
            self._scan_from = len(buf)
            if len(buf) > self.max_size:
                raise SipParseError("Message Too Large", status=513)
            return None
        total = end + 4 + _stream_content_length(bytes(buf[:end]))
        if total > self.max_size:
            raise SipParseError("Message Too Large", status=513)
        if len(buf) < total:
            self._scan_from = end
            return None
        message = bytes(buf[:total])
        del buf[:total]
        self._scan_from = 0
        return message


def _stream_content_length(head: bytes) -> int:
    values: list[str] = []
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, colon, value = line.partition(":")
        if colon and _key(name.strip()) == "content-length":
            values.append(value)
    length = _content_length(values)
    if length is None:
        raise SipParseError("Missing Header: Content-Length")
    return length


# --------------------------------------------------------------------------- responses / ids

REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}  # fmt: skip


def _default_reason(status: int) -> str:
    return REASONS.get(status) or REASONS.get(status // 100 * 100, "")


def _to_with_tag(value: str, to_tag: str | None) -> str:
    if to_tag is None:
        return value
    try:
        if parse_name_addr(value).tag is not None:
            return value
    except SipHeaderError:
        return value
    return f"{value.rstrip()};tag={to_tag}"


def build_response(
    request: SipRequest, status: int, reason: str | None = None, to_tag: str | None = None
) -> SipResponse:
    """Response per RFC 3261 8.2.6: Via (all, in order), From, To (+tag), Call-ID, CSeq.

    A 100 also echoes Timestamp (8.2.6.1). Record-Route is not copied (the UAS core adds
    it to dialog-creating responses).
    """
    src = request.headers
    headers = Headers()
    for name, value in src.items():
        if name in ("Via", "From", "Call-ID", "CSeq") or (name == "Timestamp" and status == 100):
            headers.add(name, value)
        elif name == "To":
            headers.add(name, _to_with_tag(value, to_tag))
    headers.add("Content-Length", "0")
    return SipResponse(status, reason if reason is not None else _default_reason(status), headers)


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 128 random bits)."""
    return "z9hG4bK" + secrets.token_hex(16)


def new_tag() -> str:
    return secrets.token_hex(8)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(16)}@{host}"
