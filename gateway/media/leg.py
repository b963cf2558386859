"""One inbound leg's receive pipeline (no I/O): RTP packet -> stats -> jitter buffer ->
G.711 decode or concealment -> 8 kHz PCM (recording) -> resampled PCM for ASR.

The socket shell (:mod:`gateway.media.endpoint`) calls :meth:`InboundLeg.on_packet`;
a shared media tick calls :meth:`InboundLeg.tick`; :meth:`InboundLeg.close` flushes.

Checks against what was negotiated (each drop counted by reason in :attr:`InboundLeg.dropped`):
an audio payload longer than ``MAX_PACKET_PTIMES`` x ptime (at least ``MIN_MAX_PACKET_MS``) of
the codec is ``oversized``; a payload type other than the codec, telephone-event or comfort
noise is ``payload_type``; a telephone event outside the answered events list is ``dtmf_event``.
RFC 3389 comfort noise (``CN/8000``) is silence: it takes its sequence slot with no samples and
its timestamp gap to the next packet comes out as silence.

Time keeps running when the sender stops (silence suppression, a dead source): once nothing has
arrived for ``FILL_AFTER_MS`` (or the jitter depth plus two ptimes, if longer),
:meth:`InboundLeg.tick` feeds silence by the clock up to now, at most ``max_fill_s`` per pause,
so that ASR endpointing fires. The wait does not delay endpointing (the fill catches up at once
and endpointing needs more silence than that), but a shorter network stall never turns into
inserted silence.

Layer: pure core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from gateway.media.dtmf import DtmfDecoder, DtmfEvent
from gateway.media.g711 import decoder_for
from gateway.media.jitter import Frame, JitterBuffer
from gateway.media.resample import StreamResampler
from gateway.media.rtpstats import RtpReceiveStats, signed_ts_delta

CLOCK_RATE_HZ = 8000
PLC_ATTENUATION = 0.5       # each concealed frame repeats the last one at half the level
PLC_MAX_REPEATS = 3         # then silence
MAX_PACKET_PTIMES = 4       # an audio payload may carry up to this many ptimes ...
MIN_MAX_PACKET_MS = 120     # ... and never less than this much audio
SAMPLES_PER_MS = CLOCK_RATE_HZ // 1000
FILL_AFTER_MS = 300         # no packet for this long: the sender has stopped, time goes on


class PacketView(Protocol):
    """The RTP fields the pipeline reads (any packet class that has them)."""

    @property
    def payload_type(self) -> int: ...

    @property
    def marker(self) -> bool | int: ...

    @property
    def sequence_number(self) -> int: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def ssrc(self) -> int: ...

    @property
    def payload(self) -> bytes: ...


class AudioSink(Protocol):
    """Receives a leg's audio in order; ``position`` counts samples at 8 kHz from leg start,
    ``now`` is the time of the packet or tick that released it (the sink reads no clock)."""

    def audio(self, position: int, pcm8k: npt.NDArray[np.int16],
              pcm_model: npt.NDArray[np.float32], now: float) -> None: ...

    def end(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LegSettings:
    encoding: str
    payload_type: int
    dtmf_payload_type: int | None
    ptime_ms: int
    jitter_depth_ms: int
    jitter_adaptive: bool
    model_rate_hz: int
    cn_payload_type: int | None = None
    dtmf_events: frozenset[int] | None = None   # None: any event code
    max_fill_s: float = 30.0                     # silence fed by the clock per pause, at most
    resampler: str = "lowdelay"                  # StreamResampler method (soxr where the
                                                 # ratio is not integer up-sampling)

    @property
    def max_payload_bytes(self) -> int:
        """G.711: one byte per sample."""
        return max(MAX_PACKET_PTIMES * self.ptime_ms, MIN_MAX_PACKET_MS) * SAMPLES_PER_MS


class InboundLeg:
    def __init__(self, settings: LegSettings, sink: AudioSink,
                 on_dtmf: Callable[[DtmfEvent], None]) -> None:
        self.settings = settings
        self._sink = sink
        self._on_dtmf = on_dtmf
        self._decode = decoder_for(settings.encoding)
        self.rtp_stats = RtpReceiveStats(CLOCK_RATE_HZ)
        self.jitter = JitterBuffer(clock_rate_hz=CLOCK_RATE_HZ, ptime_ms=settings.ptime_ms,
                                   depth_ms=settings.jitter_depth_ms,
                                   adaptive=settings.jitter_adaptive)
        self._dtmf = DtmfDecoder(CLOCK_RATE_HZ, events=settings.dtmf_events)
        self._resampler = StreamResampler(CLOCK_RATE_HZ, settings.model_rate_hz,
                                          method=settings.resampler)
        self._last: npt.NDArray[np.int16] | None = None
        self._repeats = 0
        self.position = 0               # samples delivered so far (8 kHz)
        self._first_ts: int | None = None
        self._ts_anchor: tuple[int, int] | None = None  # (sender's RTP ts, position) of a packet
        self.concealed_samples = 0
        self.dtmf_events = 0
        self.closed = False
        self.dropped: dict[str, int] = {}   # reason -> packets dropped by this pipeline
        self._last_rx: float | None = None  # arrival of the last packet that was played/held
        self._filled = 0                    # samples fed by the clock since then
        self._now = 0.0                     # the latest time a packet or tick brought

    @property
    def ssrc(self) -> int | None:
        """The SSRC of the stream being played."""
        return self.jitter.ssrc

    def on_packet(self, packet: PacketView, now: float) -> None:
        self._now = now
        pt = packet.payload_type
        if pt == self.settings.dtmf_payload_type:
            self._dtmf_packet(packet, now)
            return
        payload = packet.payload
        if pt == self.settings.cn_payload_type:
            payload = b""                   # comfort noise: silence, no samples of its own
        elif pt != self.settings.payload_type:
            self._drop("payload_type")
            return
        elif len(payload) > self.settings.max_payload_bytes:
            self._drop("oversized")
            return
        frames = self.jitter.push(packet.sequence_number, packet.timestamp, bool(packet.marker),
                                  payload, packet.ssrc, now)
        if packet.ssrc == self.jitter.ssrc:
            self.rtp_stats.update(packet.sequence_number, packet.timestamp, now)
        if frames or self.jitter.held:      # part of the stream (not late, not stray)
            self._last_rx, self._filled = now, 0
        self._deliver(frames, now)
        self._anchor(packet, frames)

    def _anchor(self, packet: PacketView, frames: list[Frame]) -> None:
        """The packet just pushed was played at once: its timestamp pins the sender's clock
        to this leg's positions (what :meth:`position_of` maps through)."""
        seq = packet.sequence_number & 0xFFFF
        for frame in frames:
            if frame.seq == seq and frame.payload is not None and self._first_ts is not None:
                self._ts_anchor = (packet.timestamp & 0xFFFFFFFF, frame.rtp_ts - self._first_ts)

    def position_of(self, rtp_ts: int) -> int | None:
        """Where the sender's RTP timestamp ``rtp_ts`` (a telephone event's: same source, same
        clock as its audio) falls among this leg's audio positions (8 kHz samples from leg
        start, as the sink's ``position``), through the latest audio packet that was played as
        it arrived; None before one was."""
        if self._ts_anchor is None:
            return None
        anchor_ts, anchor_position = self._ts_anchor
        return anchor_position + signed_ts_delta(rtp_ts & 0xFFFFFFFF, anchor_ts)

    def _drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def drop_counts(self) -> dict[str, int]:
        """Every packet this pipeline dropped, by reason (jitter buffer and DTMF included)."""
        jb = self.jitter.stats
        counts = {**self.dropped, "late": jb.late, "duplicate": jb.duplicated,
                  "ssrc": jb.stray_ssrc, "sequence": jb.stray_sequence,
                  "dtmf_event": self._dtmf.rejected}
        return {reason: n for reason, n in counts.items() if n}

    def _dtmf_packet(self, packet: PacketView, now: float) -> None:
        try:
            events = self._dtmf.push(packet.payload, packet.timestamp, bool(packet.marker), now)
        except ValueError:
            self._drop("malformed")
            return
        for event in events:
            self.dtmf_events += 1
            self._on_dtmf(event)

    def tick(self, now: float) -> None:
        self._now = now
        self._deliver(self.jitter.poll(now), now)
        self._fill_by_clock(now)
        for event in self._dtmf.poll(now):
            self.dtmf_events += 1
            self._on_dtmf(event)

    def _fill_by_clock(self, now: float) -> None:
        """Nothing arrived for a while and nothing is held: silence up to now (less one ptime,
        so a packet that is merely late finds its place), bounded by ``max_fill_s``."""
        if self._last_rx is None or self.jitter.held:
            return
        idle_s = now - self._last_rx
        grace_s = max(FILL_AFTER_MS, self.jitter.depth_ms + 2 * self.settings.ptime_ms) / 1000.0
        if idle_s <= grace_s:
            return
        target = round((min(idle_s, self.settings.max_fill_s) * 1000 - self.settings.ptime_ms)
                       * SAMPLES_PER_MS)
        if target > self._filled:
            filled = self.jitter.fill_silence(target - self._filled)
            self._deliver(filled, now)
            self.concealed_samples -= sum(f.samples for f in filled)  # filled_ms, not concealed
            self._filled = target

    def _deliver(self, frames: list[Frame], now: float) -> None:
        for frame in frames:
            pcm = self._pcm_for(frame)
            if self._first_ts is None:
                self._first_ts = frame.rtp_ts
            position = frame.rtp_ts - self._first_ts
            self._sink.audio(position, pcm, self._resampler.process(pcm), now)
            self.position = position + len(pcm)

    def _pcm_for(self, frame: Frame) -> npt.NDArray[np.int16]:
        if frame.payload == b"":            # comfort noise: its gap comes as silence frames
            return np.zeros(0, dtype=np.int16)
        if frame.payload is not None:
            pcm = self._decode(frame.payload)
            self._last, self._repeats = pcm, 0
            return pcm
        self.concealed_samples += frame.samples
        last = self._last
        if (last is None or len(last) != frame.samples or self._repeats >= PLC_MAX_REPEATS
                or frame.silence):
            return np.zeros(frame.samples, dtype=np.int16)
        self._repeats += 1
        faded = (last.astype(np.float32) * PLC_ATTENUATION ** self._repeats).astype(np.int16)
        return faded

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._deliver(self.jitter.flush(), self._now)        # at the last packet or tick
        for event in self._dtmf.poll(float("inf")):
            self._on_dtmf(event)
        tail = self._resampler.flush()
        self._resampler.close()          # native soxr state freed when the call ends
        if len(tail):
            self._sink.audio(self.position, np.zeros(0, dtype=np.int16), tail, self._now)
        self._sink.end()

    def discard(self) -> None:
        """Never used (its socket could not be bound): free the resampler, deliver nothing."""
        self.closed = True
        self._resampler.close()

    def stats(self) -> dict[str, Any]:
        return {"codec": self.settings.encoding, "received": self.rtp_stats.received,
                "expected": self.rtp_stats.expected, "lost": max(0, self.rtp_stats.lost),
                "jitter_ms": round(self.rtp_stats.jitter_s * 1000, 2),
                "jitter_buffer": self.jitter.stats.to_dict(),
                "concealed_ms": self.concealed_samples * 1000 // CLOCK_RATE_HZ,
                "dtmf_events": self.dtmf_events, "audio_s": self.position / CLOCK_RATE_HZ,
                "filled_ms": self.jitter.stats.filled_samples * 1000 // CLOCK_RATE_HZ,
                "dropped": self.drop_counts()}
