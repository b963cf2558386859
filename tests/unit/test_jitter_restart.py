"""Issue 13 item 10: a restart of the jitter buffer needs evidence of a new stream.

Stray packets (an old or wild sequence number, a foreign SSRC, a wild timestamp) are dropped and
counted, the stream they are mixed into comes out exactly as it would without them; a real new
stream (SSRC change, sequence restart) restarts the buffer after PROBATION_PACKETS packets and
loses none of them. Also: silence filled by the clock (item 13) keeps the timeline contiguous.
"""

from __future__ import annotations

import pytest

from gateway.media.jitter import PROBATION_PACKETS, Frame, JitterBuffer
from tests.unit.test_jitter import SSRC, Pkt, assert_contiguous, feed, kinds, push, real_seqs, talk


def _with_strays(clean: list[Pkt], strays: dict[int, list[tuple[Pkt, int]]]
                 ) -> list[tuple[Pkt, int]]:
    """``clean`` (all SSRC) with stray (packet, ssrc) pairs inserted before index i."""
    out: list[tuple[Pkt, int]] = []
    for i, p in enumerate(clean):
        out += strays.get(i, [])
        out.append((p, SSRC))
    return out


def _run(jb: JitterBuffer, items: list[tuple[Pkt, int]]) -> list[Frame]:
    out: list[Frame] = []
    for i, (p, ssrc) in enumerate(items):
        out += push(jb, p, i * 0.01, ssrc)
    return out + jb.flush()


def _reference(clean: list[Pkt]) -> list[Frame]:
    jb = JitterBuffer()
    return feed(jb, clean) + jb.flush()


@pytest.mark.parametrize("stray_seq_offset", [-5000, -30000, 20000, 3001])
def test_one_packet_with_a_wild_sequence_number_is_dropped_not_a_restart(
        stray_seq_offset: int) -> None:
    clean = talk(30)
    stray = Pkt((clean[10].seq + stray_seq_offset) & 0xFFFF, clean[10].ts, b"\x11" * 160)
    jb = JitterBuffer()
    out = _run(jb, _with_strays(clean, {11: [(stray, SSRC)]}))
    assert out == _reference(clean)
    assert jb.stats.restarts == 0 and jb.stats.stray_sequence == 1
    assert jb.stats.late == 0 and jb.stats.lost == 0


def test_one_packet_with_a_wild_timestamp_is_dropped() -> None:
    clean = talk(30)
    stray = Pkt(clean[10].seq + 1, clean[10].ts + 20 * 8000, b"\x11" * 160)
    jb = JitterBuffer()
    out = _run(jb, _with_strays(clean, {11: [(stray, SSRC)]}))
    assert real_seqs(out) == [p.seq for p in clean] and jb.stats.restarts == 0
    assert jb.stats.stray_sequence == 1


def test_foreign_ssrc_packets_mixed_in_are_dropped() -> None:
    clean = talk(60)
    strays = {i: [(Pkt((40000 + i) & 0xFFFF, 7_000_000 + i * 160, b"\x22" * 160), 0xBAD0 + i)]
              for i in range(1, 60, 3)}
    jb = JitterBuffer()
    out = _run(jb, _with_strays(clean, strays))
    assert out == _reference(clean)
    assert jb.stats.restarts == 0 and jb.stats.stray_ssrc == len(strays)


def test_a_flood_of_stray_old_sequence_numbers_never_restarts() -> None:
    """The issue's capture: 150-290 restarts in 4 s from stray old packets; now none."""
    clean = talk(200)
    strays = {i: [(Pkt((p.seq - 4000 - 7 * i) & 0xFFFF, p.ts - 999 * i, b"\x33" * 160), SSRC)
                  for _ in range(2)] for i, p in enumerate(clean) if i % 2}
    jb = JitterBuffer()
    out = _run(jb, _with_strays(clean, strays))
    assert out == _reference(clean)
    assert jb.stats.restarts == 0 and jb.stats.stray_sequence == 2 * len(strays)


def test_agreeing_strays_between_live_packets_are_no_new_stream() -> None:
    """Even strays that agree with each other do not win while the current stream is alive."""
    clean = talk(40)
    other = talk(40, seq0=30000, ts0=9_000_000)
    strays = {i: [(other[2 * i], 0xBEEF), (other[2 * i + 1], 0xBEEF)] for i in range(1, 19)}
    jb = JitterBuffer()
    out = _run(jb, _with_strays(clean, strays))
    assert out == _reference(clean)
    assert jb.stats.restarts == 0 and jb.stats.stray_ssrc == 2 * 18


def test_a_real_ssrc_change_restarts_and_keeps_every_packet_of_the_new_stream() -> None:
    first = talk(10)
    second = talk(10, seq0=50000, ts0=123_456, first_marker=True)
    jb = JitterBuffer()
    out = feed(jb, first) + feed(jb, second, t0=0.2, ssrc=0xBEEF) + jb.flush()
    assert jb.stats.restarts == 1 and jb.stats.stray_ssrc == 0
    assert real_seqs(out) == [p.seq for p in first + second]
    assert kinds(out) == "R" * 20
    assert_contiguous(out)
    assert jb.ssrc == 0xBEEF


def test_a_sequence_restart_on_the_same_ssrc_is_confirmed_by_consecutive_packets() -> None:
    first = talk(10)
    second = talk(10, seq0=first[-1].seq + 9000, ts0=first[-1].ts + 160)
    jb = JitterBuffer()
    out = feed(jb, first + second) + jb.flush()
    assert jb.stats.restarts == 1 and jb.stats.stray_sequence == 0
    assert real_seqs(out) == [p.seq for p in first + second]
    assert_contiguous(out)


def test_new_stream_reordered_in_its_first_packets_comes_out_in_order() -> None:
    first = talk(5)
    second = talk(6, seq0=20000, ts0=555_000)
    order = [second[1], second[0], second[2], *second[3:]]
    jb = JitterBuffer()
    out = feed(jb, first) + feed(jb, order, t0=0.1, ssrc=0xCAFE) + jb.flush()
    assert jb.stats.restarts == 1
    assert real_seqs(out) == [p.seq for p in first + second]
    assert_contiguous(out)


def test_candidate_shorter_than_probation_is_dropped_at_the_end() -> None:
    jb = JitterBuffer()
    out = feed(jb, talk(5))
    for p in talk(PROBATION_PACKETS - 1, seq0=30000, ts0=1_000_000):
        out += push(jb, p, 0.5, ssrc=0xD00D)
    out += jb.flush()
    assert real_seqs(out) == [100, 101, 102, 103, 104]
    assert jb.stats.restarts == 0 and jb.stats.stray_ssrc == PROBATION_PACKETS - 1


# ------------------------------------------------------------------ silence by the clock


def test_fill_then_resume_keeps_the_sender_gap_once() -> None:
    """1 s pause: 0.6 s filled by the clock, the next packet adds only the remaining 0.4 s."""
    jb = JitterBuffer()
    first = talk(10)
    second = talk(5, seq0=110, ts0=16000 + 10 * 160 + 8000, first_marker=True)
    out = feed(jb, first)
    filled = jb.fill_silence(4800)
    assert kinds(filled) == "S" * 30 and jb.stats.filled_samples == 4800
    out += filled + feed(jb, second, t0=1.2)
    assert_contiguous(out)
    assert kinds(out) == "R" * 10 + "S" * 50 + "R" * 5
    assert jb.stats.gap_samples == 3200 and jb.stats.realigned == 0


def test_fill_longer_than_the_gap_is_absorbed() -> None:
    """A sender whose timestamps did not advance over the pause: no double time, no overlap."""
    jb = JitterBuffer()
    first = talk(10)
    second = talk(5, seq0=110, ts0=16000 + 10 * 160)
    out = feed(jb, first) + jb.fill_silence(8000) + feed(jb, second, t0=1.2)
    assert_contiguous(out)
    assert kinds(out) == "R" * 10 + "S" * 50 + "R" * 5
    assert jb.stats.realigned == 0


def test_fill_does_nothing_while_packets_are_held_or_before_the_stream() -> None:
    assert JitterBuffer().fill_silence(800) == []
    jb = JitterBuffer(depth_ms=60)
    pkts = talk(5)
    feed(jb, [pkts[0], pkts[2]])                 # 101 missing: 102 held
    assert jb.held == 1 and jb.fill_silence(800) == []
