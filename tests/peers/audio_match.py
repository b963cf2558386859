"""Does a recording follow its source? Envelope correlation, chunk by chunk, tolerant of the
few-frame shifts a receiving jitter buffer introduces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from tests.peers.softphone import read_wav_pcm16

# The recording is compared with the source chunk by chunk (1 s chunks of a
# 20 ms envelope), each chunk at its best lag within +-300 ms of the global
# lag: the callee's adaptive jitter buffer shifts the audio by a few frames
# now and then, which breaks one global alignment. Measured: median chunk
# correlation 0.957-0.964 over 4 runs of pjsua -> Kamailio -> pjsua; other
# espeak speech 0.36-0.40, reversed source 0.42-0.48, white noise 0.27.
MIN_MEDIAN_CHUNK_CORRELATION = 0.8
MIN_RMS_RATIO = 0.3
ENVELOPE_WINDOW = 160  # 20 ms at 8 kHz
CHUNK_FRAMES = 50  # 1 s of envelope
SEARCH_FRAMES = 15  # +-300 ms
def _envelope(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    frames = len(samples) // ENVELOPE_WINDOW
    magnitude = np.abs(samples[: frames * ENVELOPE_WINDOW].astype(np.float64))
    means: npt.NDArray[np.float64] = magnitude.reshape(frames, ENVELOPE_WINDOW).mean(axis=1)
    return means


def _best_lag(reference: npt.NDArray[np.float64], received: npt.NDArray[np.float64]) -> int:
    """Lag (in samples) of ``reference`` inside ``received``, by FFT cross-correlation."""
    size = 1 << (len(reference) + len(received)).bit_length()
    spectrum = np.fft.rfft(received, size) * np.conj(np.fft.rfft(reference, size))
    lag = int(np.argmax(np.fft.irfft(spectrum, size)))
    return lag - size if lag > size // 2 else lag


def _correlation(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b)) / denominator if denominator > 0 else 0.0


def _chunk_correlations(
    reference: npt.NDArray[np.float64], received: npt.NDArray[np.float64]
) -> list[float]:
    """Per chunk of ``reference``: best correlation near the global lag in ``received``."""
    lag = _best_lag(reference, received)
    scores = []
    for start in range(0, len(reference) - CHUNK_FRAMES + 1, CHUNK_FRAMES):
        chunk = reference[start : start + CHUNK_FRAMES]
        offsets = range(start + lag - SEARCH_FRAMES, start + lag + SEARCH_FRAMES + 1)
        candidates = [
            _correlation(chunk, received[o : o + CHUNK_FRAMES])
            for o in offsets
            if 0 <= o and o + CHUNK_FRAMES <= len(received)
        ]
        scores.append(max(candidates, default=0.0))
    return scores


def _rms(samples: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))


def assert_heard(source_wav: Path, recording_wav: Path, context: str) -> None:
    """The recording is loud enough and its envelope follows the source's."""
    _, source = read_wav_pcm16(source_wav)
    rate_hz, heard = read_wav_pcm16(recording_wav)
    assert rate_hz == 8000, context
    assert_follows(source, heard, context)


def assert_follows(source: npt.NDArray[np.int16], heard: npt.NDArray[np.int16],
                   context: str) -> float:
    """Like :func:`assert_heard` for arrays at 8 kHz; returns the median chunk correlation."""
    assert _rms(heard) > MIN_RMS_RATIO * _rms(source), (
        f"too quiet: rms {_rms(heard):.0f} vs source {_rms(source):.0f}\n{context}")
    scores = _chunk_correlations(_envelope(source), _envelope(heard))
    median = float(np.median(scores))
    assert median > MIN_MEDIAN_CHUNK_CORRELATION, (
        f"does not follow the source: median chunk correlation {median:.3f} "
        f"(chunks {[round(x, 2) for x in scores]})\n{context}")
    return median
