"""Audio facts the benches need: where speech starts and ends in a clip (pure), and the
looped mu-law file sipp streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from tests.peers.sipp import write_g711_media
from tests.peers.softphone import synthesize_speech_wav

PHONE_RATE_HZ = 8000
FRAME_MS = 20
SPEECH_THRESHOLD_DBFS = -40.0
LOAD_TEXT = ("Hello, this is a load test call to the telephone gateway. Please tell me the "
             "balance of account number four two seven, and when my order will arrive.")
_FULL_SCALE = 32768.0


class NoSpeechError(ValueError):
    """The clip has no frame above the speech threshold."""


def frame_levels_dbfs(pcm: npt.NDArray[np.int16], rate_hz: int = PHONE_RATE_HZ,
                      frame_ms: int = FRAME_MS) -> npt.NDArray[np.float64]:
    """RMS level of each whole frame, in dB relative to full scale."""
    size = rate_hz * frame_ms // 1000
    frames = pcm[: len(pcm) // size * size].astype(np.float64).reshape(-1, size) / _FULL_SCALE
    rms = np.sqrt((frames ** 2).mean(axis=1))
    levels: npt.NDArray[np.float64] = 20 * np.log10(np.maximum(rms, 1e-9))
    return levels


def speech_bounds_s(pcm: npt.NDArray[np.int16], rate_hz: int = PHONE_RATE_HZ,
                    threshold_dbfs: float = SPEECH_THRESHOLD_DBFS) -> tuple[float, float]:
    """(start, end) in seconds: the first frame's start and the last frame's end above
    ``threshold_dbfs``."""
    loud = np.nonzero(frame_levels_dbfs(pcm, rate_hz) > threshold_dbfs)[0]
    if loud.size == 0:
        raise NoSpeechError(f"no {FRAME_MS} ms frame above {threshold_dbfs} dBFS")
    frame_s = FRAME_MS / 1000
    return float(loud[0] * frame_s), float((loud[-1] + 1) * frame_s)


def looped_ulaw(workdir: Path) -> Path:
    """espeak-ng speech as raw mu-law for sipp's ``rtp_stream`` (which loops it)."""
    wav = synthesize_speech_wav(LOAD_TEXT, workdir / "load.wav")
    return write_g711_media(wav, workdir / "load.ulaw", "ulaw")
