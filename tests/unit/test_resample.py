"""Tests for gateway.media.resample: chunked streaming equals one-shot, spectra, no clicks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from gateway.media.resample import ResampleError, StreamResampler, to_float32, to_int16

F32 = npt.NDArray[np.float32]
ODD_SIZES = [7, 333, 1, 999, 160, 41]


def sine(freq_hz: float, rate_hz: int, seconds: float, amplitude: float = 0.5) -> F32:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def noise(samples: int, seed: int = 7) -> F32:
    return (np.random.default_rng(seed).standard_normal(samples) * 0.2).astype(np.float32)


def chunks(x: F32, sizes: list[int]) -> Iterator[F32]:
    start, i = 0, 0
    while start < len(x):
        size = sizes[i % len(sizes)]
        yield x[start : start + size]
        start, i = start + size, i + 1


def run_chunked(rs: StreamResampler, x: F32, sizes: list[int]) -> F32:
    parts = [rs.process(c) for c in chunks(x, sizes)]
    return np.concatenate([*parts, rs.flush()])


def run_whole(in_rate_hz: int, out_rate_hz: int, x: F32) -> F32:
    rs = StreamResampler(in_rate_hz, out_rate_hz)
    return np.concatenate([rs.process(x), rs.flush()])


def peak_hz(x: F32, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate_hz)[np.argmax(spectrum)])


RATE_PAIRS = [(8000, 16000), (22050, 8000), (16000, 8000), (24000, 8000)]


@pytest.mark.parametrize(("in_hz", "out_hz"), RATE_PAIRS)
@pytest.mark.parametrize("sizes", [[0], ODD_SIZES], ids=["20ms", "odd"])
def test_chunked_equals_one_shot(in_hz: int, out_hz: int, sizes: list[int]) -> None:
    sizes = [in_hz // 50] if sizes == [0] else sizes
    x = noise(in_hz * 2)
    chunked = run_chunked(StreamResampler(in_hz, out_hz), x, sizes)
    for one_shot in (run_whole(in_hz, out_hz, x), soxr.resample(x, in_hz, out_hz, "HQ")):
        n = min(len(chunked), len(one_shot))
        assert abs(len(chunked) - len(one_shot)) <= 1
        np.testing.assert_allclose(chunked[:n], one_shot[:n], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("in_hz", "out_hz"), RATE_PAIRS)
def test_total_length_after_flush_matches_ratio(in_hz: int, out_hz: int) -> None:
    x = noise(in_hz * 3 + 17)
    y = run_chunked(StreamResampler(in_hz, out_hz), x, [in_hz // 50])
    assert abs(len(y) - len(x) * out_hz / in_hz) <= 1


@pytest.mark.parametrize(
    ("in_hz", "out_hz", "tone_hz"),
    [(8000, 16000, 1000.0), (8000, 16000, 3300.0), (22050, 8000, 440.0), (22050, 8000, 2500.0)],
)
def test_sine_frequency_is_preserved(in_hz: int, out_hz: int, tone_hz: float) -> None:
    y = run_chunked(StreamResampler(in_hz, out_hz), sine(tone_hz, in_hz, 1.0), [in_hz // 50])
    assert abs(peak_hz(y, out_hz) - tone_hz) <= 2.0
    assert 0.45 < np.sqrt(2 * np.mean(y[out_hz // 10 : -out_hz // 10] ** 2)) < 0.55


def test_tts_downsampling_filters_out_what_would_alias() -> None:
    """A 6 kHz tone at 22.05 kHz must not fold back to 2 kHz in the 8 kHz output."""
    y = run_whole(22050, 8000, sine(6000.0, 22050, 1.0))
    assert np.sqrt(np.mean(y[800:-800] ** 2)) < 0.005


@pytest.mark.parametrize(("in_hz", "out_hz"), [(8000, 16000), (22050, 8000)])
def test_no_discontinuity_at_chunk_boundaries(in_hz: int, out_hz: int) -> None:
    x = sine(440.0, in_hz, 2.0)
    chunked = run_chunked(StreamResampler(in_hz, out_hz), x, [in_hz // 50])
    whole = run_whole(in_hz, out_hz, x)
    max_jump_chunked = np.abs(np.diff(chunked)).max()
    max_jump_whole = np.abs(np.diff(whole)).max()
    assert max_jump_chunked <= max_jump_whole * 1.001 + 1e-6
    # away from the abrupt start and stop, the jump is that of a clean 440 Hz sine
    trim = out_hz // 20
    steady_jump = np.abs(np.diff(chunked[trim:-trim])).max()
    assert steady_jump <= 0.5 * 2 * np.pi * 440 / out_hz * 1.05


def test_int16_input_is_scaled_to_unit_range() -> None:
    x16 = (sine(1000.0, 8000, 0.5) * 32767).astype(np.int16)
    a = run_chunked(StreamResampler(8000, 16000), (x16 / 32768).astype(np.float32), [160])
    rs = StreamResampler(8000, 16000)
    b = np.concatenate([*(rs.process(c) for c in np.split(x16, 25)), rs.flush()])
    assert b.dtype == np.float32
    np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)


def test_output_is_clipped_to_unit_range() -> None:
    square = np.where(sine(200.0, 8000, 0.5) >= 0, 1.0, -1.0).astype(np.float32)
    unclipped = soxr.resample(square, 8000, 16000, "HQ")
    assert np.abs(unclipped).max() > 1.0  # the filter rings past full scale ...
    y = run_whole(8000, 16000, square)
    assert np.abs(y).max() <= 1.0  # ... and we clip it


def test_equal_rates_pass_through_as_float32() -> None:
    rs = StreamResampler(8000, 8000)
    x16 = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    y = rs.process(x16)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, [0.0, 0.5, -1.0, 32767 / 32768])
    x = np.array([0.25, -0.75], dtype=np.float32)
    np.testing.assert_array_equal(rs.process(x), x)
    assert rs.flush().size == 0
    assert rs.delay_s == 0.0


def test_flush_leaves_the_resampler_ready_for_a_new_signal() -> None:
    rs = StreamResampler(22050, 8000)
    run_chunked(rs, noise(22050, seed=1), [441])
    second = noise(22050, seed=2)
    np.testing.assert_allclose(
        run_chunked(rs, second, [441]), run_whole(22050, 8000, second), atol=1e-6, rtol=0
    )


def test_delay_is_reported_in_seconds() -> None:
    rs = StreamResampler(8000, 16000)
    rs.process(noise(160))
    assert 0.0 < rs.delay_s < 0.5


def test_to_int16_rounds_and_clips() -> None:
    x = np.array([0.0, 0.5, -1.0, 1.0, 2.0, -3.0, 1.4 / 32768, 1.6 / 32768], dtype=np.float32)
    np.testing.assert_array_equal(to_int16(x), [0, 16384, -32768, 32767, 32767, -32768, 1, 2])
    assert to_int16(x).dtype == np.int16


def test_int16_float32_round_trip_is_exact() -> None:
    every = np.arange(-32768, 32768, dtype=np.int16)
    f = to_float32(every)
    assert f.dtype == np.float32 and f.min() == -1.0 and f.max() < 1.0
    np.testing.assert_array_equal(to_int16(f), every)


@pytest.mark.parametrize(
    ("args", "match"),
    [((0, 8000), "positive"), ((8000, -1), "positive"), ((8000, 16000, "best"), "quality")],
)
def test_bad_settings_are_rejected(
    args: tuple[int, int] | tuple[int, int, str], match: str
) -> None:
    with pytest.raises(ResampleError, match=match):
        StreamResampler(*args)


@pytest.mark.parametrize(
    "bad",
    [np.zeros(10, dtype=np.float64), np.zeros(10, dtype=np.int32), np.zeros((10, 2), np.float32)],
)
def test_bad_samples_are_rejected(bad: npt.NDArray[np.generic]) -> None:
    with pytest.raises(ResampleError):
        StreamResampler(8000, 16000).process(bad)  # type: ignore[arg-type]
    assert issubclass(ResampleError, ValueError)


# --- method="lowdelay": the polyphase FIR for integer up-sampling (receive / ASR path) ---

UP_PAIRS = [(8000, 16000), (8000, 48000), (16000, 48000)]


def low(in_hz: int = 8000, out_hz: int = 16000) -> StreamResampler:
    rs = StreamResampler(in_hz, out_hz, method="lowdelay")
    assert rs.method == "lowdelay"
    return rs


def tone_amplitudes(y: F32, freqs_hz: list[float], rate_hz: int) -> list[float]:
    """Least-squares amplitudes of these frequencies in ``y``, fitted jointly (a strong tone
    does not leak into the estimate of a weak one)."""
    t = np.arange(len(y)) / rate_hz
    basis = np.concatenate([np.stack([np.sin(2 * np.pi * f * t), np.cos(2 * np.pi * f * t)],
                                     axis=1) for f in freqs_hz], axis=1)
    coef = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)[0]
    return [float(np.hypot(coef[2 * i], coef[2 * i + 1])) for i in range(len(freqs_hz))]


def band_limited(x: F32, rate_hz: int) -> F32:
    """``x`` without what lies above 0.375 x rate (3 kHz at 8 kHz)."""
    down = soxr.resample(x, rate_hz, rate_hz * 3 // 4, "VHQ")
    return np.asarray(soxr.resample(down, rate_hz * 3 // 4, rate_hz, "VHQ"), dtype=np.float32)


@pytest.mark.parametrize(("in_hz", "out_hz"), UP_PAIRS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lowdelay_chunked_equals_whole_signal_exactly(in_hz: int, out_hz: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = noise(in_hz, seed=seed)
    sizes = [int(s) for s in rng.integers(0, 3 * in_hz // 50, size=40)]
    chunked = run_chunked(low(in_hz, out_hz), x, sizes)
    rs = low(in_hz, out_hz)
    whole = np.concatenate([rs.process(x), rs.flush()])
    assert len(whole) == len(x) * out_hz // in_hz
    np.testing.assert_array_equal(chunked, whole)


@pytest.mark.parametrize(("in_hz", "out_hz"), UP_PAIRS)
def test_lowdelay_passband_is_flat_and_images_are_rejected(in_hz: int, out_hz: int) -> None:
    """300 Hz .. 0.425 x input rate (3400 Hz at 8 kHz) within 0.1 dB; every image of those
    tones (k * in_rate +- f) at least 90 dB down."""
    factor = out_hz // in_hz
    for tone_hz in np.linspace(300 * in_hz / 8000, 0.425 * in_hz, 12):
        x = sine(float(tone_hz), in_hz, 0.5)
        y = run_chunked(low(in_hz, out_hz), x, [in_hz // 50])[out_hz // 20 : -out_hz // 20]
        images = [float(k * in_hz + sign * tone_hz) for k in range(1, factor + 1)
                  for sign in (-1, 1) if k * in_hz + sign * tone_hz < out_hz / 2]
        tone, *image_amplitudes = tone_amplitudes(y, [float(tone_hz), *images], out_hz)
        gain_db = 20 * np.log10(tone / 0.5)
        assert abs(gain_db) <= 0.1, (tone_hz, gain_db)
        for image_hz, amplitude in zip(images, image_amplitudes, strict=True):
            image_db = 20 * np.log10(amplitude / 0.5 + 1e-12)
            assert image_db <= -90, (tone_hz, image_hz, image_db)


def test_lowdelay_leaves_nothing_above_the_input_nyquist() -> None:
    """White noise at 8 kHz: output above 4 kHz (images) >= 90 dB under the 300-3400 Hz
    band, as soxr leaves it (a filter that let images into 4-4.6 kHz cost the small NeMo
    model nearly every word: its high mel bins were empty in training)."""
    y = run_chunked(low(), noise(8000 * 8, seed=5), [160]).astype(np.float64)
    seg = 4096
    window = np.kaiser(seg, 20)
    frames = y[: len(y) // seg * seg].reshape(-1, seg)
    psd = (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2).mean(axis=0)
    freqs = np.fft.rfftfreq(seg, 1 / 16000)
    passband = psd[(freqs >= 300) & (freqs <= 3400)].mean()
    images = psd[freqs >= 4050].max()
    assert 10 * np.log10(images / passband) <= -90


def test_lowdelay_matches_soxr_timing_on_band_limited_audio() -> None:
    """Same alignment as soxr (word times and audio clocks do not move): in-band the two
    outputs agree sample for sample, and a chirp cross-correlates at lag 0."""
    x = band_limited(noise(16000, seed=9), 8000)
    a = run_chunked(low(), x, [160])
    b = soxr.resample(x, 8000, 16000, "HQ")
    assert len(a) == len(b)
    np.testing.assert_allclose(a[400:-400], b[400:-400], atol=1e-3, rtol=0)
    t = np.arange(8000) / 8000
    chirp = (0.5 * np.sin(2 * np.pi * (300 * t + (3400 - 300) / 2 * t**2))).astype(np.float32)
    y = run_chunked(low(), chirp, [160])
    ideal = soxr.resample(chirp, 8000, 16000, "VHQ")
    xcorr = np.correlate(y, ideal, "full")
    assert int(np.argmax(xcorr)) - (len(ideal) - 1) == 0


@pytest.mark.parametrize(("in_hz", "out_hz"), UP_PAIRS)
def test_lowdelay_holds_back_only_its_constant_delay(in_hz: int, out_hz: int) -> None:
    """Per 20 ms frame: everything but ``delay_s`` of output comes out, frame after frame;
    soxr's block buffering holds back far more (the reason for this filter)."""
    rs = low(in_hz, out_hz)
    held_s = []
    fed = out = 0
    frame = in_hz // 50
    for chunk in chunks(noise(in_hz * 2), [frame]):
        out += len(rs.process(chunk))
        fed += len(chunk)
        held_s.append((fed * out_hz // in_hz - out) / out_hz)
        assert rs.delay_s == pytest.approx(held_s[-1], abs=1e-12)
    assert set(held_s) == {held_s[0]}
    assert 0.0 < held_s[0] <= 0.006
    lag = delay_of_chirp(rs, in_hz, out_hz)
    assert lag == round(rs.delay_s * out_hz)


def delay_of_chirp(rs: StreamResampler, in_hz: int, out_hz: int) -> int:
    """Samples between a chirp's ideal output and what came out by each 20 ms frame's
    arrival (output placed at the time its input frame arrived), by cross-correlation."""
    rs.flush()
    t = np.arange(in_hz // 2) / in_hz
    top = 0.425 * in_hz
    chirp = (0.5 * np.sin(2 * np.pi * (100 * t + (top - 100) / 2 * t**2))).astype(np.float32)
    arrived = np.zeros(len(chirp) * out_hz // in_hz)
    for i, chunk in enumerate(chunks(chirp, [in_hz // 50])):
        y = rs.process(chunk)
        frame_end = (i + 1) * (in_hz // 50) * out_hz // in_hz   # output time of the arrival
        arrived[frame_end - len(y) : frame_end] = y
    ideal = soxr.resample(chirp, in_hz, out_hz, "VHQ")
    xcorr = np.correlate(arrived, ideal, "full")
    return int(np.argmax(xcorr)) - (len(ideal) - 1)


def test_soxr_holds_back_blocks() -> None:
    """The measurement behind ``lowdelay``: soxr's held-back output varies, tens of ms."""
    rs = StreamResampler(8000, 16000)
    held = []
    fed = out = 0
    for chunk in chunks(noise(16000), [160]):
        out += len(rs.process(chunk))
        fed += len(chunk)
        held.append(fed * 2 - out)
    assert max(held) / 16000 > 0.05 and len(set(held)) > 2


@pytest.mark.parametrize(("in_hz", "out_hz"), UP_PAIRS)
def test_lowdelay_flush_gives_the_tail_and_resets(in_hz: int, out_hz: int) -> None:
    rs = low(in_hz, out_hz)
    x = band_limited(noise(in_hz // 2 + 13, seed=4), in_hz)
    body = np.concatenate([rs.process(c) for c in chunks(x, [in_hz // 50])])
    tail = rs.flush()
    assert len(tail) == round(rs.delay_s * out_hz)
    assert len(body) + len(tail) == len(x) * out_hz // in_hz
    whole = soxr.resample(x, in_hz, out_hz, "VHQ")
    assert np.abs(tail[: len(tail) // 2]).max() > 0.01       # the signal's end, not zeros
    np.testing.assert_allclose(tail, whole[-len(tail):], atol=0.01, rtol=0)  # the cut end
    again = run_chunked(rs, x, [in_hz // 50])
    np.testing.assert_array_equal(again, np.concatenate([body, tail]))
    assert rs.flush().size == 0


def test_lowdelay_short_and_empty_chunks() -> None:
    rs = low()
    assert rs.process(np.zeros(0, dtype=np.int16)).size == 0
    first = rs.process(noise(5))                 # less than the delay: nothing yet
    assert first.size == 0
    x = noise(3, seed=2)
    y = np.concatenate([rs.process(x), rs.flush()])
    assert len(y) == 2 * (5 + 3)


def test_lowdelay_int16_and_float32_inputs_agree() -> None:
    x16 = (sine(1000.0, 8000, 0.5) * 32767).astype(np.int16)
    a = run_chunked(low(), (x16 / 32768).astype(np.float32), [160])
    b = run_chunked(low(), x16, [160])  # type: ignore[arg-type]
    assert b.dtype == np.float32 == a.dtype
    np.testing.assert_array_equal(b, a)


def test_lowdelay_output_is_clipped() -> None:
    square = np.where(sine(200.0, 8000, 0.5) >= 0, 1.0, -1.0).astype(np.float32)
    y = run_chunked(low(), square, [160])
    assert np.abs(y).max() <= 1.0 and np.abs(y).max() == 1.0


@pytest.mark.parametrize(("in_hz", "out_hz"), [(22050, 8000), (16000, 8000), (8000, 12000)])
def test_lowdelay_falls_back_to_soxr_where_the_ratio_is_not_integer_up(in_hz: int,
                                                                       out_hz: int) -> None:
    rs = StreamResampler(in_hz, out_hz, method="lowdelay")
    assert rs.method == "soxr"
    x = noise(in_hz)
    np.testing.assert_allclose(run_chunked(rs, x, [in_hz // 50]),
                               run_chunked(StreamResampler(in_hz, out_hz), x, [in_hz // 50]),
                               atol=0, rtol=0)
    assert StreamResampler(8000, 8000, method="lowdelay").method == "none"


def test_lowdelay_bad_method_and_samples_are_rejected() -> None:
    with pytest.raises(ResampleError, match="method"):
        StreamResampler(8000, 16000, method="fast")
    for bad in (np.zeros(10, dtype=np.float64), np.zeros((10, 2), np.float32)):
        with pytest.raises(ResampleError):
            low().process(bad)  # type: ignore[arg-type]
    rs = low()
    rs.close()
    assert rs.method == "none" and rs.delay_s == 0.0
