"""Speech probabilities of Silero VAD v6 (triton_models/common/vad.py) for test audio.

Run with the Triton venv's python (onnxruntime is there, not in the gateway's venv):
``python vad_probs.py IN.npy OUT.npy [CHUNK]``: IN is 16 kHz float32 audio, pushed through
one VadStream in CHUNK-sample pieces (default 2560, the gateway's 160 ms); OUT gets one
probability per 32 ms frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "triton_models"))
from common.vad import SileroVad  # noqa: E402


def main(source: str, target: str, chunk: int = 2560) -> None:
    audio = np.load(source).astype(np.float32)
    stream = SileroVad().new_stream()
    probs = [stream.push(audio[i:i + chunk]) for i in range(0, audio.size, chunk)]
    np.save(target, np.concatenate(probs) if probs else np.zeros(0, np.float32))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]))
