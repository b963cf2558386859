"""data_gen.phone_line: the simulated line the small NeMo model is trained through."""

from __future__ import annotations

import sys

import numpy as np

from tests.triton.fixtures import MODEL_REPOSITORY

sys.path.insert(0, str(MODEL_REPOSITORY / "asr_streaming_nemo"))  # data_gen: no NeMo import
import data_gen as dg  # noqa: E402


def _band_share(audio: np.ndarray, rate_hz: int, low_hz: float, high_hz: float) -> float:
    """Share of the signal's energy between low_hz and high_hz."""
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1.0 / rate_hz)
    return float(power[(freqs >= low_hz) & (freqs <= high_hz)].sum() / power.sum())


def test_wide_fraction_decides_whether_the_line_keeps_its_edges() -> None:
    rng = np.random.default_rng(1)
    # white noise: as much energy near 3.7 kHz and under 300 Hz as anywhere
    audio = rng.normal(0, 0.1, dg.SAMPLE_RATE_HZ * 2).astype(np.float32)
    quiet = dict(snr_db=(90.0, 90.0), peak=(0.5, 0.5))
    narrow = dg.phone_line(audio, dg.SAMPLE_RATE_HZ, np.random.default_rng(2),
                           dg.LineSettings(**quiet, wide_fraction=0.0))
    wide = dg.phone_line(audio, dg.SAMPLE_RATE_HZ, np.random.default_rng(2),
                         dg.LineSettings(**quiet, wide_fraction=1.0))
    for out in (narrow, wide):
        assert out.dtype == np.float32 and out.size == audio.size
    # mu-law's own noise is broadband; the cut band keeps only that (about -35 dB)
    assert _band_share(narrow, dg.SAMPLE_RATE_HZ, 3500, 3800) < 0.002
    assert _band_share(narrow, dg.SAMPLE_RATE_HZ, 20, 250) < 0.002
    assert _band_share(wide, dg.SAMPLE_RATE_HZ, 3500, 3800) > 0.05
    assert _band_share(wide, dg.SAMPLE_RATE_HZ, 20, 250) > 0.03
    assert _band_share(wide, dg.SAMPLE_RATE_HZ, 4200, 8000) < 0.002   # still an 8 kHz line
