"""The streaming TTS contract (triton_models/TTS.md), checked against a real Triton.

tts_cpu_default (Piper) is loaded into the session's server for this module; its
speech is read back by asr_cpu_default (Whisper) through the streaming ASR contract.
tts_nemo has no weights here: loading it must fail, naming the missing paths.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import soxr
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.triton_launcher import TritonProcess
from tests.triton.fixtures import MODEL_REPOSITORY, SAMPLE_RATE_HZ, AsrStream, Audio
from tests.triton.test_asr_contract import new_corrid, phone_line, word_error_rate, words_of

TTS_MODEL = "tts_cpu_default"
NEMO_MODEL = "tts_nemo"
PIPER_RATE_HZ = 22050
REPLY_TIMEOUT_S = 120.0
SILENCE_RMS = 0.01
StreamFactory = Callable[[str], AsrStream]
REPLY = ("Thank you for calling the help desk. Your order has shipped and it will arrive "
         "on Friday. Is there anything else I can help you with today?")
REPLY_SENTENCES = ("Thank you for calling the help desk.",
                   "Your order has shipped and it will arrive on Friday.",
                   "Is there anything else I can help you with today?")


def config_parameter(model: str, key: str) -> str:
    config = (MODEL_REPOSITORY / model / "config.pbtxt").read_text()
    found = re.search(rf'key:\s*"{key}",\s*value:\s*\{{\s*string_value:\s*"([^"]*)"', config)
    assert found, f"{model}/config.pbtxt has no parameter {key}"
    return found.group(1)


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    sample_rate_hz: int
    audio: Audio
    text_span: str
    arrived_s: float


@dataclass(slots=True)
class Reply:
    sent_s: float
    chunks: list[Chunk] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    final_s: float | None = None

    @property
    def audio(self) -> Audio:
        return np.concatenate([c.audio for c in self.chunks])


class TtsStream:
    """A gRPC bidirectional stream to one TTS model; replies grouped by request id."""

    def __init__(self, url: str, model: str = TTS_MODEL) -> None:
        self.model = model
        self._client = grpcclient.InferenceServerClient(url)
        self._cond = threading.Condition()
        self._replies: dict[str, Reply] = {}
        self._ids = itertools.count()
        self._client.start_stream(callback=self._on_reply)

    def _on_reply(self, result: Any, error: Any) -> None:
        now = time.monotonic()
        with self._cond:
            if error is not None:  # errors name no request: this test sends one at a time
                for reply in self._replies.values():
                    if reply.final_s is None:
                        reply.errors.append(str(error))
            else:
                self._record(result, now)
            self._cond.notify_all()

    def _record(self, result: Any, now: float) -> None:
        response = result.get_response()
        reply = self._replies[response.id]
        audio = result.as_numpy("AUDIO")
        if audio is not None:
            reply.chunks.append(Chunk(int(result.as_numpy("INDEX")[0]),
                                      int(result.as_numpy("SAMPLE_RATE")[0]),
                                      np.asarray(audio, dtype=np.float32),
                                      result.as_numpy("TEXT_SPAN")[0].decode("utf-8"), now))
        final = response.parameters.get("triton_final_response")
        if final is not None and final.bool_param:
            reply.final_s = now

    def send(self, text: str | bytes, *, voice: str | None = None,
             rate: float | None = None) -> str:
        request_id = str(next(self._ids))
        inputs = [_bytes_input("TEXT", text)]
        if voice is not None:
            inputs.append(_bytes_input("VOICE", voice))
        if rate is not None:
            tensor = grpcclient.InferInput("RATE", [1], "FP32")
            tensor.set_data_from_numpy(np.array([rate], dtype=np.float32))
            inputs.append(tensor)
        with self._cond:
            self._replies[request_id] = Reply(time.monotonic())
        self._client.async_stream_infer(self.model, inputs, request_id=request_id,
                                        enable_empty_final_response=True)
        return request_id

    def wait(self, request_id: str, timeout_s: float = REPLY_TIMEOUT_S) -> Reply:
        with self._cond:
            if not self._cond.wait_for(lambda: self._replies[request_id].final_s is not None,
                                       timeout_s):
                raise AssertionError(f"reply {request_id} not completed in {timeout_s} s")
            return self._replies[request_id]

    def speak(self, text: str | bytes, *, voice: str | None = None,
              rate: float | None = None) -> Reply:
        return self.wait(self.send(text, voice=voice, rate=rate))

    def close(self) -> None:
        self._client.stop_stream()
        self._client.close()


def _bytes_input(name: str, value: str | bytes) -> Any:
    data = value.encode("utf-8") if isinstance(value, str) else value
    tensor = grpcclient.InferInput(name, [1], "BYTES")
    tensor.set_data_from_numpy(np.array([data], dtype=np.object_))
    return tensor


def rms(audio: Audio) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def check_reply(reply: Reply) -> None:
    """Independent check of a successful reply against the contract."""
    assert not reply.errors, reply.errors
    assert reply.chunks, "no audio chunk at all"
    assert [c.index for c in reply.chunks] == list(range(len(reply.chunks)))
    for chunk in reply.chunks:
        assert chunk.sample_rate_hz == PIPER_RATE_HZ
        assert chunk.audio.ndim == 1 and chunk.audio.dtype == np.float32
        assert np.all(np.abs(chunk.audio) <= 1.0)
        assert rms(chunk.audio) > SILENCE_RMS, chunk.text_span
    assert reply.final_s is not None and reply.final_s >= reply.chunks[-1].arrived_s


@pytest.fixture(scope="module")
def tts_url(triton: TritonProcess) -> Iterator[str]:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        client.load_model(TTS_MODEL)
        yield triton.grpc_url
        client.unload_model(TTS_MODEL)
    finally:
        client.close()


@pytest.fixture
def tts(tts_url: str) -> Iterator[TtsStream]:
    stream = TtsStream(tts_url)
    yield stream
    stream.close()


# --- tts_cpu_default: streaming -----------------------------------------------------------


def test_two_sentences_stream_as_ordered_chunks(tts: TtsStream) -> None:
    text = "Hello, this is the help desk. How can I help you today?"
    reply = tts.speak(text)
    check_reply(reply)
    assert [c.text_span for c in reply.chunks] == ["Hello, this is the help desk.",
                                                   "How can I help you today?"]


def test_first_chunk_arrives_before_the_last_is_produced(
        tts: TtsStream, record_property: Callable[[str, object], None]) -> None:
    text = ("Thanks. I have found your account and I can see that the replacement part was "
            "sent to the address on file last Tuesday morning by express courier.")
    reply = tts.speak(text)
    check_reply(reply)
    assert len(reply.chunks) == 2
    first, last = reply.chunks[0].arrived_s, reply.chunks[-1].arrived_s
    record_property("first_chunk_latency_s", round(first - reply.sent_s, 3))
    print(f"tts_cpu_default: first chunk after {first - reply.sent_s:.3f} s, "
          f"last after {last - reply.sent_s:.3f} s")
    assert first < last
    # a reply sent in one go would deliver both chunks together; streamed, the long
    # second sentence is still being synthesized when the first one arrives
    assert last - first > 0.25 * (last - reply.sent_s)


def test_abbreviations_do_not_end_a_sentence(tts: TtsStream) -> None:
    reply = tts.speak("Dr. Smith will call you back at 3 p.m. today. Goodbye!")
    check_reply(reply)
    assert [c.text_span for c in reply.chunks] == ["Dr. Smith will call you back at 3 p.m. today.",
                                                   "Goodbye!"]


def test_long_sentence_is_cut_into_bounded_spans(tts: TtsStream) -> None:
    limit = int(config_parameter(TTS_MODEL, "max_sentence_chars"))
    clause = "I have checked the order, the invoice and the delivery note for you"
    text = ", ".join([clause] * (limit // len(clause) + 2)) + "."
    reply = tts.speak(text)
    check_reply(reply)
    spans = [c.text_span for c in reply.chunks]
    assert len(spans) >= 2 and all(len(s) <= limit for s in spans), spans
    assert " ".join(spans).split() == text.split()


def test_rate_changes_the_speaking_time(tts: TtsStream) -> None:
    text = "Please hold while I transfer your call."
    slow, fast = tts.speak(text, rate=0.5), tts.speak(text, rate=2.0)
    check_reply(slow)
    check_reply(fast)
    assert slow.audio.size > 2 * fast.audio.size, (slow.audio.size, fast.audio.size)


def test_the_listed_voice_is_accepted_by_name(tts: TtsStream) -> None:
    voice = config_parameter(TTS_MODEL, "voices").split(",")[0].strip()
    check_reply(tts.speak("Goodbye.", voice=voice))


def test_replies_on_one_stream_do_not_mix(tts: TtsStream) -> None:
    texts = {"Your balance is zero. Thank you.": 2, "Goodbye for now.": 1}
    ids = {tts.send(text): text for text in texts}
    for request_id, text in ids.items():
        reply = tts.wait(request_id)
        check_reply(reply)
        assert " ".join(c.text_span for c in reply.chunks) == text
        assert len(reply.chunks) == texts[text]


# --- tts_cpu_default: errors -------------------------------------------------------------


@pytest.mark.parametrize(("text", "voice", "rate", "expected"), [
    ("", None, None, "empty"),
    ("   \n ", None, None, "empty"),
    ("Hello.", "no_such_voice", None, "no_such_voice"),
    ("x" * 2001, None, None, "too long"),
    ("Hello.", None, 3.0, "RATE"),
    (b"\xff\xfe bad", None, None, "UTF-8"),
], ids=["empty", "blank", "unknown-voice", "too-long", "rate", "not-utf8"])
def test_bad_request_gets_an_error_and_no_audio(
        tts: TtsStream, text: str | bytes, voice: str | None, rate: float | None,
        expected: str) -> None:
    reply = tts.speak(text, voice=voice, rate=rate)
    assert len(reply.errors) == 1 and expected in reply.errors[0], reply.errors
    assert reply.chunks == []


def test_stream_goes_on_after_an_error(tts: TtsStream) -> None:
    assert tts.speak("", voice=None).errors
    check_reply(tts.speak("Still here."))


# --- tts_cpu_default through asr_cpu_default ---------------------------------------------


def to_16k(reply: Reply, *, telephone: bool) -> Audio:
    """The reply's chunks with 0.8 s of silence between them, as 16 kHz float32."""
    gap = np.zeros(int(0.8 * SAMPLE_RATE_HZ), np.float32)
    parts = [gap]
    for chunk in reply.chunks:
        audio = (phone_line(chunk.audio, chunk.sample_rate_hz) if telephone else
                 soxr.resample(chunk.audio, chunk.sample_rate_hz, SAMPLE_RATE_HZ))
        parts += [np.asarray(audio, dtype=np.float32), gap]
    return np.concatenate(parts)


@pytest.mark.parametrize("telephone", [False, True], ids=["16k", "phone-line"])
def test_asr_reads_the_speech_back(
        tts: TtsStream, asr_stream_factory: StreamFactory, telephone: bool,
        record_property: Callable[[str, object], None]) -> None:
    reply = tts.speak(REPLY)
    check_reply(reply)
    assert tuple(c.text_span for c in reply.chunks) == REPLY_SENTENCES
    results = asr_stream_factory("asr_cpu_default").stream(new_corrid(),
                                                           to_16k(reply, telephone=telephone))
    heard = " ".join(r["text"] for r in results if r["type"] == "final")
    wer = word_error_rate(words_of(REPLY), words_of(heard))
    record_property("wer", wer)
    print(f"tts_cpu_default -> asr_cpu_default ({'phone line' if telephone else '16 kHz'}): "
          f"WER {wer:.3f}: {heard!r}")
    assert wer <= 0.15, heard


# --- tts_nemo --------------------------------------------------------------------------


def test_nemo_without_weights_fails_to_load_naming_the_paths(
        triton: TritonProcess, tts_url: str) -> None:
    paths = [config_parameter(NEMO_MODEL, k) for k in ("fastpitch_path", "hifigan_path")]
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as failure:
            client.load_model(NEMO_MODEL)
        assert all(path in str(failure.value) for path in paths), str(failure.value)
        assert not client.is_model_ready(NEMO_MODEL)
        # the server lives on and serves the others (its strict readiness turns false)
        assert client.is_server_live() and client.is_model_ready(TTS_MODEL)
    finally:
        client.close()
    stream = TtsStream(tts_url)
    try:
        check_reply(stream.speak("The other models still answer."))
    finally:
        stream.close()
