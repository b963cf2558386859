"""Neural VAD endpointing: streaming Silero VAD v6 (ONNX Runtime) per stream.

``SileroVad`` holds one ONNX Runtime session of the Silero VAD v6 model that
faster-whisper ships (``faster_whisper/assets/silero_vad_v6.onnx``); each stream
gets a ``VadStream`` with its own recurrent state (h, c) and the 64-sample context
of its previous frame, and turns audio into one speech probability per 32 ms frame
(512 samples at 16 kHz). The model's first input axis is time, not a batch: the
LSTM state has a fixed batch of 1, so streams cannot be stacked into one call;
every ``push`` runs all the frames it completed in one call (5 frames per 160 ms
chunk, about 0.3 ms).

The end-point rule is ``UtteranceSegmenter``'s hysteresis (common/endpointing.py)
on those probabilities instead of dBFS (``VadSegmenter``): ``min_speech_ms`` of
frames at or above ``threshold`` open an utterance, ``end_silence_ms`` of frames
below the offset threshold (``threshold - 0.15``, Silero's own) close it, a frame
in between keeps it open. ``SpeechEndpoint`` is the hook of a streaming
recognizer: the VAD's speech ends, and whether a streaming hypothesis already
covers the utterance (``hypothesis_covers``), so its final need not wait for a
blank timer.

onnxruntime is imported only when a ``SileroVad`` is made: the rest is numpy.
"""

from __future__ import annotations

import importlib.util
import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from common.asr_contract import SAMPLE_RATE_HZ, Audio, ParameterError
from common.endpointing import DecodeJob, EndpointConfig, UtteranceSegmenter

FRAME_SAMPLES = 512          # 32 ms at 16 kHz
CONTEXT_SAMPLES = 64         # v5/v6: the previous frame's last 64 samples come first
FRAME_MS = FRAME_SAMPLES * 1000 // SAMPLE_RATE_HZ
STATE_SHAPE = (1, 1, 128)
OFFSET_GAP = 0.15            # offset threshold = threshold - 0.15 (Silero's neg_threshold)
MODEL_FILE = "silero_vad_v6.onnx"
F32 = npt.NDArray[np.float32]
Levels = Callable[[Audio], Iterable[float]]
HEARD_SPANS = 32             # SpeechEndpoint.heard_speech looks this many utterances back
Verdict = Literal["none", "wait", "final", "drop"]


class VadModelError(RuntimeError):
    pass


def bundled_model_path() -> Path:
    """faster-whisper's Silero VAD v6 ONNX file (found without importing faster_whisper)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or spec.origin is None:
        raise VadModelError(f"{MODEL_FILE} not found: faster-whisper is not installed")
    path = Path(spec.origin).parent / "assets" / MODEL_FILE
    if not path.is_file():
        raise VadModelError(f"Silero VAD model not found at {path}")
    return path


class SileroVad:
    """One ONNX Runtime session shared by every stream (call it from one thread)."""

    def __init__(self, path: Path | None = None, *, threads: int = 1) -> None:
        import onnxruntime  # type: ignore[import-not-found,import-untyped,unused-ignore]

        self.path = path or bundled_model_path()
        if not self.path.is_file():
            raise VadModelError(f"Silero VAD model not found at {self.path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session: Any = onnxruntime.InferenceSession(
            str(self.path), sess_options=options, providers=["CPUExecutionProvider"])
        self._check_signature()

    def _check_signature(self) -> None:
        inputs = {i.name: i.shape for i in self._session.get_inputs()}
        if set(inputs) != {"input", "h", "c"} or inputs["input"][-1] != (
                FRAME_SAMPLES + CONTEXT_SAMPLES):
            raise VadModelError(f"{self.path}: not a Silero VAD v6 model (inputs {inputs})")

    def new_stream(self) -> VadStream:
        return VadStream(self)

    def run(self, frames: F32, h: F32, c: F32) -> tuple[F32, F32, F32]:
        """Frames [n, 576] (context + 512 samples) in time order; probabilities [n], h, c."""
        probs, h_out, c_out = self._session.run(None, {"input": frames, "h": h, "c": c})
        return np.asarray(probs, np.float32).reshape(-1), h_out, c_out


class VadStream:
    """One stream's VAD state: push audio, get the probabilities of the frames it completed."""

    def __init__(self, vad: SileroVad) -> None:
        self._vad = vad
        self._h: F32 = np.zeros(STATE_SHAPE, np.float32)
        self._c: F32 = np.zeros(STATE_SHAPE, np.float32)
        self._pending: F32 = np.zeros(CONTEXT_SAMPLES, np.float32)  # context + unframed audio
        self.frames = 0

    def push(self, audio: Audio) -> F32:
        self._pending = np.concatenate([self._pending, np.asarray(audio, np.float32)])
        count = (self._pending.size - CONTEXT_SAMPLES) // FRAME_SAMPLES
        if count == 0:
            return np.zeros(0, np.float32)
        width = FRAME_SAMPLES + CONTEXT_SAMPLES
        starts = np.arange(count) * FRAME_SAMPLES
        frames = self._pending[starts[:, None] + np.arange(width)]
        probs, self._h, self._c = self._vad.run(np.ascontiguousarray(frames), self._h, self._c)
        self._pending = self._pending[count * FRAME_SAMPLES:]
        self.frames += count
        return probs


# --- the end-point rule ---------------------------------------------------------------------


def vad_endpoint_config(*, threshold: float = 0.5, end_silence_ms: int = 256,
                        min_speech_ms: int = 64, preroll_ms: int = 300, tail_ms: int = 200,
                        max_utterance_s: float = 25.0, partial_interval_s: float = 1.0,
                        short_speech_ms: int = 500,
                        short_end_silence_ms: int = 600,
                        early_decode_ms: int = 0) -> EndpointConfig:
    """UtteranceSegmenter settings on 32 ms VAD frames: its start/stop levels are speech
    probabilities (onset ``threshold``, offset ``threshold - 0.15``), not dBFS. Less than
    ``short_speech_ms`` of speech ends only after ``short_end_silence_ms``: piper's "Yes,"
    and "Hello," are followed by 260-400 ms pauses, and Whisper on "Yes," alone wrote
    "Yes, yes, yes, yes, yes". With ``early_decode_ms`` (VadSegmenter's early final) the tail
    kept after the speech is at most the silence heard when the early job is cut, so that
    the final, once due, is the same audio."""
    if not 0.0 < threshold < 1.0:
        raise ParameterError(f"vad_threshold must be between 0 and 1, got {threshold}")
    if end_silence_ms < FRAME_MS:
        raise ParameterError(f"vad_end_silence_ms must be >= {FRAME_MS}, got {end_silence_ms}")
    if early_decode_ms:
        quiet = early_quiet_frames(end_silence_ms, early_decode_ms)
        tail_ms = min(tail_ms, quiet * FRAME_MS)
    return EndpointConfig(
        start_dbfs=threshold, stop_dbfs=max(threshold - OFFSET_GAP, 0.01),
        min_speech_ms=min_speech_ms, end_silence_ms=end_silence_ms, preroll_ms=preroll_ms,
        tail_ms=min(tail_ms, end_silence_ms), max_utterance_s=max_utterance_s,
        partial_interval_s=partial_interval_s, frame_ms=FRAME_MS,
        short_speech_ms=short_speech_ms, short_end_silence_ms=short_end_silence_ms)


def early_quiet_frames(end_silence_ms: int, early_decode_ms: int) -> int:
    """Quiet 32 ms frames after which the early final is cut: ``early_decode_ms`` before
    the end of ``end_silence_ms``, at least one frame."""
    if early_decode_ms < 0:
        raise ParameterError(f"vad_early_decode_ms must be >= 0, got {early_decode_ms}")
    end = math.ceil(end_silence_ms / FRAME_MS)
    return max(1, end - math.ceil(early_decode_ms / FRAME_MS))


@dataclass(frozen=True, slots=True)
class EarlyFinal(DecodeJob):
    """The final job the open utterance will have if the silence goes on: cut
    ``early_decode_ms`` before the end rule fires, so that its decode can start then. A
    final job later with the same segment, start and end is the same audio."""


class VadSegmenter(UtteranceSegmenter):
    """UtteranceSegmenter whose frame level is the VAD's speech probability.

    ``levels(chunk)`` returns the probabilities of the 32 ms frames the chunk completed
    (``VadStream.push``; in tests, recorded probabilities), frames counted from sample 0.
    With ``early_decode_ms`` > 0, ``push`` also returns an :class:`EarlyFinal` once the
    open utterance has been quiet for all but ``early_decode_ms`` of the end silence
    (``vad_endpoint_config`` with the same value caps the tail so that the final that
    follows, if the silence goes on, is the same audio).
    """

    def __init__(self, config: EndpointConfig, levels: Levels, *,
                 early_decode_ms: int = 0) -> None:
        if config.frame_ms != FRAME_MS:
            raise ParameterError(f"VAD frames are {FRAME_MS} ms, not {config.frame_ms}")
        super().__init__(config)
        self._levels = levels
        self._queued: deque[float] = deque()
        self._early_lead = math.ceil(early_decode_ms / FRAME_MS) if early_decode_ms else 0
        self._early: list[DecodeJob] = []

    def push(self, audio: Audio) -> list[DecodeJob]:
        self._queued.extend(float(p) for p in self._levels(audio))
        jobs = super().push(audio)
        if self._early:
            early, self._early = self._early, []
            jobs = early + jobs  # decoded first: a final in the same push is the same job
        return jobs

    def _track_speech(self, frame_end: int, level: float) -> DecodeJob | None:
        job = super()._track_speech(frame_end, level)
        if (job is None and self._early_lead and self._in_speech
                and self._quiet_frames == max(1, self._end_frames() - self._early_lead)):
            end = min(frame_end, self._last_speech_end + self._cfg.samples(self._cfg.tail_ms))
            self._early.append(EarlyFinal("final", self._segment, self._utt_start, end,
                                          self._slice(self._utt_start, end).copy()))
        return job

    def _level(self, frame: Audio) -> float:
        return self._queued.popleft()

    @property
    def open_since(self) -> int | None:
        """Start of the open utterance (preroll included), None between utterances."""
        return self._utt_start if self._in_speech else None


@dataclass(frozen=True, slots=True)
class SpeechSpan:
    """One utterance the VAD closed: samples [start, end) of speech, decided at ``decided_at``."""

    segment: int
    start: int
    end: int
    decided_at: int


def speech_spans(jobs: Sequence[DecodeJob], decided_at: int) -> list[SpeechSpan]:
    return [SpeechSpan(j.segment, j.start_sample, j.end_sample, decided_at)
            for j in jobs if j.type == "final"]


# --- the hook of a streaming recognizer -----------------------------------------------------


def hypothesis_covers(speech_end_s: float, decoded_until_s: float, last_token_end_s: float,
                      *, lookahead_s: float, settle_s: float) -> bool:
    """The streaming hypothesis holds the whole utterance the VAD ended at ``speech_end_s``:
    the decoder has emitted its frames up to the speech end plus ``lookahead_s`` (the
    model's emission delay: a word's tokens come some frames after it was spoken) and
    ``settle_s`` past its last token (a CTC token's frames are not still going on)."""
    return decoded_until_s >= max(speech_end_s + lookahead_s, last_token_end_s + settle_s)


class SpeechEndpoint:
    """Per stream: feed its audio (``push``), ask ``final_due`` as the decoder advances.

    ``final_due(decoded_until_s, last_token_end_s)`` is True when the VAD ended an
    utterance and the hypothesis covers it (``hypothesis_covers``); the recognizer then
    emits its hypothesis as the final and calls ``finalized()``. An ended utterance the
    decoder passed with no token (a cough, noise), or whose hypothesis already holds a token
    at or after the next utterance's onset, is dropped: the next one (or the recognizer's
    own rule) decides. The speech end is the VAD's own (no tail added).
    """

    def __init__(self, levels: Levels, *, threshold: float = 0.5, end_silence_ms: int = 256,
                 lookahead_s: float = 0.24, settle_s: float = 0.12) -> None:
        config = vad_endpoint_config(threshold=threshold, end_silence_ms=end_silence_ms,
                                     preroll_ms=0, tail_ms=0, partial_interval_s=1e9)
        self._segmenter = VadSegmenter(config, levels)
        self._lookahead_s, self._settle_s = lookahead_s, settle_s
        self.ended: deque[SpeechSpan] = deque()
        self._heard: deque[tuple[int, int]] = deque(maxlen=HEARD_SPANS)  # ended [start, end)

    def push(self, audio: Audio) -> list[SpeechSpan]:
        """The utterances this audio ended (also kept in ``ended`` until finalized)."""
        jobs = self._segmenter.push(audio)
        spans = speech_spans(jobs, self._segmenter.total_samples)
        self.ended.extend(spans)
        self._heard.extend((span.start, span.end) for span in spans)
        return spans

    def heard_speech(self, start_s: float, end_s: float) -> bool:
        """Whether the VAD heard speech in [start_s, end_s) of the stream (of the audio it
        has had; the last HEARD_SPANS utterances and the open one): a recognizer's run of
        blank frames there is a pause inside speech, not the end of the utterance."""
        start, end = int(start_s * SAMPLE_RATE_HZ), int(end_s * SAMPLE_RATE_HZ)
        open_since = self._segmenter.open_since
        if open_since is not None and open_since < end:
            return True
        return any(a < end and start < b for a, b in self._heard)

    def final_due(self, decoded_until_s: float, last_token_end_s: float | None) -> bool:
        while self.ended:
            verdict = self.verdict(decoded_until_s, last_token_end_s)
            if verdict != "drop":
                return verdict == "final"
            self.ended.popleft()
        return False

    def verdict(self, decoded_until_s: float, last_token_end_s: float | None) -> Verdict:
        """What the first ended utterance wants of a hypothesis decoded up to
        ``decoded_until_s`` whose last token ends at ``last_token_end_s`` (None: no token),
        without changing anything: "none" (no utterance ended), "wait" (not covered yet),
        "final" (it covers it), "drop" (no token, or a token at or after the next onset)."""
        if not self.ended:
            return "none"
        end_s = self.ended[0].end / SAMPLE_RATE_HZ
        if decoded_until_s < end_s + self._lookahead_s:
            return "wait"
        onset = self._next_onset()
        if last_token_end_s is None or (
                onset is not None and last_token_end_s > onset / SAMPLE_RATE_HZ):
            return "drop"
        covered = hypothesis_covers(end_s, decoded_until_s, last_token_end_s,
                                    lookahead_s=self._lookahead_s, settle_s=self._settle_s)
        return "final" if covered else "wait"

    def speech_since(self, after: int, until_s: float) -> bool:
        """Whether the VAD heard an utterance start at or after sample ``after`` (the end of
        one already finalised) and before ``until_s``."""
        until = int(until_s * SAMPLE_RATE_HZ)
        open_since = self._segmenter.open_since
        if open_since is not None and after <= open_since < until:
            return True
        return any(after <= a < until for a, _b in self._heard)

    def _next_onset(self) -> int | None:
        """Start of the speech after the first ended utterance, if the VAD heard any."""
        if len(self.ended) > 1:
            return self.ended[1].start
        return self._segmenter.open_since

    def finalized(self) -> None:
        if self.ended:
            self.ended.popleft()
