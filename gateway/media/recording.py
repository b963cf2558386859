"""Per-conversation stereo recording: agent LEFT, customer RIGHT, 16-bit, time-aligned.

Blocking file I/O in small pieces (no asyncio, no clocks): meant to be called from the event
loop with 20 ms chunks. Position is the conversation timeline in samples, given by the caller.

Buffering: the last ``late_window_s`` of the timeline (measured back from the furthest sample
written on either channel) stays in memory so that a leg arriving a little late is still
mixed in. Everything older is written out once at least ``flush_interval_s`` of it has
accumulated; at each flush the WAV header's RIFF/data sizes are rewritten and the Python
buffer is flushed to the kernel (no fsync: a killed process loses nothing written, a power
cut may). So a ``kill -9`` loses at most ``late_window_s + flush_interval_s`` of audio
(1.5 s by default), and the file is a valid WAV up to the last flush.

Writes starting before the flushed part are cut (dropped samples are counted in
:attr:`StereoRecorder.dropped_samples`); overlapping writes are summed with saturation.

FLAC needs the optional ``soundfile`` package; without it ``fmt="flac"`` raises
:class:`RecordingFormatError` at construction. The crash guarantee is WAV-only: a FLAC file
left by a crash has no STREAMINFO totals, and libsndfile itself then refuses to read it.

Layer: shell.
"""

from __future__ import annotations

import importlib
import os
import struct
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final, Protocol

import numpy as np
import numpy.typing as npt

CHANNEL_INDEX: Final = {"agent": 0, "customer": 1}  # agent LEFT, customer RIGHT
FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750
_WAV_HEADER_BYTES: Final = 44
_FRAME_BYTES: Final = 4  # 2 channels x 16 bit
_WAV_MAX_DATA_BYTES: Final = 0xFFFF_FFFF - 36

Frames = npt.NDArray[np.int16]  # shape (n, 2)


class RecordingError(ValueError):
    """Base class of this module's errors."""


class RecordingFormatError(RecordingError):
    """Unknown recording format, or FLAC without the ``soundfile`` package."""


class RecorderClosedError(RecordingError):
    """A write after :meth:`StereoRecorder.close`."""


class ChunkError(RecordingError):
    """A write with a bad channel, position or sample array."""


class TimelineJumpError(ChunkError):
    """A write starting implausibly far after everything written so far."""


class _Sink(Protocol):
    def append(self, frames: Frames) -> int: ...   # returns frames it could not store
    def commit(self) -> None: ...
    def close(self) -> None: ...


def wav_header(sample_rate_hz: int, data_bytes: int) -> bytes:
    """44-byte canonical RIFF/WAVE header for 2-channel 16-bit PCM."""
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16,
                       1, 2, sample_rate_hz, sample_rate_hz * _FRAME_BYTES, _FRAME_BYTES, 16,
                       b"data", data_bytes)


class _WavSink:
    def __init__(self, file: BinaryIO, sample_rate_hz: int) -> None:
        self._file = file
        self._rate = sample_rate_hz
        self._data_bytes = 0
        file.write(wav_header(sample_rate_hz, 0))
        file.flush()

    def append(self, frames: Frames) -> int:
        room = (_WAV_MAX_DATA_BYTES - self._data_bytes) // _FRAME_BYTES
        kept = frames[:room]
        self._file.write(kept.astype("<i2", copy=False).tobytes())
        self._data_bytes += len(kept) * _FRAME_BYTES
        return len(frames) - len(kept)

    def commit(self) -> None:
        header = wav_header(self._rate, self._data_bytes)
        self._file.seek(4)
        self._file.write(header[4:8])
        self._file.seek(40)
        self._file.write(header[40:44])
        self._file.seek(0, os.SEEK_END)
        self._file.flush()

    def close(self) -> None:
        self.commit()
        self._file.close()


class _FlacSink:
    def __init__(self, file: BinaryIO, sample_rate_hz: int) -> None:
        soundfile = _soundfile()
        self._file = file
        self._sound: Any = soundfile.SoundFile(file, mode="w", samplerate=sample_rate_hz,
                                               channels=2, format="FLAC", subtype="PCM_16")

    def append(self, frames: Frames) -> int:
        self._sound.write(frames)
        return 0

    def commit(self) -> None:
        self._sound.flush()
        self._file.flush()

    def close(self) -> None:
        self._sound.close()
        self._file.close()


def _soundfile() -> Any:
    try:
        return importlib.import_module("soundfile")
    except ImportError:
        raise RecordingFormatError(
            "recording format 'flac' needs the 'soundfile' package, which is not installed; "
            "install it or use 'wav'") from None
    except OSError as exc:  # soundfile present but libsndfile missing
        raise RecordingFormatError(f"recording format 'flac' unavailable: {exc}") from None


def _open_exclusive(path: Path) -> BinaryIO:
    """Create ``path`` (mode 0o640 whatever the umask; an existing file is an error)."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "w+b")
    except BaseException:
        os.close(fd)
        raise


class StereoRecorder:
    """Per-conversation stereo recording: agent LEFT, customer RIGHT, 8 kHz 16-bit, time-aligned.

    ``path`` must not exist (its directory is created). ``max_gap_s`` guards against a broken
    timeline: a write starting more than that after the furthest sample so far is refused.
    """

    def __init__(self, path: Path, *, sample_rate_hz: int = 8000, fmt: str = "wav",
                 flush_interval_s: float = 1.0, late_window_s: float = 0.5,
                 max_gap_s: float = 600.0) -> None:
        if fmt not in ("wav", "flac"):
            raise RecordingFormatError(f"recording format must be 'wav' or 'flac', got {fmt!r}")
        if fmt == "flac":
            _soundfile()  # fail before creating the file
        if sample_rate_hz <= 0 or flush_interval_s <= 0 or late_window_s < 0 or max_gap_s < 0:
            raise RecordingError("sample_rate_hz and flush_interval_s must be > 0, "
                                 "late_window_s and max_gap_s >= 0")
        self.path = Path(path)
        self.sample_rate_hz = sample_rate_hz
        self._late = round(late_window_s * sample_rate_hz)
        self._flush_every = max(1, round(flush_interval_s * sample_rate_hz))
        self._max_gap = round(max_gap_s * sample_rate_hz)
        self._capacity = self._late + self._flush_every
        self._pending: Frames = np.zeros((self._capacity, 2), dtype=np.int16)
        self._flushed = 0  # timeline position of _pending[0] (= frames handed to the sink)
        self._end = 0      # furthest timeline position written, exclusive
        self._dropped = 0
        self._closed = False
        file = _open_exclusive(self.path)
        try:
            sink_class = _WavSink if fmt == "wav" else _FlacSink
            self._sink: _Sink = sink_class(file, sample_rate_hz)
        except BaseException:
            file.close()
            raise

    # ------------------------------------------------------------------ public

    @property
    def duration_s(self) -> float:
        """Length of the timeline so far (flushed or not), in seconds."""
        return self._end / self.sample_rate_hz

    @property
    def dropped_samples(self) -> int:
        """Samples refused: their place on the timeline was already written out (late), or
        (both channels counted) beyond the WAV 4 GiB limit."""
        return self._dropped

    def write(self, channel: str, start_sample: int, pcm: npt.NDArray[np.int16]) -> None:
        index = self._check(channel, start_sample, pcm)
        for offset in range(0, len(pcm), self._flush_every):
            piece = pcm[offset:offset + self._flush_every]
            self._write_piece(index, start_sample + offset, piece)

    def close(self) -> Path:
        """Write out everything, finalise the header, close the file; idempotent."""
        if not self._closed:
            self._closed = True
            if self._end > self._flushed:
                self._advance(self._end)
            self._sink.close()
        return self.path

    def __enter__(self) -> StereoRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _check(self, channel: str, start_sample: int, pcm: npt.NDArray[np.int16]) -> int:
        if self._closed:
            raise RecorderClosedError(f"recording {self.path} is closed")
        if channel not in CHANNEL_INDEX:
            raise ChunkError(f"channel must be 'agent' or 'customer', got {channel!r}")
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ChunkError("pcm must be a 1-D numpy int16 array")
        if isinstance(start_sample, bool) or not isinstance(start_sample, int | np.integer):
            raise ChunkError(f"start_sample must be an integer, got {type(start_sample).__name__}")
        if start_sample < 0:
            raise ChunkError(f"start_sample must be >= 0, got {start_sample}")
        if start_sample - self._end > self._max_gap:
            raise TimelineJumpError(
                f"start_sample {start_sample} is {start_sample - self._end} samples after the "
                f"end of the recording ({self._end}); more than max_gap_s allows")
        return CHANNEL_INDEX[channel]

    def _write_piece(self, index: int, start: int, pcm: npt.NDArray[np.int16]) -> None:
        late = min(len(pcm), max(0, self._flushed - start))
        if late:
            self._dropped += late
            pcm, start = pcm[late:], start + late
        if not len(pcm):
            return
        end = start + len(pcm)
        if end > self._flushed + self._capacity:
            self._advance(end - self._capacity)
        lo = start - self._flushed
        column = self._pending[lo:lo + len(pcm), index]
        mixed = column.astype(np.int32) + pcm
        column[:] = np.clip(mixed, -32768, 32767)
        self._end = max(self._end, end)
        target = self._end - self._late
        if target - self._flushed >= self._flush_every:
            self._advance(target)

    def _advance(self, target: int) -> None:
        """Hand the timeline up to ``target`` to the sink (silence past the buffer) and commit."""
        frames = target - self._flushed
        kept = min(frames, self._capacity)
        lost = self._sink.append(self._pending[:kept])
        silence = frames - kept
        while silence > 0:
            block = min(silence, self._capacity)
            lost += self._sink.append(np.zeros((block, 2), dtype=np.int16))
            silence -= block
        self._dropped += 2 * lost
        self._pending[:self._capacity - kept] = self._pending[kept:].copy()
        self._pending[self._capacity - kept:] = 0
        self._flushed = target
        self._sink.commit()
