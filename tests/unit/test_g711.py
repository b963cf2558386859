"""Tests for gateway.media.g711, checked against two independent G.711 implementations.

References: Python 3.11's stdlib ``audioop`` (the classic Sun reference coder, in C) and
aiortc's PCMU/PCMA codecs (FFmpeg's pcm_mulaw/pcm_alaw, through PyAV). Every one of the 256
codes is decoded and every one of the 65536 int16 values is encoded.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import cast

import numpy as np
import numpy.typing as npt
import pytest
from aiortc.codecs.g711 import PcmaDecoder, PcmaEncoder, PcmuDecoder, PcmuEncoder
from aiortc.jitterbuffer import JitterFrame
from av import AudioFrame

from gateway.media.g711 import (
    SILENCE_BYTE,
    SampleFormatError,
    UnsupportedEncodingError,
    alaw_decode,
    alaw_encode,
    decoder_for,
    encoder_for,
    silence_byte_for,
    ulaw_decode,
    ulaw_encode,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ALL_CODES = bytes(range(256))
ALL_PCM = np.arange(-32768, 32768, dtype=np.int16)
LAWS = ["PCMU", "PCMA"]

OURS_DECODE = {"PCMU": ulaw_decode, "PCMA": alaw_decode}
OURS_ENCODE = {"PCMU": ulaw_encode, "PCMA": alaw_encode}
AUDIOOP_DECODE: dict[str, Callable[[bytes, int], bytes]] = {
    "PCMU": audioop.ulaw2lin,
    "PCMA": audioop.alaw2lin,
}
AUDIOOP_ENCODE: dict[str, Callable[[bytes, int], bytes]] = {
    "PCMU": audioop.lin2ulaw,
    "PCMA": audioop.lin2alaw,
}
AIORTC_DECODER = {"PCMU": PcmuDecoder, "PCMA": PcmaDecoder}
AIORTC_ENCODER = {"PCMU": PcmuEncoder, "PCMA": PcmaEncoder}


def aiortc_decode(law: str, data: bytes) -> npt.NDArray[np.int16]:
    frames = AIORTC_DECODER[law]().decode(JitterFrame(data=data, timestamp=0))
    samples = [cast(AudioFrame, f).to_ndarray().reshape(-1) for f in frames]
    return np.concatenate(samples).astype(np.int16)


def aiortc_encode(law: str, pcm: npt.NDArray[np.int16]) -> bytes:
    """Encode through aiortc in 160-sample frames; a trailing silent frame flushes its buffer."""
    encoder = AIORTC_ENCODER[law]()
    padded = np.concatenate([pcm, np.zeros(160, dtype=np.int16)])
    out: list[bytes] = []
    for start in range(0, len(padded) - 159, 160):
        frame = AudioFrame.from_ndarray(
            padded[start : start + 160].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        frame.pts = start
        payloads, _ = encoder.encode(frame)
        out += payloads
    return b"".join(out)[: len(pcm)]


@pytest.mark.parametrize("law", LAWS)
def test_decode_table_matches_audioop(law: str) -> None:
    expected = np.frombuffer(AUDIOOP_DECODE[law](ALL_CODES, 2), dtype=np.int16)
    got = OURS_DECODE[law](ALL_CODES)
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("law", LAWS)
def test_decode_table_matches_aiortc(law: str) -> None:
    np.testing.assert_array_equal(OURS_DECODE[law](ALL_CODES), aiortc_decode(law, ALL_CODES))


@pytest.mark.parametrize("law", LAWS)
def test_encode_every_int16_matches_audioop(law: str) -> None:
    expected = np.frombuffer(AUDIOOP_ENCODE[law](ALL_PCM.tobytes(), 2), dtype=np.uint8)
    got = np.frombuffer(OURS_ENCODE[law](ALL_PCM), dtype=np.uint8)
    mismatches = np.nonzero(got != expected)[0]
    assert mismatches.size == 0, f"first mismatching inputs: {ALL_PCM[mismatches[:8]]}"


@pytest.mark.parametrize("law", LAWS)
def test_encode_every_int16_agrees_with_aiortc_up_to_decision_boundaries(law: str) -> None:
    """FFmpeg places a few decision thresholds differently from the G.711 reference coder.

    Where the two disagree the chosen levels must be neighbours, and that must be rare.
    """
    ours = np.frombuffer(OURS_ENCODE[law](ALL_PCM), dtype=np.uint8)
    theirs = np.frombuffer(aiortc_encode(law, ALL_PCM), dtype=np.uint8)
    differ = ours != theirs
    assert differ.mean() < 0.02
    decode = OURS_DECODE[law]
    levels = np.unique(decode(ALL_CODES))
    rank_ours = np.searchsorted(levels, decode(ours[differ].tobytes()))
    rank_theirs = np.searchsorted(levels, decode(theirs[differ].tobytes()))
    assert np.all(np.abs(rank_ours - rank_theirs) == 1)


@pytest.mark.parametrize("law", LAWS)
def test_every_code_survives_decode_then_encode(law: str) -> None:
    codes = np.frombuffer(ALL_CODES, dtype=np.uint8)
    again = np.frombuffer(OURS_ENCODE[law](OURS_DECODE[law](ALL_CODES)), dtype=np.uint8)
    if law == "PCMU":  # 0x7F is mu-law's "negative zero"; zero encodes to the positive one
        assert again[0x7F] == 0xFF
        codes, again = np.delete(codes, 0x7F), np.delete(again, 0x7F)
    np.testing.assert_array_equal(again, codes)


@pytest.mark.parametrize("law", LAWS)
def test_round_trip_is_monotonic_and_idempotent(law: str) -> None:
    encode, decode = OURS_ENCODE[law], OURS_DECODE[law]
    once = decode(encode(ALL_PCM))
    assert np.all(np.diff(once.astype(np.int32)) >= 0)
    np.testing.assert_array_equal(decode(encode(once)), once)


@pytest.mark.parametrize("law", LAWS)
def test_round_trip_error_is_bounded_by_the_companding_step(law: str) -> None:
    """Error grows with magnitude (logarithmic companding): <= 1/16 of |x| above the knee."""
    once = OURS_DECODE[law](OURS_ENCODE[law](ALL_PCM)).astype(np.int32)
    error = np.abs(once - ALL_PCM.astype(np.int32))
    loud = np.abs(ALL_PCM.astype(np.int32)) >= 1024
    assert np.all(error[loud] <= np.abs(ALL_PCM[loud].astype(np.int32)) // 16)
    assert error[~loud].max() <= 64


@pytest.mark.parametrize("law", LAWS)
def test_silence_byte_is_what_zero_encodes_to(law: str) -> None:
    expected = AUDIOOP_ENCODE[law](b"\x00\x00", 2)[0]
    assert SILENCE_BYTE[law] == expected == silence_byte_for(law.lower())
    assert OURS_ENCODE[law](np.zeros(3, dtype=np.int16)) == bytes([expected]) * 3
    assert abs(int(OURS_DECODE[law](bytes([expected]))[0])) <= 8


@pytest.mark.parametrize("law", LAWS)
def test_encode_accepts_strided_views_and_empty_input(law: str) -> None:
    view = ALL_PCM[::7]
    assert OURS_ENCODE[law](view) == OURS_ENCODE[law](view.copy())
    assert OURS_ENCODE[law](np.zeros(0, dtype=np.int16)) == b""
    assert OURS_DECODE[law](b"").shape == (0,)


@pytest.mark.parametrize("bad", [np.zeros(4, dtype=np.float32), np.zeros(4, dtype=np.int32)])
def test_encode_rejects_other_dtypes(bad: npt.NDArray[np.generic]) -> None:
    with pytest.raises(SampleFormatError, match="int16"):
        ulaw_encode(bad)  # type: ignore[arg-type]
    assert issubclass(SampleFormatError, ValueError)


@pytest.mark.parametrize("name", ["PCMU", "pcmu", "PcMu"])
def test_lookup_by_name_is_case_insensitive_pcmu(name: str) -> None:
    assert decoder_for(name) is ulaw_decode
    assert encoder_for(name) is ulaw_encode


@pytest.mark.parametrize("name", ["PCMA", "pcma"])
def test_lookup_by_name_is_case_insensitive_pcma(name: str) -> None:
    assert decoder_for(name) is alaw_decode
    assert encoder_for(name) is alaw_encode


@pytest.mark.parametrize("name", ["G722", "opus", "", "PCM", "telephone-event"])
def test_unknown_encodings_are_rejected(name: str) -> None:
    for lookup in (decoder_for, encoder_for, silence_byte_for):
        with pytest.raises(UnsupportedEncodingError):
            lookup(name)
    assert issubclass(UnsupportedEncodingError, ValueError)
