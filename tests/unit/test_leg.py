"""The pure receive pipeline (gateway.media.leg) on ordinary streams: packets in, decoded
8 kHz PCM at the right positions and model-rate audio out, loss concealed with a fading
repeat, reordering undone, DTMF reported once, close flushes and ends the sink.
(The issue-13 hardening cases are in test_leg_hardening.py.)"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from gateway.media.dtmf import DtmfEvent
from gateway.media.g711 import decoder_for, encoder_for
from gateway.media.leg import InboundLeg, LegSettings
from tests.unit.test_leg_hardening import Pkt

SETTINGS = LegSettings("PCMU", 0, 101, 20, 60, False, 16000)
FRAME = 160


class Sink:
    def __init__(self) -> None:
        self.pcm: list[tuple[int, npt.NDArray[np.int16]]] = []
        self.model: list[npt.NDArray[np.float32]] = []
        self.times: list[float] = []
        self.ended = 0

    def audio(self, position: int, pcm8k: npt.NDArray[np.int16],
              pcm_model: npt.NDArray[np.float32], now: float) -> None:
        self.pcm.append((position, pcm8k))
        self.model.append(pcm_model)
        self.times.append(now)

    def end(self) -> None:
        self.ended += 1

    def joined(self) -> npt.NDArray[np.int16]:
        return np.concatenate([c for _, c in self.pcm]) if self.pcm else np.zeros(0, np.int16)


def make(settings: LegSettings = SETTINGS) -> tuple[InboundLeg, Sink, list[DtmfEvent]]:
    sink, digits = Sink(), list[DtmfEvent]()
    return InboundLeg(settings, sink, digits.append), sink, digits


def tone_frames(n: int) -> list[bytes]:
    t = np.arange(n * FRAME) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    encode = encoder_for("PCMU")
    return [encode(pcm[i * FRAME:(i + 1) * FRAME]) for i in range(n)]


def packets(payloads: list[bytes], seq0: int = 500, ts0: int = 16000) -> list[Pkt]:
    return [Pkt(0, seq0 + i, ts0 + i * FRAME, p) for i, p in enumerate(payloads)]


def feed(leg: InboundLeg, pkts: list[Pkt], t0: float = 0.0) -> float:
    t = t0
    for p in pkts:
        leg.on_packet(p, t)
        t += 0.02
        leg.tick(t)
    return t


def test_in_order_stream_is_the_g711_decode_at_contiguous_positions() -> None:
    leg, sink, _ = make()
    payloads = tone_frames(20)
    feed(leg, packets(payloads))
    leg.close()
    decode = decoder_for("PCMU")
    expected = np.concatenate([decode(p) for p in payloads])
    assert np.array_equal(sink.joined(), expected)
    positions = [pos for pos, chunk in sink.pcm if len(chunk)]
    assert positions == [i * FRAME for i in range(20)]           # from the first timestamp
    assert leg.position == 20 * FRAME and sink.ended == 1
    stats = leg.stats()
    assert stats["received"] == 20 and stats["lost"] == 0 and stats["concealed_ms"] == 0
    assert stats["audio_s"] == pytest.approx(0.4)


def test_model_audio_is_resampled_to_the_model_rate() -> None:
    leg, sink, _ = make()
    feed(leg, packets(tone_frames(50)))
    leg.close()
    model_samples = sum(len(m) for m in sink.model)
    assert model_samples == pytest.approx(2 * 50 * FRAME, abs=64)  # 8 -> 16 kHz
    assert all(m.dtype == np.float32 for m in sink.model)
    assert max(float(np.max(np.abs(m))) for m in sink.model if len(m)) <= 1.0


@pytest.mark.parametrize("rate_hz", [16000, 48000])
def test_lowdelay_resampler_delivers_model_audio_with_every_frame(rate_hz: int) -> None:
    """The default ``rtp.resampler``: each 20 ms packet releases its model-rate audio at once
    (less the filter's constant ~5 ms, which the close delivers), so ASR never waits for a
    resampler block; with ``soxr`` output comes in blocks and frames release nothing."""
    factor = rate_hz // 8000
    settings = LegSettings("PCMU", 0, 101, 20, 60, False, rate_hz)
    assert settings.resampler == "lowdelay"
    leg, sink, _ = make(settings)
    feed(leg, packets(tone_frames(50)))
    per_frame = [len(m) for m in sink.model[:50]]
    delay = factor * FRAME - per_frame[0]
    assert 0 < delay <= rate_hz * 6 // 1000                      # at most 6 ms held
    assert per_frame[1:] == [factor * FRAME] * 49
    leg.close()
    assert sum(len(m) for m in sink.model) == factor * 50 * FRAME  # exact: the tail flushed
    soxr_leg, soxr_sink, _ = make(LegSettings("PCMU", 0, 101, 20, 60, False, rate_hz,
                                              resampler="soxr"))
    feed(soxr_leg, packets(tone_frames(50)))
    assert 0 in [len(m) for m in soxr_sink.model[:50]]           # blocks: frames with nothing


def test_reordered_packets_come_out_in_sequence_order() -> None:
    leg, sink, _ = make()
    payloads = tone_frames(10)
    pkts = packets(payloads)
    order = [0, 2, 1, 3, 5, 4, 6, 7, 9, 8]
    feed(leg, [pkts[i] for i in order])
    leg.close()
    decode = decoder_for("PCMU")
    assert np.array_equal(sink.joined(), np.concatenate([decode(p) for p in payloads]))
    assert leg.drop_counts() == {}


def test_a_lost_packet_is_concealed_by_a_fading_repeat_and_counted() -> None:
    leg, sink, _ = make()
    payloads = tone_frames(12)
    pkts = packets(payloads)
    feed(leg, pkts[:5] + pkts[6:])                                # packet 5 lost
    leg.close()
    out = sink.joined()
    assert len(out) == 12 * FRAME                                 # the timeline is kept
    decode = decoder_for("PCMU")
    concealed = out[5 * FRAME:6 * FRAME]
    last = decode(payloads[4]).astype(np.float32)
    assert np.allclose(concealed, (last * 0.5).astype(np.int16), atol=1)
    assert leg.stats()["concealed_ms"] == 20 and leg.stats()["lost"] == 1


def test_a_dtmf_digit_is_reported_once_for_its_retransmitted_end_packets() -> None:
    leg, _sink, digits = make()
    t = feed(leg, packets(tone_frames(3)))
    ts = 16000 + 3 * FRAME
    # RFC 4733: event 5, volume 10; two updates, then the end packet sent three times
    bodies = [bytes([5, 10, 0, 160]), bytes([5, 10, 1, 64]),
              *[bytes([5, 0x80 | 10, 1, 224])] * 3]
    for i, body in enumerate(bodies):
        leg.on_packet(Pkt(101, 503 + i, ts, body, marker=i == 0), t)
        t += 0.02
    leg.tick(t + 1.0)
    leg.close()
    assert [d.digit for d in digits] == ["5"]
    assert leg.stats()["dtmf_events"] == 1


def test_close_is_idempotent_and_flushes_what_the_jitter_buffer_held() -> None:
    leg, sink, _ = make()
    for p in packets(tone_frames(2)):
        leg.on_packet(p, 0.0)                                     # no tick: still held
    leg.close()
    leg.close()
    assert len(sink.joined()) == 2 * FRAME and sink.ended == 1


def test_audio_reaches_the_sink_with_the_time_of_the_packet_or_tick_that_released_it() -> None:
    leg, sink, _ = make()
    first, second, third = packets(tone_frames(3))
    leg.on_packet(first, 10.0)                         # in order: out at once
    leg.on_packet(third, 10.04)                        # a gap: held
    assert sink.times == [10.0]
    leg.tick(10.5)                                     # the gap given up: released by the tick
    assert sink.times[1:] and set(sink.times[1:]) == {10.5}
    leg.on_packet(second, 10.6)                        # late now: dropped, nothing delivered
    released = len(sink.times)
    leg.close()                                        # the resampler's tail: the last time
    assert set(sink.times[released:]) <= {10.6}
    assert len(sink.times) > released
