"""Energy VAD for barge-in (gateway.media.vad): levels in dBFS, speech only after
``min_speech_ms`` above the threshold, a short click or a pause resets the count."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from gateway.media.vad import EnergyVad, level_dbfs

RATE = 8000
FRAME = 160                      # 20 ms at 8 kHz


def tone(amplitude: float, samples: int = FRAME, hz: float = 440.0) -> npt.NDArray[np.int16]:
    t = np.arange(samples) / RATE
    return (amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def silence(samples: int = FRAME) -> npt.NDArray[np.int16]:
    return np.zeros(samples, dtype=np.int16)


def test_level_of_a_full_scale_sine_is_minus_3_dbfs() -> None:
    assert level_dbfs(tone(1.0, RATE)) == pytest.approx(-3.01, abs=0.05)


def test_level_drops_6_db_per_halving_of_the_amplitude() -> None:
    full, half = level_dbfs(tone(0.5, RATE)), level_dbfs(tone(0.25, RATE))
    assert full - half == pytest.approx(20 * math.log10(2), abs=0.05)


def test_level_of_silence_and_of_nothing_is_far_below_any_threshold() -> None:
    assert level_dbfs(np.zeros(0, dtype=np.int16)) == -120.0
    assert level_dbfs(silence()) < -120.0            # floored, finite, no log(0)
    assert math.isfinite(level_dbfs(silence()))


def test_level_of_a_square_wave_at_full_scale_is_zero_dbfs() -> None:
    square = np.where(np.arange(FRAME) % 2, 32767, -32768).astype(np.int16)
    assert level_dbfs(square) == pytest.approx(0.0, abs=0.01)


def test_speech_counts_only_after_min_speech_ms() -> None:
    vad = EnergyVad(threshold_dbfs=-30.0, min_speech_ms=60, sample_rate_hz=RATE)
    loud = tone(0.3)                                  # about -13.5 dBFS
    assert [vad.push(loud) for _ in range(4)] == [False, False, True, True]


def test_a_click_shorter_than_min_speech_is_not_speech() -> None:
    vad = EnergyVad(threshold_dbfs=-30.0, min_speech_ms=60)
    results = []
    for _ in range(5):                                # 40 ms clicks with pauses between
        results += [vad.push(tone(0.5)), vad.push(tone(0.5)), vad.push(silence())]
    assert not any(results)


def test_quiet_audio_below_the_threshold_never_counts() -> None:
    vad = EnergyVad(threshold_dbfs=-30.0, min_speech_ms=20)
    quiet = tone(0.01)                                # about -43 dBFS
    assert level_dbfs(quiet) < -30.0
    assert not any(vad.push(quiet) for _ in range(50))


def test_threshold_is_inclusive_and_reset_clears_the_count() -> None:
    loud = tone(0.3)
    vad = EnergyVad(threshold_dbfs=level_dbfs(loud), min_speech_ms=40)
    assert vad.push(loud) is False and vad.push(loud) is True
    vad.reset()
    assert vad.push(loud) is False                    # counting starts over


def test_min_speech_follows_the_sample_rate() -> None:
    vad = EnergyVad(threshold_dbfs=-30.0, min_speech_ms=20, sample_rate_hz=16000)
    assert vad.push(tone(0.3, samples=160)) is False  # 10 ms at 16 kHz
    assert vad.push(tone(0.3, samples=160)) is True
