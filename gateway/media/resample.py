"""Per-leg streaming resampler over libsoxr, plus the int16 <-> float32 sample conversions.

One :class:`StreamResampler` lives as long as one direction of one leg: soxr keeps the filter
history between chunks, so 20 ms chunks come out click-free and identical to resampling the
whole signal at once. Output is mono float32 in [-1, 1].

Layer: pure core.
"""

from __future__ import annotations

from typing import Final, cast

import numpy as np
import numpy.typing as npt
import soxr

__all__ = [
    "QUALITIES",
    "ResampleError",
    "StreamResampler",
    "to_float32",
    "to_int16",
]

QUALITIES: Final = frozenset({"QQ", "LQ", "MQ", "HQ", "VHQ"})
_INT16_SCALE: Final = 32768.0
_EMPTY: Final = np.zeros(0, dtype=np.float32)

Pcm = npt.NDArray[np.int16] | npt.NDArray[np.float32]


class ResampleError(ValueError):
    """Bad resampler settings or samples of the wrong shape or type."""


def to_float32(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """int16 PCM to float32 in [-1, 1): divides by 32768."""
    return pcm.astype(np.float32) * np.float32(1.0 / _INT16_SCALE)


def to_int16(x: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    """float32 in [-1, 1] to int16 PCM: scales by 32768, rounds to nearest, clips."""
    scaled = np.rint(x * np.float32(_INT16_SCALE))
    pcm: npt.NDArray[np.int16] = np.clip(scaled, -_INT16_SCALE, _INT16_SCALE - 1.0).astype(np.int16)
    return pcm


def _as_float32(pcm: Pcm) -> npt.NDArray[np.float32]:
    if not isinstance(pcm, np.ndarray) or pcm.ndim != 1:
        raise ResampleError("expected a 1-D numpy array of mono samples")
    if pcm.dtype == np.int16:
        # the quoted type is not evaluated: a subscripted NDArray built per 20 ms frame cost
        # more than the conversion itself
        return to_float32(cast("npt.NDArray[np.int16]", pcm))
    if pcm.dtype == np.float32:
        return np.ascontiguousarray(pcm)
    raise ResampleError(f"expected int16 or float32 samples, got {pcm.dtype}")


class StreamResampler:
    """Stateful mono resampler: feed chunks with :meth:`process`, end with :meth:`flush`."""

    __slots__ = ("_in_rate_hz", "_out_rate_hz", "_stream")

    def __init__(self, in_rate_hz: int, out_rate_hz: int, quality: str = "HQ") -> None:
        if in_rate_hz <= 0 or out_rate_hz <= 0:
            raise ResampleError(f"sample rates must be positive: {in_rate_hz} -> {out_rate_hz}")
        if quality not in QUALITIES:
            raise ResampleError(f"quality must be one of {sorted(QUALITIES)}, got {quality!r}")
        self._in_rate_hz = in_rate_hz
        self._out_rate_hz = out_rate_hz
        self._stream: soxr.ResampleStream | None = None
        if in_rate_hz != out_rate_hz:
            self._stream = soxr.ResampleStream(
                in_rate_hz, out_rate_hz, 1, dtype="float32", quality=quality
            )

    @property
    def in_rate_hz(self) -> int:
        return self._in_rate_hz

    @property
    def out_rate_hz(self) -> int:
        return self._out_rate_hz

    @property
    def delay_s(self) -> float:
        """Output soxr is holding back right now (filter delay plus block buffering), seconds."""
        if self._stream is None:
            return 0.0
        return float(self._stream.delay()) / self._out_rate_hz

    def process(self, pcm: Pcm) -> npt.NDArray[np.float32]:
        """Resample one chunk; may return fewer (or zero) samples while soxr fills a block."""
        x = _as_float32(pcm)
        if self._stream is None:
            return np.clip(x, -1.0, 1.0)
        y: npt.NDArray[np.float32] = self._stream.resample_chunk(x)
        return np.clip(y, -1.0, 1.0, out=y)

    def close(self) -> None:
        """Free the native soxr state now (a closed resampler passes samples through): native
        objects still alive at interpreter exit are reported by nanobind as leaks."""
        self._stream = None

    def flush(self) -> npt.NDArray[np.float32]:
        """The tail still held at end of stream; the resampler is then ready for a new signal."""
        if self._stream is None:
            return _EMPTY.copy()
        y: npt.NDArray[np.float32] = self._stream.resample_chunk(_EMPTY, last=True)
        self._stream.clear()
        return np.clip(y, -1.0, 1.0, out=y)
