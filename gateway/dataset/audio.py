"""The audio of an export: a recording read once, each segment cut from its channel,
resampled to 16 kHz mono (soxr) and written as FLAC or WAV (16-bit PCM, soundfile).

Recordings are read by :mod:`gateway.batch.audio` (the recorder's stereo WAV or FLAC,
mono files, any rate and WAV codec batch transcription reads); a bad one raises
:class:`~gateway.batch.formats.BadAudio` or ``OSError``. Redacted spans need nothing here:
the recorder already replaced them by its tone before the file was written.

Layer: shell.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import soxr

from gateway.batch.audio import open_audio
from gateway.batch.formats import BadAudio

RATE_HZ: Final = 16000
FORMATS: Final = ("flac", "wav")
READ_BLOCK: Final = 1 << 16
Samples = npt.NDArray[np.float32]

__all__ = ["FORMATS", "RATE_HZ", "BadAudio", "Recording", "read_recording", "write_segment"]


@dataclass(frozen=True, slots=True)
class Recording:
    """A whole recording in memory: float32 samples, one column per channel."""

    samples: Samples
    rate_hz: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.rate_hz

    def cut(self, column: int, start_s: float, end_s: float) -> Samples:
        """One channel from ``start_s`` to ``end_s`` (clipped to the file), at 16 kHz."""
        lo = max(0, math.floor(start_s * self.rate_hz))
        hi = min(len(self.samples), math.ceil(end_s * self.rate_hz))
        piece = np.ascontiguousarray(self.samples[lo:max(lo, hi), column])
        if self.rate_hz == RATE_HZ or len(piece) == 0:
            return piece.astype(np.float32)
        out = soxr.resample(piece, self.rate_hz, RATE_HZ, quality="HQ")
        return np.asarray(out, dtype=np.float32)


def read_recording(path: Path) -> Recording:
    """The whole file (a conversation's recording is minutes, not hours)."""
    with open_audio(path) as reader:
        info = reader.info
        blocks = list(reader.blocks(READ_BLOCK))
    samples = (np.concatenate(blocks) if blocks
               else np.zeros((0, info.channels), dtype=np.float32))
    if len(samples) == 0:
        raise BadAudio("no audio")
    return Recording(np.asarray(samples, dtype=np.float32), info.rate_hz)


def _soundfile() -> Any:
    return importlib.import_module("soundfile")


def write_segment(path: Path, samples: Samples, fmt: str) -> int:
    """Write 16 kHz mono 16-bit ``samples`` to ``path`` (``flac`` or ``wav``), through a
    temporary name; the number of frames written."""
    if fmt not in FORMATS:
        raise ValueError(f"audio format must be flac or wav, not {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    pcm = np.clip(samples, -1.0, 32767 / 32768)
    _soundfile().write(str(tmp), pcm, RATE_HZ, subtype="PCM_16", format=fmt.upper())
    tmp.replace(path)
    return len(pcm)
