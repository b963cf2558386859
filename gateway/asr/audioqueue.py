"""Per-channel ASR audio queue (pure): chunking, a bounded outage buffer, and replay.

Audio flows ``push`` -> pending -> ``next_chunk`` (sent to Triton) -> unconfirmed.
A final hypothesis confirms audio up to its end; if the Triton sequence is lost, the
unconfirmed audio plus everything pending is replayed into a fresh sequence, so
words spoken during an outage are still transcribed. Pending + unconfirmed audio is
bounded (``max_buffer_s``): beyond it the oldest unconfirmed audio (already sent, kept
only for a replay) is forgotten first, then the oldest pending audio (never sent) is
dropped, counted in ``dropped_samples`` and reported once per episode as a
:class:`DropSpan`.

That bound is the :attr:`SourcePolicy.LIVE` policy (a call: audio arrives in real time
and cannot wait). A :attr:`SourcePolicy.FILE` source (a stored recording, pushed as fast
as it can be read) never loses audio instead: nothing is dropped or forgotten, and
:meth:`has_room` tells its producer to wait while ``max_buffer_s`` of unsent audio is
pending (back-pressure; the shell does the waiting). Its unconfirmed audio is kept until a
final covers it, so a replay after an outage resends all of it.

Positions are channel samples counted from the channel's start. A Triton sequence sees
the audio it was sent back to back; :meth:`channel_s` maps its times back to channel
time, also across audio dropped while the sequence was running.

Layer: pure core.
"""

from __future__ import annotations

import bisect
import enum
from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Audio = npt.NDArray[np.float32]


class SourcePolicy(enum.Enum):
    """What a channel's queue does when its producer is ahead of the model."""
    LIVE = "live"   # real time: bounded, the oldest audio dropped and counted
    FILE = "file"   # faster than real time: the producer waits for room, nothing dropped


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int             # first sample, counted from the channel's start
    audio: Audio
    pushed_at: float       # time the newest sample of the chunk arrived
    sequence_start: bool   # first chunk of a Triton sequence incarnation
    sequence_end: bool
    fresh: bool = True     # carries audio never sent before (not only a replay)

    @property
    def end(self) -> int:
        return self.start + len(self.audio)


@dataclass(frozen=True, slots=True)
class DropSpan:
    """Never-sent audio dropped in one episode (an outage or a stalled stream)."""
    start: int             # first dropped sample (channel position)
    end: int               # end of the last dropped sample
    samples: int           # how many were dropped (gaps between drops excluded)


class ChannelAudioQueue:
    def __init__(self, *, sample_rate_hz: int, chunk_ms: int, max_buffer_s: float,
                 policy: SourcePolicy = SourcePolicy.LIVE) -> None:
        self.policy = policy
        self.rate = sample_rate_hz
        self.chunk_samples = sample_rate_hz * chunk_ms // 1000
        self.max_samples = int(max_buffer_s * sample_rate_hz)
        self._pending: deque[_Pending] = deque()
        self._pending_samples = 0
        self._unconfirmed: deque[Chunk] = deque()
        self._unconfirmed_samples = 0  # kept with _unconfirmed: sums run on every push
        self._tail = 0               # channel position after the newest audio pushed
        self.confirmed = 0           # channel position up to which finals cover the audio
        self._finalized = 0          # the same, from finals only (not from trimming)
        self.dropped_samples = 0     # never-sent audio dropped, ever
        self._sent_high = 0          # end of the newest audio ever sent
        self._sent_in_sequence = 0   # samples the current sequence has been sent
        self._sequence_end = 0       # channel position after the sequence's last sample
        # (sequence sample, channel position) where the current sequence's audio resumes
        self._breaks: list[tuple[int, int]] = [(0, 0)]
        self._drop: DropSpan | None = None
        self._dropped_end = 0
        self._starting = True
        self.ended = False
        self.last_sent_at: float | None = None

    @property
    def buffered_s(self) -> float:
        return (self._pending_samples + self._unconfirmed_samples) / self.rate

    @property
    def pending_samples(self) -> int:
        """Audio pushed and not sent yet (a replay's audio included)."""
        return self._pending_samples

    def has_room(self, samples: int) -> bool:
        """Whether a FILE source may push ``samples`` more now (always, for LIVE): while
        less than ``max_buffer_s`` is pending; a push bigger than that fits an empty queue."""
        if self.policy is SourcePolicy.LIVE or not self._pending_samples:
            return True
        return self._pending_samples + samples <= self.max_samples

    @property
    def next_start(self) -> int:
        """Channel position of the first pending sample (the end of all audio when none)."""
        return self._pending[0].position if self._pending else self._tail

    @property
    def base(self) -> int:
        """Channel position of the current sequence's first sample."""
        return self._breaks[0][1] if not self._starting else self.next_start

    @property
    def started(self) -> bool:
        """Whether the current sequence has been sent its START."""
        return not self._starting

    def push(self, audio: Audio, now: float) -> None:
        if len(audio):
            self._pending.append(_Pending(audio, now, self._tail))
            self._tail += len(audio)
            self._pending_samples += len(audio)
            if self.policy is SourcePolicy.LIVE:
                self._enforce_bound()

    def _enforce_bound(self) -> None:
        while self._unconfirmed and self._total() > self.max_samples:
            old = self._unconfirmed.popleft()      # sent already: only its replay is lost
            self._unconfirmed_samples -= len(old.audio)
            self.confirmed = max(self.confirmed, old.end)
        while self._pending and self._total() > self.max_samples:
            excess = self._total() - self.max_samples   # never sent: these words are lost
            entry = self._pending[0]
            if len(entry.audio) <= excess:
                self._pending.popleft()
                cut = len(entry.audio)
            else:
                cut = excess
                self._pending[0] = _Pending(entry.audio[cut:], entry.pushed_at,
                                            entry.position + cut)
            self._pending_samples -= cut
            self._dropped(entry.position, cut)

    def _dropped(self, start: int, samples: int) -> None:
        self.dropped_samples += samples
        self._dropped_end = max(self._dropped_end, start + samples)
        if self._drop is None:
            self._drop = DropSpan(start, start + samples, samples)
        else:
            self._drop = DropSpan(self._drop.start, start + samples, self._drop.samples + samples)

    def take_drop(self) -> DropSpan | None:
        """The current drop episode, closed (the next drop starts a new one)."""
        drop, self._drop = self._drop, None
        return drop

    def _total(self) -> int:
        return self._pending_samples + self._unconfirmed_samples

    def ready(self, *, final: bool = False) -> bool:
        """Whether :meth:`next_chunk` has something to send."""
        return not self.ended and (final or self._pending_samples >= self.chunk_samples)

    def next_chunk(self, *, final: bool = False, max_chunks: int = 1,
                   now: float | None = None) -> Chunk | None:
        """The next chunk to send: up to ``max_chunks`` whole chunks of what is pending (one
        when the sender keeps up), or at ``final`` everything left plus END. A chunk never
        spans audio dropped in between (the sequence's time map breaks there)."""
        if not self.ready(final=final):
            return None
        whole = min(self._pending_samples // self.chunk_samples, max(1, max_chunks))
        take = self._pending_samples if final else whole * self.chunk_samples
        audio, pushed_at, start = self._take(take)
        return self._emit(audio, pushed_at, start, final and not self._pending, now)

    def keepalive_chunk(self, now: float | None = None) -> Chunk | None:
        """What is pending (less than a chunk, possibly nothing) sent to keep a started
        sequence from idling out in Triton; None when there is no open sequence."""
        if self._starting or self.ended:
            return None
        audio, pushed_at, start = self._take(self._pending_samples)
        return self._emit(audio, pushed_at, start, False, now)

    def _emit(self, audio: Audio, pushed_at: float, start: int, end: bool,
              now: float | None) -> Chunk:
        if self._starting:
            self._breaks = [(0, start)]
        elif start != self._sequence_end and len(audio):
            self._breaks.append((self._sent_in_sequence, start))
        chunk = Chunk(start, audio, pushed_at, self._starting, end,
                      fresh=start + len(audio) > self._sent_high)
        self._starting = False
        self._sent_in_sequence += len(audio)
        if len(audio):
            self._sequence_end = chunk.end
            self._sent_high = max(self._sent_high, chunk.end)
            self._unconfirmed.append(chunk)
            self._unconfirmed_samples += len(audio)
        self.ended = end
        if now is not None:
            self.last_sent_at = now
        return chunk

    def _take(self, n: int) -> tuple[Audio, float, int]:
        """Up to ``n`` pending samples from one contiguous run: (audio, newest arrival,
        channel position of the first sample)."""
        parts: list[Audio] = []
        start = self.next_start
        pushed_at = self._pending[0].pushed_at if self._pending else 0.0
        position = start
        while n > 0 and self._pending and self._pending[0].position == position:
            entry = self._pending[0]
            if len(entry.audio) <= n:
                self._pending.popleft()
                parts.append(entry.audio)
            else:
                parts.append(entry.audio[:n])
                self._pending[0] = _Pending(entry.audio[n:], entry.pushed_at, position + n)
            n -= len(parts[-1])
            position += len(parts[-1])
            self._pending_samples -= len(parts[-1])
            pushed_at = entry.pushed_at
        return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), pushed_at, start

    def channel_position(self, seq_s: float) -> int:
        """Channel position of sequence time ``seq_s`` of the current sequence."""
        sample = round(seq_s * self.rate)
        index = bisect.bisect_right(self._breaks, (sample, self._tail + 1)) - 1
        seq0, pos0 = self._breaks[max(0, index)]
        return pos0 + sample - seq0

    def channel_s(self, seq_s: float) -> float:
        """Channel time (seconds from the channel's start) of sequence time ``seq_s``."""
        return self.channel_position(seq_s) / self.rate

    def confirm(self, end_s: float) -> None:
        """A final hypothesis covers audio up to ``end_s`` (sequence time)."""
        position = self.channel_position(end_s)
        self.confirmed = max(self.confirmed, position)
        self._finalized = max(self._finalized, position)
        while self._unconfirmed and self._unconfirmed[0].end <= self.confirmed:
            self._unconfirmed_samples -= len(self._unconfirmed.popleft().audio)

    def arrival_of(self, end_s: float) -> float | None:
        """When the audio at ``end_s`` (sequence time) reached the gateway; None when that
        audio is no longer held. Searched from the newest chunk: the unconfirmed chunks are
        in channel order and apart, and a hypothesis is usually about the newest audio (a
        model that confirms nothing before END holds the whole buffer unconfirmed)."""
        position = self.channel_position(end_s)
        for chunk in reversed(self._unconfirmed):
            if chunk.start < position:
                return chunk.pushed_at if position <= chunk.end else None
        return None

    def restart(self) -> None:
        """The Triton sequence was lost: replay unconfirmed audio into a new one. Sent audio
        that no final covered and that the bound forgot cannot be replayed: it is lost, and
        counted with the drops."""
        replay = [_Pending(c.audio, c.pushed_at, c.start) for c in self._unconfirmed]
        if replay and replay[0].position < self.confirmed:   # a final ended inside it
            first, cut = replay[0], self.confirmed - replay[0].position
            replay[0] = _Pending(first.audio[cut:], first.pushed_at, self.confirmed)
        resume = replay[0].position if replay else self.next_start
        lost_from = max(self._finalized, self._dropped_end)
        if self._sent_in_sequence and resume > lost_from:
            self._dropped(lost_from, resume - lost_from)
        self._finalized = max(self._finalized, resume)
        self._pending.extendleft(reversed(replay))
        self._pending_samples += sum(len(r.audio) for r in replay)
        self._unconfirmed.clear()
        self._unconfirmed_samples = 0
        self._sent_in_sequence = 0
        self._starting = True
        self.ended = False


@dataclass(frozen=True, slots=True)
class _Pending:
    audio: Audio
    pushed_at: float
    position: int
