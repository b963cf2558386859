"""The streaming ASR contract (triton_models/README.md), checked against a real Triton.

Every ASR model of the repository runs the generic contract tests; asr_cpu_default
also transcribes espeak-ng speech sent through a simulated 8 kHz mu-law phone line.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import shutil
import subprocess
import sys
import time
import warnings
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.triton_launcher import TritonProcess, TritonVenvMissingError
from tests.json_schema import Validator
from tests.speech import wer_words as word_error_rate
from tests.triton.fixtures import (
    CHUNK_SAMPLES,
    MISSING_WEIGHTS_MODEL,
    MISSING_WEIGHTS_PATH,
    MODEL_REPOSITORY,
    SAMPLE_RATE_HZ,
    AsrStream,
    Audio,
    asr_models,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

sys.path.insert(0, str(MODEL_REPOSITORY))  # the models' shared, Triton-free code
from common.asr_contract import ParameterError, SessionTable, float_parameter  # noqa: E402
from common.endpointing import EndpointConfig, UtteranceSegmenter  # noqa: E402

ASR_MODELS = asr_models()
StreamFactory = Callable[[str], AsrStream]
Result = dict[str, Any]
_corrids = itertools.count(1001)
SENTENCES = (
    "Please transfer me to the billing department.",
    "I would like to check the status of my order.",
    "Can you call me back tomorrow morning?",
)
ESPEAK_ARGS = ("-v", "en-us+f3", "-s", "120", "-g", "4")  # clearest espeak voice for Whisper
RESULT_SPEC = Validator(json.loads(
    (MODEL_REPOSITORY / "common" / "asr_result.schema.json").read_text()))   # the wire spec
RESULT_KEYS = {"type", "segment", "text", "start_s", "end_s", "words", "audio_s"}
WORD_KEYS = {"word", "start_s", "end_s", "confidence"}
EPS_S = 1e-3


def new_corrid() -> int:
    return next(_corrids)


def seconds(audio: Audio) -> float:
    return audio.size / SAMPLE_RATE_HZ


def tone(duration_s: float, freq_hz: float = 440.0, level: float = 0.3) -> Audio:
    t = np.arange(int(duration_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return (level * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def check_result(result: Result) -> None:
    """One RESULT object against the wire spec, and independently of it."""
    assert RESULT_SPEC.errors(result) == [], result
    assert set(result) == RESULT_KEYS, result
    assert result["text"] == result["text"].strip(), result
    assert result["type"] in ("partial", "final")
    assert isinstance(result["segment"], int) and result["segment"] >= 0
    assert isinstance(result["text"], str)
    numbers = [result["start_s"], result["end_s"], result["audio_s"]]
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers), result
    assert 0 <= result["start_s"] <= result["end_s"] <= result["audio_s"] + EPS_S, result
    assert isinstance(result["words"], list)
    for word in result["words"]:
        assert set(word) == WORD_KEYS, word
        assert isinstance(word["word"], str) and 0.0 <= word["confidence"] <= 1.0
        assert word["word"] == word["word"].strip(), word
        assert result["start_s"] - EPS_S <= word["start_s"] <= word["end_s"], word
        assert word["end_s"] <= result["end_s"] + EPS_S, (word, result)


def check_sequence(results: list[Result], total_s: float) -> Result:
    """Valid results, audio_s never decreasing and never past the audio sent; the END final."""
    assert results, "no result at all"
    for result in results:
        check_result(result)
    audio = [r["audio_s"] for r in results]
    assert audio == sorted(audio) and audio[-1] <= total_s + EPS_S, audio
    last = results[-1]
    assert last["type"] == "final", results
    assert last["audio_s"] == pytest.approx(total_s, abs=EPS_S)
    return last


# --- the contract, for every ASR model -------------------------------------------------


@pytest.mark.parametrize("model", ASR_MODELS)
def test_end_always_gets_a_final_with_the_total_audio(
        asr_stream_factory: StreamFactory, model: str) -> None:
    audio = np.concatenate([tone(1.0), np.zeros(4000, np.float32)])
    results = asr_stream_factory(model).stream(new_corrid(), audio)
    check_sequence(results, seconds(audio))


@pytest.mark.parametrize("model", ASR_MODELS)
def test_start_and_end_in_one_request(asr_stream_factory: StreamFactory, model: str) -> None:
    audio = tone(0.5)
    results = asr_stream_factory(model).stream(new_corrid(), audio, chunk_samples=audio.size)
    check_sequence(results, seconds(audio))


@pytest.mark.parametrize("model", ASR_MODELS)
def test_zero_length_chunk_with_end(asr_stream_factory: StreamFactory, model: str) -> None:
    stream, corrid = asr_stream_factory(model), new_corrid()
    audio = tone(0.64)
    for index, chunk in enumerate(np.split(audio, 4)):
        stream.send(corrid, chunk, start=index == 0)
    stream.wait_closed(stream.send(corrid, np.zeros(0, np.float32), end=True))
    check_sequence(stream.results(corrid), seconds(audio))


@pytest.mark.parametrize("model", ASR_MODELS)
def test_interleaved_sequences_do_not_mix(asr_stream_factory: StreamFactory, model: str) -> None:
    stream = asr_stream_factory(model)
    audios = {new_corrid(): tone(1.92, 300.0), new_corrid(): tone(0.96, 700.0)}
    chunks = {c: [a[i:i + CHUNK_SAMPLES] for i in range(0, a.size, CHUNK_SAMPLES)]
              for c, a in audios.items()}
    last: dict[int, str] = {}
    for index in range(max(len(c) for c in chunks.values())):
        for corrid, parts in chunks.items():
            if index < len(parts):
                last[corrid] = stream.send(corrid, parts[index], start=index == 0,
                                           end=index == len(parts) - 1)
    for corrid, audio in audios.items():
        stream.wait_closed(last[corrid])
        check_sequence(stream.results(corrid), seconds(audio))


@pytest.mark.parametrize("model", ASR_MODELS)
def test_state_is_freed_after_end(asr_stream_factory: StreamFactory, model: str) -> None:
    stream, corrid = asr_stream_factory(model), new_corrid()
    first = np.concatenate([tone(1.2), np.zeros(16000, np.float32), tone(1.0)])
    stream.stream(corrid, first)
    before = len(stream.results(corrid))
    second = tone(0.48, 500.0)
    stream.wait_closed(stream.send(corrid, second, start=True, end=True))
    fresh = stream.results(corrid)[before:]
    final = check_sequence(fresh, seconds(second))
    assert all(r["segment"] == 0 for r in fresh), fresh
    assert final["start_s"] <= seconds(second) + EPS_S


@pytest.mark.parametrize("model", ASR_MODELS)
def test_first_request_without_start_is_refused(
        asr_stream_factory: StreamFactory, model: str) -> None:
    stream = asr_stream_factory(model)
    corrid = new_corrid()
    stream.send(corrid, tone(0.32), end=True)
    error = stream.wait_error()
    assert "START" in error and str(corrid) in error
    assert stream.results(corrid) == []


@pytest.mark.parametrize("model", ASR_MODELS)
def test_phrases_are_accepted_with_start(asr_stream_factory: StreamFactory, model: str) -> None:
    audio = tone(0.64)
    results = asr_stream_factory(model).stream(new_corrid(), audio,
                                               phrases=["billing department", "Zoë"])
    check_sequence(results, seconds(audio))


# --- asr_ack -----------------------------------------------------------------------------


def test_ack_acknowledges_each_chunk_and_counts_samples(asr_stream_factory: StreamFactory) -> None:
    audio = tone(1.0)
    results = asr_stream_factory("asr_ack").stream(new_corrid(), audio)
    chunks = math.ceil(audio.size / CHUNK_SAMPLES)
    assert [r["type"] for r in results] == ["partial"] * chunks + ["final"]
    assert all(r["text"] == "" for r in results[:-1])
    assert results[-1]["text"] == str(audio.size)


# --- asr_cpu_default: Whisper on telephone speech ----------------------------------------


def espeak(text: str) -> tuple[np.ndarray, int]:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng not installed: run make apt", pytrace=False)
    wav = subprocess.run(["espeak-ng", *ESPEAK_ARGS, "--stdout", text], capture_output=True,
                         check=True).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
        return pcm.astype(np.float32) / 32768.0, reader.getframerate()


def phone_line(audio: np.ndarray, rate_hz: int) -> Audio:
    """Down to 8 kHz, through G.711 mu-law and back, up to 16 kHz."""
    narrow = np.clip(soxr.resample(audio, rate_hz, 8000), -1.0, 1.0)
    pcm = (narrow * 32767).astype(np.int16).tobytes()
    decoded = np.frombuffer(audioop.ulaw2lin(audioop.lin2ulaw(pcm, 2), 2), dtype=np.int16)
    wide = soxr.resample(decoded.astype(np.float32) / 32768.0, 8000, SAMPLE_RATE_HZ)
    return np.asarray(wide, dtype=np.float32)


def telephone_speech(sentences: tuple[str, ...], gap_s: float = 1.0) -> Audio:
    gap = np.zeros(int(gap_s * SAMPLE_RATE_HZ), np.float32)
    parts = [gap]
    for sentence in sentences:
        parts += [phone_line(*espeak(sentence)), gap]
    return np.concatenate(parts)


def words_of(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()




def test_cpu_default_transcribes_telephone_speech(
        asr_stream_factory: StreamFactory, record_property: Callable[[str, object], None]) -> None:
    audio = telephone_speech(SENTENCES)
    results = asr_stream_factory("asr_cpu_default").stream(new_corrid(), audio)
    check_sequence(results, seconds(audio))
    finals = [r for r in results if r["type"] == "final" and r["text"]]
    assert len(finals) == len(SENTENCES), [r["text"] for r in finals]
    assert [r["segment"] for r in finals] == list(range(len(SENTENCES)))
    wer = word_error_rate(words_of(" ".join(SENTENCES)),
                          words_of(" ".join(r["text"] for r in finals)))
    record_property("wer", wer)
    print(f"asr_cpu_default WER on espeak telephone speech: {wer:.3f}")
    assert wer <= 0.30, [r["text"] for r in finals]
    starts = [w["start_s"] for r in finals for w in r["words"]]
    assert starts and starts == sorted(starts)
    assert all(w["end_s"] <= seconds(audio) for r in finals for w in r["words"])


def test_cpu_default_sends_partials_while_speech_goes_on(
        asr_stream_factory: StreamFactory) -> None:
    stream, corrid = asr_stream_factory("asr_cpu_default"), new_corrid()
    speech = telephone_speech(SENTENCES[:1], gap_s=0.3)
    for index, chunk in enumerate(np.array_split(speech, 20)):
        stream.send(corrid, chunk, start=index == 0)
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:  # empty chunks collect results decoded since
        stream.wait_closed(stream.send(corrid, np.zeros(0, np.float32)))
        if any(r["type"] == "partial" and r["text"] for r in stream.results(corrid)):
            break
        time.sleep(0.02)
    stream.wait_closed(stream.send(corrid, np.zeros(0, np.float32), end=True))
    results = stream.results(corrid)
    check_sequence(results, seconds(speech))
    partials = [r for r in results if r["type"] == "partial" and r["text"]]
    assert partials and all(r["segment"] == 0 and not r["words"] for r in partials)
    assert set(words_of(partials[0]["text"])) & set(words_of(SENTENCES[0]))


def test_cpu_default_speech_of_two_sequences_does_not_mix(
        asr_stream_factory: StreamFactory) -> None:
    stream = asr_stream_factory("asr_cpu_default")
    audios = {new_corrid(): telephone_speech(SENTENCES[:1]),
              new_corrid(): telephone_speech(SENTENCES[2:])}
    parts = {c: np.array_split(a, 30) for c, a in audios.items()}
    last = {c: "" for c in audios}
    for index in range(30):
        for corrid, chunks in parts.items():
            last[corrid] = stream.send(corrid, chunks[index], start=index == 0, end=index == 29)
    for (corrid, audio), sentence in zip(audios.items(), (SENTENCES[0], SENTENCES[2]),
                                         strict=True):
        stream.wait_closed(last[corrid])
        results = stream.results(corrid)
        check_sequence(results, seconds(audio))
        text = " ".join(r["text"] for r in results if r["type"] == "final")
        assert word_error_rate(words_of(sentence), words_of(text)) <= 0.5, text


# --- model loading and the launcher ------------------------------------------------------


def test_missing_weights_fail_the_load_naming_the_path(triton: TritonProcess) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as failure:
            client.load_model(MISSING_WEIGHTS_MODEL)
        assert MISSING_WEIGHTS_PATH in str(failure.value)
        assert not client.is_model_ready(MISSING_WEIGHTS_MODEL)
    finally:
        client.close()


def test_launcher_names_the_fix_for_a_missing_venv(tmp_path: Path) -> None:
    process = TritonProcess(tmp_path, venv=tmp_path / "no-venv", workdir=tmp_path,
                            http_port=1, grpc_port=2, metrics_port=None,
                            log_path=tmp_path / "log")
    with pytest.raises(TritonVenvMissingError, match="run make triton-venv"):
        process.start(timeout_s=1)
    assert process.pid is None


# --- the models' pure parts: sessions and endpointing -------------------------------------


def test_session_table_expires_only_idle_state_and_start_is_fresh() -> None:
    table: SessionTable[list[int]] = SessionTable(10.0, lambda corrid: [corrid])
    first, fresh = table.acquire(7, start=True, now=0.0)
    first.append(1)
    assert fresh and table.acquire(7, start=False, now=5.0) == ([7, 1], False)
    table.acquire(8, start=True, now=9.0)
    assert table.expire(now=15.5) == (7,) and 8 in table and 7 not in table
    assert table.acquire(8, start=True, now=16.0) == ([8], True)
    assert table.release(8) == [8] and len(table) == 0


def test_negative_parameter_is_refused_unless_allowed() -> None:
    with pytest.raises(ParameterError, match="end_silence_ms"):
        float_parameter({"end_silence_ms": "-5"}, "end_silence_ms", 600.0)
    assert float_parameter({"start_dbfs": "-40"}, "start_dbfs", -42.0, minimum=None) == -40.0


def segment(audio: Audio, config: EndpointConfig) -> list[Any]:
    segmenter = UtteranceSegmenter(config)
    jobs = [j for chunk in np.array_split(audio, max(1, audio.size // 2560))
            for j in segmenter.push(chunk)]
    flushed = segmenter.flush()
    return jobs + ([flushed] if flushed else [])


def test_segmenter_bounds_one_utterance_with_preroll_and_tail() -> None:
    silence = np.zeros(SAMPLE_RATE_HZ, np.float32)
    jobs = segment(np.concatenate([silence, tone(1.5), silence]), EndpointConfig())
    finals = [j for j in jobs if j.type == "final"]
    assert len(finals) == 1 and finals[0].segment == 0
    assert finals[0].start_sample == SAMPLE_RATE_HZ - 4800  # 300 ms before the onset
    assert finals[0].end_sample == int(2.5 * SAMPLE_RATE_HZ) + 3200  # 200 ms after
    assert finals[0].audio.size == finals[0].end_sample - finals[0].start_sample
    partials = [j for j in jobs if j.type == "partial"]
    assert partials and all(j.segment == 0 and j.start_sample == 11200 for j in partials)


def test_segmenter_hysteresis_keeps_a_quieter_stretch_in_the_utterance() -> None:
    config = EndpointConfig(start_dbfs=-30.0, stop_dbfs=-50.0)
    quieter = tone(1.0, level=0.01)  # about -43 dBFS: below start, above stop
    gap = np.zeros(SAMPLE_RATE_HZ, np.float32)
    audio = np.concatenate([gap, tone(0.5), quieter, tone(0.5), gap, quieter, gap])
    finals = [j for j in segment(audio, config) if j.type == "final"]
    assert [(j.segment, round(j.start_sample / SAMPLE_RATE_HZ, 1)) for j in finals] == [(0, 0.7)]


def test_segmenter_cuts_long_speech_and_flushes_at_end() -> None:
    config = EndpointConfig(max_utterance_s=2.0, partial_interval_s=10.0)
    jobs = segment(tone(5.0), config)
    assert [(j.type, j.segment) for j in jobs] == [("final", 0), ("final", 1), ("final", 2)]
    assert jobs[-1].end_sample == 5 * SAMPLE_RATE_HZ
