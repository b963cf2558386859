"""Issue 13 items 7, 9, 11, 12, 13 on the pure receive pipeline (gateway.media.leg) and the RTP
timeout (gateway.media.timeout): packets in, audio/counters out, time as a parameter."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gateway.media.dtmf import DtmfEvent
from gateway.media.leg import InboundLeg, LegSettings
from gateway.media.timeout import RtpTimeout

SETTINGS = LegSettings("PCMU", 0, 101, 20, 60, False, 16000, cn_payload_type=13,
                       dtmf_events=frozenset(range(16)), max_fill_s=5.0)
SPEECH_BYTE = 0x20          # a loud mu-law sample value


@dataclass(frozen=True)
class Pkt:
    payload_type: int
    sequence_number: int
    timestamp: int
    payload: bytes
    marker: bool = False
    ssrc: int = 0x1234


class Sink:
    def __init__(self) -> None:
        self.chunks: list[tuple[int, npt.NDArray[np.int16]]] = []

    def audio(self, position: int, pcm8k: npt.NDArray[np.int16],
              pcm_model: npt.NDArray[np.float32], now: float) -> None:
        self.chunks.append((position, pcm8k))

    def end(self) -> None:
        return None

    @property
    def samples(self) -> int:
        return sum(len(c) for _p, c in self.chunks)

    def loud_samples(self) -> int:
        return sum(int(np.count_nonzero(np.abs(c) > 1000)) for _p, c in self.chunks)


def make(settings: LegSettings = SETTINGS) -> tuple[InboundLeg, Sink, list[DtmfEvent]]:
    sink, digits = Sink(), []
    return InboundLeg(settings, sink, digits.append), sink, digits


def voice(n: int, *, seq0: int = 1000, ts0: int = 8000, size: int = 160) -> list[Pkt]:
    return [Pkt(0, seq0 + i, ts0 + i * size, bytes([SPEECH_BYTE]) * size) for i in range(n)]


def send(leg: InboundLeg, packets: list[Any], t0: float = 0.0, step_s: float = 0.02) -> float:
    t = t0
    for p in packets:
        leg.on_packet(p, t)
        t += step_s
    return t


# ----------------------------------------------------------------- item 9: payload size


def test_oversized_payload_is_dropped_and_counted_not_decoded() -> None:
    """65 kB of 'PCMU' from the latched source was minutes of noise; now it is a drop."""
    leg, sink, _ = make()
    stream = voice(20)
    stream.insert(10, Pkt(0, 5000, 9000, b"\x00" * 65000))
    stream[15] = replace(stream[15], payload=b"\x00" * 961)        # just over 120 ms
    send(leg, stream)
    leg.close()
    assert leg.drop_counts()["oversized"] == 2
    assert sink.samples == 20 * 160       # slot 15 concealed, nothing of the 65 kB packet
    assert leg.stats()["audio_s"] == pytest.approx(20 * 0.02)


@pytest.mark.parametrize(("ptime_ms", "limit"), [(10, 960), (20, 960), (30, 960), (60, 1920)])
def test_payload_limit_follows_the_negotiated_ptime(ptime_ms: int, limit: int) -> None:
    settings = replace(SETTINGS, ptime_ms=ptime_ms)
    assert settings.max_payload_bytes == limit
    leg, sink, _ = make(settings)
    send(leg, [Pkt(0, 1, 160, b"\xff" * limit), Pkt(0, 2, 160 + limit, b"\xff" * (limit + 1))])
    assert leg.drop_counts() == {"oversized": 1} and sink.samples == limit


def test_a_payload_type_that_was_not_negotiated_is_dropped() -> None:
    leg, sink, _ = make()
    send(leg, voice(3) + [Pkt(8, 1003, 8000 + 480, b"\xd5" * 160)])
    assert leg.drop_counts() == {"payload_type": 1} and sink.samples == 3 * 160


# ----------------------------------------------------------------- item 11: DTMF range


def test_dtmf_events_outside_the_answered_list_are_dropped() -> None:
    leg, _sink, digits = make()
    packets = []
    for n, (code, ts) in enumerate(((159, 100), (16, 900), (4, 1800))):
        end = bytes([code, 0x80 | 10]) + (800).to_bytes(2, "big")
        packets += [Pkt(101, 10 + 4 * n + k, ts, end, marker=k == 0) for k in range(3)]
    send(leg, packets)
    leg.close()
    assert [d.digit for d in digits] == ["4"]
    assert leg.drop_counts() == {"dtmf_event": 6}


# ----------------------------------------------------------------- item 13: time keeps running


def test_silence_is_fed_by_the_clock_when_rtp_stops() -> None:
    leg, sink, _ = make()
    t = send(leg, voice(50))                       # 1 s of speech, last packet at 0.98 s
    loud = sink.samples
    for k in range(1, 16):                         # 1.5 s of media ticks, nothing arrives
        leg.tick(t + k * 0.1)
    filled = sink.samples - loud
    assert 1.2 * 8000 <= filled <= 1.5 * 8000, filled
    assert sink.loud_samples() == loud             # silence, not repeated speech
    stats = leg.stats()
    assert stats["concealed_ms"] == 0 and stats["filled_ms"] == filled // 8
    positions = [p for p, _c in sink.chunks]
    assert positions == sorted(positions)


def test_clock_fill_is_bounded_by_max_fill_s() -> None:
    leg, sink, _ = make(replace(SETTINGS, max_fill_s=1.0))
    t = send(leg, voice(5))
    for k in range(1, 60):
        leg.tick(t + k * 0.1)
    assert sink.samples - 5 * 160 <= 8000


def test_no_fill_inside_the_jitter_grace_or_before_any_packet() -> None:
    leg, sink, _ = make()
    leg.tick(5.0)
    assert sink.samples == 0
    t = send(leg, voice(5))
    leg.tick(t - 0.02 + 0.29)                      # 290 ms idle: a network stall, not a stop
    assert sink.samples == 5 * 160
    leg.tick(t - 0.02 + 0.31)
    assert sink.samples == 5 * 160 + (310 - 20) * 8


def test_resumed_stream_after_a_fill_stays_on_the_sender_timeline() -> None:
    """A 2 s pause: clock fill, then the sender's timestamps; total time = sender time."""
    leg, sink, _ = make()
    t = send(leg, voice(10))
    for k in range(1, 20):
        leg.tick(t + k * 0.1)
    send(leg, voice(10, seq0=1010, ts0=8000 + 10 * 160 + 16000), t0=t + 2.0)
    leg.close()
    assert sink.samples == 20 * 160 + 16000
    assert leg.jitter.stats.realigned == 0


def test_comfort_noise_is_silence_and_keeps_the_timeline() -> None:
    leg, sink, _ = make()
    t = send(leg, voice(10))
    cn = Pkt(13, 1010, 8000 + 10 * 160, b"\x40")             # noise level only
    leg.on_packet(cn, t)
    resumed = voice(5, seq0=1011, ts0=8000 + 10 * 160 + 4000)   # 0.5 s later
    send(leg, resumed, t0=t + 0.5)
    leg.close()
    assert sink.samples == 15 * 160 + 4000
    assert sink.loud_samples() == 15 * 160
    assert leg.jitter.stats.lost == 0 and leg.drop_counts() == {}


# ----------------------------------------------------------------- item 12: every reason counted


def test_drop_counts_cover_jitter_and_stray_reasons() -> None:
    leg, _sink, _ = make()
    stream = voice(30)
    stream.insert(12, stream[5])                                   # late duplicate of a played
    stream.insert(20, Pkt(0, 40000, 10, b"\xff" * 160, ssrc=0xBAD))  # stray SSRC
    stream.insert(25, Pkt(0, 1000 - 9000 & 0xFFFF, 8000, b"\xff" * 160))   # stray old seq
    send(leg, stream)
    leg.close()
    assert leg.drop_counts() == {"duplicate": 1, "ssrc": 1, "sequence": 1}
    assert leg.jitter.stats.restarts == 0
    assert leg.ssrc == 0x1234


# ----------------------------------------------------------------- item 7: timeout once


def test_rtp_timeout_is_reported_once_per_silence() -> None:
    timeout = RtpTimeout(0.0)
    reasons = [timeout.check(0.1 * k, 1.0) for k in range(1, 60)]   # a BYE being retried
    assert [r for r in reasons if r] == ["rtp timeout (1 s without packets)"]
    timeout.activity(6.0)                                            # packets came back
    assert timeout.check(6.5, 1.0) is None
    assert timeout.check(7.5, 1.0) is not None and timeout.check(7.6, 1.0) is None
