"""Per-channel ASR audio queue (pure): chunking, a bounded outage buffer, and replay.

Audio flows ``push`` -> pending -> ``next_chunk`` (sent to Triton) -> unconfirmed.
A final hypothesis confirms audio up to its end; if the Triton stream breaks, the
unconfirmed audio plus everything pending is replayed into a fresh sequence, so
words spoken during an outage are still transcribed. Pending + unconfirmed audio is
bounded (``max_buffer_s``); beyond it the oldest audio is dropped and counted.

Layer: pure core.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Audio = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int             # first sample, counted from the channel's start
    audio: Audio
    pushed_at: float       # loop time the newest sample of the chunk arrived
    sequence_start: bool   # first chunk of a Triton sequence incarnation
    sequence_end: bool

    @property
    def end(self) -> int:
        return self.start + len(self.audio)


class ChannelAudioQueue:
    def __init__(self, *, sample_rate_hz: int, chunk_ms: int, max_buffer_s: float) -> None:
        self.rate = sample_rate_hz
        self.chunk_samples = sample_rate_hz * chunk_ms // 1000
        self.max_samples = int(max_buffer_s * sample_rate_hz)
        self._pending: deque[tuple[Audio, float]] = deque()
        self._pending_samples = 0
        self._unconfirmed: deque[Chunk] = deque()
        self._unconfirmed_samples = 0  # kept with _unconfirmed: sums run on every push
        self.next_start = 0          # channel position of the first pending sample
        self.base = 0                # channel position where the current sequence began
        self.confirmed = 0           # channel position up to which finals cover the audio
        self.dropped_samples = 0
        self._starting = True
        self.ended = False

    @property
    def buffered_s(self) -> float:
        return (self._pending_samples + self._unconfirmed_samples) / self.rate

    def push(self, audio: Audio, now: float) -> None:
        if len(audio):
            self._pending.append((audio, now))
            self._pending_samples += len(audio)
            self._enforce_bound()

    def _enforce_bound(self) -> None:
        while self._unconfirmed and self._total() > self.max_samples:
            old = self._unconfirmed.popleft()      # oldest audio goes first
            self._unconfirmed_samples -= len(old.audio)
            self.dropped_samples += len(old.audio)
            self.confirmed = max(self.confirmed, old.end)
        while self._pending and self._total() > self.max_samples:
            audio, _t = self._pending.popleft()
            self._pending_samples -= len(audio)
            self.dropped_samples += len(audio)
            self.next_start += len(audio)

    def _total(self) -> int:
        return self._pending_samples + self._unconfirmed_samples

    def ready(self, *, final: bool = False) -> bool:
        """Whether :meth:`next_chunk` has something to send."""
        return not self.ended and (final or self._pending_samples >= self.chunk_samples)

    def next_chunk(self, *, final: bool = False, max_chunks: int = 1) -> Chunk | None:
        """The next chunk to send: up to ``max_chunks`` whole chunks of what is pending (one
        when the sender keeps up), or at ``final`` everything left plus END."""
        if not self.ready(final=final):
            return None
        whole = min(self._pending_samples // self.chunk_samples, max(1, max_chunks))
        take = self._pending_samples if final else whole * self.chunk_samples
        audio, pushed_at = self._take(take)
        chunk = Chunk(self.next_start, audio, pushed_at, self._starting, final)
        self._starting = False
        self.next_start += len(audio)
        self._unconfirmed.append(chunk)
        self._unconfirmed_samples += len(audio)
        self.ended = final
        return chunk

    def _take(self, n: int) -> tuple[Audio, float]:
        parts: list[Audio] = []
        pushed_at = 0.0
        while n > 0 and self._pending:
            audio, t = self._pending[0]
            if len(audio) <= n:
                self._pending.popleft()
                parts.append(audio)
            else:
                parts.append(audio[:n])
                self._pending[0] = (audio[n:], t)
            n -= len(parts[-1])
            self._pending_samples -= len(parts[-1])
            pushed_at = t
        return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), pushed_at

    def confirm(self, end_s: float) -> None:
        """A final hypothesis covers audio up to ``end_s`` (sequence time)."""
        self.confirmed = max(self.confirmed, self.base + int(end_s * self.rate))
        while self._unconfirmed and self._unconfirmed[0].end <= self.confirmed:
            self._unconfirmed_samples -= len(self._unconfirmed.popleft().audio)

    def arrival_of(self, end_s: float) -> float | None:
        """Loop time the audio at ``end_s`` (sequence time) reached the gateway."""
        position = self.base + int(end_s * self.rate)
        for chunk in self._unconfirmed:
            if chunk.start <= position < chunk.end or chunk.end == position:
                return chunk.pushed_at
        return None

    def restart(self) -> None:
        """The Triton sequence was lost: replay unconfirmed audio into a new one."""
        replay = [(c.audio, c.pushed_at) for c in self._unconfirmed]
        start = self._unconfirmed[0].start if self._unconfirmed else self.next_start
        self._pending.extendleft(reversed(replay))
        self._pending_samples += sum(len(a) for a, _t in replay)
        self._unconfirmed.clear()
        self._unconfirmed_samples = 0
        self.next_start = self.base = start
        self._starting = True
        self.ended = False
