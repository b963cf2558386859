"""One inbound leg's receive pipeline (no I/O): RTP packet -> stats -> jitter buffer ->
G.711 decode or concealment -> 8 kHz PCM (recording) -> resampled PCM for ASR.

The socket shell (:mod:`gateway.media.endpoint`) calls :meth:`InboundLeg.on_packet`;
a shared media tick calls :meth:`InboundLeg.tick`; :meth:`InboundLeg.close` flushes.
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
from gateway.media.rtp import RtpPacket
from gateway.media.rtpstats import RtpReceiveStats

CLOCK_RATE_HZ = 8000
PLC_ATTENUATION = 0.5       # each concealed frame repeats the last one at half the level
PLC_MAX_REPEATS = 3         # then silence


class AudioSink(Protocol):
    """Receives a leg's audio in order; ``position`` counts samples at 8 kHz from leg start."""

    def audio(self, position: int, pcm8k: npt.NDArray[np.int16],
              pcm_model: npt.NDArray[np.float32]) -> None: ...

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
        self._dtmf = DtmfDecoder(CLOCK_RATE_HZ)
        self._resampler = StreamResampler(CLOCK_RATE_HZ, settings.model_rate_hz)
        self._last: npt.NDArray[np.int16] | None = None
        self._repeats = 0
        self.position = 0               # samples delivered so far (8 kHz)
        self._first_ts: int | None = None
        self.concealed_samples = 0
        self.dtmf_events = 0
        self.closed = False

    def on_packet(self, packet: RtpPacket, now: float) -> None:
        if packet.payload_type == self.settings.dtmf_payload_type:
            self._dtmf_packet(packet, now)
            return
        self.rtp_stats.update(packet.sequence_number, packet.timestamp, now)
        frames = self.jitter.push(packet.sequence_number, packet.timestamp, bool(packet.marker),
                                  packet.payload, packet.ssrc, now)
        self._deliver(frames)

    def _dtmf_packet(self, packet: RtpPacket, now: float) -> None:
        try:
            events = self._dtmf.push(packet.payload, packet.timestamp, bool(packet.marker), now)
        except ValueError:
            return
        for event in events:
            self.dtmf_events += 1
            self._on_dtmf(event)

    def tick(self, now: float) -> None:
        self._deliver(self.jitter.poll(now))
        for event in self._dtmf.poll(now):
            self.dtmf_events += 1
            self._on_dtmf(event)

    def _deliver(self, frames: list[Frame]) -> None:
        for frame in frames:
            pcm = self._pcm_for(frame)
            if self._first_ts is None:
                self._first_ts = frame.rtp_ts
            position = frame.rtp_ts - self._first_ts
            self._sink.audio(position, pcm, self._resampler.process(pcm))
            self.position = position + len(pcm)

    def _pcm_for(self, frame: Frame) -> npt.NDArray[np.int16]:
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
        self._deliver(self.jitter.flush())
        for event in self._dtmf.poll(float("inf")):
            self._on_dtmf(event)
        tail = self._resampler.flush()
        if len(tail):
            self._sink.audio(self.position, np.zeros(0, dtype=np.int16), tail)
        self._sink.end()

    def stats(self) -> dict[str, Any]:
        return {"codec": self.settings.encoding, "received": self.rtp_stats.received,
                "expected": self.rtp_stats.expected, "lost": max(0, self.rtp_stats.lost),
                "jitter_ms": round(self.rtp_stats.jitter_s * 1000, 2),
                "jitter_buffer": self.jitter.stats.to_dict(),
                "concealed_ms": self.concealed_samples * 1000 // CLOCK_RATE_HZ,
                "dtmf_events": self.dtmf_events, "audio_s": self.position / CLOCK_RATE_HZ}
