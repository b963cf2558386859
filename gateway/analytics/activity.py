"""Voice activity of one channel's decoded audio, as talk spurts (issue 17 statistics).

:class:`TalkSpurtSegmenter` takes a channel's 8 kHz audio as it is decoded (any chunk size,
at its position in samples from the leg's start) and cuts it into 20 ms frames on a fixed
grid (frame ``k`` covers samples ``[160 k, 160 (k + 1))``). A frame is *voiced* when its
RMS level is at or above ``threshold_dbfs``. A talk spurt is a run of voiced frames in which
no gap of unvoiced frames reaches ``hangover_ms`` (so a spurt is not cut between words); it
counts once it has ``min_talk_ms`` of voiced frames, so a click, or a few clicks, is no
talk.

What comes out are :class:`Boundary` values, only at spurt edges, never per frame:

- a start (``speaking=True``) at the spurt's first voiced frame, reported once the spurt
  counts (``min_talk_ms`` after it began);
- a stop (``speaking=False``) at the end of its last voiced frame, reported once the gap
  after it reaches ``hangover_ms`` (or at :meth:`TalkSpurtSegmenter.end`).

Both are exact to the 20 ms frame. Audio that never came counts as silence: a position
that jumps forward (comfort noise, a dead source beyond the clock's silence fill) is a run
of unvoiced frames, and so is the rest of a frame left incomplete. A position that goes
back (never expected from the decoder) is skipped over, the grid stays where it was.

Layer: pure core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ = 8000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE_HZ * FRAME_MS // 1000
FULL_SCALE = 32768.0


@dataclass(frozen=True, slots=True)
class ActivitySettings:
    """The detector's knobs (``[statistics]`` in the config)."""

    threshold_dbfs: float = -40.0
    hangover_ms: int = 300
    min_talk_ms: int = 100

    @property
    def hangover_frames(self) -> int:
        return max(1, -(-self.hangover_ms // FRAME_MS))

    @property
    def min_talk_frames(self) -> int:
        return max(1, -(-self.min_talk_ms // FRAME_MS))

    @property
    def threshold_energy(self) -> float:
        """The sum of squares over one frame at ``threshold_dbfs`` RMS."""
        rms = FULL_SCALE * float(10.0 ** (self.threshold_dbfs / 20.0))
        return rms * rms * FRAME_SAMPLES


@dataclass(frozen=True, slots=True)
class Boundary:
    """One edge of a talk spurt, at a frame edge (``position``: samples from leg start)."""

    speaking: bool
    position: int
    start: int
    """The spurt's first sample (the same as ``position`` for a start)."""

    @property
    def frame(self) -> int:
        return self.position // FRAME_SAMPLES


class TalkSpurtSegmenter:
    """Talk spurts of one channel (see the module docstring)."""

    def __init__(self, settings: ActivitySettings) -> None:
        self.settings = settings
        self._threshold = settings.threshold_energy
        self._pending = np.zeros(0, dtype=np.float32)  # samples of the incomplete frame
        self._frame = 0                 # index of the next frame to decide
        self._first: int | None = None  # first voiced frame of the spurt being followed
        self._last = -1                 # its latest voiced frame
        self._voiced = 0                # its voiced frames so far
        self.speaking = False           # the spurt counts (its start was reported)

    @property
    def position(self) -> int:
        """Samples of the leg accounted for (decided frames and the incomplete one)."""
        return self._frame * FRAME_SAMPLES + len(self._pending)

    def push(self, position: int, pcm: npt.NDArray[np.int16]) -> list[Boundary]:
        """The audio at ``position`` (samples from leg start); the edges it completes."""
        out: list[Boundary] = []
        ahead = position - self.position
        if ahead > 0:
            self._silence(ahead, out)
        elif ahead < 0:
            pcm = pcm[-ahead:]
        if len(pcm) == 0:
            return out
        samples = pcm.astype(np.float32)
        if len(self._pending):
            samples = np.concatenate((self._pending, samples))
        whole = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = samples[whole:]
        if whole:
            frames = samples[:whole].reshape(-1, FRAME_SAMPLES)
            energy = np.einsum("ij,ij->i", frames, frames)
            for value in energy.tolist():
                self._decide(value >= self._threshold, out)
        return out

    def end(self) -> list[Boundary]:
        """The audio ended (at :attr:`position`): an incomplete last frame is decided as it
        is (the rest of it silent), then a spurt that counts stops at its last voiced frame
        (at the end of the audio, when that came first); one that does not count is dropped."""
        out: list[Boundary] = []
        end = self.position
        if len(self._pending):
            self._silence(FRAME_SAMPLES - len(self._pending), out)
        if self.speaking:
            stop = self._stop()
            out.append(Boundary(False, min(stop.position, end), stop.start))
        self._first, self.speaking = None, False
        return out

    def _silence(self, samples: int, out: list[Boundary]) -> None:
        """``samples`` of missing audio: unvoiced, and runs of whole frames in one step."""
        if len(self._pending):
            fill = FRAME_SAMPLES - len(self._pending)
            if samples < fill:
                self._pending = np.concatenate(
                    (self._pending, np.zeros(samples, dtype=np.float32)))
                return
            energy = float(np.dot(self._pending, self._pending))
            self._pending = np.zeros(0, dtype=np.float32)
            self._decide(energy >= self._threshold, out)
            samples -= fill
        frames, rest = divmod(samples, FRAME_SAMPLES)
        if frames and self._first is not None \
                and self._frame + frames > self._last + self.settings.hangover_frames:
            self._close(out)
        self._frame += frames
        self._pending = np.zeros(rest, dtype=np.float32)

    def _decide(self, voiced: bool, out: list[Boundary]) -> None:
        frame = self._frame
        self._frame += 1
        if voiced:
            if self._first is None:
                self._first, self._voiced = frame, 0
            self._last = frame
            self._voiced += 1
            if not self.speaking and self._voiced >= self.settings.min_talk_frames:
                self.speaking = True
                start = self._first * FRAME_SAMPLES
                out.append(Boundary(True, start, start))
        elif self._first is not None and frame - self._last >= self.settings.hangover_frames:
            self._close(out)

    def _close(self, out: list[Boundary]) -> None:
        """The gap after the followed spurt reached the hangover."""
        if self.speaking:
            out.append(self._stop())
        self._first, self.speaking = None, False

    def _stop(self) -> Boundary:
        first = self._first if self._first is not None else self._last
        return Boundary(False, (self._last + 1) * FRAME_SAMPLES, first * FRAME_SAMPLES)
