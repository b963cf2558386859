"""Audio formats of stored recordings: WAV headers, linear PCM decoding, the channel split.

A WAV file is a RIFF ``WAVE`` of chunks; the ``fmt `` chunk (:func:`parse_fmt`) says the
codec (format tag 1 integer PCM of 8, 16, 24 or 32 bits, 3 IEEE float of 32 or 64 bits,
6 A-law, 7 µ-law, or 0xFFFE ``WAVE_FORMAT_EXTENSIBLE`` naming one of those in its
sub-format), the channels and the sample rate; the ``data`` chunk holds the frames.
:func:`decode_linear` turns a block of PCM or float frames into float32 in [-1, 1] with one
column per channel (G.711 is decoded by the shell with :mod:`gateway.media.g711`).

A stored call has one channel (one party, or both mixed) or two (stereo: agent on the left
like the gateway's own recordings, by default): :func:`channel_names` names each column.

Anything that is not audio this module can read is a :class:`BadAudio` with a message
that says why (for a person reading a manifest).

Layer: pure core.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

Frames = npt.NDArray[np.float32]
"""A block of audio: float32 in [-1, 1], shape (frames, channels)."""

CHANNELS: Final = ("agent", "customer")
TAG_PCM: Final = 0x0001
TAG_FLOAT: Final = 0x0003
TAG_ALAW: Final = 0x0006
TAG_ULAW: Final = 0x0007
TAG_EXTENSIBLE: Final = 0xFFFE
CODECS: Final = {TAG_PCM: "pcm", TAG_FLOAT: "float", TAG_ALAW: "alaw", TAG_ULAW: "ulaw"}
KNOWN_TAGS: Final = {0x0002: "MS ADPCM", 0x0011: "IMA ADPCM", 0x0031: "GSM 6.10",
                     0x0040: "G.721 ADPCM", 0x0055: "MP3", 0x0064: "G.726 ADPCM",
                     0x0065: "G.722 ADPCM", 0x0161: "WMA"}
MAX_RATE_HZ: Final = 768_000
UNSIZED: Final = 0xFFFFFFFF
"""A ``data`` size streaming writers leave when they never came back to fill it in."""


class BadAudio(ValueError):
    """A file that is not audio this gateway can read: corrupt, truncated, empty, or a
    codec it does not decode. The message says which, for the manifest."""


@dataclass(frozen=True, slots=True)
class WavFormat:
    """What a WAV's ``fmt `` chunk says."""

    codec: str            # pcm, float, alaw or ulaw
    channels: int
    rate_hz: int
    bits: int             # bits per sample as stored (container size)
    block_align: int      # bytes per frame

    @property
    def sample_bytes(self) -> int:
        return self.bits // 8


@dataclass(frozen=True, slots=True)
class Chunk:
    """A RIFF chunk header: its id and the size of its body (without the pad byte)."""

    id: bytes
    size: int

    @property
    def padded(self) -> int:
        """Bytes up to the next chunk header (bodies are padded to an even length)."""
        return self.size + (self.size & 1)


def parse_riff(header: bytes) -> None:
    """The first 12 bytes of a WAV file; BadAudio when they are not ``RIFF....WAVE``."""
    if len(header) == 0:
        raise BadAudio("empty file (0 bytes)")
    if len(header) < 12:
        raise BadAudio(f"truncated: {len(header)} bytes, not even a WAV header")
    if header[:4] == b"RF64":
        raise BadAudio("RF64 (WAV over 4 GiB) is not supported")
    if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise BadAudio("not a WAV file (no RIFF/WAVE header)")


def parse_chunk(header: bytes) -> Chunk:
    """An 8-byte chunk header."""
    if len(header) < 8:
        raise BadAudio("truncated: the file ends inside a chunk header, before any audio")
    chunk_id, size = struct.unpack("<4sI", header[:8])
    return Chunk(bytes(chunk_id), int(size))


def parse_fmt(body: bytes) -> WavFormat:
    """The ``fmt `` chunk's body; BadAudio for a codec or layout this module cannot read."""
    if len(body) < 16:
        raise BadAudio(f"corrupt WAV: fmt chunk of {len(body)} bytes (at least 16)")
    tag, channels, rate, _byte_rate, align, bits = struct.unpack("<HHIIHH", body[:16])
    if tag == TAG_EXTENSIBLE:
        if len(body) < 40:
            raise BadAudio("corrupt WAV: WAVE_FORMAT_EXTENSIBLE without its sub-format")
        tag = struct.unpack("<H", body[24:26])[0]
    codec = CODECS.get(tag)
    if codec is None:
        name = KNOWN_TAGS.get(tag, "unknown")
        raise BadAudio(f"unsupported WAV codec: format tag 0x{tag:04x} ({name}); "
                       "PCM, float, µ-law and A-law are read")
    fmt = WavFormat(codec, channels, rate, bits, align)
    _check_format(fmt)
    return fmt


def _check_format(fmt: WavFormat) -> None:
    if fmt.channels < 1:
        raise BadAudio("corrupt WAV: 0 channels")
    if not 0 < fmt.rate_hz <= MAX_RATE_HZ:
        raise BadAudio(f"corrupt WAV: sample rate {fmt.rate_hz} Hz")
    allowed = {"pcm": (8, 16, 24, 32), "float": (32, 64), "alaw": (8,), "ulaw": (8,)}
    if fmt.bits not in allowed[fmt.codec]:
        raise BadAudio(f"unsupported WAV: {fmt.codec} with {fmt.bits} bits per sample")
    if fmt.block_align != fmt.channels * fmt.sample_bytes:
        raise BadAudio(f"corrupt WAV: block align {fmt.block_align} for {fmt.channels} "
                       f"channel(s) of {fmt.bits} bits")


def data_frames(fmt: WavFormat, declared: int, available: int) -> int:
    """Frames of a ``data`` chunk that declares ``declared`` bytes with ``available`` bytes
    left in the file. BadAudio when the file is shorter than its header says (truncated) or
    holds no frame at all; a streaming writer's unsized chunk runs to the end of the file."""
    size = available if declared in (UNSIZED, 0) and available > 0 else declared
    if size == 0:
        raise BadAudio("no audio: the WAV's data chunk is empty")
    if available < size:
        raise BadAudio(f"truncated: the header says {size} bytes of audio, the file has "
                       f"{available}")
    frames = size // fmt.block_align
    if frames == 0:
        raise BadAudio(f"no audio: {size} bytes of data, less than one frame")
    return frames


def decode_linear(fmt: WavFormat, raw: bytes) -> Frames:
    """Whole frames of PCM or float samples as float32 in [-1, 1], one column per channel."""
    n = len(raw) // fmt.block_align * fmt.block_align
    data = raw[:n]
    width = fmt.sample_bytes
    if fmt.codec == "float":
        samples = np.frombuffer(data, dtype="<f4" if width == 4 else "<f8")
        out = np.nan_to_num(samples.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
        out = np.clip(out, -1.0, 1.0)
    elif width == 1:
        out = (np.frombuffer(data, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        out = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 3:
        out = _int24(data)
    else:
        out = (np.frombuffer(data, dtype="<i4").astype(np.float64) / 2.0 ** 31).astype(np.float32)
    return out.reshape(-1, fmt.channels)


def _int24(data: bytes) -> npt.NDArray[np.float32]:
    triples = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    value = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
    value = np.where(value & 0x800000, value - 0x1000000, value)
    return (value.astype(np.float32) / np.float32(2 ** 23)).astype(np.float32)


def other_channel(channel: str) -> str:
    """``agent`` <-> ``customer``."""
    return CHANNELS[1] if channel == CHANNELS[0] else CHANNELS[0]


def check_channel(channel: str, what: str) -> str:
    if channel not in CHANNELS:
        raise ValueError(f"{what} must be agent or customer, not {channel!r}")
    return channel


def channel_names(channels: int, left: str = "agent", mono: str = "customer"
                  ) -> tuple[str, ...]:
    """The channel of each column: mono -> ``(mono,)``; stereo -> ``(left, the other)``."""
    if channels == 1:
        return (check_channel(mono, "the mono channel"),)
    if channels == 2:
        first = check_channel(left, "the left channel")
        return (first, other_channel(first))
    raise BadAudio(f"{channels} channels: only mono (one party) and stereo (agent and "
                   "customer) recordings are read")
