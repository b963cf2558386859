"""G.711 mu-law (PCMU) and A-law (PCMA), vectorised with lookup tables.

The tables are built once at import, with numpy, from the segment rules of ITU-T G.711:
mu-law works on the 14 most significant bits of a sample with a bias of 33 and clips at
8159; A-law works on the 13 most significant bits with no bias. Encoding is a single
fancy-index into a 65536-entry ``uint8`` table indexed by the raw 16-bit pattern of the
sample, decoding a fancy-index into a 256-entry ``int16`` table. Both are bit-exact with the
classic reference coder (the one behind ``audioop`` and ``sox``).

Layer: pure core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "SILENCE_BYTE",
    "SampleFormatError",
    "UnsupportedEncodingError",
    "alaw_decode",
    "alaw_encode",
    "decoder_for",
    "encoder_for",
    "silence_byte_for",
    "ulaw_decode",
    "ulaw_encode",
]

Decoder = Callable[[bytes], npt.NDArray[np.int16]]
Encoder = Callable[[npt.NDArray[np.int16]], bytes]

SILENCE_BYTE: Final[dict[str, int]] = {"PCMU": 0xFF, "PCMA": 0xD5}

_ULAW_BIAS: Final = 33  # 0x84 on the 16-bit scale, expressed on the 14-bit scale
_ULAW_CLIP: Final = 8159  # largest 14-bit magnitude before the bias is added


class UnsupportedEncodingError(ValueError):
    """The encoding name is neither PCMU nor PCMA."""


class SampleFormatError(ValueError):
    """PCM handed to an encoder is not a numpy ``int16`` array."""


def _segment(magnitude: npt.NDArray[np.int32], first_end: int) -> npt.NDArray[np.int32]:
    """Index of the segment (0..8) holding each magnitude; segment k ends at first_end << k."""
    ends = np.array([(first_end + 1) << k for k in range(8)], dtype=np.int32)
    return np.searchsorted(ends, magnitude, side="right").astype(np.int32)


def _all_int16() -> npt.NDArray[np.int32]:
    """Every int16 value, placed at the table index of its raw 16-bit pattern."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode_table() -> npt.NDArray[np.uint8]:
    value = _all_int16() >> 2
    mask = np.where(value < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(value), _ULAW_CLIP) + _ULAW_BIAS
    seg = _segment(magnitude, 0x3F)
    mantissa = (magnitude >> (np.minimum(seg, 7) + 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (seg << 4) | mantissa)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_encode_table() -> npt.NDArray[np.uint8]:
    value = _all_int16() >> 3
    mask = np.where(value >= 0, 0xD5, 0x55)
    magnitude = np.where(value >= 0, value, -value - 1)
    seg = _segment(magnitude, 0x1F)
    shift = np.maximum(np.minimum(seg, 7), 1)
    mantissa = (magnitude >> shift) & 0x0F
    code = np.where(seg >= 8, 0x7F, (seg << 4) | mantissa)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode_table() -> npt.NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code & 0x70) >> 4
    magnitude = ((((code & 0x0F) << 3) + 0x84) << exponent) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_decode_table() -> npt.NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (code & 0x70) >> 4
    base = ((code & 0x0F) << 4) + np.where(exponent == 0, 8, 0x108)
    magnitude = base << np.maximum(exponent - 1, 0)
    table: npt.NDArray[np.int16] = np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)
    return table


_ULAW_ENCODE: Final = _build_ulaw_encode_table()
_ALAW_ENCODE: Final = _build_alaw_encode_table()
_ULAW_DECODE: Final = _build_ulaw_decode_table()
_ALAW_DECODE: Final = _build_alaw_decode_table()


def _table_index(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.uint16]:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16:
        got = pcm.dtype if isinstance(pcm, np.ndarray) else type(pcm).__name__
        raise SampleFormatError(f"G.711 encoders take a numpy int16 array, got {got}")
    return pcm.reshape(-1).view(np.uint16)


def _codes(data: bytes) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8)


def ulaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """PCMU payload bytes to int16 PCM (one sample per byte)."""
    return _ULAW_DECODE[_codes(data)]


def alaw_decode(data: bytes) -> npt.NDArray[np.int16]:
    """PCMA payload bytes to int16 PCM (one sample per byte)."""
    return _ALAW_DECODE[_codes(data)]


def ulaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """int16 PCM to PCMU payload bytes."""
    return _ULAW_ENCODE[_table_index(pcm)].tobytes()


def alaw_encode(pcm: npt.NDArray[np.int16]) -> bytes:
    """int16 PCM to PCMA payload bytes."""
    return _ALAW_ENCODE[_table_index(pcm)].tobytes()


_DECODERS: Final[dict[str, Decoder]] = {"PCMU": ulaw_decode, "PCMA": alaw_decode}
_ENCODERS: Final[dict[str, Encoder]] = {"PCMU": ulaw_encode, "PCMA": alaw_encode}


def _canonical(encoding: str) -> str:
    name = encoding.upper()
    if name not in _DECODERS:
        raise UnsupportedEncodingError(f"unsupported G.711 encoding {encoding!r} (PCMU or PCMA)")
    return name


def decoder_for(encoding: str) -> Decoder:
    """The decoder for an SDP encoding name, ``PCMU`` or ``PCMA`` (any case)."""
    return _DECODERS[_canonical(encoding)]


def encoder_for(encoding: str) -> Encoder:
    """The encoder for an SDP encoding name, ``PCMU`` or ``PCMA`` (any case)."""
    return _ENCODERS[_canonical(encoding)]


def silence_byte_for(encoding: str) -> int:
    """The payload byte that decodes to (near) zero for ``PCMU`` or ``PCMA`` (any case)."""
    return SILENCE_BYTE[_canonical(encoding)]
