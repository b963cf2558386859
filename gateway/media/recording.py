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

Redaction (:meth:`StereoRecorder.mask`): a span of one channel is replaced by a 1 kHz tone
or silence (``mask_mode``, see :mod:`gateway.media.masking`). With ``delay_s`` the memory
window is at least that long, so a mask arriving up to ``delay_s`` after its audio (a
final's latency) is applied before the audio is written: a crash then loses at most
``max(late_window_s, delay_s) + flush_interval_s``, and unmasked audio of such a span never
reaches the file. A mask is kept until its part of the timeline is written out, so it also
covers audio that arrives after it (a span ahead of the audio, a late leg mixed in). A mask
later than the window: its part already on disk is overwritten in place in a WAV file
(counted in :attr:`StereoRecorder.late_patched_samples`); a FLAC stream cannot be patched,
so that part stays as it is (counted in :attr:`StereoRecorder.late_unpatched_samples`):
with FLAC the delay window is the only protection.

FLAC needs the optional ``soundfile`` package; without it ``fmt="flac"`` raises
:class:`RecordingFormatError` at construction. The crash guarantee is WAV-only: a FLAC file
left by a crash has no STREAMINFO totals, and libsndfile itself then refuses to read it.

Layer: shell.
"""

from __future__ import annotations

import importlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final, Protocol

import numpy as np
import numpy.typing as npt

from gateway.media import masking

CHANNEL_INDEX: Final = {"agent": 0, "customer": 1}  # agent LEFT, customer RIGHT
FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750
_WAV_HEADER_BYTES: Final = 44
_FRAME_BYTES: Final = 4  # 2 channels x 16 bit
_WAV_MAX_DATA_BYTES: Final = 0xFFFF_FFFF - 36
_PATCH_BLOCK: Final = 8000  # frames read and rewritten at a time by an on-disk patch

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


@dataclass(frozen=True, slots=True)
class MaskResult:
    """What one :meth:`StereoRecorder.mask` found already on disk (samples of its channel)."""

    on_disk: int = 0    # samples of the span written out unmasked before the mask came
    patched: int = 0    # of those, overwritten in place (WAV); the rest stay unmasked

    @property
    def late(self) -> bool:
        return self.on_disk > 0


class _Sink(Protocol):
    def append(self, frames: Frames) -> int: ...   # returns frames it could not store
    def patch(self, start: int, channel: int, samples: npt.NDArray[np.int16]) -> int: ...
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

    def patch(self, start: int, channel: int, samples: npt.NDArray[np.int16]) -> int:
        """Overwrite one channel of frames ``start``... in the data chunk; samples patched."""
        end = min(start + len(samples), self._data_bytes // _FRAME_BYTES)
        if end <= start:
            return 0
        self._file.seek(_WAV_HEADER_BYTES + start * _FRAME_BYTES)
        raw = self._file.read((end - start) * _FRAME_BYTES)
        frames = np.frombuffer(raw, dtype="<i2").reshape(-1, 2).copy()
        frames[:, channel] = samples[:end - start]
        self._file.seek(_WAV_HEADER_BYTES + start * _FRAME_BYTES)
        self._file.write(frames.tobytes())
        self._file.seek(0, os.SEEK_END)
        self._file.flush()
        return end - start

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

    def patch(self, start: int, channel: int, samples: npt.NDArray[np.int16]) -> int:
        return 0    # a FLAC stream cannot be rewritten in place

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
    ``delay_s`` (redaction) keeps at least that much of the timeline in memory before it is
    written; ``mask_mode`` (``tone`` or ``silence``) is what :meth:`mask` puts in a span.
    """

    def __init__(self, path: Path, *, sample_rate_hz: int = 8000, fmt: str = "wav",
                 flush_interval_s: float = 1.0, late_window_s: float = 0.5,
                 max_gap_s: float = 600.0, delay_s: float = 0.0,
                 mask_mode: str = "tone") -> None:
        if fmt not in ("wav", "flac"):
            raise RecordingFormatError(f"recording format must be 'wav' or 'flac', got {fmt!r}")
        if mask_mode not in masking.MASK_MODES:
            raise RecordingError(f"mask_mode must be 'tone' or 'silence', got {mask_mode!r}")
        if fmt == "flac":
            _soundfile()  # fail before creating the file
        if (sample_rate_hz <= 0 or flush_interval_s <= 0 or late_window_s < 0 or max_gap_s < 0
                or not delay_s >= 0):
            raise RecordingError("sample_rate_hz and flush_interval_s must be > 0, "
                                 "late_window_s, max_gap_s and delay_s >= 0")
        self.path = Path(path)
        self.sample_rate_hz = sample_rate_hz
        self.mask_mode = mask_mode
        self._late = round(max(late_window_s, delay_s) * sample_rate_hz)
        self._flush_every = max(1, round(flush_interval_s * sample_rate_hz))
        self._max_gap = round(max_gap_s * sample_rate_hz)
        self._capacity = self._late + self._flush_every
        self._pending: Frames = np.zeros((self._capacity, 2), dtype=np.int16)
        self._flushed = 0  # timeline position of _pending[0] (= frames handed to the sink)
        self._end = 0      # furthest timeline position written, exclusive
        self._dropped = 0
        self._masks: dict[int, list[masking.Interval]] = {i: [] for i in CHANNEL_INDEX.values()}
        self._late_patched = 0
        self._late_unpatched = 0
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

    @property
    def memory_window_s(self) -> float:
        """How much of the timeline (back from its end) is held in memory before writing."""
        return self._late / self.sample_rate_hz

    @property
    def late_patched_samples(self) -> int:
        """Samples (of one channel each) masked after they were written: overwritten in the
        file (WAV)."""
        return self._late_patched

    @property
    def late_unpatched_samples(self) -> int:
        """Samples masked after they were written that could not be overwritten (FLAC):
        they stay unmasked in the file."""
        return self._late_unpatched

    def mask(self, channel: str, start_s: float, end_s: float, *,
             padding_s: float = 0.0) -> MaskResult:
        """Replace ``[start_s - padding_s, end_s + padding_s)`` (timeline seconds) of one
        channel with the mask (tone or silence), whenever that audio arrives.

        The part not yet written is masked as it is written (including audio that comes
        after this call); the part already written is patched in the file now (WAV) or
        counted as left unmasked (FLAC). An empty or non-finite span masks nothing.
        """
        if self._closed:
            raise RecorderClosedError(f"recording {self.path} is closed")
        index = _channel_index(channel)
        span = masking.span_samples(start_s, end_s, padding_s, self.sample_rate_hz)
        if span is None:
            return MaskResult()
        written, to_come = masking.split_at(span, self._flushed)
        if to_come is not None:
            self._masks[index] = masking.add_interval(self._masks[index], to_come)
        return MaskResult() if written is None else self._patch(index, written)

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
        index = _channel_index(channel)
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
        return index

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
        lost = self._append(self._pending[:kept], self._flushed)
        position = self._flushed + kept
        while position < target:
            block = min(target - position, self._capacity)
            lost += self._append(np.zeros((block, 2), dtype=np.int16), position)
            position += block
        self._dropped += 2 * lost
        self._pending[:self._capacity - kept] = self._pending[kept:].copy()
        self._pending[self._capacity - kept:] = 0
        self._flushed = target
        for index, intervals in self._masks.items():
            self._masks[index] = masking.trim_before(intervals, target)
        self._sink.commit()

    def _append(self, frames: Frames, start: int) -> int:
        """Apply the pending masks to ``frames`` (timeline ``start``...) and write them."""
        for index, intervals in self._masks.items():
            if intervals:
                masking.apply_masks(frames, start, index, intervals, self.mask_mode,
                                    self.sample_rate_hz)
        return self._sink.append(frames)

    def _patch(self, index: int, written: masking.Interval) -> MaskResult:
        """Mask a stretch already handed to the sink: overwrite it in the file if it can."""
        start, end = written
        patched = 0
        for lo in range(start, end, _PATCH_BLOCK):
            hi = min(lo + _PATCH_BLOCK, end)
            samples = masking.mask_samples(self.mask_mode, lo, hi - lo, self.sample_rate_hz)
            patched += self._sink.patch(lo, index, samples)
        self._late_patched += patched
        self._late_unpatched += end - start - patched
        return MaskResult(on_disk=end - start, patched=patched)


def _channel_index(channel: str) -> int:
    if channel not in CHANNEL_INDEX:
        raise ChunkError(f"channel must be 'agent' or 'customer', got {channel!r}")
    return CHANNEL_INDEX[channel]
