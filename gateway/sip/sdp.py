"""SDP parsing (RFC 4566) and offer/answer negotiation (RFC 3264) for a G.711 media gateway.

Pure module: no I/O, no clocks, no logging. The gateway is always the answerer here:

* :func:`parse_sdp` turns an offer body into a frozen :class:`SessionDescription`;
* :func:`negotiate` decides, per m-line, whether we take the stream and with which codec;
* :func:`build_answer` renders the RFC 3264 answer for that plan;
* :func:`is_hold` tells re-INVITE handling whether a stream is being put on hold.

A session-level direction attribute (``a=sendonly`` before the first m-line) is folded into
each :class:`MediaDescription` that has no direction attribute of its own, so
``MediaDescription.direction`` is always the effective direction of that stream.

Layer: pure core.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MAX_SDP_BYTES = 16 * 1024
DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
SUPPORTED_CODECS = ("PCMU", "PCMA")
ACCEPTED_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})
ALLOWED_PTIMES_MS = frozenset({10, 20, 30})
HOLD_ADDRESS = "0.0.0.0"
G711_CLOCK_RATE_HZ = 8000
TELEPHONE_EVENT = "telephone-event"
COMFORT_NOISE = "CN"  # RFC 3389
DEFAULT_DTMF_FMTP = "0-16"
_EVENT_LIST = re.compile(r"^\s*\d{1,3}(-\d{1,3})?(\s*,\s*\d{1,3}(-\d{1,3})?)*\s*$")
MAX_PORT = 65535
MAX_PAYLOAD_TYPE = 127

_LINE_SPLIT = re.compile(r"\r?\n")
_DIRECTION_MIRROR = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


class SdpError(ValueError):
    """The SDP body is malformed or structurally unusable."""


class NoAcceptableMedia(SdpError):
    """No stream of the offer can be accepted; the caller answers 488 Not Acceptable Here."""


@dataclass(frozen=True, slots=True)
class RtpMap:
    """One payload type mapping (``a=rtpmap`` or an RFC 3551 static assignment)."""

    pt: int
    encoding: str
    clock_rate_hz: int
    channels: int = 1


def _static_payload_types() -> dict[int, RtpMap]:
    # RFC 3551 tables 4 and 5 (audio and video static assignments).
    table: tuple[tuple[int, str, int, int], ...] = (
        (0, "PCMU", 8000, 1), (3, "GSM", 8000, 1), (4, "G723", 8000, 1),
        (5, "DVI4", 8000, 1), (6, "DVI4", 16000, 1), (7, "LPC", 8000, 1),
        (8, "PCMA", 8000, 1), (9, "G722", 8000, 1), (10, "L16", 44100, 2),
        (11, "L16", 44100, 1), (12, "QCELP", 8000, 1), (13, "CN", 8000, 1),
        (14, "MPA", 90000, 1), (15, "G728", 8000, 1), (16, "DVI4", 11025, 1),
        (17, "DVI4", 22050, 1), (18, "G729", 8000, 1), (25, "CelB", 90000, 1),
        (26, "JPEG", 90000, 1), (28, "nv", 90000, 1), (31, "H261", 90000, 1),
        (32, "MPV", 90000, 1), (33, "MP2T", 90000, 1), (34, "H263", 90000, 1),
    )
    return {pt: RtpMap(pt, name, rate_hz, channels) for pt, name, rate_hz, channels in table}


STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = _static_payload_types()


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One m-line with the attributes that matter to the gateway."""

    media: str
    port: int
    port_count: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None
    rtpmaps: tuple[RtpMap, ...]
    fmtp: tuple[tuple[int, str], ...]
    direction: str
    ptime_ms: int | None
    label: str | None
    rtcp_mux: bool
    rtcp_port: int | None
    other_attrs: tuple[str, ...]

    def rtpmap_for(self, pt: int) -> RtpMap | None:
        """The a=rtpmap for ``pt``, else its RFC 3551 static assignment, else None."""
        for rtpmap in self.rtpmaps:
            if rtpmap.pt == pt:
                return rtpmap
        return STATIC_PAYLOAD_TYPES.get(pt)

    def fmtp_for(self, pt: int) -> str | None:
        """The a=fmtp parameters for ``pt``, or None."""
        for fmtp_pt, params in self.fmtp:
            if fmtp_pt == pt:
                return params
        return None

    def payload_types(self) -> tuple[int, ...]:
        """The formats that are RTP payload type numbers, in offer order."""
        return tuple(int(fmt) for fmt in self.formats if _is_digits(fmt))


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A parsed SDP body."""

    origin_username: str
    session_id: str
    session_version: int
    origin_address: str
    session_name: str
    connection: str | None
    direction: str
    media: tuple[MediaDescription, ...]
    addr_type: str

    def media_address(self, index: int) -> str | None:
        """The m-line's c= address, else the session c= address ("0.0.0.0" means hold)."""
        media_connection = self.media[index].connection
        return media_connection if media_connection is not None else self.connection


# --------------------------------------------------------------------------- parsing


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _parse_int(text: str, what: str, low: int, high: int) -> int:
    if not _is_digits(text) or not low <= int(text) <= high:
        raise SdpError(f"{what} must be an integer in [{low}, {high}], got {text!r}")
    return int(text)


def _parse_origin(value: str) -> tuple[str, str, int, str, str]:
    parts = value.split()
    if len(parts) != 6:
        raise SdpError(f"o= line needs 6 fields, got {len(parts)}: {value!r}")
    username, session_id, version_text, _nettype, addr_type, address = parts
    if not _is_digits(version_text):
        raise SdpError(f"o= session version must be an integer, got {version_text!r}")
    return username, session_id, int(version_text), addr_type, address


def _parse_connection(value: str) -> tuple[str, str]:
    """``IN IP4 <address>[/ttl[/count]]`` -> (addr_type, address)."""
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"c= line needs 3 fields, got {len(parts)}: {value!r}")
    return parts[1], parts[2].split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class _MediaLine:
    media: str
    port: int
    port_count: int
    proto: str
    formats: tuple[str, ...]


def _parse_media_line(value: str) -> _MediaLine:
    parts = value.split()
    if len(parts) < 4:
        raise SdpError(f"m= line needs '<media> <port> <proto> <fmt>...', got {value!r}")
    media, port_field, proto = parts[:3]
    port_text, slash, count_text = port_field.partition("/")
    port = _parse_int(port_text, "m= port", 0, MAX_PORT)
    port_count = _parse_int(count_text, "m= port count", 1, MAX_PORT) if slash else 1
    return _MediaLine(media, port, port_count, proto, tuple(parts[3:]))


def _parse_rtpmap(value: str) -> RtpMap | None:
    pt_text, _, spec = value.strip().partition(" ")
    fields = spec.strip().split("/")
    if not _is_digits(pt_text) or int(pt_text) > MAX_PAYLOAD_TYPE or len(fields) not in (2, 3):
        return None
    channels_text = fields[2] if len(fields) == 3 else "1"
    if not fields[0] or not _is_digits(fields[1]) or not _is_digits(channels_text):
        return None
    return RtpMap(int(pt_text), fields[0], int(fields[1]), int(channels_text))


def _parse_fmtp(value: str) -> tuple[int, str] | None:
    pt_text, _, params = value.strip().partition(" ")
    if not _is_digits(pt_text) or int(pt_text) > MAX_PAYLOAD_TYPE:
        return None
    return int(pt_text), params.strip()


def _parse_ptime_ms(value: str) -> int | None:
    try:
        ptime_ms = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(ptime_ms) or ptime_ms < 1:
        return None
    return round(ptime_ms)


def _parse_rtcp_port(value: str) -> int | None:
    fields = value.split()
    if not fields or not _is_digits(fields[0]) or int(fields[0]) > MAX_PORT:
        return None
    return int(fields[0])


@dataclass(slots=True)
class _MediaDraft:
    """Mutable accumulator for one m-line section while parsing."""

    line: _MediaLine
    connection: str | None = None
    rtpmaps: list[RtpMap] = field(default_factory=list)
    fmtp: list[tuple[int, str]] = field(default_factory=list)
    direction: str | None = None
    ptime_ms: int | None = None
    label: str | None = None
    rtcp_mux: bool = False
    rtcp_port: int | None = None
    other_attrs: list[str] = field(default_factory=list)

    def add_attribute(self, attr: str) -> None:
        name, _, value = attr.partition(":")
        handler = _MEDIA_ATTRIBUTE_HANDLERS.get(name)
        if handler is None or not handler(self, value):
            self.other_attrs.append(attr)

    def freeze(self, session_direction: str) -> MediaDescription:
        line = self.line
        return MediaDescription(
            media=line.media, port=line.port, port_count=line.port_count, proto=line.proto,
            formats=line.formats, connection=self.connection, rtpmaps=tuple(self.rtpmaps),
            fmtp=tuple(self.fmtp), direction=self.direction or session_direction,
            ptime_ms=self.ptime_ms, label=self.label, rtcp_mux=self.rtcp_mux,
            rtcp_port=self.rtcp_port, other_attrs=tuple(self.other_attrs),
        )


def _on_rtpmap(draft: _MediaDraft, value: str) -> bool:
    rtpmap = _parse_rtpmap(value)
    if rtpmap is not None:
        draft.rtpmaps.append(rtpmap)
    return rtpmap is not None


def _on_fmtp(draft: _MediaDraft, value: str) -> bool:
    fmtp = _parse_fmtp(value)
    if fmtp is not None:
        draft.fmtp.append(fmtp)
    return fmtp is not None


def _on_ptime(draft: _MediaDraft, value: str) -> bool:
    draft.ptime_ms = _parse_ptime_ms(value)
    return draft.ptime_ms is not None


def _on_label(draft: _MediaDraft, value: str) -> bool:
    draft.label = value.strip() or None
    return draft.label is not None


def _on_rtcp_mux(draft: _MediaDraft, value: str) -> bool:
    if value:
        return False
    draft.rtcp_mux = True
    return True


def _on_rtcp(draft: _MediaDraft, value: str) -> bool:
    draft.rtcp_port = _parse_rtcp_port(value)
    return draft.rtcp_port is not None


def _direction_handler(direction: str) -> Callable[[_MediaDraft, str], bool]:
    def handle(draft: _MediaDraft, value: str) -> bool:
        if value:
            return False
        draft.direction = direction
        return True

    return handle


_MEDIA_ATTRIBUTE_HANDLERS: dict[str, Callable[[_MediaDraft, str], bool]] = {
    "rtpmap": _on_rtpmap,
    "fmtp": _on_fmtp,
    "ptime": _on_ptime,
    "label": _on_label,
    "rtcp-mux": _on_rtcp_mux,
    "rtcp": _on_rtcp,
    **{direction: _direction_handler(direction) for direction in DIRECTIONS},
}


@dataclass(slots=True)
class _SessionDraft:
    """Mutable accumulator for the whole body while parsing."""

    origin: tuple[str, str, int, str, str] | None = None
    session_name: str = ""
    connection: tuple[str, str] | None = None
    direction: str = "sendrecv"
    media: list[_MediaDraft] = field(default_factory=list)

    def feed(self, kind: str, value: str) -> None:
        if kind == "o":
            self._set_origin(value)
        elif kind == "m":
            self._start_media(value)
        elif kind == "c":
            self._set_connection(value)
        elif kind == "a":
            self._add_attribute(value)
        elif kind == "s" and not self.media:
            self.session_name = value
        # v= handled by the caller; b=, t=, r=, z=, k=, i=, u=, e=, p= and unknown: ignored.

    def _set_origin(self, value: str) -> None:
        if self.origin is not None or self.media:
            raise SdpError("o= must appear exactly once, before the first m= line")
        self.origin = _parse_origin(value)

    def _start_media(self, value: str) -> None:
        if self.origin is None:
            raise SdpError("m= line before the o= line")
        self.media.append(_MediaDraft(_parse_media_line(value)))

    def _set_connection(self, value: str) -> None:
        addr_type, address = _parse_connection(value)
        if not self.media:
            self.connection = (addr_type, address)
        elif self.media[-1].connection is None:
            self.media[-1].connection = address

    def _add_attribute(self, attr: str) -> None:
        if self.media:
            self.media[-1].add_attribute(attr)
        elif attr in DIRECTIONS:
            self.direction = attr

    def finish(self) -> SessionDescription:
        if self.origin is None:
            raise SdpError("missing o= line")
        if not self.media:
            raise SdpError("no m= line: the session describes no media")
        username, session_id, version, origin_addr_type, origin_address = self.origin
        connection = self.connection[1] if self.connection else None
        session = SessionDescription(
            origin_username=username, session_id=session_id, session_version=version,
            origin_address=origin_address, session_name=self.session_name,
            connection=connection, direction=self.direction,
            media=tuple(draft.freeze(self.direction) for draft in self.media),
            addr_type=self.connection[0] if self.connection else origin_addr_type,
        )
        _check_media_addresses(session)
        return session


def _check_media_addresses(session: SessionDescription) -> None:
    for index, media in enumerate(session.media):
        if media.port != 0 and session.media_address(index) is None:
            raise SdpError(f"m= line #{index} ({media.media} port {media.port}) has no c= address")


def _decode(body: bytes | str) -> str:
    raw = body.encode("utf-8", errors="replace") if isinstance(body, str) else body
    if len(raw) > MAX_SDP_BYTES:
        raise SdpError(f"SDP body is {len(raw)} bytes, limit is {MAX_SDP_BYTES}")
    return body if isinstance(body, str) else raw.decode("utf-8", errors="replace")


def _split_lines(text: str) -> list[tuple[str, str]]:
    lines: list[tuple[str, str]] = []
    for number, line in enumerate(_LINE_SPLIT.split(text), start=1):
        line = line.rstrip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpError(f"line {number} is not '<type>=<value>': {line[:60]!r}")
        lines.append((line[0], line[2:]))
    return lines


def parse_sdp(body: bytes | str) -> SessionDescription:
    """Parse an SDP body (CRLF or LF line endings); raise :class:`SdpError` when unusable."""
    lines = _split_lines(_decode(body))
    if not lines or lines[0][0] != "v":
        raise SdpError("SDP must start with a v= line")
    if lines[0][1].strip() != "0":
        raise SdpError(f"unsupported SDP version v={lines[0][1]!r}")
    draft = _SessionDraft()
    for kind, value in lines[1:]:
        if kind == "v":
            raise SdpError("duplicate v= line")
        draft.feed(kind, value)
    return draft.finish()


# --------------------------------------------------------------------------- negotiation


@dataclass(frozen=True, slots=True)
class AnsweredStream:
    """Our decision for one m-line of the offer (same index as in the offer)."""

    index: int
    accepted: bool
    pt: int | None
    encoding: str | None
    dtmf_pt: int | None
    remote_address: str | None
    remote_port: int | None
    remote_rtcp_port: int | None
    rtcp_mux: bool
    ptime_ms: int
    direction: str
    label: str | None
    remote_direction: str
    dtmf_events: str | None = None  # the RFC 4733 events list we answer (what we accept)
    cn_pt: int | None = None  # RFC 3389 comfort noise, when offered


@dataclass(frozen=True, slots=True)
class AnswerPlan:
    """One :class:`AnsweredStream` per offered m-line, in offer order."""

    streams: tuple[AnsweredStream, ...]

    @property
    def accepted(self) -> tuple[AnsweredStream, ...]:
        return tuple(stream for stream in self.streams if stream.accepted)


def _normalise_codecs(codecs: Sequence[str]) -> tuple[str, ...]:
    names = tuple(codec.upper() for codec in codecs)
    if not names or any(name not in SUPPORTED_CODECS for name in names):
        raise ValueError(f"codecs must be a non-empty choice of {SUPPORTED_CODECS}, got {codecs!r}")
    return names


def _is_codec(rtpmap: RtpMap | None, encoding: str) -> bool:
    return (
        rtpmap is not None
        and rtpmap.encoding.upper() == encoding.upper()
        and rtpmap.clock_rate_hz == G711_CLOCK_RATE_HZ
        and rtpmap.channels == 1
    )


def _choose_codec(media: MediaDescription, codecs: tuple[str, ...]) -> tuple[int, str] | None:
    for encoding in codecs:
        for pt in media.payload_types():
            if _is_codec(media.rtpmap_for(pt), encoding):
                return pt, encoding
    return None


def _choose_dtmf(media: MediaDescription) -> int | None:
    for pt in media.payload_types():
        if _is_codec(media.rtpmap_for(pt), TELEPHONE_EVENT):
            return pt
    return None


def _choose_cn(media: MediaDescription) -> int | None:
    for pt in media.payload_types():
        if _is_codec(media.rtpmap_for(pt), COMFORT_NOISE):
            return pt
    return None


def _dtmf_events(media: MediaDescription, dtmf_pt: int | None) -> str | None:
    """The offered events list when it is one (``0-15,66``), else our default."""
    if dtmf_pt is None:
        return None
    offered = media.fmtp_for(dtmf_pt)
    return offered.strip() if offered and _EVENT_LIST.match(offered) else DEFAULT_DTMF_FMTP


def _our_direction(remote_direction: str, recv_only: bool) -> str:
    ours = _DIRECTION_MIRROR.get(remote_direction, "sendrecv")
    if recv_only and ours == "sendrecv":
        return "recvonly"
    if recv_only and ours == "sendonly":
        return "inactive"
    return ours


def _refusal_reason(media: MediaDescription, accepted_count: int, max_streams: int) -> str | None:
    if media.media != "audio":
        return f"media type {media.media!r} not supported"
    if media.proto.upper() not in ACCEPTED_PROTOS:
        return f"transport {media.proto!r} not supported"
    if media.port == 0:
        return "stream disabled (port 0)"
    if accepted_count >= max_streams:
        return f"more than {max_streams} audio streams"
    return None


def _describe(media: MediaDescription) -> str:
    names = []
    for fmt in media.formats:
        rtpmap = media.rtpmap_for(int(fmt)) if _is_digits(fmt) else None
        names.append(f"{rtpmap.encoding}/{rtpmap.clock_rate_hz}" if rtpmap else fmt)
    return f"m={media.media} {media.port} {media.proto} [{', '.join(names)}]"


def _refused(index: int, media: MediaDescription, default_ptime_ms: int) -> AnsweredStream:
    return AnsweredStream(
        index=index, accepted=False, pt=None, encoding=None, dtmf_pt=None,
        remote_address=None, remote_port=None, remote_rtcp_port=None, rtcp_mux=False,
        ptime_ms=default_ptime_ms, direction="inactive", label=media.label,
        remote_direction=media.direction,
    )


@dataclass(frozen=True, slots=True)
class _Policy:
    telephone_event: bool
    default_ptime_ms: int
    recv_only: bool


def _remote_rtcp_port(media: MediaDescription) -> int:
    if media.rtcp_mux:
        return media.port
    return media.rtcp_port if media.rtcp_port is not None else media.port + 1


def _accepted(
    offer: SessionDescription, index: int, codec: tuple[int, str], policy: _Policy
) -> AnsweredStream:
    media = offer.media[index]
    offered_ptime_ms = media.ptime_ms
    dtmf_pt = _choose_dtmf(media) if policy.telephone_event else None
    return AnsweredStream(
        index=index, accepted=True, pt=codec[0], encoding=codec[1],
        dtmf_pt=dtmf_pt, dtmf_events=_dtmf_events(media, dtmf_pt), cn_pt=_choose_cn(media),
        remote_address=offer.media_address(index), remote_port=media.port,
        remote_rtcp_port=_remote_rtcp_port(media), rtcp_mux=media.rtcp_mux,
        ptime_ms=(
            offered_ptime_ms if offered_ptime_ms in ALLOWED_PTIMES_MS else policy.default_ptime_ms
        ),
        direction=_our_direction(media.direction, policy.recv_only), label=media.label,
        remote_direction=media.direction,
    )


def negotiate(
    offer: SessionDescription,
    *,
    codecs: Sequence[str] = SUPPORTED_CODECS,
    telephone_event: bool = True,
    default_ptime_ms: int = 20,
    recv_only: bool = False,
    max_streams: int = 2,
) -> AnswerPlan:
    """Decide per m-line what we accept (RFC 3264 section 6); raise NoAcceptableMedia if none."""
    preferred = _normalise_codecs(codecs)
    if default_ptime_ms <= 0 or max_streams < 1:
        raise ValueError("default_ptime_ms and max_streams must be positive")
    policy = _Policy(telephone_event, default_ptime_ms, recv_only)
    streams: list[AnsweredStream] = []
    refusals: list[str] = []
    for index, media in enumerate(offer.media):
        reason = _refusal_reason(media, sum(s.accepted for s in streams), max_streams)
        codec = None if reason else _choose_codec(media, preferred)
        if codec is None:
            reason = reason or f"no common codec (we support {', '.join(preferred)} at 8000 Hz)"
            refusals.append(f"#{index} {_describe(media)}: {reason}")
            streams.append(_refused(index, media, default_ptime_ms))
        else:
            streams.append(_accepted(offer, index, codec, policy))
    if not any(stream.accepted for stream in streams):
        raise NoAcceptableMedia("no acceptable media stream offered: " + "; ".join(refusals))
    return AnswerPlan(tuple(streams))


def is_hold(offer: SessionDescription, index: int) -> bool:
    """True when stream ``index`` is put on hold: sendonly/inactive, or c= 0.0.0.0."""
    media = offer.media[index]
    return media.direction in ("sendonly", "inactive") or offer.media_address(index) == HOLD_ADDRESS


# --------------------------------------------------------------------------- answer


def _check_token(value: str, what: str) -> None:
    if not value or any(char.isspace() for char in value):
        raise ValueError(f"{what} must be a non-empty token without whitespace, got {value!r}")


def _check_answer_inputs(
    offer: SessionDescription, plan: AnswerPlan, ports: Sequence[int | None]
) -> None:
    if not len(offer.media) == len(plan.streams) == len(ports):
        raise ValueError(
            f"offer has {len(offer.media)} m-lines but plan has {len(plan.streams)} streams "
            f"and {len(ports)} ports were given"
        )
    for index, (stream, port) in enumerate(zip(plan.streams, ports, strict=True)):
        if stream.index != index:
            raise ValueError(f"plan stream #{index} carries index {stream.index}")
        if stream.accepted and (port is None or not 0 < port <= MAX_PORT):
            raise ValueError(f"accepted stream #{index} needs a local port, got {port!r}")


def _accepted_media_lines(media: MediaDescription, stream: AnsweredStream, port: int) -> list[str]:
    extra = [pt for pt in (stream.dtmf_pt, stream.cn_pt) if pt is not None]
    lines = [
        f"m={media.media} {port} {media.proto} {' '.join(map(str, [stream.pt, *extra]))}",
        f"a=rtpmap:{stream.pt} {stream.encoding}/{G711_CLOCK_RATE_HZ}",
    ]
    if stream.dtmf_pt is not None:
        dtmf_fmtp = stream.dtmf_events or DEFAULT_DTMF_FMTP
        lines.append(f"a=rtpmap:{stream.dtmf_pt} {TELEPHONE_EVENT}/{G711_CLOCK_RATE_HZ}")
        lines.append(f"a=fmtp:{stream.dtmf_pt} {dtmf_fmtp}")
    if stream.cn_pt is not None:
        lines.append(f"a=rtpmap:{stream.cn_pt} {COMFORT_NOISE}/{G711_CLOCK_RATE_HZ}")
    lines += [f"a=ptime:{stream.ptime_ms}", f"a={stream.direction}"]
    if stream.label is not None:
        lines.append(f"a=label:{stream.label}")
    if stream.rtcp_mux:
        lines.append("a=rtcp-mux")
    return lines


def build_answer(
    offer: SessionDescription,
    plan: AnswerPlan,
    *,
    local_address: str,
    ports: Sequence[int | None],
    session_id: int,
    session_version: int,
    username: str = "asr-gateway",
) -> bytes:
    """Render the RFC 3264 answer: one m-line per offered m-line, same order, CRLF endings."""
    _check_answer_inputs(offer, plan, ports)
    _check_token(local_address, "local_address")
    _check_token(username, "username")
    if session_id < 0 or session_version < 0:
        raise ValueError("session_id and session_version must be non-negative")
    addr_type = "IP6" if ":" in local_address else "IP4"
    lines = [
        "v=0",
        f"o={username} {session_id} {session_version} IN {addr_type} {local_address}",
        "s=-",
        f"c=IN {addr_type} {local_address}",
        "t=0 0",
    ]
    for media, stream, port in zip(offer.media, plan.streams, ports, strict=True):
        if stream.accepted and port is not None:
            lines += _accepted_media_lines(media, stream, port)
        else:
            lines.append(f"m={media.media} 0 {media.proto} {media.formats[0]}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
