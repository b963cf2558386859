"""Outbound G.711 RTP: cut 8 kHz PCM into ptime frames, and the pacing schedule to send them.

Sans-I/O: :class:`Packetizer` turns PCM into serialized RTP packets (:mod:`gateway.media.rtp`
does the wire format) and :class:`Pacer` tells the asyncio shell when each is due, from a
``now`` it is given. Deadlines are ``start + index * ptime`` computed from integers each time,
so a 10-minute reply does not drift.

Layer: pure core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from gateway.media.g711 import encoder_for, silence_byte_for
from gateway.media.rtp import RtpPacket

__all__ = [
    "MAX_BURST",
    "OutboundPacket",
    "Pacer",
    "Packetizer",
    "PacketizerError",
    "pacing_deadline",
]

SEQ_MODULO: Final = 1 << 16
TIMESTAMP_MODULO: Final = 1 << 32
MAX_BURST: Final = 3


class PacketizerError(ValueError):
    """Bad packetizer or pacer settings, or a bad argument to one of their methods."""


@dataclass(frozen=True, slots=True)
class OutboundPacket:
    data: bytes  # serialized RTP packet
    seq: int
    timestamp: int
    marker: bool
    samples: int  # RTP duration of the payload, in clock-rate samples


def _check_range(name: str, value: int, modulo: int) -> None:
    if not 0 <= value < modulo:
        raise PacketizerError(f"{name} must be in [0, {modulo}), got {value}")


def _frame_samples(ptime_ms: int, clock_rate_hz: int) -> int:
    if ptime_ms <= 0 or clock_rate_hz <= 0 or (ptime_ms * clock_rate_hz) % 1000:
        raise PacketizerError(
            f"ptime {ptime_ms} ms at {clock_rate_hz} Hz is not a whole number of samples"
        )
    return ptime_ms * clock_rate_hz // 1000


class Packetizer:
    """Buffers PCM for one outbound leg and hands out one encoded ptime frame at a time.

    The marker bit is set on the first packet after construction, :meth:`interrupt`,
    :meth:`finish` (the talkspurt ended) or :meth:`skip` (a pause was not sent).
    """

    __slots__ = (
        "_buffer",
        "_encode",
        "_frame_samples",
        "_marker_pending",
        "_payload_type",
        "_seq",
        "_silence",
        "_ssrc",
        "_timestamp",
    )

    def __init__(
        self,
        *,
        encoding: str,
        payload_type: int,
        ptime_ms: int = 20,
        ssrc: int,
        seq: int,
        timestamp: int,
        clock_rate_hz: int = 8000,
    ) -> None:
        _check_range("payload_type", payload_type, 128)
        _check_range("ssrc", ssrc, TIMESTAMP_MODULO)
        _check_range("seq", seq, SEQ_MODULO)
        _check_range("timestamp", timestamp, TIMESTAMP_MODULO)
        self._encode = encoder_for(encoding)
        self._silence = silence_byte_for(encoding)
        self._frame_samples = _frame_samples(ptime_ms, clock_rate_hz)
        self._payload_type = payload_type
        self._ssrc = ssrc
        self._seq = seq
        self._timestamp = timestamp
        self._buffer = bytearray()  # encoded already: G.711 is one byte per sample
        self._marker_pending = True

    @property
    def buffered_samples(self) -> int:
        return len(self._buffer)

    @property
    def frame_samples(self) -> int:
        return self._frame_samples

    @property
    def ssrc(self) -> int:
        return self._ssrc

    @property
    def seq(self) -> int:
        """Sequence number the next packet will carry."""
        return self._seq

    @property
    def timestamp(self) -> int:
        """RTP timestamp the next packet will carry."""
        return self._timestamp

    def push(self, pcm: npt.NDArray[np.int16]) -> None:
        """Queue 8 kHz int16 PCM for sending."""
        self._buffer += self._encode(pcm)

    def pop(self) -> OutboundPacket | None:
        """The next full frame as a packet, or None while less than one frame is buffered."""
        if len(self._buffer) < self._frame_samples:
            return None
        payload = bytes(self._buffer[: self._frame_samples])
        del self._buffer[: self._frame_samples]
        return self._emit(payload)

    def finish(self) -> OutboundPacket | None:
        """The partial frame left, padded with encoded silence; ends the talkspurt."""
        if not self._buffer:
            return None
        pad = self._frame_samples - len(self._buffer)
        payload = bytes(self._buffer) + bytes([self._silence]) * pad
        self._buffer.clear()
        packet = self._emit(payload)
        self._marker_pending = True
        return packet

    def interrupt(self) -> int:
        """Barge-in: drop all buffered samples and return how many; seq and timestamp stay."""
        dropped = len(self._buffer)
        self._buffer.clear()
        self._marker_pending = True
        return dropped

    def skip(self, samples: int) -> None:
        """Advance the RTP timestamp over a pause that is not sent; the next packet is marked."""
        if samples < 0:
            raise PacketizerError(f"cannot skip a negative number of samples: {samples}")
        if samples:
            self._timestamp = (self._timestamp + samples) % TIMESTAMP_MODULO
            self._marker_pending = True

    def _emit(self, payload: bytes) -> OutboundPacket:
        marker = self._marker_pending
        packet = RtpPacket(
            payload_type=self._payload_type,
            marker=marker,
            sequence_number=self._seq,
            timestamp=self._timestamp,
            ssrc=self._ssrc,
            payload=payload,
        )
        out = OutboundPacket(
            data=packet.serialize(),
            seq=self._seq,
            timestamp=self._timestamp,
            marker=marker,
            samples=len(payload),
        )
        self._marker_pending = False
        self._seq = (self._seq + 1) % SEQ_MODULO
        self._timestamp = (self._timestamp + len(payload)) % TIMESTAMP_MODULO
        return out


def pacing_deadline(start_s: float, index: int, ptime_ms: int) -> float:
    """Absolute send time of packet ``index`` (0 is due at ``start_s``), computed without drift."""
    return start_s + (index * ptime_ms) / 1000


class Pacer:
    """Send schedule of one reply: which packets are due at ``now``, with bounded catch-up.

    After a stall, at most ``max_burst`` packets are due at once; if more had fallen due the
    schedule is re-anchored so the last of that burst is due at ``now`` and the rest follow at
    the normal ptime spacing from there.
    """

    __slots__ = ("_anchor_index", "_anchor_s", "_max_burst", "_ptime_ms", "_sent")

    def __init__(self, start_s: float, ptime_ms: int, *, max_burst: int = MAX_BURST) -> None:
        if ptime_ms <= 0:
            raise PacketizerError(f"ptime_ms must be positive, got {ptime_ms}")
        if max_burst < 1:
            raise PacketizerError(f"max_burst must be at least 1, got {max_burst}")
        self._ptime_ms = ptime_ms
        self._max_burst = max_burst
        self._anchor_s = start_s
        self._anchor_index = 0
        self._sent = 0

    @property
    def packets_sent(self) -> int:
        return self._sent

    def _deadline(self, index: int) -> float:
        return pacing_deadline(self._anchor_s, index - self._anchor_index, self._ptime_ms)

    def _last_due_index(self, now: float) -> int:
        """Highest packet index whose deadline is <= now (anchor_index - 1 if none)."""
        guess = self._anchor_index + int((now - self._anchor_s) * 1000 // self._ptime_ms)
        while self._deadline(guess) > now:
            guess -= 1
        while self._deadline(guess + 1) <= now:
            guess += 1
        return guess

    def due(self, now: float) -> int:
        """How many packets should go out at ``now`` (0 .. max_burst); may re-anchor."""
        if now < self._deadline(self._sent):
            return 0
        behind = self._last_due_index(now) - self._sent + 1
        if behind > self._max_burst:
            self._anchor_s = now
            self._anchor_index = self._sent + self._max_burst - 1
            return self._max_burst
        return behind

    def sent(self, n: int = 1) -> None:
        """Record that ``n`` packets went out."""
        if n < 0:
            raise PacketizerError(f"cannot record a negative number of sent packets: {n}")
        self._sent += n

    def next_deadline(self) -> float:
        """When the next unsent packet is due."""
        return self._deadline(self._sent)

    def reset(self, start_s: float) -> None:
        """Start a new schedule: packet 0 due at ``start_s``."""
        self._anchor_s = start_s
        self._anchor_index = 0
        self._sent = 0
