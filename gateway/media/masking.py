"""Redaction masks for the recorder: which samples of a channel to replace, and with what.

A mask is a half-open interval ``[start, end)`` of timeline samples of one channel. The
recorder keeps, per channel, a sorted list of disjoint, non-adjacent masks still to apply
(:func:`add_interval`), splits a new mask into the part already written to disk and the
part still to come (:func:`split_at`), applies the masks to each block of frames it hands
to the file (:func:`apply_masks`) and forgets what is written (:func:`trim_before`).

The replacement (:func:`mask_samples`) is either silence or a 1 kHz sine with a peak at
-20 dBFS (amplitude 3277, RMS about -23 dBFS), its phase taken from the absolute timeline
sample, so a span masked in several pieces (memory, then disk) is one continuous tone.

Layer: pure core.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

MASK_MODES: Final = ("tone", "silence")
TONE_HZ: Final = 1000.0
TONE_AMPLITUDE: Final = round(32767 * 10 ** (-20 / 20))   # -20 dBFS peak: 3277

Interval = tuple[int, int]          # [start, end) in timeline samples, start < end
Frames = npt.NDArray[np.int16]      # shape (n, 2)


def span_samples(start_s: float, end_s: float, padding_s: float, rate_hz: int
                 ) -> Interval | None:
    """The samples a span covers, padded on both sides (start floored, end ceiled, clipped
    at 0); ``None`` for an empty span, a non-finite time or a negative padding."""
    if not all(math.isfinite(v) for v in (start_s, end_s, padding_s)) or padding_s < 0:
        return None
    start = max(0, math.floor((start_s - padding_s) * rate_hz))
    end = max(0, math.ceil((end_s + padding_s) * rate_hz))
    return (start, end) if end > start else None


def add_interval(intervals: Sequence[Interval], new: Interval) -> list[Interval]:
    """``intervals`` (sorted, disjoint) with ``new`` added; overlapping or touching ones merge."""
    start, end = new
    out: list[Interval] = []
    for lo, hi in intervals:
        if hi < start or lo > end:
            out.append((lo, hi))
        else:
            start, end = min(start, lo), max(end, hi)
    out.append((start, end))
    return sorted(out)


def split_at(interval: Interval, boundary: int) -> tuple[Interval | None, Interval | None]:
    """The parts of ``interval`` before ``boundary`` (written out) and from it on (to come)."""
    start, end = interval
    before = (start, min(end, boundary)) if start < boundary else None
    after = (max(start, boundary), end) if end > boundary else None
    return before, after


def clip(intervals: Sequence[Interval], start: int, end: int) -> list[Interval]:
    """The parts of ``intervals`` inside ``[start, end)``."""
    return [(max(lo, start), min(hi, end)) for lo, hi in intervals if lo < end and hi > start]


def trim_before(intervals: Sequence[Interval], position: int) -> list[Interval]:
    """What is left of ``intervals`` from ``position`` on (the rest is written out)."""
    return [(max(lo, position), hi) for lo, hi in intervals if hi > position]


def mask_samples(mode: str, start: int, count: int, rate_hz: int) -> npt.NDArray[np.int16]:
    """The replacement for ``count`` samples from timeline sample ``start``."""
    if mode == "silence":
        return np.zeros(count, dtype=np.int16)
    if mode != "tone":
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
    n = np.arange(start, start + count, dtype=np.float64)
    tone = TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * n / rate_hz)
    return np.round(tone).astype(np.int16)


def apply_masks(frames: Frames, start: int, channel: int, intervals: Sequence[Interval],
                mode: str, rate_hz: int) -> int:
    """Overwrite, in place, the masked samples of column ``channel`` of ``frames`` (timeline
    samples ``start`` ...); the number of samples replaced."""
    replaced = 0
    for lo, hi in clip(intervals, start, start + len(frames)):
        frames[lo - start:hi - start, channel] = mask_samples(mode, lo, hi - lo, rate_hz)
        replaced += hi - lo
    return replaced
