"""Tests for gateway.media.jitter: scripted RTP sequences, expected frames worked out by hand.

Each packet's payload is filled with a byte derived from its sequence number, so a frame says by
itself which packet it carries; expected timestamps come from the sender script (ts0 + n * 160
and so on), never from the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.media.jitter import Frame, JitterBuffer, JitterConfigError
from gateway.media.rtpstats import RtpReceiveStats

RATE = 8000
SSRC = 0x1234


@dataclass(frozen=True)
class Pkt:
    seq: int
    ts: int
    payload: bytes
    marker: bool = False


def fill(seq: int, samples: int) -> bytes:
    return bytes([seq % 251]) * samples


def talk(n: int, *, seq0: int = 100, ts0: int = 16000, samples: int = 160,
         first_marker: bool = False) -> list[Pkt]:
    return [Pkt((seq0 + i) & 0xFFFF, (ts0 + i * samples) & 0xFFFFFFFF,
                fill(seq0 + i, samples), first_marker and i == 0) for i in range(n)]


def push(jb: JitterBuffer, p: Pkt, arrival_s: float, ssrc: int = SSRC) -> list[Frame]:
    return jb.push(p.seq, p.ts, p.marker, p.payload, ssrc, arrival_s)


def feed(jb: JitterBuffer, pkts: list[Pkt], *, t0: float = 0.0, ssrc: int = SSRC) -> list[Frame]:
    """Push in list order, one packet every 20 ms of arrival time."""
    out: list[Frame] = []
    for i, p in enumerate(pkts):
        out += push(jb, p, t0 + i * 0.02, ssrc)
    return out


def assert_contiguous(frames: list[Frame]) -> None:
    for prev, cur in zip(frames, frames[1:], strict=False):
        assert cur.rtp_ts == prev.rtp_ts + prev.samples, (prev, cur)


def real_seqs(frames: list[Frame]) -> list[int | None]:
    return [f.seq for f in frames if f.payload is not None]


def kinds(frames: list[Frame]) -> str:
    """R = real payload, C = concealment of a lost slot, S = sender silence."""
    return "".join("R" if f.payload is not None else "S" if f.silence else "C" for f in frames)


def test_in_order_stream_comes_out_immediately() -> None:
    jb = JitterBuffer()
    pkts = talk(50)
    for i, p in enumerate(pkts):
        out = push(jb, p, i * 0.02)
        assert len(out) == 1
        frame = out[0]
        assert (frame.seq, frame.rtp_ts, frame.samples) == (p.seq, p.ts, 160)
        assert frame.payload == p.payload
    assert jb.stats.played == 50
    assert jb.stats.lost == jb.stats.late == jb.stats.reordered == 0


def test_reorder_is_absorbed() -> None:
    jb = JitterBuffer()
    pkts = talk(6)
    pkts[4] = Pkt(pkts[4].seq, pkts[4].ts, pkts[4].payload, marker=True)
    out = feed(jb, pkts[:3])
    assert push(jb, pkts[4], 0.1) == []  # 103 missing: held
    released = push(jb, pkts[3], 0.11)  # the late one fills the gap
    assert [(f.seq, f.marker) for f in released] == [(103, False), (104, True)]
    out += released + push(jb, pkts[5], 0.12)
    assert [f.seq for f in out] == [p.seq for p in pkts]
    assert_contiguous(out)
    assert (jb.stats.reordered, jb.stats.lost, jb.stats.concealed_frames) == (1, 0, 0)


def test_loss_waits_for_depth_then_conceals_slot_by_slot() -> None:
    # depth 60 ms = 480 samples; 105 and 106 lost
    jb = JitterBuffer(depth_ms=60)
    pkts = talk(12)
    out = feed(jb, pkts[:5])
    assert push(jb, pkts[7], 0.2) == []  # span 105..107 = 60 ms: hold
    step = push(jb, pkts[8], 0.22)  # span 80 ms: give up on 105 only
    assert kinds(step) == "C" and step[0].rtp_ts == pkts[5].ts and step[0].samples == 160
    step2 = push(jb, pkts[9], 0.24)  # span 106..109 = 80 ms: give up on 106
    assert kinds(step2) == "CRRR"
    assert step2[0].rtp_ts == pkts[6].ts
    assert [f.seq for f in step2[1:]] == [107, 108, 109]
    out += step + step2 + feed(jb, pkts[10:], t0=0.26)
    assert_contiguous(out)
    assert len(out) == 12
    assert (jb.stats.lost, jb.stats.concealed_frames, jb.stats.played) == (2, 2, 10)


def test_long_loss_burst_concealment_counts_are_exact() -> None:
    jb = JitterBuffer(depth_ms=60)
    pkts = talk(40)
    kept = pkts[:5] + pkts[15:]  # 10 packets lost
    out = feed(jb, kept) + jb.flush()
    assert len(out) == 40
    assert kinds(out) == "R" * 5 + "C" * 10 + "R" * 25
    assert_contiguous(out)
    for frame in out:
        if frame.seq is not None:
            assert frame.rtp_ts == 16000 + (frame.seq - 100) * 160
    assert (jb.stats.lost, jb.stats.concealed_frames) == (10, 10)


def test_duplicates_are_dropped_and_counted() -> None:
    jb = JitterBuffer()
    p = talk(5)
    order = [p[0], p[0], p[2], p[2], p[1], p[1], p[3], p[4], p[3]]
    out = feed(jb, order)
    assert [f.seq for f in out] == [100, 101, 102, 103, 104]
    # p0 again (just played), p2 again (held), p1 again (played), p3 again (played)
    assert jb.stats.duplicated == 4
    assert jb.stats.late == 0


def test_late_packet_after_its_slot_was_concealed() -> None:
    jb = JitterBuffer(depth_ms=40)
    p = talk(8)
    out = feed(jb, [p[0], p[1], p[3], p[4]])  # 102 concealed when 104 makes the span 60 ms
    assert kinds(out) == "RRCRR"
    assert push(jb, p[2], 0.1) == []
    assert jb.stats.late == 1 and jb.stats.duplicated == 0
    assert push(jb, p[4], 0.11) == []  # played already: a duplicate, not late
    assert (jb.stats.late, jb.stats.duplicated, jb.stats.lost) == (1, 1, 1)


def test_sequence_wrap_with_reorder_across_it() -> None:
    jb = JitterBuffer()
    pkts = talk(12, seq0=65530)
    order = pkts[:5] + [pkts[6], pkts[5]] + pkts[7:]  # 0 arrives before 65535
    out = feed(jb, order)
    assert [f.seq for f in out] == [*range(65530, 65536), *range(0, 6)]
    assert_contiguous(out)
    assert (jb.stats.restarts, jb.stats.lost, jb.stats.reordered) == (0, 0, 1)


def test_timestamp_wrap_keeps_extended_timestamps_monotonic() -> None:
    jb = JitterBuffer()
    ts0 = 2**32 - 3 * 160
    pkts = talk(10, ts0=ts0)
    out = feed(jb, pkts)
    assert [f.rtp_ts for f in out] == [ts0 + i * 160 for i in range(10)]
    assert out[-1].rtp_ts > 2**32
    assert jb.stats.restarts == 0 and jb.stats.silence_frames == 0


def test_ssrc_change_flushes_and_restarts_contiguously() -> None:
    jb = JitterBuffer(depth_ms=60)
    a = talk(8)
    out = feed(jb, a[:5] + [a[6], a[7]])  # 105 missing, 106/107 held
    assert kinds(out) == "RRRRR"
    b = talk(4, seq0=40000, ts0=999_999, first_marker=True)
    assert push(jb, b[0], 0.2, ssrc=0xBEEF) == []         # a candidate: one packet proves
    assert push(jb, b[1], 0.22, ssrc=0xBEEF) == []        # nothing (PROBATION_PACKETS = 3)
    step = push(jb, b[2], 0.24, ssrc=0xBEEF)
    assert kinds(step) == "CRRRRR"
    assert [f.seq for f in step[1:]] == [106, 107, 40000, 40001, 40002]
    out += step + feed(jb, b[3:], t0=0.26, ssrc=0xBEEF)
    assert_contiguous(out)
    assert real_seqs(out)[-4:] == [40000, 40001, 40002, 40003]
    assert (jb.stats.restarts, jb.stats.lost) == (1, 1)


@pytest.mark.parametrize(("seq_step", "ts_step"), [(3001, 160), (1, 10 * RATE + 161)])
def test_big_sequence_or_timestamp_jump_restarts(seq_step: int, ts_step: int) -> None:
    jb = JitterBuffer()
    first = talk(5)
    second = talk(5, seq0=104 + seq_step, ts0=first[-1].ts + ts_step)
    out = feed(jb, first + second)
    assert jb.stats.restarts == 1
    assert kinds(out) == "R" * 10  # no silence, no concealment invented for the jump
    assert_contiguous(out)
    assert jb.stats.lost == 0


def test_silence_suppression_gap_is_not_loss() -> None:
    jb = JitterBuffer()
    first = talk(10)
    second = talk(10, seq0=110, ts0=16000 + 10 * 160 + RATE, first_marker=True)  # 1 s silent
    out = feed(jb, first + second)
    assert kinds(out) == "R" * 10 + "S" * 50 + "R" * 10
    silent = [f for f in out if f.silence]
    assert all(f.samples == 160 and f.payload is None for f in silent)
    assert silent[0].rtp_ts == 16000 + 10 * 160
    assert out[60].rtp_ts == second[0].ts and out[60].marker
    assert_contiguous(out)
    assert (jb.stats.lost, jb.stats.concealed_frames) == (0, 0)
    assert (jb.stats.gap_samples, jb.stats.silence_frames) == (RATE, 50)


def test_loss_at_end_of_talkspurt_before_marker() -> None:
    jb = JitterBuffer()
    first = talk(10)
    second = talk(5, seq0=110, ts0=16000 + 10 * 160 + RATE, first_marker=True)
    out = feed(jb, first[:8] + second)  # 108, 109 lost just before a 1 s silence
    # the marked packet starts a talkspurt: the lost slots belong to the previous one
    assert kinds(out) == "R" * 8 + "CC" + "S" * 50 + "R" * 5
    assert [f.rtp_ts for f in out[8:10]] == [first[8].ts, first[9].ts]
    assert_contiguous(out)
    assert (jb.stats.lost, jb.stats.gap_samples) == (2, RATE)


def test_lost_marker_packet_after_silence() -> None:
    jb = JitterBuffer()
    first = talk(10)
    second = talk(5, seq0=110, ts0=16000 + 10 * 160 + RATE, first_marker=True)
    out = feed(jb, first + second[1:])  # the talkspurt's marked first packet is lost
    assert kinds(out) == "R" * 10 + "S" * 50 + "C" + "R" * 4
    assert out[60].rtp_ts == second[0].ts
    assert_contiguous(out)
    assert (jb.stats.lost, jb.stats.gap_samples) == (1, RATE)


def test_reorder_at_talkspurt_start_after_silence_is_not_loss() -> None:
    jb = JitterBuffer()
    first = talk(10)
    second = talk(5, seq0=110, ts0=16000 + 10 * 160 + RATE, first_marker=True)
    out = feed(jb, first + [second[1], second[0]] + second[2:])
    assert kinds(out) == "R" * 10 + "S" * 50 + "R" * 5
    assert [f.marker for f in out[60:]] == [True, False, False, False, False]
    assert (jb.stats.lost, jb.stats.late, jb.stats.reordered) == (0, 0, 1)


@pytest.mark.parametrize("ptime_ms", [10, 30])
def test_other_ptimes_conceal_with_their_own_slot_size(ptime_ms: int) -> None:
    samples = ptime_ms * RATE // 1000
    jb = JitterBuffer(ptime_ms=20, depth_ms=60)  # the sender's ptime is learnt, not configured
    pkts = talk(20, samples=samples)
    out = feed(jb, pkts[:6] + pkts[7:]) + jb.flush()
    assert kinds(out) == "R" * 6 + "C" + "R" * 13
    assert out[6].samples == samples and out[6].rtp_ts == pkts[6].ts
    assert_contiguous(out)
    assert jb.stats.lost == 1


def test_ptime_change_mid_stream() -> None:
    jb = JitterBuffer(depth_ms=60)
    first = talk(5)  # 20 ms
    second = talk(10, seq0=105, ts0=first[-1].ts + 160, samples=80)  # then 10 ms
    out = feed(jb, first + [second[0]] + second[2:])  # the second 10 ms packet is lost
    assert [f.samples for f in out] == [160] * 5 + [80] * 10
    assert kinds(out) == "R" * 6 + "C" + "R" * 8
    assert out[6].rtp_ts == second[1].ts
    assert_contiguous(out)
    third = talk(3, seq0=115, ts0=second[-1].ts + 80, samples=240)  # then 30 ms
    tail = feed(jb, third, t0=1.0)
    assert [f.samples for f in tail] == [240] * 3
    assert_contiguous(out + tail)
    assert jb.stats.silence_frames == 0


def test_poll_releases_held_frames_but_invents_nothing_after_them() -> None:
    jb = JitterBuffer(depth_ms=60)
    pkts = talk(6)
    out = feed(jb, pkts[:3])
    push(jb, pkts[4], 0.10)  # 103 missing, 104 held, then the far end goes quiet
    assert jb.poll(0.10 + 0.059) == []
    released = jb.poll(0.10 + 0.061)
    assert kinds(released) == "CR"
    assert released[0].rtp_ts == pkts[3].ts and released[1].seq == 104
    assert jb.poll(5.0) == [] and jb.poll(60.0) == []
    assert_contiguous(out + released)
    assert (jb.stats.lost, jb.stats.concealed_frames) == (1, 1)
    # the stream resumes where it left off: no frames were made up for the quiet time
    resumed = push(jb, pkts[5], 60.0)
    assert [f.seq for f in resumed] == [105]


def test_poll_on_idle_or_empty_buffer() -> None:
    jb = JitterBuffer()
    assert jb.poll(0.0) == []
    feed(jb, talk(3))
    assert jb.poll(100.0) == []


def test_flush_conceals_gaps_and_releases_everything() -> None:
    jb = JitterBuffer(depth_ms=200)
    pkts = talk(8)
    out = feed(jb, [pkts[0], pkts[2], pkts[3], pkts[6]])
    assert kinds(out) == "R" and jb.held == 3
    flushed = jb.flush()
    assert kinds(flushed) == "CRRCCR"
    assert [f.seq for f in flushed if f.seq is not None] == [102, 103, 106]
    assert_contiguous(out + flushed)
    assert jb.held == 0 and jb.flush() == []
    assert jb.stats.lost == 3


def test_backwards_timestamp_on_contiguous_sequence_realigns() -> None:
    jb = JitterBuffer()
    pkts = talk(3) + [Pkt(103, 16000 + 2 * 160, fill(103, 160))]  # reuses 102's timestamp
    pkts += [Pkt(104, 16000 + 3 * 160, fill(104, 160))]
    out = feed(jb, pkts)
    assert [f.seq for f in out] == [100, 101, 102, 103, 104]
    assert_contiguous(out)
    assert jb.stats.realigned == 1


def alternating_delay_arrivals(n: int, delay_s: float) -> list[tuple[int, float]]:
    """Even packets delayed by delay_s, odd ones not: each odd one overtakes its predecessor."""
    sends = [(i, i * 0.02 + (delay_s if i % 2 == 0 else 0.0)) for i in range(n)]
    return sorted(sends, key=lambda item: item[1])


def run_arrivals(jb: JitterBuffer, pkts: list[Pkt], arrivals: list[tuple[int, float]]) -> None:
    for index, arrival_s in arrivals:
        push(jb, pkts[index], arrival_s)


def test_fixed_shallow_depth_loses_overtaken_packets() -> None:
    jb = JitterBuffer(depth_ms=20)
    pkts = talk(300)
    run_arrivals(jb, pkts, alternating_delay_arrivals(300, 0.05))
    assert jb.stats.late > 100


def test_adaptive_depth_grows_with_jitter_and_stops_late_drops() -> None:
    jb = JitterBuffer(depth_ms=20, adaptive=True, max_depth_ms=300)
    pkts = talk(421)
    arrivals = alternating_delay_arrivals(400, 0.05)
    run_arrivals(jb, pkts, arrivals[:300])
    late_before = jb.stats.late
    assert jb.depth_ms > 60
    run_arrivals(jb, pkts, arrivals[300:])
    assert jb.stats.late == late_before  # depth now covers the reordering
    # then the network calms down: 20 packets on time, the jitter estimate decays fast ...
    calm = [(i, i * 0.02 + 0.05) for i in range(400, 420)]  # constant 50 ms delay
    depth_before_calm = jb.depth_ms
    run_arrivals(jb, pkts, calm)
    assert depth_before_calm - jb.depth_ms == pytest.approx(20 * 0.5)  # ... the depth slowly
    # a new talkspurt after 1 s of silence adopts 3x the RFC 3550 jitter, computed here
    # independently over the same arrivals
    marked = Pkt(pkts[420].seq, pkts[420].ts + RATE, pkts[420].payload, marker=True)
    marked_arrival_s = 420 * 0.02 + 0.05 + 1.0
    reference = RtpReceiveStats(RATE)
    for index, arrival_s in arrivals + calm:
        reference.update(pkts[index].seq, pkts[index].ts, arrival_s)
    reference.update(marked.seq, marked.ts, marked_arrival_s)
    target_ms = 3 * reference.jitter_s * 1000
    assert 20.0 < target_ms < jb.depth_ms - 50
    push(jb, marked, marked_arrival_s)
    assert jb.depth_ms == pytest.approx(target_ms, rel=1e-6)


def test_adaptive_depth_shrinks_slowly_without_jitter_and_stays_in_bounds() -> None:
    jb = JitterBuffer(depth_ms=120, adaptive=True, max_depth_ms=300)
    pkts = talk(200)
    depths = []
    for i, p in enumerate(pkts):
        push(jb, p, i * 0.02)
        depths.append(jb.depth_ms)
    assert all(earlier - later <= 0.5 + 1e-9 for earlier, later in zip(depths, depths[1:],
                                                                    strict=False))
    assert depths[10] > 110  # slowly: at most 0.5 ms per packet
    assert depths[-1] == pytest.approx(20.0)  # floor: ptime


def test_stats_to_dict_and_config_errors() -> None:
    jb = JitterBuffer()
    feed(jb, talk(2))
    as_dict = jb.stats.to_dict()
    assert as_dict["received"] == 2 and as_dict["played"] == 2
    assert {"duplicated", "late", "reordered", "concealed_frames", "lost", "restarts",
            "gap_samples", "silence_frames"} <= set(as_dict)
    with pytest.raises(JitterConfigError):
        JitterBuffer(ptime_ms=0)
    with pytest.raises(ValueError):
        JitterBuffer(ptime_ms=20, max_depth_ms=10)


def test_held_packets_are_bounded_even_if_timestamps_do_not_advance() -> None:
    jb = JitterBuffer(depth_ms=60)
    out = push(jb, Pkt(0, 7000, fill(0, 160)), 0.0)
    for seq in range(2, 700):  # 1 lost; the sender never advances its timestamp
        out += push(jb, Pkt(seq, 7000, fill(seq, 160)), seq * 0.02)
        assert jb.held <= 512
    assert jb.stats.lost == 1
    assert real_seqs(out) == [0, *range(2, 700)]
    assert_contiguous(out)
