"""Energy voice-activity detection for barge-in (pure): speech for ``min_speech_ms`` at or
above ``threshold_dbfs`` counts; short clicks do not.

Layer: pure core.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FULL_SCALE = 32768.0


def level_dbfs(pcm: npt.NDArray[np.int16]) -> float:
    if len(pcm) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))
    return 20.0 * float(np.log10(max(rms, 1e-3) / FULL_SCALE))


class EnergyVad:
    def __init__(self, *, threshold_dbfs: float, min_speech_ms: int,
                 sample_rate_hz: int = 8000) -> None:
        self.threshold_dbfs = threshold_dbfs
        self.min_samples = min_speech_ms * sample_rate_hz // 1000
        self._speech_samples = 0

    def push(self, pcm: npt.NDArray[np.int16]) -> bool:
        """True once speech has lasted ``min_speech_ms`` (stays True while it goes on)."""
        if level_dbfs(pcm) >= self.threshold_dbfs:
            self._speech_samples += len(pcm)
        else:
            self._speech_samples = 0
        return self._speech_samples >= self.min_samples

    def reset(self) -> None:
        self._speech_samples = 0
