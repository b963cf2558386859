"""Reading stored recordings (gateway.batch.audio, gateway.batch.formats): every format with
known content per channel, the channel split, block reads, and the bad files.

The files are written by libsndfile (``soundfile``), an implementation independent of the
reader under test, except where a test needs a header libsndfile never writes (a streaming
writer's unsized data chunk, a broken fmt chunk, data before fmt).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf  # type: ignore[import-untyped]

from gateway.batch.audio import open_audio, probe_audio
from gateway.batch.formats import BadAudio, channel_names, decode_linear, parse_fmt
from gateway.media.g711 import alaw_encode, ulaw_encode

Audio = npt.NDArray[np.float32]


def tone(rate: int, seconds: float, hz: float, amplitude: float) -> Audio:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def stereo(rate: int, seconds: float = 1.0) -> Audio:
    """Left: 440 Hz at 0.5; right: 1000 Hz at 0.25 (which column is which is audible)."""
    return np.stack([tone(rate, seconds, 440, 0.5), tone(rate, seconds, 1000, 0.25)], axis=1)


def read_all(path: Path, block: int = 1000, **kw: int) -> Audio:
    with open_audio(path, **kw) as reader:
        blocks = list(reader.blocks(block))
    return np.concatenate(blocks)


# tolerance per subtype: quantisation (8-bit PCM and G.711 are coarse)
SUBTYPES = [("PCM_U8", "pcm8", 1 / 64), ("PCM_16", "pcm16", 1e-4), ("PCM_24", "pcm24", 1e-6),
            ("PCM_32", "pcm32", 1e-6), ("FLOAT", "float32", 1e-7), ("DOUBLE", "float64", 1e-7),
            ("ULAW", "ulaw", 0.02), ("ALAW", "alaw", 0.02)]


@pytest.mark.parametrize(("subtype", "codec", "atol"), SUBTYPES)
@pytest.mark.parametrize("container", ["WAV", "WAVEX"])
def test_every_wav_codec_reads_the_known_content_of_each_channel(
        tmp_path: Path, subtype: str, codec: str, atol: float, container: str) -> None:
    signal = stereo(8000)
    path = tmp_path / "call.wav"
    sf.write(path, signal, 8000, subtype=subtype, format=container)
    with open_audio(path) as reader:
        info = reader.info
        got = np.concatenate(list(reader.blocks(3000)))
    assert (info.container, info.codec, info.rate_hz, info.channels, info.frames) == (
        "wav", codec, 8000, 2, 8000)
    assert got.dtype == np.float32 and got.shape == (8000, 2)
    np.testing.assert_allclose(got[:, 0], signal[:, 0], atol=atol)
    np.testing.assert_allclose(got[:, 1], signal[:, 1], atol=atol)


def test_the_format_tags_are_the_g711_ones(tmp_path: Path) -> None:
    """libsndfile writes mu-law as tag 7 and A-law as tag 6: what the reader keys on."""
    for subtype, tag, codec in (("ULAW", 7, "ulaw"), ("ALAW", 6, "alaw")):
        path = tmp_path / f"{codec}.wav"
        sf.write(path, stereo(8000, 0.1), 8000, subtype=subtype)
        raw = path.read_bytes()
        fmt_at = raw.index(b"fmt ")
        assert struct.unpack_from("<H", raw, fmt_at + 8)[0] == tag
        assert probe_audio(path).codec == codec


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_any_sample_rate(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "r.wav"
    sf.write(path, stereo(rate, 0.5), rate, subtype="PCM_16")
    info = probe_audio(path)
    assert (info.rate_hz, info.frames) == (rate, round(rate * 0.5))
    assert info.duration_s == pytest.approx(0.5, abs=1 / rate)


def test_flac_reads_the_known_content(tmp_path: Path) -> None:
    signal = stereo(16000, 2.0)
    path = tmp_path / "call.flac"
    sf.write(path, signal, 16000, subtype="PCM_16")
    got = read_all(path, block=4096)
    assert probe_audio(path).codec == "flac"
    np.testing.assert_allclose(got, signal, atol=1e-4)


def test_mono_wav(tmp_path: Path) -> None:
    signal = tone(8000, 1.0, 300, 0.3)
    path = tmp_path / "m.wav"
    sf.write(path, signal, 8000, subtype="PCM_16")
    got = read_all(path)
    assert got.shape == (8000, 1)
    np.testing.assert_allclose(got[:, 0], signal, atol=1e-4)


@pytest.mark.parametrize(("suffix", "encode"), [(".ul", ulaw_encode), (".al", alaw_encode)])
def test_raw_g711_at_8khz_or_the_rate_given(tmp_path: Path, suffix: str, encode: object) -> None:
    signal = tone(8000, 1.0, 300, 0.4)
    pcm = np.round(signal * 32767).astype(np.int16)
    path = tmp_path / f"call{suffix}"
    path.write_bytes(encode(pcm))  # type: ignore[operator]
    info = probe_audio(path)
    assert (info.container, info.rate_hz, info.channels, info.frames) == ("raw", 8000, 1, 8000)
    np.testing.assert_allclose(read_all(path)[:, 0], signal, atol=0.02)
    assert probe_audio(path, raw_rate=16000).duration_s == pytest.approx(0.5)


def test_blocks_are_read_a_block_at_a_time(tmp_path: Path) -> None:
    signal = stereo(8000, 2.5)
    path = tmp_path / "b.wav"
    sf.write(path, signal, 8000, subtype="PCM_16")
    with open_audio(path) as reader:
        sizes = [len(b) for b in reader.blocks(4000)]
    assert sizes == [4000] * 5


# ------------------------------------------------------------------ the channel split

def test_stereo_is_agent_left_and_customer_right_by_default() -> None:
    assert channel_names(2) == ("agent", "customer")
    assert channel_names(2, left="customer") == ("customer", "agent")


def test_mono_is_one_channel_customer_by_default() -> None:
    assert channel_names(1) == ("customer",)
    assert channel_names(1, mono="agent") == ("agent",)


def test_more_than_two_channels_is_bad_audio() -> None:
    with pytest.raises(BadAudio, match="3 channels"):
        channel_names(3)


def test_an_unknown_channel_name_is_refused() -> None:
    with pytest.raises(ValueError, match="agent or customer"):
        channel_names(2, left="bot")


# ------------------------------------------------------------------ bad files

def wav_bytes(fmt_body: bytes, data: bytes, *, data_size: int | None = None,
              data_first: bool = False) -> bytes:
    fmt = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    body = b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    chunks = body + fmt if data_first else fmt + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def pcm16_fmt(channels: int = 1, rate: int = 8000) -> bytes:
    return struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)


def bad(path: Path, match: str) -> None:
    with pytest.raises(BadAudio, match=match), open_audio(path) as reader:
        for _ in reader.blocks(1000):
            pass


@pytest.mark.parametrize("name", ["e.wav", "e.flac", "e.ul", "e.al"])
def test_an_empty_file_is_bad_audio(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    bad(tmp_path / name, "empty file")


def test_a_wav_cut_inside_its_header(tmp_path: Path) -> None:
    (tmp_path / "h.wav").write_bytes(b"RIFF\x24\x00\x00\x00WA")
    bad(tmp_path / "h.wav", "truncated")


def test_a_wav_shorter_than_its_header_says_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    sf.write(path, stereo(8000, 1.0), 8000, subtype="PCM_16")
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    bad(path, "truncated: the header says 32000 bytes of audio")


def test_a_file_that_shrinks_while_read_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    sf.write(path, stereo(8000, 1.0), 8000, subtype="PCM_16")
    with pytest.raises(BadAudio, match="truncated while reading"), open_audio(path) as reader:
        blocks = reader.blocks(1000)
        next(blocks)
        with path.open("r+b") as f:
            f.truncate(2000)
        for _ in blocks:
            pass


def test_a_zero_length_data_chunk_is_no_audio(tmp_path: Path) -> None:
    (tmp_path / "z.wav").write_bytes(wav_bytes(pcm16_fmt(), b""))
    bad(tmp_path / "z.wav", "no audio")


def test_a_wav_without_a_data_chunk(tmp_path: Path) -> None:
    fmt = pcm16_fmt()
    raw = b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt)) + b"WAVE" + b"fmt " + \
        struct.pack("<I", len(fmt)) + fmt
    (tmp_path / "n.wav").write_bytes(raw)
    bad(tmp_path / "n.wav", "no data chunk|truncated")


def test_data_before_fmt_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "d.wav").write_bytes(wav_bytes(pcm16_fmt(), b"\x00\x01" * 100, data_first=True))
    bad(tmp_path / "d.wav", "before any fmt")


def test_garbage_with_a_wav_name_is_not_a_wav(tmp_path: Path) -> None:
    (tmp_path / "g.wav").write_bytes(b"this is not audio at all, just text" * 10)
    bad(tmp_path / "g.wav", "not a WAV file")


def test_garbage_with_a_flac_name_is_not_a_flac(tmp_path: Path) -> None:
    (tmp_path / "g.flac").write_bytes(b"ID3\x03 some mp3 perhaps" * 10)
    bad(tmp_path / "g.flac", "not a FLAC file")


def test_a_corrupt_flac(tmp_path: Path) -> None:
    (tmp_path / "c.flac").write_bytes(b"fLaC" + bytes(range(256)) * 4)
    bad(tmp_path / "c.flac", "corrupt FLAC")


def test_a_truncated_flac(tmp_path: Path) -> None:
    path = tmp_path / "t.flac"
    rng = np.random.default_rng(1)
    sf.write(path, rng.uniform(-0.5, 0.5, (80000, 2)), 8000, subtype="PCM_16")
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 3])
    bad(path, "truncated|corrupt FLAC")


def test_an_unsupported_wav_codec_is_named(tmp_path: Path) -> None:
    path = tmp_path / "adpcm.wav"
    sf.write(path, stereo(8000, 0.5), 8000, subtype="MS_ADPCM")
    bad(path, r"unsupported WAV codec: format tag 0x0002 \(MS ADPCM\)")


def test_an_unsupported_file_type(tmp_path: Path) -> None:
    (tmp_path / "x.mp3").write_bytes(b"ID3\x03" + b"\x00" * 100)
    bad(tmp_path / "x.mp3", r"unsupported file type \.mp3")


@pytest.mark.parametrize(("body", "match"), [
    (struct.pack("<HHIIHH", 1, 0, 8000, 0, 0, 16), "0 channels"),
    (struct.pack("<HHIIHH", 1, 1, 0, 0, 2, 16), "sample rate 0"),
    (struct.pack("<HHIIHH", 1, 2, 8000, 32000, 3, 16), "block align 3"),
    (struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 12), "12 bits"),
    (b"\x01\x00\x01\x00", "fmt chunk of 4 bytes"),
])
def test_a_broken_fmt_chunk(body: bytes, match: str) -> None:
    with pytest.raises(BadAudio, match=match):
        parse_fmt(body)


def test_an_unsized_data_chunk_runs_to_the_end_of_the_file(tmp_path: Path) -> None:
    """A streaming writer that never came back to fill in the data size (0xFFFFFFFF)."""
    pcm = (np.arange(1000, dtype=np.int16) * 7).astype("<i2")
    (tmp_path / "u.wav").write_bytes(wav_bytes(pcm16_fmt(), pcm.tobytes(), data_size=0xFFFFFFFF))
    got = read_all(tmp_path / "u.wav")
    np.testing.assert_array_equal(np.round(got[:, 0] * 32768).astype(np.int16), pcm)


def test_pcm24_sign_extension() -> None:
    fmt = parse_fmt(struct.pack("<HHIIHH", 1, 1, 8000, 24000, 3, 24))
    raw = b"".join(v.to_bytes(3, "little", signed=True) for v in (0, 1, -1, 2 ** 23 - 1, -2 ** 23))
    got = decode_linear(fmt, raw)[:, 0] * 2 ** 23
    np.testing.assert_array_equal(got, [0, 1, -1, 2 ** 23 - 1, -2 ** 23])
