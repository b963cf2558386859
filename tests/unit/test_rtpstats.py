"""Tests for gateway.media.rtpstats (RFC 3550 A.1 / A.3 / A.8).

Expected counts and report fields are worked out by hand from the packet scripts below; the
interarrival jitter is compared with a direct transcription of the A.8 formula over unwrapped
timestamps, written here independently of the module.
"""

from __future__ import annotations

import random

import pytest

from gateway.media.rtpstats import ReportBlock, RtpReceiveStats

RATE = 8000
SAMPLES = 160  # 20 ms


def feed(stats: RtpReceiveStats, seqs: list[int], *, ts0: int = 0) -> None:
    """Packets sent every 20 ms, arriving with a constant delay (no jitter)."""
    for seq in seqs:
        ts = ts0 + seq * SAMPLES
        stats.update(seq & 0xFFFF, ts & 0xFFFFFFFF, 0.5 + seq * 0.02)


def test_in_order_stream_counts() -> None:
    stats = RtpReceiveStats(RATE)
    feed(stats, list(range(100)))
    assert (stats.received, stats.expected, stats.lost) == (100, 100, 0)
    assert stats.extended_max_seq == 99
    assert stats.jitter_s == pytest.approx(0.0, abs=1e-9)
    assert stats.report_block() == ReportBlock(0, 0, 99, 0)


def test_loss_fraction_and_cumulative_per_interval() -> None:
    stats = RtpReceiveStats(RATE)
    feed(stats, [s for s in range(10) if s not in (3, 4, 7)])
    # expected 10, received 7: lost 3, fraction 3/10 * 256 = 76.8 -> 76
    assert stats.report_block() == ReportBlock(76, 3, 9, 0)
    feed(stats, list(range(10, 20)))
    # interval: expected 10, received 10 -> fraction 0, cumulative still 3
    assert stats.report_block() == ReportBlock(0, 3, 19, 0)
    feed(stats, [20, 22, 23])
    # interval: expected 4 (20..23), received 3 -> 1/4 * 256 = 64; cumulative 4
    assert stats.report_block() == ReportBlock(64, 4, 23, 0)
    # nothing new: interval expected 0 -> fraction 0
    assert stats.report_block().fraction_lost == 0


def test_duplicates_make_lost_negative() -> None:
    stats = RtpReceiveStats(RATE)
    feed(stats, [0, 1, 1, 2, 3, 3, 4])
    assert (stats.received, stats.expected, stats.lost) == (7, 5, -2)
    block = stats.report_block()
    assert block.packets_lost == -2
    assert block.fraction_lost == 0


def test_sequence_wrap_extends_with_cycles() -> None:
    stats = RtpReceiveStats(RATE)
    # 65534, 0 (early, across the wrap), 65535 (late), 1..5
    for seq in [65530, 65531, 65532, 65533, 65534, 65536, 65535, 65537, 65538]:
        stats.update(seq & 0xFFFF, seq * SAMPLES & 0xFFFFFFFF, seq * 0.02)
    assert stats.extended_max_seq == 65536 + 2
    assert (stats.expected, stats.received, stats.lost) == (9, 9, 0)
    assert stats.report_block().highest_sequence == 0x10002


def test_single_stray_jump_is_ignored() -> None:
    stats = RtpReceiveStats(RATE)
    feed(stats, list(range(10)))
    stats.update(30000, 123, 0.75)
    feed(stats, [10, 11])
    assert (stats.received, stats.expected, stats.extended_max_seq) == (12, 12, 11)


def test_two_sequential_packets_after_jump_resync() -> None:
    stats = RtpReceiveStats(RATE)
    feed(stats, list(range(10)))
    # 20000 is only a candidate; 20001 confirms and re-bases on it (RFC 3550 A.1)
    feed(stats, [20000, 20001, 20002])
    assert (stats.received, stats.expected, stats.extended_max_seq) == (2, 2, 20002)
    assert stats.lost == 0


def test_resync_does_not_compare_transit_across_the_restart() -> None:
    stats = RtpReceiveStats(RATE)
    feed(stats, list(range(10)))
    feed(stats, [20000, 20001, 20002], ts0=123_456_789)  # new timestamp base too
    assert stats.jitter_ts == pytest.approx(0.0, abs=1e-6)


def test_cumulative_loss_clamps_to_24_bits() -> None:
    stats = RtpReceiveStats(RATE)
    for i in range(2800):  # every packet 2999 ahead of the previous one (< MAX_DROPOUT)
        seq = i * 2999
        stats.update(seq & 0xFFFF, 0, i * 0.02)
    expected = 2799 * 2999 + 1
    assert stats.expected == expected
    assert stats.lost == expected - 2800 > 0x7FFFFF
    block = stats.report_block()
    assert block.packets_lost == 0x7FFFFF
    assert block.highest_sequence == 2799 * 2999
    assert block.fraction_lost == 255  # 99.97 % lost: 255.9 in 8 bits, clamped


def reference_jitter(packets: list[tuple[int, float]]) -> float:
    """RFC 3550 A.8 over unwrapped timestamps: J += (|D(i-1,i)| - J) / 16."""
    jitter = 0.0
    prev_transit: float | None = None
    for ts, arrival_s in packets:
        transit = arrival_s * RATE - ts
        if prev_transit is not None:
            jitter += (abs(transit - prev_transit) - jitter) / 16
        prev_transit = transit
    return jitter


@pytest.mark.parametrize("ts0", [1000, 2**32 - 40 * SAMPLES])  # the second wraps mid-stream
def test_interarrival_jitter_matches_a8(ts0: int) -> None:
    rng = random.Random(7)
    packets = [(ts0 + i * SAMPLES, 10.0 + i * 0.02 + rng.uniform(0.0, 0.03)) for i in range(200)]
    stats = RtpReceiveStats(RATE)
    for i, (ts, arrival_s) in enumerate(packets):
        stats.update(i, ts & 0xFFFFFFFF, arrival_s)
    expected = reference_jitter(packets)
    assert expected > 10  # the pattern really is jittery
    assert stats.jitter_ts == pytest.approx(expected, rel=1e-6)  # float rounding near 2**32
    assert stats.jitter_s == pytest.approx(expected / RATE, rel=1e-6)
    assert stats.report_block().jitter == int(expected)


def test_jitter_of_a_hand_made_pattern() -> None:
    # transit (in samples): 0, +80, 0 -> |D| = 80, 80
    stats = RtpReceiveStats(RATE)
    stats.update(1, 0, 0.0)
    stats.update(2, 160, 0.03)
    stats.update(3, 320, 0.04)
    j1 = 80 / 16
    j2 = j1 + (80 - j1) / 16
    assert stats.jitter_ts == pytest.approx(j2)
    assert stats.report_block().jitter == 9  # 9.6875 truncated


def test_reset_and_empty_report() -> None:
    stats = RtpReceiveStats(RATE)
    assert stats.report_block() == ReportBlock(0, 0, 0, 0)
    assert stats.expected == 0
    feed(stats, [5, 6, 8])
    stats.reset()
    assert (stats.received, stats.expected, stats.lost) == (0, 0, 0)
    feed(stats, [100, 101])
    assert (stats.received, stats.expected, stats.extended_max_seq) == (2, 2, 101)


def test_rejects_bad_clock_rate() -> None:
    with pytest.raises(ValueError):
        RtpReceiveStats(0)
