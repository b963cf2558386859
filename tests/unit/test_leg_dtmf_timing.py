"""Where a telephone event falls in a leg's audio (gateway.media.leg ``position_of``): the
event's RTP timestamp mapped through the audio packets played as they arrived, to the same
``position`` the sink was given for the audio of that instant; across the 32-bit wrap, a
reordered stream, a sender's silence and a new stream (SSRC change)."""

from __future__ import annotations

from gateway.media.leg import InboundLeg
from tests.unit.test_leg import FRAME, Sink, feed, make, packets, tone_frames
from tests.unit.test_leg_hardening import Pkt

MASK = 0xFFFFFFFF


def _digit(leg: InboundLeg, ts: int, seq: int, t: float) -> None:
    """Event 5, 800 samples (100 ms), start then end packet, at RTP timestamp ``ts``."""
    leg.on_packet(Pkt(101, seq, ts & MASK, bytes([5, 10, 0, 160]), marker=True), t)
    leg.on_packet(Pkt(101, seq + 1, ts & MASK, bytes([5, 0x80 | 10, 3, 32])), t + 0.1)


def _position_given_for(sink: Sink, index: int) -> int:
    return sink.pcm[index][0]


def test_no_position_before_any_audio_was_played() -> None:
    leg, _sink, digits = make()
    _digit(leg, 16000, 500, 0.0)
    assert len(digits) == 1 and leg.position_of(digits[0].rtp_ts) is None


def test_an_event_maps_to_the_position_the_sink_got_for_the_audio_of_its_timestamp() -> None:
    leg, sink, digits = make()
    t = feed(leg, packets(tone_frames(10), ts0=16000))
    _digit(leg, 16000 + 4 * FRAME, 510, t)
    (digit,) = digits
    assert digit.rtp_ts == 16000 + 4 * FRAME
    assert leg.position_of(digit.rtp_ts) == _position_given_for(sink, 4) == 4 * FRAME
    assert leg.position_of(16000 + 12 * FRAME) == 12 * FRAME     # ahead of the audio too


def test_the_mapping_survives_the_32_bit_timestamp_wrap() -> None:
    leg, sink, digits = make()
    ts0 = MASK - 2 * FRAME + 1                          # the third packet wraps to 1
    t = feed(leg, [Pkt(0, 500 + i, (ts0 + i * FRAME) & MASK, p)
                   for i, p in enumerate(tone_frames(6))])
    _digit(leg, ts0 + FRAME, 506, t)                    # began before the wrap ...
    (digit,) = digits                                   # ... the last packet is after it
    assert digit.rtp_ts > MASK - 2 * FRAME
    assert leg.position_of(digit.rtp_ts) == _position_given_for(sink, 1) == FRAME
    assert leg.position_of((ts0 + 5 * FRAME) & MASK) == 5 * FRAME


def test_reordered_packets_and_a_silent_gap_keep_the_mapping() -> None:
    leg, sink, digits = make()
    frames = tone_frames(8)
    t = 0.0
    for i in [0, 2, 1]:                                 # 2 is held until 1 arrives
        leg.on_packet(Pkt(0, 500 + i, 16000 + i * FRAME, frames[i]), t)
        t += 0.02
    assert leg.position_of(16000 + 2 * FRAME) == 2 * FRAME
    leg.on_packet(Pkt(0, 503, 16000 + 3 * FRAME, frames[3]), t)
    # the sender stops for 1 s (silence suppression), then goes on with a marker
    resume = 16000 + 4 * FRAME + 8000
    for k, i in enumerate(range(4, 8)):
        leg.on_packet(Pkt(0, 500 + i, resume + k * FRAME, frames[i], marker=k == 0), t)
        t += 0.02
    _digit(leg, resume + 2 * FRAME, 508, t)
    (digit,) = digits
    heard = {position for position, pcm in sink.pcm if len(pcm)}
    assert leg.position_of(digit.rtp_ts) == 4 * FRAME + 8000 + 2 * FRAME
    assert leg.position_of(digit.rtp_ts) in heard


def test_a_new_stream_moves_the_mapping_onto_its_own_timestamps() -> None:
    leg, sink, digits = make()
    t = feed(leg, packets(tone_frames(5), ts0=16000))
    new = [Pkt(0, 9000 + i, 4_000_000 + i * FRAME, p, ssrc=0x9999)
           for i, p in enumerate(tone_frames(4))]
    t = feed(leg, new, t)
    _digit(leg, 4_000_000 + 3 * FRAME, 9004, t)
    (digit,) = digits
    last_position = sink.pcm[-1][0]                     # the new stream's fourth packet
    assert leg.position_of(digit.rtp_ts) == last_position
    assert last_position >= 8 * FRAME                   # after the first stream, contiguous
