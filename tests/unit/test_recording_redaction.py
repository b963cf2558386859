"""Redaction of recordings: the mask arithmetic (gateway.media.masking, on arrays) and the
recorder's masks (StereoRecorder.mask: in memory, ahead of the audio, late on disk, at close,
tone and silence), read back from the file with the stdlib ``wave`` module."""

from __future__ import annotations

import math
import struct
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from gateway.media import masking
from gateway.media.masking import (
    TONE_AMPLITUDE,
    add_interval,
    apply_masks,
    clip,
    mask_samples,
    span_samples,
    split_at,
    trim_before,
)
from gateway.media.recording import (
    ChunkError,
    RecorderClosedError,
    RecordingError,
    StereoRecorder,
)

RATE = 8000
CHUNK = 160
Pcm = npt.NDArray[np.int16]


def noise(n: int, seed: int) -> Pcm:
    return np.random.default_rng(seed).integers(-20000, 20000, n).astype(np.int16)


def dominant_hz(pcm: Pcm) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.fft.rfftfreq(len(pcm), 1 / RATE)[int(np.argmax(spectrum))])


def rms(pcm: Pcm) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def read_wav(path: Path) -> tuple[Pcm, Pcm]:
    with wave.open(str(path), "rb") as w:
        raw = w.readframes(w.getnframes())
    frames = np.frombuffer(raw, dtype="<i2").reshape(-1, 2)
    return frames[:, 0].astype(np.int16), frames[:, 1].astype(np.int16)


def on_disk(path: Path) -> tuple[int, Pcm]:
    """What a crash would leave: the header's frame count and the customer column."""
    data = path.read_bytes()
    (data_bytes,) = struct.unpack_from("<I", data, 40)
    assert data_bytes == len(data) - 44               # the header is valid at every flush
    frames = np.frombuffer(data[44:], dtype="<i2").reshape(-1, 2)
    return len(frames), frames[:, 1].astype(np.int16)


def write_both(rec: StereoRecorder, agent: Pcm, customer: Pcm, start: int = 0) -> None:
    for offset in range(0, len(agent), CHUNK):
        rec.write("agent", start + offset, agent[offset:offset + CHUNK])
        rec.write("customer", start + offset, customer[offset:offset + CHUNK])


def tone(start: int, end: int) -> Pcm:
    return mask_samples("tone", start, end - start, RATE)


# =========================================================================== pure arithmetic

def test_span_samples_pads_floors_ceils_and_clips_at_zero() -> None:
    assert span_samples(1.0, 2.0, 0.0, RATE) == (8000, 16000)
    assert span_samples(1.0, 2.0, 0.25, RATE) == (6000, 18000)
    assert span_samples(1.00001, 1.99999, 0.0, RATE) == (8000, 16000)   # floor / ceil
    assert span_samples(0.1, 0.3, 0.25, RATE) == (0, 4400)               # clipped at 0
    assert span_samples(-3.0, -2.0, 0.5, RATE) is None                   # before the start


@pytest.mark.parametrize(("start", "end", "pad"), [
    (2.0, 1.0, 0.0), (1.0, 1.0, 0.0), (math.nan, 1.0, 0.0), (0.0, math.inf, 0.0),
    (0.0, 1.0, -0.1), (0.0, 1.0, math.nan)])
def test_span_samples_refuses_empty_and_non_finite(start: float, end: float, pad: float) -> None:
    assert span_samples(start, end, pad, RATE) is None


def test_span_samples_with_padding_can_cover_an_inverted_span() -> None:
    assert span_samples(1.0, 0.9, 0.1, RATE) == (7200, 8000)


def test_add_interval_merges_overlapping_and_touching_keeps_the_rest_sorted() -> None:
    masks: list[masking.Interval] = []
    for new in [(100, 200), (500, 600), (300, 400)]:
        masks = add_interval(masks, new)
    assert masks == [(100, 200), (300, 400), (500, 600)]
    assert add_interval(masks, (200, 300)) == [(100, 400), (500, 600)]      # touching both
    assert add_interval(masks, (150, 550)) == [(100, 600)]                  # spans three
    assert add_interval(masks, (0, 1000)) == [(0, 1000)]
    assert add_interval(masks, (120, 130)) == masks                         # inside one
    assert add_interval(masks, (700, 800)) == [*masks, (700, 800)]


def test_split_at_the_written_boundary() -> None:
    assert split_at((100, 200), 50) == (None, (100, 200))        # all still to come
    assert split_at((100, 200), 200) == ((100, 200), None)       # all written
    assert split_at((100, 200), 500) == ((100, 200), None)
    assert split_at((100, 200), 130) == ((100, 130), (130, 200))


def test_clip_and_trim_before() -> None:
    masks = [(0, 100), (200, 300), (400, 500)]
    assert clip(masks, 50, 250) == [(50, 100), (200, 250)]
    assert clip(masks, 100, 200) == []
    assert trim_before(masks, 250) == [(250, 300), (400, 500)]
    assert trim_before(masks, 300) == [(400, 500)]
    assert trim_before(masks, 0) == masks


def test_tone_is_1khz_at_minus_20_dbfs_and_phase_continuous() -> None:
    whole = mask_samples("tone", 1234, 8000, RATE)
    assert dominant_hz(whole) == pytest.approx(1000.0)
    assert int(np.abs(whole).max()) == TONE_AMPLITUDE == 3277
    assert 20 * math.log10(np.abs(whole).max() / 32767) == pytest.approx(-20, abs=0.01)
    assert rms(whole) == pytest.approx(TONE_AMPLITUDE / math.sqrt(2), rel=0.01)
    pieces = np.concatenate([mask_samples("tone", 1234, 3001, RATE),
                             mask_samples("tone", 4235, 4999, RATE)])
    np.testing.assert_array_equal(pieces, whole)    # masked in pieces: one continuous tone


def test_silence_and_unknown_mode() -> None:
    assert not mask_samples("silence", 5, 100, RATE).any()
    with pytest.raises(ValueError, match="beep"):
        mask_samples("beep", 0, 10, RATE)


def test_apply_masks_touches_only_its_column_and_intervals() -> None:
    frames = np.stack([noise(1000, 1), noise(1000, 2)], axis=1)
    before = frames.copy()
    replaced = apply_masks(frames, 5000, 1, [(4000, 5100), (5900, 5950), (6500, 7000)],
                           "tone", RATE)
    assert replaced == 100 + 50
    np.testing.assert_array_equal(frames[:, 0], before[:, 0])
    np.testing.assert_array_equal(frames[:100, 1], tone(5000, 5100))
    np.testing.assert_array_equal(frames[900:950, 1], tone(5900, 5950))
    np.testing.assert_array_equal(frames[100:900, 1], before[100:900, 1])
    np.testing.assert_array_equal(frames[950:, 1], before[950:, 1])


# =========================================================================== the recorder

def test_mask_in_memory_with_padding_tone_only_there(tmp_path: Path) -> None:
    agent, customer = noise(3 * RATE, 3), noise(3 * RATE, 4)
    rec = StereoRecorder(tmp_path / "m.wav", delay_s=2.5)
    write_both(rec, agent, customer)
    result = rec.mask("customer", 1.0, 1.5, padding_s=0.1)
    assert (result.on_disk, result.patched, result.late) == (0, 0, False)
    rec.close()
    left, right = read_wav(tmp_path / "m.wav")
    lo, hi = int(0.9 * RATE), int(1.6 * RATE)
    np.testing.assert_array_equal(right[lo:hi], tone(lo, hi))
    assert dominant_hz(right[lo:hi]) == pytest.approx(1000.0)
    assert 20 * math.log10(rms(right[lo:hi]) / 32767) == pytest.approx(-23.0, abs=0.1)
    np.testing.assert_array_equal(right[:lo], customer[:lo])
    np.testing.assert_array_equal(right[hi:], customer[hi:])
    np.testing.assert_array_equal(left, agent)
    assert rec.late_patched_samples == rec.late_unpatched_samples == 0


def test_silence_mode(tmp_path: Path) -> None:
    agent = noise(2 * RATE, 5)
    with StereoRecorder(tmp_path / "s.wav", delay_s=5.0, mask_mode="silence") as rec:
        write_both(rec, agent, agent)
        rec.mask("agent", 0.5, 0.75)
    left, right = read_wav(tmp_path / "s.wav")
    assert not left[4000:6000].any()
    np.testing.assert_array_equal(left[:4000], agent[:4000])
    np.testing.assert_array_equal(left[6000:], agent[6000:])
    np.testing.assert_array_equal(right, agent)


def test_unmasked_audio_of_a_span_never_reaches_the_file_within_the_delay(
        tmp_path: Path) -> None:
    """The mask comes 1.9 s after the start of its span, inside a 2 s delay window: at no
    point does the file (as a crash would leave it) hold the span's audio unmasked."""
    path = tmp_path / "d.wav"
    customer = noise(6 * RATE, 6)
    rec = StereoRecorder(path, delay_s=2.0, flush_interval_s=0.2)
    span = (int(1.0 * RATE), int(1.5 * RATE))
    seen = []
    for offset in range(0, len(customer), CHUNK):
        rec.write("customer", offset, customer[offset:offset + CHUNK])
        if offset + CHUNK == int(2.9 * RATE):
            assert rec.mask("customer", 1.0, 1.5).on_disk == 0
        frames, right = on_disk(path)
        end = offset + CHUNK
        assert end - int(2.2 * RATE) <= frames <= end - 2 * RATE or frames == 0   # loss bound
        seen.append(frames)
        if frames > span[0]:
            shown = right[span[0]:min(frames, span[1])]
            np.testing.assert_array_equal(shown, tone(span[0], span[0] + len(shown)))
    assert max(seen) > span[1]                          # the span did get written meanwhile
    rec.close()
    assert rec.late_patched_samples == 0


def test_late_mask_is_patched_on_disk_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "late.wav"
    agent, customer = noise(5 * RATE, 7), noise(5 * RATE, 8)
    rec = StereoRecorder(path)                          # no delay: 0.5 s window
    write_both(rec, agent, customer)
    frames_before, _ = on_disk(path)
    result = rec.mask("customer", 1.0, 1.5, padding_s=0.25)
    assert result.on_disk == result.patched == int(1.0 * RATE) and result.late
    assert rec.late_patched_samples == int(1.0 * RATE) and rec.late_unpatched_samples == 0
    frames, right = on_disk(path)                       # patched at once, header intact
    assert frames == frames_before
    np.testing.assert_array_equal(right[6000:14000], tone(6000, 14000))
    np.testing.assert_array_equal(right[:6000], customer[:6000])
    rec.close()
    left, right = read_wav(path)
    np.testing.assert_array_equal(left, agent)
    np.testing.assert_array_equal(right[6000:14000], tone(6000, 14000))
    np.testing.assert_array_equal(right[14000:], customer[14000:])
    np.testing.assert_array_equal(right[:6000], customer[:6000])


def test_mask_across_the_disk_boundary_is_one_continuous_tone(tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    agent = noise(4 * RATE, 9)
    rec = StereoRecorder(path, delay_s=1.0, flush_interval_s=0.5)
    write_both(rec, agent, agent)
    written, _ = on_disk(path)
    assert 0 < written < 4 * RATE
    lo, hi = written - 3000, written + 2000
    result = rec.mask("agent", lo / RATE, hi / RATE)
    assert result.on_disk == result.patched == 3000
    rec.write("agent", 4 * RATE, noise(RATE, 10))      # the rest is flushed out masked
    rec.close()
    left, right = read_wav(path)
    np.testing.assert_array_equal(left[lo:hi], tone(lo, hi))
    np.testing.assert_array_equal(left[:lo], agent[:lo])
    np.testing.assert_array_equal(left[hi:4 * RATE], agent[hi:])
    np.testing.assert_array_equal(right[:4 * RATE], agent)


def test_mask_before_its_audio_applies_when_the_audio_arrives(tmp_path: Path) -> None:
    agent = noise(4 * RATE, 11)
    with StereoRecorder(tmp_path / "a.wav", delay_s=0.5) as rec:
        assert rec.mask("customer", 2.0, 3.0).on_disk == 0      # ahead of everything
        write_both(rec, agent, agent)
    left, right = read_wav(tmp_path / "a.wav")
    np.testing.assert_array_equal(right[2 * RATE:3 * RATE], tone(2 * RATE, 3 * RATE))
    np.testing.assert_array_equal(right[:2 * RATE], agent[:2 * RATE])
    np.testing.assert_array_equal(right[3 * RATE:], agent[3 * RATE:])
    np.testing.assert_array_equal(left, agent)


def test_audio_mixed_in_after_the_mask_is_masked_too(tmp_path: Path) -> None:
    """A leg arriving late (within the window) after its span was masked: no leak."""
    agent, customer = noise(3 * RATE, 12), noise(3 * RATE, 13)
    with StereoRecorder(tmp_path / "late_leg.wav", delay_s=5.0) as rec:
        for offset in range(0, len(agent), CHUNK):
            rec.write("agent", offset, agent[offset:offset + CHUNK])
        rec.mask("customer", 1.0, 2.0)
        for offset in range(0, len(customer), CHUNK):
            rec.write("customer", offset, customer[offset:offset + CHUNK])
    _left, right = read_wav(tmp_path / "late_leg.wav")
    np.testing.assert_array_equal(right[RATE:2 * RATE], tone(RATE, 2 * RATE))
    np.testing.assert_array_equal(right[:RATE], customer[:RATE])


def test_close_applies_pending_masks_and_ignores_what_lies_past_the_end(
        tmp_path: Path) -> None:
    agent = noise(2 * RATE, 14)
    rec = StereoRecorder(tmp_path / "c.wav", delay_s=10.0)
    write_both(rec, agent, agent)
    assert on_disk(tmp_path / "c.wav")[0] == 0          # all of it still in memory
    rec.mask("agent", 1.5, 9.0)
    rec.close()
    left, _right = read_wav(tmp_path / "c.wav")
    assert len(left) == 2 * RATE                        # the mask did not lengthen the file
    np.testing.assert_array_equal(left[12000:], tone(12000, 2 * RATE))
    np.testing.assert_array_equal(left[:12000], agent[:12000])
    with pytest.raises(RecorderClosedError):
        rec.mask("agent", 0.0, 1.0)


def test_a_mask_over_a_gap_tones_the_silence_too(tmp_path: Path) -> None:
    first = noise(CHUNK, 15)
    with StereoRecorder(tmp_path / "g.wav", delay_s=0.5) as rec:
        rec.write("customer", 0, first)
        rec.mask("customer", 1.0, 3.0)
        rec.write("customer", 5 * RATE, first)          # the gap is written as silence
    _left, right = read_wav(tmp_path / "g.wav")
    np.testing.assert_array_equal(right[RATE:3 * RATE], tone(RATE, 3 * RATE))
    assert not right[CHUNK:RATE].any() and not right[3 * RATE:5 * RATE].any()


def test_redaction_delay_sets_the_memory_window(tmp_path: Path) -> None:
    assert StereoRecorder(tmp_path / "a.wav").memory_window_s == 0.5
    assert StereoRecorder(tmp_path / "b.wav", delay_s=10.0).memory_window_s == 10.0
    assert StereoRecorder(tmp_path / "c.wav", late_window_s=2.0,
                          delay_s=1.0).memory_window_s == 2.0


def test_bad_masks_and_modes(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="mask_mode"):
        StereoRecorder(tmp_path / "bad.wav", mask_mode="beep")
    assert not (tmp_path / "bad.wav").exists()
    with pytest.raises(RecordingError, match="delay_s"):
        StereoRecorder(tmp_path / "bad.wav", delay_s=-1.0)
    with StereoRecorder(tmp_path / "ok.wav", delay_s=1.0) as rec:
        with pytest.raises(ChunkError):
            rec.mask("left", 0.0, 1.0)
        assert not rec.mask("agent", 1.0, math.nan).late      # nothing to mask
        assert not rec.mask("agent", 2.0, 1.0).late


def test_flac_masks_in_memory_counts_late_ones_unpatched(tmp_path: Path) -> None:
    import soundfile  # type: ignore[import-untyped]
    path = tmp_path / "r.flac"
    agent = noise(4 * RATE, 16)
    with StereoRecorder(path, fmt="flac", delay_s=1.0) as rec:
        write_both(rec, agent, agent)
        inside = rec.mask("customer", 3.5, 3.8)         # still in memory
        late = rec.mask("agent", 0.5, 1.0)              # written out already
        assert (inside.on_disk, late.on_disk, late.patched) == (0, 4000, 0)
        assert rec.late_unpatched_samples == 4000 and rec.late_patched_samples == 0
    frames, _rate = soundfile.read(str(path), dtype="int16")
    np.testing.assert_array_equal(frames[28000:30400, 1], tone(28000, 30400))
    np.testing.assert_array_equal(frames[:, 0], agent)      # the late one could not be
