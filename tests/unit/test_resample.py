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
