"""Stereo recorder: channel placement, time alignment, crash safety, late writes (read back
with the stdlib ``wave`` module and a hand-written RIFF parser)."""

from __future__ import annotations

import os
import struct
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from gateway.media.recording import (
    ChunkError,
    RecorderClosedError,
    RecordingFormatError,
    StereoRecorder,
    TimelineJumpError,
)

RATE = 8000
CHUNK = 160  # 20 ms
Pcm = npt.NDArray[np.int16]


def noise(n: int, seed: int) -> Pcm:
    return np.random.default_rng(seed).integers(-20000, 20000, n).astype(np.int16)


def read_wav(path: Path) -> tuple[Pcm, Pcm]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, RATE)
        raw = w.readframes(w.getnframes())
    frames = np.frombuffer(raw, dtype="<i2").reshape(-1, 2)
    return frames[:, 0].astype(np.int16), frames[:, 1].astype(np.int16)


def placed(total: int, start: int, pcm: Pcm) -> Pcm:
    out = np.zeros(total, dtype=np.int16)
    out[start:start + len(pcm)] = pcm
    return out


def chunks(pcm: Pcm) -> Iterator[tuple[int, Pcm]]:
    for offset in range(0, len(pcm), CHUNK):
        yield offset, pcm[offset:offset + CHUNK]


def write_interleaved(rec: StereoRecorder, agent: Pcm, agent_start: int, customer: Pcm,
                      customer_start: int) -> None:
    for (a_off, a), (c_off, c) in zip(chunks(agent), chunks(customer), strict=True):
        rec.write("agent", agent_start + a_off, a)
        rec.write("customer", customer_start + c_off, c)


def parse_riff(data: bytes) -> tuple[int, int, int, int]:
    """Check a canonical PCM WAV's sizes against the file length; return format fields."""
    riff, riff_size, wave_id = struct.unpack_from("<4sI4s", data, 0)
    assert (riff, wave_id) == (b"RIFF", b"WAVE")
    assert riff_size == len(data) - 8
    fmt_id, fmt_size, audio_format, channels, rate, byte_rate, align, bits = (
        struct.unpack_from("<4sIHHIIHH", data, 12))
    assert (fmt_id, fmt_size, audio_format) == (b"fmt ", 16, 1)
    assert byte_rate == rate * channels * bits // 8 and align == channels * bits // 8
    data_id, data_size = struct.unpack_from("<4sI", data, 36)
    assert data_id == b"data" and data_size == len(data) - 44
    assert data_size % align == 0
    return channels, rate, bits, data_size // align


# --------------------------------------------------------------------------- alignment

def test_interleaved_chunks_with_offsets_land_on_their_channels(tmp_path: Path) -> None:
    agent, customer = noise(3 * RATE, 1), noise(3 * RATE, 2)
    rec = StereoRecorder(tmp_path / "rec.wav")
    write_interleaved(rec, agent, 0, customer, 1000)
    assert rec.close() == tmp_path / "rec.wav"
    left, right = read_wav(tmp_path / "rec.wav")
    total = 1000 + 3 * RATE
    assert len(left) == total
    np.testing.assert_array_equal(left, placed(total, 0, agent))
    np.testing.assert_array_equal(right, placed(total, 1000, customer))
    assert rec.dropped_samples == 0 and rec.duration_s == total / RATE


def test_customer_first_and_agent_later(tmp_path: Path) -> None:
    agent, customer = noise(2 * RATE, 3), noise(2 * RATE, 4)
    with StereoRecorder(tmp_path / "r.wav") as rec:
        write_interleaved(rec, agent, 2345, customer, 0)
    left, right = read_wav(tmp_path / "r.wav")
    total = 2345 + 2 * RATE
    np.testing.assert_array_equal(left, placed(total, 2345, agent))
    np.testing.assert_array_equal(right, placed(total, 0, customer))


def test_silence_gaps(tmp_path: Path) -> None:
    first, second = noise(1600, 5), noise(1600, 6)
    rec = StereoRecorder(tmp_path / "g.wav")
    rec.write("agent", 0, first)
    rec.write("agent", 5 * RATE, second)           # 4.8 s gap: more than the memory window
    rec.write("customer", 5 * RATE + 800, second)
    rec.close()
    left, right = read_wav(tmp_path / "g.wav")
    total = 5 * RATE + 800 + 1600
    expected_left = placed(total, 0, first) + placed(total, 5 * RATE, second)
    np.testing.assert_array_equal(left, expected_left)
    np.testing.assert_array_equal(right, placed(total, 5 * RATE + 800, second))


def test_one_big_write(tmp_path: Path) -> None:
    agent = noise(4 * RATE + 7, 7)
    rec = StereoRecorder(tmp_path / "b.wav")
    rec.write("agent", 3, agent)
    rec.close()
    left, right = read_wav(tmp_path / "b.wav")
    np.testing.assert_array_equal(left, placed(len(agent) + 3, 3, agent))
    assert not right.any()


def test_overlap_is_mixed_with_saturation(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "m.wav")
    rec.write("agent", 0, np.full(CHUNK, 1000, dtype=np.int16))
    rec.write("agent", CHUNK // 2, np.full(CHUNK, 2000, dtype=np.int16))
    rec.write("customer", 0, np.full(CHUNK, 30000, dtype=np.int16))
    rec.write("customer", 0, np.full(CHUNK, 30000, dtype=np.int16))
    rec.write("customer", CHUNK, np.full(CHUNK, -30000, dtype=np.int16))
    rec.write("customer", CHUNK, np.full(CHUNK, -30000, dtype=np.int16))
    rec.close()
    left, right = read_wav(tmp_path / "m.wav")
    assert list(left[[0, CHUNK // 2 - 1, CHUNK // 2, CHUNK - 1, CHUNK, 3 * CHUNK // 2 - 1]]) == [
        1000, 1000, 3000, 3000, 2000, 2000]
    assert right[0] == 32767 and right[CHUNK] == -32768


# --------------------------------------------------------------------------- crash safety

def test_header_valid_after_crash_without_close(tmp_path: Path) -> None:
    agent, customer = noise(int(3.2 * RATE), 8), noise(int(3.2 * RATE), 9)
    path = tmp_path / "crash.wav"
    rec = StereoRecorder(path, flush_interval_s=1.0, late_window_s=0.5)
    write_interleaved(rec, agent, 0, customer, 400)
    data = path.read_bytes()  # as a kill -9 would leave it: never closed
    channels, rate, bits, frames = parse_riff(data)
    assert (channels, rate, bits) == (2, RATE, 16)
    end = 400 + len(customer)
    assert end - int(1.5 * RATE) < frames <= end - int(0.5 * RATE)  # documented loss bound
    left, right = read_wav(path)
    assert len(left) == frames
    np.testing.assert_array_equal(left, placed(end, 0, agent)[:frames])
    np.testing.assert_array_equal(right, placed(end, 400, customer)[:frames])
    rec.close()
    assert parse_riff(path.read_bytes())[3] == end


def test_header_follows_each_flush(tmp_path: Path) -> None:
    path = tmp_path / "f.wav"
    rec = StereoRecorder(path, flush_interval_s=0.2, late_window_s=0.1)
    sizes = []
    for offset, piece in chunks(noise(2 * RATE, 10)):
        rec.write("agent", offset, piece)
        sizes.append(parse_riff(path.read_bytes())[3])
    assert sizes == sorted(sizes) and sizes[-1] >= 2 * RATE - int(0.3 * RATE)
    assert len(set(sizes)) >= 8  # 2 s in 0.2 s flushes


def test_empty_recording_is_a_valid_wav(tmp_path: Path) -> None:
    path = StereoRecorder(tmp_path / "e.wav").close()
    assert parse_riff(path.read_bytes())[3] == 0
    assert len(read_wav(path)[0]) == 0


# --------------------------------------------------------------------------- late writes

def test_late_writes_dropped_and_counted(tmp_path: Path) -> None:
    agent = noise(3 * RATE, 11)
    rec = StereoRecorder(tmp_path / "l.wav", flush_interval_s=1.0, late_window_s=0.5)
    for offset, piece in chunks(agent):
        rec.write("agent", offset, piece)
    # 3 s written: everything before 2.5 s may be out; 0..1 s certainly is.
    rec.write("customer", 0, np.full(CHUNK, 999, dtype=np.int16))
    assert rec.dropped_samples == CHUNK
    flushed = 2 * RATE  # flush points at 1.0 s and 2.0 s with these settings
    rec.write("customer", flushed - 60, np.full(CHUNK, 999, dtype=np.int16))  # 60 late
    assert rec.dropped_samples == CHUNK + 60
    rec.write("customer", 3 * RATE - CHUNK, np.full(CHUNK, 5, dtype=np.int16))  # in window
    assert rec.dropped_samples == CHUNK + 60
    rec.close()
    left, right = read_wav(tmp_path / "l.wav")
    np.testing.assert_array_equal(left, agent)
    expected = np.zeros(3 * RATE, dtype=np.int16)
    expected[flushed:flushed + 100] = 999
    expected[3 * RATE - CHUNK:] = 5
    np.testing.assert_array_equal(right, expected)


# --------------------------------------------------------------------------- files

def test_file_mode_and_directory_created(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = StereoRecorder(tmp_path / "x" / "y" / "rec.wav").close()
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o640
    assert path.parent.is_dir()


def test_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "exists.wav"
    path.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        StereoRecorder(path)
    assert path.read_bytes() == b"keep"


def test_other_sample_rate_in_header(tmp_path: Path) -> None:
    path = tmp_path / "16k.wav"
    with StereoRecorder(path, sample_rate_hz=16000) as rec:
        rec.write("customer", 0, noise(320, 12))
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 16000 and w.getnframes() == 320


def test_flac_without_soundfile_is_a_clear_error(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "soundfile", None)     # makes the import fail
    with pytest.raises(RecordingFormatError, match="soundfile"):
        StereoRecorder(tmp_path / "r.flac", fmt="flac")
    assert not (tmp_path / "r.flac").exists()


def test_flac_round_trip_with_soundfile(tmp_path: Path) -> None:
    import soundfile
    agent, customer = noise(2 * RATE, 13), noise(2 * RATE, 14)
    with StereoRecorder(tmp_path / "r.flac", fmt="flac") as rec:
        write_interleaved(rec, agent, 0, customer, 555)
    frames, rate = soundfile.read(str(tmp_path / "r.flac"), dtype="int16")
    total = 555 + 2 * RATE
    assert rate == RATE and frames.shape == (total, 2)
    np.testing.assert_array_equal(frames[:, 0], placed(total, 0, agent))
    np.testing.assert_array_equal(frames[:, 1], placed(total, 555, customer))


def test_unknown_format_rejected(tmp_path: Path) -> None:
    with pytest.raises(RecordingFormatError, match="'mp3'"):
        StereoRecorder(tmp_path / "r.mp3", fmt="mp3")
    assert not (tmp_path / "r.mp3").exists()


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(("channel", "start", "pcm"), [
    ("left", 0, np.zeros(10, dtype=np.int16)),
    ("agent", -1, np.zeros(10, dtype=np.int16)),
    ("agent", 0, np.zeros(10, dtype=np.float32)),
    ("agent", 0, np.zeros((10, 2), dtype=np.int16)),
    ("agent", 0.5, np.zeros(10, dtype=np.int16)),
])
def test_bad_chunks_rejected(tmp_path: Path, channel: str, start: int, pcm: Pcm) -> None:
    with StereoRecorder(tmp_path / "bad.wav") as rec, pytest.raises(ChunkError):
        rec.write(channel, start, pcm)


def test_timeline_jump_refused(tmp_path: Path) -> None:
    with StereoRecorder(tmp_path / "j.wav", max_gap_s=60.0) as rec:
        rec.write("agent", 0, noise(CHUNK, 15))
        with pytest.raises(TimelineJumpError):
            rec.write("agent", CHUNK + 60 * RATE + 1, noise(CHUNK, 15))
        rec.write("agent", CHUNK + 60 * RATE, noise(CHUNK, 15))  # exactly the limit is fine
    assert rec.duration_s == (2 * CHUNK + 60 * RATE) / RATE


def test_write_after_close_and_close_twice(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "c.wav")
    rec.write("agent", 0, noise(CHUNK, 16))
    path = rec.close()
    assert rec.close() == path
    with pytest.raises(RecorderClosedError):
        rec.write("agent", CHUNK, noise(CHUNK, 16))
    assert len(read_wav(path)[0]) == CHUNK
