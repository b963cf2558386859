"""RFC 4733 telephone-event decoding for one RTP source (sans-I/O).

One :class:`DtmfEvent` per key press, reported when its end bit first arrives; the repeated end
packets (and any late update with the same timestamp) are absorbed. A packet with a new timestamp
starts a new event, except the next segment of a long event (RFC 4733 2.5.1.3: the duration field
saturated near 0xFFFF and the same event continues with timestamp + segment length, marker
clear), whose duration is added to the running one. An event whose end packets were all lost is
reported (``end_seen=False``) when the next event starts or by :meth:`DtmfDecoder.poll` after
``end_timeout_s`` without updates, with the last known duration.

Only the first 4-byte event block of a payload is decoded; further blocks (RFC 4733 2.5.1.5
multiple events in one packet) are ignored. ``volume_db`` is the power level in dBm0 (0 to -63).

Events outside the negotiated range (the ``a=fmtp:<pt> 0-15,66,70`` list, parsed by
:func:`parse_event_list`) are dropped before they touch any state and counted in
:attr:`DtmfDecoder.rejected`.

Layer: pure core.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.media.rtpstats import signed_ts_delta

EVENT_BLOCK_BYTES = 4
MAX_DURATION = 0xFFFF
_DIGITS = "0123456789*#ABCD"
FLASH_EVENT = 16
MAX_EVENT_CODE = 255
RFC4733_DEFAULT_EVENTS = frozenset(range(16))  # no events list: 0-15 (RFC 4733 section 7.1.1)


class DtmfPayloadError(ValueError):
    """A telephone-event payload that cannot be decoded."""


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    digit: str  # "0"-"9", "*", "#", "A"-"D", "flash", or "event-<n>"
    duration_ms: int
    volume_db: int  # dBm0, 0 down to -63
    rtp_ts: int  # timestamp of the event's first segment
    end_seen: bool = True  # False: reported on timeout / next event, end packets lost


def parse_event_list(text: str) -> frozenset[int]:
    """The event codes of an RFC 4733 ``events`` list such as ``0-15,66,70`` (an ``events=``
    prefix is tolerated); ValueError for anything else."""
    body = text.strip()
    if body.lower().startswith("events="):
        body = body[len("events="):]
    codes: set[int] = set()
    for item in body.split(","):
        low_text, dash, high_text = item.strip().partition("-")
        low = _event_code(low_text, text)
        high = _event_code(high_text, text) if dash else low
        if high < low:
            raise ValueError(f"event range {item.strip()!r} runs backwards in {text!r}")
        codes.update(range(low, high + 1))
    return frozenset(codes)


def _event_code(token: str, text: str) -> int:
    token = token.strip()
    if not token.isdigit() or int(token) > MAX_EVENT_CODE:
        raise ValueError(f"bad event code {token!r} in events list {text!r}")
    return int(token)


def event_name(code: int) -> str:
    if code < len(_DIGITS):
        return _DIGITS[code]
    return "flash" if code == FLASH_EVENT else f"event-{code}"


class _Tone:
    __slots__ = ("code", "start_ts", "seg_ts", "seg_duration", "prior_duration", "volume",
                 "last_update_s", "reported")

    def __init__(self, code: int, rtp_ts: int, duration: int, volume: int, now: float) -> None:
        self.code = code
        self.start_ts = rtp_ts
        self.seg_ts = rtp_ts
        self.seg_duration = duration
        self.prior_duration = 0  # summed length of the finished segments of a long event
        self.volume = volume
        self.last_update_s = now
        self.reported = False


class DtmfDecoder:
    def __init__(self, clock_rate_hz: int = 8000, *, end_timeout_s: float = 1.0,
                 events: frozenset[int] | None = None) -> None:
        if clock_rate_hz <= 0 or end_timeout_s <= 0:
            raise ValueError("clock_rate_hz and end_timeout_s must be positive")
        self.clock_rate_hz = clock_rate_hz
        self.events = events  # negotiated event codes; None: any
        self.rejected = 0  # packets dropped: event outside the negotiated range
        self.end_timeout_s = end_timeout_s
        self._segment_slack = clock_rate_hz  # a long event's segment may lose ~1 s of updates
        self._tone: _Tone | None = None

    def push(self, payload: bytes, rtp_ts: int, marker: bool, arrival_s: float) -> list[DtmfEvent]:
        if len(payload) < EVENT_BLOCK_BYTES:
            raise DtmfPayloadError(
                f"telephone-event payload needs {EVENT_BLOCK_BYTES} bytes, got {len(payload)}")
        code, flags = payload[0], payload[1]
        if self.events is not None and code not in self.events:
            self.rejected += 1
            return []
        end, volume = bool(flags & 0x80), flags & 0x3F
        duration = int.from_bytes(payload[2:4], "big")
        rtp_ts &= 0xFFFFFFFF
        out: list[DtmfEvent] = []
        tone = self._tone
        if tone is not None:
            delta = signed_ts_delta(rtp_ts, tone.seg_ts)
            if delta < 0 or (delta == 0 and tone.reported):
                return out  # stale packet of an older event, or a repeated end packet
            if delta == 0 or self._continues(tone, code, marker, delta):
                if delta:
                    tone.prior_duration += delta
                    tone.seg_ts, tone.seg_duration = rtp_ts, duration
                tone.seg_duration = max(tone.seg_duration, duration)
                tone.volume, tone.last_update_s = volume, arrival_s
                if end:
                    out.append(self._report(tone, end_seen=True))
                return out
            if not tone.reported:
                out.append(self._report(tone, end_seen=False))
        tone = self._tone = _Tone(code, rtp_ts, duration, volume, arrival_s)
        if end:
            out.append(self._report(tone, end_seen=True))
        return out

    def poll(self, now: float) -> list[DtmfEvent]:
        tone = self._tone
        if tone is None or tone.reported or now - tone.last_update_s < self.end_timeout_s:
            return []
        return [self._report(tone, end_seen=False)]

    def _continues(self, tone: _Tone, code: int, marker: bool, delta: int) -> bool:
        """Is a packet with a new timestamp the next segment of a long event?"""
        return (not tone.reported and not marker and code == tone.code
                and tone.seg_duration + self._segment_slack >= MAX_DURATION
                and tone.seg_duration <= delta <= MAX_DURATION)

    def _report(self, tone: _Tone, *, end_seen: bool) -> DtmfEvent:
        tone.reported = True
        samples = tone.prior_duration + tone.seg_duration
        return DtmfEvent(
            digit=event_name(tone.code),
            duration_ms=round(samples * 1000 / self.clock_rate_hz),
            volume_db=-tone.volume,
            rtp_ts=tone.start_ts,
            end_seen=end_seen,
        )
