"""ChannelAudioQueue (pure): chunking, the outage buffer, replay, drops and the time map;
the two source policies (live drops the oldest, file has room or not and drops nothing)."""

from __future__ import annotations

import numpy as np

from gateway.asr.audioqueue import ChannelAudioQueue, DropSpan, SourcePolicy

RATE = 16000
CHUNK = 2560                       # 160 ms
FRAME = 320                        # 20 ms


def _queue(max_buffer_s: float = 10.0,
           policy: SourcePolicy = SourcePolicy.LIVE) -> ChannelAudioQueue:
    return ChannelAudioQueue(sample_rate_hz=RATE, chunk_ms=160, max_buffer_s=max_buffer_s,
                             policy=policy)


def _audio(samples: int, value: float = 0.1) -> np.ndarray:
    return np.full(samples, value, np.float32)


def _ramp(start: int, samples: int) -> np.ndarray:
    """Audio whose sample values are their channel positions (to check what is sent)."""
    return np.arange(start, start + samples, dtype=np.float32)


def test_chunks_are_whole_and_in_order_and_the_first_starts_the_sequence() -> None:
    q = _queue()
    q.push(_ramp(0, 1000), 1.0)
    assert q.next_chunk() is None                       # less than a chunk
    q.push(_ramp(1000, 5000), 2.0)
    first = q.next_chunk()
    second = q.next_chunk()
    assert first is not None and second is not None
    assert (first.start, first.end, first.sequence_start) == (0, CHUNK, True)
    assert (second.start, second.end, second.sequence_start) == (CHUNK, 2 * CHUNK, False)
    assert np.array_equal(np.concatenate([first.audio, second.audio]), _ramp(0, 2 * CHUNK))
    assert q.next_chunk() is None
    last = q.next_chunk(final=True)
    assert last is not None and last.sequence_end and (last.start, last.end) == (5120, 6000)
    assert q.ended and q.next_chunk(final=True) is None


def test_a_lagging_sender_gets_several_chunks_in_one_request() -> None:
    q = _queue()
    q.push(_audio(10 * CHUNK + 5), 1.0)
    chunk = q.next_chunk(max_chunks=4)
    assert chunk is not None and len(chunk.audio) == 4 * CHUNK
    assert chunk.pushed_at == 1.0


def test_confirmed_audio_is_not_replayed_after_a_restart() -> None:
    q = _queue()
    q.push(_ramp(0, 3 * CHUNK), 1.0)
    for _ in range(3):
        assert q.next_chunk() is not None
    q.confirm(CHUNK / RATE)                             # a final covered the first chunk
    q.restart()                                         # the sequence was lost
    replay = q.next_chunk(max_chunks=10)
    assert replay is not None and replay.sequence_start
    assert (replay.start, replay.end) == (CHUNK, 3 * CHUNK)
    assert np.array_equal(replay.audio, _ramp(CHUNK, 2 * CHUNK))
    assert not replay.fresh                             # nothing in it is new
    assert q.base == CHUNK and q.channel_s(0.0) == CHUNK / RATE


def test_an_outage_longer_than_the_buffer_drops_the_oldest_audio_once_per_episode() -> None:
    q = _queue(max_buffer_s=1.0)
    q.push(_ramp(0, 2 * CHUNK), 0.0)
    assert q.next_chunk(max_chunks=2) is not None       # sent, then the stream broke
    q.restart()
    for i in range(200):                                # 4 s more (20 ms frames), Triton down
        q.push(_ramp(2 * CHUNK + i * FRAME, FRAME), 1.0 + i * 0.02)
    total = 2 * CHUNK + 200 * FRAME
    assert q.buffered_s == 1.0
    assert q.dropped_samples == total - RATE
    drop = q.take_drop()
    assert drop == DropSpan(0, total - RATE, total - RATE)
    assert q.take_drop() is None                        # reported once
    replay = q.next_chunk(final=True)
    assert replay is not None and replay.sequence_start and replay.start == total - RATE
    assert np.array_equal(replay.audio, _ramp(total - RATE, RATE))
    # the new sequence's time 0 is where the kept audio starts, not where the channel did
    assert q.base == total - RATE
    assert q.channel_s(1.0) == total / RATE


def test_the_two_spans_of_a_burst_after_the_reconnect_are_two_losses() -> None:
    """The failed run of test_after_an_outage_..._drops_are_reported, replayed on a fake
    clock: 0.48 s sent, the stream lost (the hub retrying), the caller talking on to 7.26 s;
    the stream back before the test's 3 s burst, the writer sending up to 8.98 s, then stuck
    while the rest of the burst arrived at once. Like the hub, a span is taken on each send:
    one for the outage, on the first send after it; the burst's overflow is a second loss,
    after 2.72 s that were sent (and transcribed), so a second span."""
    q = _queue(max_buffer_s=1.0)
    spans: list[DropSpan] = []
    sent: list[tuple[int, int]] = []
    pushed = 0

    def send(until_s: float) -> None:
        while q.ready() and q.next_start < round(until_s * RATE):
            chunk = q.next_chunk(max_chunks=12, now=pushed / RATE)
            assert chunk is not None
            sent.append((chunk.start, chunk.end))
            spans.extend(s for s in [q.take_drop()] if s is not None)

    def talk(until_s: float, *, send_until_s: float = 0.0) -> None:
        nonlocal pushed
        while pushed < round(until_s * RATE):
            q.push(_ramp(pushed, FRAME), pushed / RATE)   # the clock: one frame per 20 ms
            pushed += FRAME
            send(send_until_s)

    talk(0.48, send_until_s=0.48)                       # 3 chunks, no final yet (asr_ack)
    for attempt_s in (1.0, 2.0, 3.5, 5.5, 7.0):         # the stream lost, then failed retries
        q.restart()
        talk(attempt_s)
    q.restart()
    talk(7.26)                                          # after the hub's last failed attempt
    assert q.dropped_samples == round(6.26 * RATE) and not spans
    send(8.98)                                          # the stream is back
    assert [(s.start, s.end) for s in spans] == [(0, round(6.26 * RATE))]
    talk(10.82, send_until_s=8.98)                      # the talk, then the burst
    assert q.dropped_samples == round((6.26 + 0.84) * RATE)
    send(11.32)                                         # the writer catches up
    talk(11.32, send_until_s=11.32)                     # the last 0.5 s, sent as it comes
    spans.extend(s for s in [q.take_drop()] if s is not None)   # and the channel closes
    assert [(s.start / RATE, s.end / RATE, s.samples / RATE) for s in spans] == [
        (0.0, 6.26, 6.26), (8.98, 9.82, 0.84)]
    assert sum(s.samples for s in spans) == q.dropped_samples   # the metric's seconds
    between = [(a, b) for a, b in sent if round(6.26 * RATE) <= a < round(8.98 * RATE)]
    assert between[0][0] == round(6.26 * RATE) and between[-1][1] == round(8.98 * RATE)
    assert all(b == a2 for (_a, b), (a2, _b) in zip(between, between[1:], strict=False))


def test_audio_dropped_in_a_running_sequence_keeps_its_times_right() -> None:
    """A stalled stream: the sequence goes on, but audio was dropped between two chunks."""
    q = _queue(max_buffer_s=1.0)
    q.push(_ramp(0, CHUNK), 0.0)
    assert q.next_chunk() is not None                   # sequence sample 0..CHUNK
    q.confirm(CHUNK / RATE)
    q.push(_ramp(CHUNK, 2 * RATE), 1.0)                 # 2 s arrive, 1 s of it dropped
    assert q.dropped_samples == RATE
    chunk = q.next_chunk(max_chunks=100)
    assert chunk is not None and not chunk.sequence_start and chunk.start == CHUNK + RATE
    # sequence time just after the first chunk is channel time after the gap
    assert q.channel_position(CHUNK / RATE) == CHUNK + RATE
    assert q.channel_position(CHUNK / RATE - 0.01) == CHUNK - 160
    assert q.channel_position((CHUNK + 100) / RATE) == CHUNK + RATE + 100


def test_unconfirmed_audio_is_forgotten_before_unsent_audio_is_dropped() -> None:
    q = _queue(max_buffer_s=1.0)
    q.push(_audio(RATE), 0.0)
    while q.next_chunk() is not None:
        pass                                            # all of it sent, none confirmed
    q.push(_audio(RATE // 2), 1.0)
    assert q.dropped_samples == 0                       # only replay audio was forgotten
    assert q.take_drop() is None


def test_keepalive_sends_what_is_pending_or_nothing_on_an_open_sequence() -> None:
    q = _queue()
    assert q.keepalive_chunk(0.0) is None               # no sequence yet
    q.push(_audio(CHUNK + 10), 0.0)
    assert q.next_chunk(now=0.1) is not None and q.last_sent_at == 0.1
    keep = q.keepalive_chunk(5.0)
    assert keep is not None and len(keep.audio) == 10 and not keep.sequence_start
    empty = q.keepalive_chunk(9.0)
    assert empty is not None and len(empty.audio) == 0 and q.last_sent_at == 9.0
    assert q.next_chunk(final=True) is not None
    assert q.keepalive_chunk(10.0) is None              # ended


def test_arrival_of_a_final_end_is_the_chunk_that_held_it() -> None:
    q = _queue()
    q.push(_audio(CHUNK), 1.0)
    q.push(_audio(CHUNK), 2.0)
    q.next_chunk()
    q.next_chunk()
    assert q.arrival_of(0.1) == 1.0
    assert q.arrival_of(CHUNK / RATE) == 1.0            # the end of the first chunk
    assert q.arrival_of(0.2) == 2.0
    q.confirm(2 * CHUNK / RATE)
    assert q.arrival_of(0.2) is None                    # no longer held


def test_fresh_marks_audio_never_sent_before() -> None:
    q = _queue()
    q.push(_audio(2 * CHUNK), 0.0)
    assert q.next_chunk() is not None
    q.restart()
    q.push(_audio(CHUNK), 1.0)
    replay = q.next_chunk()
    assert replay is not None and not replay.fresh      # the first chunk again
    new = q.next_chunk(max_chunks=2)
    assert new is not None and new.fresh


def test_sent_audio_the_bound_forgot_before_a_restart_is_counted_as_dropped() -> None:
    """Audio written to a stream that then broke, and forgotten by the bound before the
    break was noticed, cannot be replayed: it counts as dropped, not silently lost."""
    q = _queue(max_buffer_s=1.0)
    q.push(_ramp(0, CHUNK), 0.0)
    q.next_chunk()
    q.confirm(CHUNK / RATE)                             # a final covered the first chunk
    for i in range(10):                                 # 1.6 s sent, never confirmed
        q.push(_ramp(CHUNK + i * CHUNK, CHUNK), 1.0)
        q.next_chunk()
    assert q.dropped_samples == 0                       # still replayable in principle
    q.restart()
    kept = q.buffered_s * RATE
    assert q.dropped_samples == 10 * CHUNK - kept
    assert q.take_drop() == DropSpan(CHUNK, CHUNK + 10 * CHUNK - int(kept),
                                     10 * CHUNK - int(kept))
    q.restart()                                         # again, before anything was sent
    assert q.take_drop() is None


def test_a_replay_starts_where_the_last_final_ended_not_at_its_chunk() -> None:
    """Words a final already gave are not sent again (they would come back twice)."""
    q = _queue()
    q.push(_ramp(0, 2 * CHUNK), 0.0)
    q.next_chunk(max_chunks=2)
    q.confirm(0.1)                                      # inside the first chunk
    q.restart()
    replay = q.next_chunk(final=True)
    assert replay is not None and replay.start == 1600 and replay.end == 2 * CHUNK
    assert np.array_equal(replay.audio, _ramp(1600, 2 * CHUNK - 1600))
    assert q.channel_s(0.0) == 0.1


# --- source policies ------------------------------------------------------------------


def _drain(q: ChannelAudioQueue, *, final: bool = False) -> list[np.ndarray]:
    sent = []
    while (chunk := q.next_chunk(final=final, max_chunks=12)) is not None:
        sent.append(chunk.audio)
        if chunk.sequence_end:
            break
    return sent


def _fill(q: ChannelAudioQueue, pushed: int) -> int:
    """Push 20 ms frames while the queue has room (at most 10 s); the position reached."""
    for _ in range(500):
        if not q.has_room(FRAME):
            break
        q.push(_ramp(pushed, FRAME), 0.0)
        pushed += FRAME
    return pushed


def test_live_is_the_default_and_always_has_room_and_drops_the_oldest() -> None:
    q = _queue(max_buffer_s=1.0)
    assert q.policy is SourcePolicy.LIVE
    for i in range(150):                                # 3 s faster than real time, unsent
        assert q.has_room(FRAME)
        q.push(_ramp(i * FRAME, FRAME), 0.0)
    assert q.pending_samples == RATE and q.dropped_samples == 2 * RATE
    assert q.take_drop() == DropSpan(0, 2 * RATE, 2 * RATE)
    assert np.array_equal(np.concatenate(_drain(q, final=True)), _ramp(2 * RATE, RATE))


def test_file_has_room_until_the_buffer_of_unsent_audio_is_full() -> None:
    q = _queue(max_buffer_s=1.0, policy=SourcePolicy.FILE)
    pushed = _fill(q, 0)
    assert pushed == RATE and q.pending_samples == RATE  # exactly the bound, no more
    assert not q.has_room(1)
    assert q.next_chunk() is not None                   # a chunk sent: room again
    assert q.has_room(FRAME) and not q.has_room(CHUNK + 1)
    big = _queue(max_buffer_s=1.0, policy=SourcePolicy.FILE)
    assert big.has_room(5 * RATE)                       # bigger than the bound: fits when empty


def test_file_pushed_past_the_bound_drops_and_forgets_nothing() -> None:
    q = _queue(max_buffer_s=1.0, policy=SourcePolicy.FILE)
    q.push(_ramp(0, 3 * RATE), 0.0)                     # a producer that ignores has_room
    sent = _drain(q)
    q.push(_ramp(3 * RATE, 2 * RATE), 1.0)
    sent += _drain(q, final=True)
    assert q.dropped_samples == 0 and q.take_drop() is None
    assert np.array_equal(np.concatenate(sent), _ramp(0, 5 * RATE))
    assert q.buffered_s == 5.0                          # unconfirmed: all kept for a replay


def test_file_replay_after_an_outage_resends_everything_no_final_covered() -> None:
    """Without a final (asr_ack confirms nothing before END), a lost sequence's replay is the
    whole file so far: the new sequence counts every sample, none dropped."""
    q = _queue(max_buffer_s=1.0, policy=SourcePolicy.FILE)
    pushed = 0
    for _ in range(2):
        for _ in range(4):                              # 4 x 1 s, sent as it comes
            pushed = _fill(q, pushed)
            _drain(q)
        q.restart()                                     # the stream broke
        assert q.pending_samples == pushed and not q.has_room(1)
    replay = _drain(q, final=True)
    assert np.array_equal(np.concatenate(replay), _ramp(0, pushed))
    assert q.dropped_samples == 0 and q.take_drop() is None


def test_file_replay_starts_at_the_last_final() -> None:
    q = _queue(max_buffer_s=1.0, policy=SourcePolicy.FILE)
    q.push(_ramp(0, 4 * RATE), 0.0)
    _drain(q)
    q.confirm(2.5)                                      # a final up to 2.5 s
    q.restart()
    replay = _drain(q, final=True)
    assert np.array_equal(np.concatenate(replay), _ramp(40000, 4 * RATE - 40000))
    assert q.dropped_samples == 0



def test_arrival_of_is_the_held_chunk_around_each_position_across_a_gap() -> None:
    """Checked against a plain search of the held chunks at every 10 ms of sequence time,
    with audio dropped between two of them (the sequence's time map breaks there)."""
    q = _queue(max_buffer_s=1.0)
    for k in range(4):                                  # sent one by one, none confirmed
        q.push(_ramp(k * CHUNK, CHUNK), float(k))
        assert q.next_chunk() is not None
    q.push(_ramp(4 * CHUNK, RATE + 2 * CHUNK), 10.0)    # forgets sent audio, drops unsent
    assert q.next_chunk(max_chunks=1) is not None
    assert q.next_chunk(max_chunks=1) is not None
    assert q.dropped_samples > 0 and len(q._unconfirmed) >= 2
    held = [(c.start, c.end, c.pushed_at) for c in q._unconfirmed]
    found = set()
    for step in range(200):
        position = q.channel_position(step / 100)
        expected = next((at for start, end, at in held if start < position <= end), None)
        assert q.arrival_of(step / 100) == expected, step
        found.add(expected)
    assert found == {at for _s, _e, at in held} | {None}
