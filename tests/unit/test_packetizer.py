"""Tests for gateway.media.packetizer: RTP framing, wrap-around, markers, barge-in, pacing.

Packets are parsed back with aiortc's ``RtpPacket.parse``; payloads are checked against the
stdlib ``audioop`` G.711 coder, not against the module's own encoder.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pytest
from aiortc.rtp import RtpPacket

from gateway.media.g711 import UnsupportedEncodingError
from gateway.media.packetizer import (
    OutboundPacket,
    Pacer,
    Packetizer,
    PacketizerError,
    pacing_deadline,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SSRC = 0x1234ABCD
I16 = npt.NDArray[np.int16]


def make(
    encoding: str = "PCMU", /, *, seq: int = 100, timestamp: int = 5000, **kw: int
) -> Packetizer:
    pt = 0 if encoding.upper() == "PCMU" else 8
    return Packetizer(
        encoding=encoding, payload_type=pt, ssrc=SSRC, seq=seq, timestamp=timestamp, **kw
    )


def speech(samples: int, seed: int = 3) -> I16:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(samples) * 6000).clip(-32768, 32767).astype(np.int16)


def drain(p: Packetizer) -> list[OutboundPacket]:
    out = []
    while (packet := p.pop()) is not None:
        out.append(packet)
    return out


def reference_round_trip(encoding: str, pcm: I16) -> I16:
    if encoding == "PCMU":
        data = audioop.ulaw2lin(audioop.lin2ulaw(pcm.tobytes(), 2), 2)
    else:
        data = audioop.alaw2lin(audioop.lin2alaw(pcm.tobytes(), 2), 2)
    return np.frombuffer(data, dtype=np.int16)


def decode_payload(encoding: str, payload: bytes) -> I16:
    conv = audioop.ulaw2lin if encoding == "PCMU" else audioop.alaw2lin
    return np.frombuffer(conv(payload, 2), dtype=np.int16)


@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
@pytest.mark.parametrize(("ptime_ms", "frame"), [(10, 80), (20, 160), (30, 240)])
def test_frames_parse_back_to_the_input(encoding: str, ptime_ms: int, frame: int) -> None:
    p = make(encoding, ptime_ms=ptime_ms)
    pcm = speech(frame * 7 + frame // 2)
    for piece in np.array_split(pcm, 5):  # pushes that do not line up with frames
        p.push(piece)
    packets = drain(p)
    assert len(packets) == 7 and p.buffered_samples == frame // 2
    payloads = b""
    for i, packet in enumerate(packets):
        parsed = RtpPacket.parse(packet.data)
        assert parsed.version == 2
        assert parsed.payload_type == (0 if encoding == "PCMU" else 8)
        assert parsed.ssrc == SSRC
        assert (parsed.sequence_number, packet.seq) == (100 + i, 100 + i)
        assert (parsed.timestamp, packet.timestamp) == (5000 + i * frame, 5000 + i * frame)
        assert bool(parsed.marker) is packet.marker is (i == 0)
        assert packet.samples == frame == len(parsed.payload)
        payloads += parsed.payload
    expected = reference_round_trip(encoding, pcm[: 7 * frame])
    np.testing.assert_array_equal(decode_payload(encoding, payloads), expected)


def test_pop_needs_a_whole_frame() -> None:
    p = make()
    assert p.pop() is None
    p.push(speech(159))
    assert p.pop() is None and p.buffered_samples == 159
    p.push(speech(1))
    assert p.pop() is not None and p.buffered_samples == 0


def test_sequence_and_timestamp_wrap() -> None:
    p = make(seq=65534, timestamp=2**32 - 160)
    p.push(speech(160 * 4))
    parsed = [RtpPacket.parse(pk.data) for pk in drain(p)]
    assert [r.sequence_number for r in parsed] == [65534, 65535, 0, 1]
    assert [r.timestamp for r in parsed] == [2**32 - 160, 0, 160, 320]
    assert (p.seq, p.timestamp) == (2, 480)


@pytest.mark.parametrize(("encoding", "silence"), [("PCMU", 0xFF), ("pcma", 0xD5)])
def test_finish_pads_with_encoded_silence(encoding: str, silence: int) -> None:
    p = make(encoding)
    pcm = speech(160 + 50)
    p.push(pcm)
    first = p.pop()
    last = p.finish()
    assert first is not None and last is not None
    parsed = RtpPacket.parse(last.data)
    assert len(parsed.payload) == last.samples == 160
    assert parsed.payload[50:] == bytes([silence]) * 110
    tail = decode_payload(encoding.upper(), parsed.payload[:50])
    np.testing.assert_array_equal(tail, reference_round_trip(encoding.upper(), pcm[160:]))
    assert (last.seq, last.timestamp, last.marker) == (101, 5160, False)
    assert p.buffered_samples == 0 and p.finish() is None
    assert (p.seq, p.timestamp) == (102, 5320)


def test_next_talkspurt_after_finish_is_marked() -> None:
    p = make()
    p.push(speech(100))
    assert p.finish() is not None
    p.push(speech(320))
    marks = [pk.marker for pk in drain(p)]
    assert marks == [True, False]


def test_interrupt_drops_buffer_and_marks_next_packet() -> None:
    p = make()
    p.push(speech(160 * 3 + 20))
    sent = p.pop()
    assert sent is not None and sent.marker
    assert p.interrupt() == 160 * 2 + 20
    assert p.buffered_samples == 0 and p.pop() is None
    assert (p.seq, p.timestamp) == (101, 5160)  # interrupt alone does not move time
    assert p.interrupt() == 0
    p.skip(800)  # the caller reports the silence that elapsed
    p.push(speech(320))
    after = drain(p)
    assert [(pk.seq, pk.timestamp, pk.marker) for pk in after] == [
        (101, 5960, True),
        (102, 6120, False),
    ]


def test_interrupt_alone_marks_next_packet() -> None:
    p = make()
    p.push(speech(320))
    assert p.pop() is not None
    p.interrupt()
    p.push(speech(160))
    packet = p.pop()
    assert packet is not None and packet.marker
    assert (packet.seq, packet.timestamp) == (101, 5160)


def test_skip_advances_timestamp_with_wrap_and_marks() -> None:
    p = make(timestamp=2**32 - 100)
    p.skip(0)
    p.push(speech(160))
    first = p.pop()
    assert first is not None and first.marker
    p.skip(0)  # no pause: same talkspurt
    p.push(speech(160))
    second = p.pop()
    assert second is not None and not second.marker and second.timestamp == 60
    p.skip(1000)
    p.push(speech(160))
    third = p.pop()
    assert third is not None and third.marker
    assert (third.seq, third.timestamp) == (102, 1220)
    with pytest.raises(PacketizerError, match="negative"):
        p.skip(-1)


def test_properties() -> None:
    p = make("PCMA", seq=7, timestamp=9, ptime_ms=30)
    assert (p.ssrc, p.seq, p.timestamp, p.frame_samples, p.buffered_samples) == (SSRC, 7, 9, 240, 0)


@pytest.mark.parametrize(
    "kw",
    [
        {"seq": 65536},
        {"seq": -1},
        {"timestamp": 2**32},
        {"ptime_ms": 0},
        {"ptime_ms": 20, "clock_rate_hz": 8001},
    ],
)
def test_bad_settings_are_rejected(kw: dict[str, int]) -> None:
    with pytest.raises(PacketizerError):
        make(**kw)
    assert issubclass(PacketizerError, ValueError)


def test_bad_payload_type_ssrc_and_encoding_are_rejected() -> None:
    with pytest.raises(PacketizerError, match="payload_type"):
        Packetizer(encoding="PCMU", payload_type=128, ssrc=1, seq=0, timestamp=0)
    with pytest.raises(PacketizerError, match="ssrc"):
        Packetizer(encoding="PCMU", payload_type=0, ssrc=2**32, seq=0, timestamp=0)
    with pytest.raises(UnsupportedEncodingError):
        Packetizer(encoding="G722", payload_type=9, ssrc=1, seq=0, timestamp=0)


def test_push_rejects_float_samples() -> None:
    with pytest.raises(ValueError, match="int16"):
        make().push(np.zeros(160, dtype=np.float32))


# --- pacing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("start_s", [0.0, 12345.678, 987654.321012])
def test_pacing_deadlines_do_not_drift_over_ten_minutes(start_s: float) -> None:
    for index in range(30001):
        deadline = pacing_deadline(start_s, index, 20)
        exact = Fraction(start_s) + Fraction(index * 20, 1000)
        assert abs(Fraction(deadline) - exact) <= Fraction(math.ulp(deadline))
    assert pacing_deadline(start_s, 30000, 20) == start_s + 600.0


def test_pacer_sends_one_packet_per_deadline_for_ten_minutes() -> None:
    start_s = 5000.25
    pacer = Pacer(start_s, 20)
    for index in range(30000):
        now = pacing_deadline(start_s, index, 20)
        assert pacer.next_deadline() == now
        assert pacer.due(now) == 1
        pacer.sent()
        assert pacer.due(now) == 0
    assert pacer.packets_sent == 30000
    assert pacer.next_deadline() == start_s + 600.0


def test_pacer_nothing_due_before_start_or_between_deadlines() -> None:
    pacer = Pacer(100.0, 20)
    assert pacer.due(99.999) == 0
    assert pacer.due(100.0) == 1
    pacer.sent()
    assert pacer.due(100.019) == 0
    assert pacer.due(100.02) == 1


def test_pacer_catches_up_a_short_stall() -> None:
    pacer = Pacer(100.0, 20)
    pacer.sent()
    assert pacer.due(100.065) == 3  # deadlines 100.02, 100.04, 100.06
    pacer.sent(3)
    assert pacer.next_deadline() == pacing_deadline(100.0, 4, 20)  # schedule kept
    assert pacer.due(100.079) == 0


def test_pacer_caps_burst_and_reanchors_after_a_long_stall() -> None:
    pacer = Pacer(100.0, 20)
    pacer.sent()
    now = 101.0  # 50 deadlines went by
    assert pacer.due(now) == 3
    assert pacer.due(now) == 3  # asking again changes nothing
    pacer.sent(3)
    assert pacer.due(now) == 0  # no blast of the other 47
    assert pacer.next_deadline() == pytest.approx(now + 0.02, abs=1e-9)
    assert pacer.due(now + 0.0199) == 0
    assert pacer.due(now + 0.02) == 1


def test_pacer_custom_burst_and_reset() -> None:
    pacer = Pacer(0.0, 10, max_burst=1)
    assert pacer.due(5.0) == 1
    pacer.sent()
    assert pacer.next_deadline() == pytest.approx(5.01)
    pacer.reset(50.0)
    assert (pacer.packets_sent, pacer.next_deadline()) == (0, 50.0)
    assert pacer.due(50.0) == 1
    with pytest.raises(PacketizerError):
        Pacer(0.0, 0)
    with pytest.raises(PacketizerError):
        Pacer(0.0, 20, max_burst=0)
    with pytest.raises(PacketizerError):
        pacer.sent(-1)
