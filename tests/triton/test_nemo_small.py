"""The committed small asr_streaming_nemo model, outside Triton.

The runtime needs onnxruntime and numpy, which live in the Triton venv, not in this
one: each check runs triton_models/asr_streaming_nemo/selfcheck.py there as a
subprocess (the same streaming code model.py runs) and asserts on its JSON.
Speech is synthesized here with espeak-ng and sent through this file's own
telephone line (8 kHz, G.711 mu-law, back to 16 kHz). The digit string below is
not in the training set (training digits are drawn at random; a fixed 8-digit
string has a 1e-8 chance per sentence of being drawn).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import warnings
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from tests.speech import word_edits

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO_ROOT / "triton_models" / "asr_streaming_nemo"
SELFCHECK = MODEL_DIR / "selfcheck.py"
TRITON_VENV = Path(os.environ.get("TRITON_VENV", str(REPO_ROOT / ".venv-triton")))
RATE_HZ = 16000
DIGITS = ["three", "eight", "one", "six", "zero", "four", "seven", "two"]
DIGIT_SENTENCE = "my account number is " + " ".join(DIGITS)
OTHER_DIGITS = ["five", "nine", "zero", "one", "three"]
OTHER_SENTENCE = "my phone number is " + " ".join(OTHER_DIGITS)
DIGIT_WORDS = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
Audio = npt.NDArray[np.float32]


def espeak(text: str, voice: str = "en-us") -> Audio:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng not installed: run make apt", pytrace=False)
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True,
                         check=True).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype="<i2")
        rate_hz = reader.getframerate()
    return phone_line(pcm.astype(np.float32) / 32768.0, rate_hz)


def phone_line(audio: Audio, rate_hz: int) -> Audio:
    narrow = np.clip(soxr.resample(audio, rate_hz, 8000), -1.0, 1.0)
    pcm = (narrow * 32767).astype(np.int16).tobytes()
    decoded = np.frombuffer(audioop.ulaw2lin(audioop.lin2ulaw(pcm, 2), 2), dtype=np.int16)
    return np.asarray(soxr.resample(decoded.astype(np.float32) / 32768.0, 8000, RATE_HZ),
                      dtype=np.float32)


def silence(seconds: float) -> Audio:
    return np.zeros(int(seconds * RATE_HZ), dtype=np.float32)


def write_wav(path: Path, audio: Audio) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE_HZ)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def selfcheck(*args: str | Path) -> dict[str, Any]:
    python = TRITON_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no Triton venv at {TRITON_VENV}: run make triton-venv", pytrace=False)
    done = subprocess.run([str(python), str(SELFCHECK), *map(str, args)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def finals(file_report: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in file_report["results"] if r["type"] == "final" and r["text"]]


@pytest.fixture(scope="module")
def digit_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio = np.concatenate([silence(0.4), espeak(DIGIT_SENTENCE), silence(0.8)])
    return write_wav(tmp_path_factory.mktemp("nemo") / "digits.wav", audio)


@pytest.fixture(scope="module")
def two_sentences_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio = np.concatenate([silence(0.3), espeak(DIGIT_SENTENCE), silence(1.5),
                            espeak(OTHER_SENTENCE, "en-us+f3"), silence(0.8)])
    return write_wav(tmp_path_factory.mktemp("nemo") / "two.wav", audio)


def digits_in(text: str) -> list[str]:
    return [w for w in text.split() if w in DIGIT_WORDS]


@pytest.mark.parametrize("att_context", ["70,0", "70,1", "70,6", "70,13"])
def test_held_out_digits_stream_at_every_trained_lookahead(digit_wav: Path,
                                                            att_context: str) -> None:
    report = selfcheck(digit_wav, "--att-context", att_context)
    text = report["files"][0]["text"]
    assert word_edits(digits_in(text), DIGITS) <= 2, (att_context, text)
    steps = report["step_ms"]["1"]["steps"]
    assert steps >= 5, report["step_ms"]  # streamed in many encoder steps, not at once


def test_trailing_silence_ends_an_utterance(two_sentences_wav: Path) -> None:
    """The 1.5 s gap between the two digit strings closes an utterance (600 ms default);
    with end_silence_ms 6000 it does not. (espeak's own pause after "is" may split the
    first sentence too: the check is on where the digit strings land.)"""
    closed = finals(selfcheck(two_sentences_wav)["files"][0])
    first = [r for r in closed if word_edits(digits_in(r["text"]), DIGITS) <= 2]
    second = [r for r in closed if word_edits(digits_in(r["text"]), OTHER_DIGITS) <= 1]
    assert first and second, closed
    assert first[0]["segment"] < second[0]["segment"], closed
    assert first[0]["end_s"] < second[0]["start_s"], closed
    starts = [w["start_s"] for r in closed for w in r["words"]]
    assert starts == sorted(starts)
    # blank frames also cover words the model does not pick up ("my phone number is" in
    # this voice, about 1.5 s), so the merged run needs more than the 1.5 s gap
    longer = finals(selfcheck(two_sentences_wav, "--end-silence-ms", "6000")["files"][0])
    assert len(longer) == 1, longer


def test_chunk_size_does_not_change_the_result(digit_wav: Path) -> None:
    runs = [selfcheck(digit_wav, "--chunk-ms", ms)["files"][0] for ms in ("160", "37", "3000")]
    words = [[(w["word"], w["start_s"], w["end_s"]) for r in finals(run) for w in r["words"]]
             for run in runs]
    assert words[0], runs[0]
    assert words[0] == words[1] == words[2]


def test_streams_batched_together_match_streams_alone(
        digit_wav: Path, two_sentences_wav: Path) -> None:
    together = selfcheck(digit_wav, two_sentences_wav)
    alone = [selfcheck(digit_wav), selfcheck(two_sentences_wav)]
    assert max(together["step_ms"]) == "2"  # both streams went through one encoder call
    for joint, single in zip(together["files"], alone, strict=True):
        assert joint["text"] == single["files"][0]["text"]


def test_partials_grow_into_the_final_of_their_segment(digit_wav: Path) -> None:
    results = selfcheck(digit_wav)["files"][0]["results"]
    closed = {r["segment"]: r["text"] for r in results if r["type"] == "final"}
    partials = [r for r in results if r["type"] == "partial" and r["text"]]
    assert len(partials) >= 2, results
    for partial in partials:  # greedy CTC only appends tokens to the open utterance
        assert closed[partial["segment"]].startswith(partial["text"]), (partial, closed)


def test_a_large_phrase_boost_forces_phrase_tokens(digit_wav: Path) -> None:
    plain = selfcheck(digit_wav)["files"][0]["text"]
    boosted = selfcheck(digit_wav, "--phrase", "cancelled", "--phrase-boost", "30")
    text = boosted["files"][0]["text"]
    assert text != plain
    assert set("cancelled") >= set(text.replace(" ", "")), text


def test_missing_model_folder_names_the_path(tmp_path: Path, digit_wav: Path) -> None:
    python = TRITON_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"no Triton venv at {TRITON_VENV}: run make triton-venv", pytrace=False)
    missing = tmp_path / "no-model-here"
    done = subprocess.run([str(python), str(SELFCHECK), "--model-dir", str(missing),
                           str(digit_wav)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert str(missing) in done.stderr
