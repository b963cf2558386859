"""Reading stored recordings in blocks: WAV, FLAC and raw G.711.

:func:`open_audio` looks at a file's first bytes (``RIFF`` ... ``WAVE``: WAV, ``fLaC``:
FLAC) and its name (``.ul`` raw µ-law, ``.al`` raw A-law, 8 kHz unless ``raw_rate`` says
otherwise) and returns a reader whose :attr:`AudioReader.info` tells the rate, channels and
length before any audio is read, and whose :meth:`AudioReader.blocks` yields the audio as
float32 blocks (one column per channel), a block at a time: a 10-minute file is never held
whole. WAV is parsed here (:mod:`gateway.batch.formats`: PCM 8/16/24/32, float 32/64,
µ-law, A-law, ``WAVE_FORMAT_EXTENSIBLE``); FLAC is decoded by libsndfile (``soundfile``).

A file that is corrupt, truncated (shorter than its header says, at open or while read),
empty, of zero frames or of a codec not read here raises
:class:`~gateway.batch.formats.BadAudio` with the reason. A file that cannot be opened or
read at all raises ``OSError`` as the OS said it.

Layer: shell (file I/O).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Final

import numpy as np

from gateway.batch.formats import (
    BadAudio,
    Frames,
    WavFormat,
    data_frames,
    decode_linear,
    parse_chunk,
    parse_fmt,
    parse_riff,
)
from gateway.media.g711 import alaw_decode, ulaw_decode
from gateway.media.resample import to_float32

RAW_SUFFIXES: Final = {".ul": "ulaw", ".al": "alaw"}
AUDIO_SUFFIXES: Final = (".wav", ".flac", *RAW_SUFFIXES)
RAW_DEFAULT_RATE_HZ: Final = 8000
MAX_FMT_BYTES: Final = 1 << 16

__all__ = ["AUDIO_SUFFIXES", "AudioInfo", "AudioReader", "BadAudio", "open_audio",
           "probe_audio"]


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What a recording is, known before its audio is read."""

    container: str      # wav, flac or raw
    codec: str          # pcm16, float32, ulaw, alaw, flac ...
    rate_hz: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate_hz


class AudioReader:
    """An open recording (a context manager): :attr:`info`, then :meth:`blocks` once."""

    info: AudioInfo

    def blocks(self, frames: int) -> Iterator[Frames]:
        """The audio, ``frames`` frames a block (the last one shorter)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_audio(path: Path, *, raw_rate: int | None = None) -> AudioReader:
    """An open reader for ``path`` (see the module docstring for what is read)."""
    suffix = path.suffix.lower()
    f = open(path, "rb")  # the reader owns it (closed by close())
    try:
        magic = f.read(4)
        f.seek(0)
        if magic in (b"RIFF", b"RF64"):
            return _WavReader(f)
        if magic == b"fLaC":
            f.close()
            return _FlacReader(path)
        if suffix in RAW_SUFFIXES:
            return _RawReader(f, RAW_SUFFIXES[suffix], raw_rate or RAW_DEFAULT_RATE_HZ)
        if not magic:
            raise BadAudio("empty file (0 bytes)")
        if suffix == ".wav":
            parse_riff(f.read(12))
        if suffix == ".flac":
            raise BadAudio("not a FLAC file (no fLaC header)")
        raise BadAudio(f"unsupported file type {suffix or '(no suffix)'}: WAV, FLAC, raw "
                       ".ul (µ-law) and .al (A-law) are read")
    except BaseException:
        f.close()
        raise


def probe_audio(path: Path, *, raw_rate: int | None = None) -> AudioInfo:
    """A recording's :class:`AudioInfo` (the header only)."""
    with open_audio(path, raw_rate=raw_rate) as reader:
        return reader.info


def _g711(codec: str, raw: bytes, channels: int) -> Frames:
    pcm = ulaw_decode(raw) if codec == "ulaw" else alaw_decode(raw)
    n = len(pcm) // channels * channels
    return to_float32(pcm[:n]).reshape(-1, channels)


def _codec_name(fmt: WavFormat) -> str:
    return fmt.codec if fmt.codec in ("ulaw", "alaw") else f"{fmt.codec}{fmt.bits}"


class _ByteReader(AudioReader):
    """Frames of fixed size from a file object, from ``offset`` on."""

    def __init__(self, f: BinaryIO, offset: int, block_align: int) -> None:
        self._f, self._offset, self._align = f, offset, block_align

    def _decode(self, raw: bytes) -> Frames:
        raise NotImplementedError

    def blocks(self, frames: int) -> Iterator[Frames]:
        self._f.seek(self._offset)
        left = self.info.frames
        while left > 0:
            want = min(frames, left)
            raw = self._f.read(want * self._align)
            if len(raw) < want * self._align:
                done = self.info.frames - left + len(raw) // self._align
                raise BadAudio(f"truncated while reading: {done} of {self.info.frames} "
                               "frames (the file shrank?)")
            left -= want
            yield self._decode(raw)

    def close(self) -> None:
        self._f.close()


class _WavReader(_ByteReader):
    def __init__(self, f: BinaryIO) -> None:
        size = os.fstat(f.fileno()).st_size
        parse_riff(f.read(12))
        fmt: WavFormat | None = None
        while True:
            chunk = parse_chunk(f.read(8))
            if chunk.id == b"data":
                break
            if chunk.id == b"fmt ":
                if chunk.size > MAX_FMT_BYTES:
                    raise BadAudio(f"corrupt WAV: fmt chunk of {chunk.size} bytes")
                fmt = parse_fmt(f.read(chunk.size))
                f.seek(chunk.padded - chunk.size, os.SEEK_CUR)
            else:
                f.seek(chunk.padded, os.SEEK_CUR)
            if f.tell() >= size:
                raise BadAudio("no audio: the WAV has no data chunk" if fmt is not None
                               else "corrupt WAV: no fmt chunk")
        if fmt is None:
            raise BadAudio("corrupt WAV: the data chunk comes before any fmt chunk")
        offset = f.tell()
        frames = data_frames(fmt, chunk.size, size - offset)
        super().__init__(f, offset, fmt.block_align)
        self.fmt = fmt
        self.info = AudioInfo("wav", _codec_name(fmt), fmt.rate_hz, fmt.channels, frames)

    def _decode(self, raw: bytes) -> Frames:
        if self.fmt.codec in ("ulaw", "alaw"):
            return _g711(self.fmt.codec, raw, self.fmt.channels)
        return decode_linear(self.fmt, raw)


class _RawReader(_ByteReader):
    def __init__(self, f: BinaryIO, codec: str, rate_hz: int) -> None:
        if rate_hz <= 0:
            raise ValueError(f"raw sample rate must be positive, not {rate_hz}")
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise BadAudio("empty file (0 bytes)")
        super().__init__(f, 0, 1)
        self.codec = codec
        self.info = AudioInfo("raw", codec, rate_hz, 1, size)

    def _decode(self, raw: bytes) -> Frames:
        return _g711(self.codec, raw, 1)


def _soundfile() -> Any:
    """libsndfile's binding (a dependency; imported when a FLAC comes)."""
    try:
        return importlib.import_module("soundfile")
    except (ImportError, OSError) as exc:
        raise BadAudio(f"FLAC needs soundfile (libsndfile): {exc}") from None


class _FlacReader(AudioReader):
    def __init__(self, path: Path) -> None:
        self._lib = _soundfile()
        try:
            self._sf = self._lib.SoundFile(str(path))
        except RuntimeError as exc:     # soundfile.LibsndfileError is one
            raise BadAudio(f"corrupt FLAC: {getattr(exc, 'error_string', exc)}") from None
        sf = self._sf
        if sf.frames <= 0:
            sf.close()
            raise BadAudio("no audio: the FLAC has no samples")
        self.info = AudioInfo("flac", "flac", int(sf.samplerate), int(sf.channels),
                              int(sf.frames))

    def blocks(self, frames: int) -> Iterator[Frames]:
        done = 0
        self._sf.seek(0)
        while done < self.info.frames:
            try:
                block = self._sf.read(min(frames, self.info.frames - done), dtype="float32",
                                      always_2d=True)
            except RuntimeError as exc:
                raise BadAudio(f"corrupt FLAC at frame {done}: {exc}") from None
            if len(block) == 0:
                raise BadAudio(f"truncated: {done} of {self.info.frames} frames")
            done += len(block)
            yield np.ascontiguousarray(block, dtype=np.float32)

    def close(self) -> None:
        self._sf.close()
