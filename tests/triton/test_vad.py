"""Neural VAD endpointing (triton_models/common/vad.py): Silero VAD v6 on real speech through
the 8 kHz phone line, and the end-point rule on its probabilities.

The probabilities come from the Triton venv (onnxruntime lives there, not in the gateway's
venv): tests/triton/vad_probs.py runs the streaming VadStream over the audio in 160 ms
chunks. Ground truth is the synthesized speech's own energy envelope.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.triton.fixtures import MODEL_REPOSITORY, SAMPLE_RATE_HZ, TRITON_VENV, Audio
from tests.triton.test_asr_contract import ESPEAK_ARGS, phone_line

sys.path.insert(0, str(MODEL_REPOSITORY))
from common.asr_contract import ParameterError  # noqa: E402
from common.vad import (  # noqa: E402
    FRAME_SAMPLES,
    EarlyFinal,
    SpeechEndpoint,
    VadSegmenter,
    hypothesis_covers,
    speech_spans,
    vad_endpoint_config,
)

SENTENCES = (
    "Please transfer me to the billing department.",
    "I would like to check the status of my order.",
    "Can you call me back tomorrow morning?",
)
GAP_S = 1.0
TOLERANCE_S = 0.1
PROBE = Path(__file__).with_name("vad_probs.py")


def vad_probabilities(audio: Audio, tmp_path: Path, chunk: int = 2560) -> Audio:
    source, target = tmp_path / "audio.npy", tmp_path / "probs.npy"
    np.save(source, audio.astype(np.float32))
    python = TRITON_VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(f"Triton venv {TRITON_VENV} not found: run make triton-venv", pytrace=False)
    subprocess.run([str(python), str(PROBE), str(source), str(target), str(chunk)], check=True,
                   timeout=120)
    return np.asarray(np.load(target), dtype=np.float32)


def envelope_bounds(audio: np.ndarray, rate_hz: int, floor_db: float = 40.0) -> tuple[float, float]:
    """First and last 10 ms frame within ``floor_db`` of the loudest, in seconds."""
    hop = rate_hz // 100
    frames = audio[:audio.size // hop * hop].reshape(-1, hop).astype(np.float64)
    level = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(level > level.max() - floor_db)
    return active[0] * 0.01, (active[-1] + 1) * 0.01


Bounds = list[tuple[float, float]]


def speech_with_pauses(voice: tuple[str, ...] = ESPEAK_ARGS) -> tuple[Audio, Bounds]:
    """Sentences through the phone line, 1 s apart, and each one's true speech bounds."""
    gap = np.zeros(int(GAP_S * SAMPLE_RATE_HZ), np.float32)
    parts, truth, at = [gap], [], GAP_S
    for sentence in SENTENCES:
        clean, rate = espeak_voice(sentence, voice)
        start, end = envelope_bounds(clean, rate)
        line = phone_line(clean, rate)
        truth.append((at + start, at + end))
        parts += [line, gap]
        at += line.size / SAMPLE_RATE_HZ + GAP_S
    return np.concatenate(parts), truth


class Recorded:
    """Stands in for VadStream.push: the recorded probabilities of the frames each chunk
    completes."""

    def __init__(self, probs: Sequence[float]) -> None:
        self._probs: Iterator[float] = iter([float(p) for p in probs])
        self._samples = 0

    def __call__(self, chunk: Audio) -> list[float]:
        done = self._samples // FRAME_SAMPLES
        self._samples += chunk.size
        return [next(self._probs) for _ in range(self._samples // FRAME_SAMPLES - done)]


def segment_with(probs: Sequence[float], audio: Audio,
                 end_silence_ms: int = 256) -> Bounds:
    """The rule on recorded probabilities: (start_s, end_s) of each closed utterance."""
    config = vad_endpoint_config(end_silence_ms=end_silence_ms, preroll_ms=0, tail_ms=0,
                                 partial_interval_s=1e9)
    segmenter = VadSegmenter(config, Recorded(probs))
    spans = []
    for start in range(0, audio.size, 2560):
        spans += speech_spans(segmenter.push(audio[start:start + 2560]), segmenter.total_samples)
    return [(s.start / SAMPLE_RATE_HZ, s.end / SAMPLE_RATE_HZ) for s in spans]


def espeak_voice(text: str, voice: tuple[str, ...]) -> tuple[np.ndarray, int]:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng not installed: run make apt", pytrace=False)
    wav = subprocess.run(["espeak-ng", *voice, "--stdout", text], capture_output=True,
                         check=True).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
        return pcm.astype(np.float32) / 32768.0, reader.getframerate()


@pytest.mark.parametrize("voice", [ESPEAK_ARGS, ("-v", "en-us", "-s", "150")],
                         ids=["en-us+f3-120wpm", "en-us-150wpm"])
def test_vad_finds_each_sentence_within_100_ms(tmp_path: Path, voice: tuple[str, ...]) -> None:
    audio, truth = speech_with_pauses(voice)
    probs = vad_probabilities(audio, tmp_path)
    assert probs.size == audio.size // FRAME_SAMPLES
    found = segment_with(probs.tolist(), audio)
    print("truth", [(round(a, 3), round(b, 3)) for a, b in truth])
    print("vad  ", [(round(a, 3), round(b, 3)) for a, b in found])
    assert len(found) == len(truth), (found, truth)
    for (start, end), (true_start, true_end) in zip(found, truth, strict=True):
        assert abs(start - true_start) <= TOLERANCE_S, (start, true_start)
        assert abs(end - true_end) <= TOLERANCE_S, (end, true_end)


def test_streaming_probabilities_do_not_depend_on_the_chunking(tmp_path: Path) -> None:
    audio, _ = speech_with_pauses()
    whole = vad_probabilities(audio, tmp_path, chunk=audio.size)
    odd = vad_probabilities(audio, tmp_path, chunk=777)
    assert whole.size == odd.size and np.allclose(whole, odd, atol=1e-5)
    assert whole.max() > 0.9 and whole[:20].max() < 0.2  # speech seen; the leading gap not


@pytest.mark.parametrize("kind", ["white", "brown", "hum"])
def test_noise_alone_is_not_speech(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(7)
    n = 4 * SAMPLE_RATE_HZ
    if kind == "white":
        noise = rng.normal(0, 0.02, n)
    elif kind == "brown":
        noise = np.cumsum(rng.normal(0, 1, n))
        noise = 0.05 * (noise - noise.mean()) / np.abs(noise).max()
    else:  # mains hum and its harmonics under line hiss
        t = np.arange(n) / SAMPLE_RATE_HZ
        noise = 0.03 * np.sin(2 * np.pi * 50 * t) + 0.01 * np.sin(2 * np.pi * 150 * t) + \
            rng.normal(0, 0.003, n)
    line = phone_line(noise.astype(np.float32), SAMPLE_RATE_HZ)
    probs = vad_probabilities(line, tmp_path)
    assert segment_with(probs.tolist(), line) == [], probs.max()


# --- the rule on made-up probabilities ----------------------------------------------------


def frames_of(*runs: tuple[float, int]) -> tuple[list[float], Audio]:
    probs = [p for p, count in runs for _ in range(count)]
    return probs, np.zeros(len(probs) * FRAME_SAMPLES, np.float32)


def test_rule_hysteresis_min_speech_and_short_trailing_silence() -> None:
    # a 1-frame blip never opens; 0.4 (between offset 0.35 and onset 0.5) keeps speech open
    probs, audio = frames_of((0.0, 10), (0.9, 1), (0.0, 10), (0.9, 20), (0.4, 15), (0.9, 5),
                             (0.1, 9), (0.9, 20), (0.0, 12))
    frame_s = FRAME_SAMPLES / SAMPLE_RATE_HZ
    assert segment_with(probs, audio, end_silence_ms=256) == [
        pytest.approx((21 * frame_s, 61 * frame_s)), pytest.approx((70 * frame_s, 90 * frame_s))]
    # 9 quiet frames (288 ms) do not end an utterance at 320 ms of trailing silence
    assert segment_with(probs, audio, end_silence_ms=320) == [
        pytest.approx((21 * frame_s, 90 * frame_s))]


def test_rule_short_burst_waits_for_the_longer_silence() -> None:
    """Under 500 ms of speech ("Yes,") a 384 ms pause does not end the utterance; 640 ms does."""
    frame_s = FRAME_SAMPLES / SAMPLE_RATE_HZ
    probs, audio = frames_of((0.0, 10), (0.9, 5), (0.0, 12), (0.9, 30), (0.0, 20))
    assert segment_with(probs, audio) == [pytest.approx((10 * frame_s, 57 * frame_s))]
    probs, audio = frames_of((0.0, 10), (0.9, 5), (0.0, 20), (0.9, 30), (0.0, 20))
    assert segment_with(probs, audio) == [pytest.approx((10 * frame_s, 15 * frame_s)),
                                          pytest.approx((35 * frame_s, 65 * frame_s))]


def test_rule_parameters_are_checked() -> None:
    with pytest.raises(ParameterError, match="vad_threshold"):
        vad_endpoint_config(threshold=1.5)
    with pytest.raises(ParameterError, match="vad_end_silence_ms"):
        vad_endpoint_config(end_silence_ms=10)


def test_hypothesis_covers_once_decoded_past_the_end_and_the_last_token() -> None:
    rule = {"lookahead_s": 0.24, "settle_s": 0.12}
    assert hypothesis_covers(2.0, decoded_until_s=2.25, last_token_end_s=1.9, **rule)
    assert not hypothesis_covers(2.0, decoded_until_s=2.2, last_token_end_s=1.9, **rule)
    # a late token (emitted after the VAD's end) must have settled
    assert not hypothesis_covers(2.0, decoded_until_s=2.3, last_token_end_s=2.2, **rule)
    assert hypothesis_covers(2.0, decoded_until_s=2.33, last_token_end_s=2.2, **rule)


def endpoint_on(probs: list[float]) -> SpeechEndpoint:
    return SpeechEndpoint(Recorded(probs), lookahead_s=0.24, settle_s=0.12)


FRAME_S = FRAME_SAMPLES / SAMPLE_RATE_HZ


def test_speech_endpoint_says_final_due_once_the_decoder_covers_the_utterance() -> None:
    probs, audio = frames_of((0.0, 10), (0.9, 30), (0.0, 10))
    endpoint = endpoint_on(probs)
    spans = endpoint.push(audio)
    end_s = 40 * FRAME_S
    assert [(s.start, s.end) for s in spans] == [(10 * FRAME_SAMPLES, 40 * FRAME_SAMPLES)]
    assert not endpoint.final_due(end_s + 0.2, last_token_end_s=end_s - 0.1)  # look-ahead
    assert endpoint.final_due(end_s + 0.25, last_token_end_s=end_s - 0.1)
    endpoint.finalized()
    assert not endpoint.ended and not endpoint.final_due(end_s + 0.5, last_token_end_s=end_s)


def test_speech_endpoint_keeps_late_tokens_until_the_next_onset() -> None:
    probs, audio = frames_of((0.0, 10), (0.9, 30), (0.0, 10), (0.9, 30), (0.0, 10))
    endpoint = endpoint_on(probs)
    assert len(endpoint.push(audio)) == 2
    first_end_s, second_start_s = 40 * FRAME_S, 50 * FRAME_S
    # a token past the first end but before the second onset: still the first utterance
    assert endpoint.final_due(first_end_s + 0.4, last_token_end_s=first_end_s + 0.2)
    # a token in the second utterance: the first end is not the hypothesis's end
    assert not endpoint.final_due(second_start_s + 0.3, last_token_end_s=second_start_s + 0.1)
    assert len(endpoint.ended) == 1
    second_end_s = 80 * FRAME_S
    assert endpoint.final_due(second_end_s + 0.3, last_token_end_s=second_end_s - 0.2)


def test_speech_endpoint_open_speech_is_a_next_onset() -> None:
    probs, audio = frames_of((0.0, 10), (0.9, 30), (0.0, 10), (0.9, 20))
    endpoint = endpoint_on(probs)
    endpoint.push(audio)
    assert len(endpoint.ended) == 1  # the second one is still open
    assert not endpoint.final_due(55 * FRAME_S, last_token_end_s=52 * FRAME_S)
    assert not endpoint.ended


def test_speech_endpoint_drops_an_utterance_with_nothing_decoded() -> None:
    probs, audio = frames_of((0.0, 10), (0.9, 30), (0.0, 10))
    noise = endpoint_on(probs)
    noise.push(audio)
    assert not noise.final_due(5.0, last_token_end_s=None) and not noise.ended


def test_speech_endpoint_knows_where_it_heard_speech() -> None:
    probs, audio = frames_of((0.0, 10), (0.9, 30), (0.0, 20), (0.9, 20))
    endpoint = endpoint_on(probs)
    endpoint.push(audio)
    assert endpoint.heard_speech(0.0, 10.5 * FRAME_S)           # the first utterance
    assert not endpoint.heard_speech(41 * FRAME_S, 59 * FRAME_S)  # the pause after it
    assert endpoint.heard_speech(59 * FRAME_S, 61 * FRAME_S)      # the open one
    endpoint.finalized()
    assert endpoint.heard_speech(20 * FRAME_S, 21 * FRAME_S)      # kept after its final


def test_speech_endpoint_verdict_asks_without_changing_anything() -> None:
    """The speculative flush asks `verdict` on a copy's hypothesis: it must not drop or
    finalise the ended utterance (final_due, the stream's own question, does)."""
    probs, audio = frames_of((0.0, 10), (0.9, 30), (0.0, 10))
    endpoint = endpoint_on(probs)
    assert endpoint.verdict(0.0, None) == "none"
    endpoint.push(audio)
    end_s = 40 * FRAME_S
    assert endpoint.verdict(end_s + 0.2, end_s - 0.1) == "wait"   # look-ahead not decoded
    assert endpoint.verdict(end_s + 0.25, end_s - 0.1) == "final"
    assert endpoint.verdict(end_s + 0.3, end_s + 0.25) == "wait"  # a late token settles
    assert endpoint.verdict(end_s + 0.25, None) == "drop"         # nothing decoded
    assert len(endpoint.ended) == 1
    assert not endpoint.final_due(end_s + 0.25, None) and not endpoint.ended


def test_speech_endpoint_speech_since_is_new_speech_only() -> None:
    probs, audio = frames_of((0.0, 10), (0.9, 30), (0.0, 20), (0.9, 20))
    endpoint = endpoint_on(probs)
    endpoint.push(audio)
    first_end = 40 * FRAME_SAMPLES
    assert not endpoint.speech_since(first_end, 59 * FRAME_S)  # the finalised one is before
    assert endpoint.speech_since(first_end, 61 * FRAME_S)      # the open one started at 60
    assert not endpoint.speech_since(61 * FRAME_SAMPLES, 80 * FRAME_S)


def early_jobs(probs: Sequence[float], audio: Audio, early_ms: int
               ) -> list[tuple[str, int, int, int, int]]:
    """(kind, segment, start, end, frames pushed when it came) of every final job, with
    the early final on, pushed in 160 ms chunks."""
    config = vad_endpoint_config(end_silence_ms=250, preroll_ms=0, partial_interval_s=1e9,
                                 early_decode_ms=early_ms)
    segmenter = VadSegmenter(config, Recorded(probs), early_decode_ms=early_ms)
    out = []
    for start in range(0, audio.size, 2560):
        for job in segmenter.push(audio[start:start + 2560]):
            if job.type == "final":
                kind = "early" if isinstance(job, EarlyFinal) else "final"
                out.append((kind, job.segment, job.start_sample, job.end_sample,
                            segmenter.total_samples // FRAME_SAMPLES))
    return out


def test_early_final_is_the_final_cut_before_the_end_rule_fires() -> None:
    """vad_early_decode_ms 128: after 4 of the 8 quiet frames the segmenter cuts the final
    the utterance will have if the silence goes on (the tail capped at those 128 ms); the
    final that follows is the same audio and comes chunks later."""
    probs, audio = frames_of((0.0, 10), (0.9, 30), (0.0, 20))
    jobs = early_jobs(probs, audio, 128)
    assert [j[:4] for j in jobs] == [("early", 0, 10 * FRAME_SAMPLES, 44 * FRAME_SAMPLES),
                                     ("final", 0, 10 * FRAME_SAMPLES, 44 * FRAME_SAMPLES)]
    assert jobs[0][4] < jobs[1][4]
    # off: no early job, the usual 200 ms tail
    assert [j[:4] for j in early_jobs(probs, audio, 0)] == [
        ("final", 0, 10 * FRAME_SAMPLES, int(40 * FRAME_SAMPLES + 0.2 * SAMPLE_RATE_HZ))]


def test_early_final_goes_stale_when_speech_resumes() -> None:
    """A pause of 5 quiet frames inside a sentence: an early job is cut, speech resumes, and
    the final (after the real end) is other audio, so the early decode is not used."""
    probs, audio = frames_of((0.0, 10), (0.9, 20), (0.0, 5), (0.9, 20), (0.0, 20))
    jobs = early_jobs(probs, audio, 128)
    assert [j[0] for j in jobs] == ["early", "early", "final"]
    first, second, final = jobs
    assert first[1:4] != final[1:4] and second[1:4] == final[1:4]
    with pytest.raises(ParameterError, match="vad_early_decode_ms"):
        vad_endpoint_config(early_decode_ms=-1)
