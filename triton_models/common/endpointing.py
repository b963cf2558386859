"""Energy-based utterance segmentation for streaming ASR (sans-I/O).

Audio time is the only clock: every decision is taken on 20 ms frames of the
samples pushed so far. A frame louder than ``start_dbfs`` for ``min_speech_ms``
opens an utterance (with ``preroll_ms`` of audio before the onset); frames
quieter than ``stop_dbfs`` (hysteresis: lower than the start threshold) for
``end_silence_ms`` close it (``short_end_silence_ms`` while it holds less than
``short_speech_ms`` of speech: a short burst before a pause is mostly the start of a
sentence, "Yes, ...", and Whisper loops on one alone). While an utterance is open
a partial decode is asked for every ``partial_interval_s`` of audio, only when speech arrived since
the last one. Utterances longer than ``max_utterance_s`` are cut (Whisper reads
30 s windows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from common.asr_contract import SAMPLE_RATE_HZ, Audio, ParameterError, ResultType


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    start_dbfs: float = -42.0
    stop_dbfs: float = -48.0
    min_speech_ms: int = 60
    end_silence_ms: int = 600
    preroll_ms: int = 300
    tail_ms: int = 200
    max_utterance_s: float = 25.0
    partial_interval_s: float = 1.0
    frame_ms: int = 20
    short_speech_ms: int = 0            # 0: every utterance ends after end_silence_ms
    short_end_silence_ms: int = 0

    def __post_init__(self) -> None:
        if self.stop_dbfs > self.start_dbfs:
            raise ParameterError(f"stop_dbfs {self.stop_dbfs} must be <= start_dbfs "
                                 f"{self.start_dbfs} (hysteresis)")
        if self.frame_ms <= 0 or self.end_silence_ms < self.frame_ms:
            raise ParameterError(f"end_silence_ms {self.end_silence_ms} must be >= frame_ms "
                                 f"{self.frame_ms} > 0")
        if self.max_utterance_s * 1000 < 2 * self.frame_ms or self.partial_interval_s <= 0:
            raise ParameterError("max_utterance_s and partial_interval_s must be > 0")

    def samples(self, ms: float) -> int:
        return int(round(ms * SAMPLE_RATE_HZ / 1000))

    def frames(self, ms: float) -> int:
        return max(1, math.ceil(ms / self.frame_ms))


@dataclass(frozen=True, slots=True)
class DecodeJob:
    """Audio of one utterance to decode: samples [start_sample, end_sample) of the stream."""

    type: ResultType
    segment: int
    start_sample: int
    end_sample: int
    audio: Audio


def frame_dbfs(frame: Audio) -> float:
    """Mean power of a frame in dB relative to a full-scale square wave."""
    power = float(np.mean(np.square(frame, dtype=np.float64))) if frame.size else 0.0
    return 10.0 * math.log10(power + 1e-12)


class UtteranceSegmenter:
    """Turns a stream of chunks into partial and final decode jobs."""

    def __init__(self, config: EndpointConfig) -> None:
        self._cfg = config
        self._frame = config.samples(config.frame_ms)
        self._buf: Audio = np.zeros(0, dtype=np.float32)
        self._buf_start = 0
        self._analysed = 0
        self._segment = 0
        self._in_speech = False
        self._loud_frames = 0
        self._onset = 0
        self._quiet_frames = 0
        self._utt_start = 0
        self._speech_start = 0
        self._last_speech_end = 0
        self._last_partial_at = 0
        self._speech_since_partial = False

    @property
    def total_samples(self) -> int:
        return self._buf_start + self._buf.size

    @property
    def next_segment(self) -> int:
        return self._segment

    def push(self, audio: Audio) -> list[DecodeJob]:
        """Add a chunk; the jobs it completes, in order (finals, then at most one partial)."""
        self._buf = np.concatenate([self._buf, audio.astype(np.float32, copy=False)])
        jobs: list[DecodeJob] = []
        while self._analysed + self._frame <= self.total_samples:
            job = self._analyse_frame(self._analysed)
            self._analysed += self._frame
            if job is not None:
                jobs.append(job)
        partial = self._partial_if_due()
        if partial is not None:
            jobs.append(partial)
        self._trim()
        return jobs

    def flush(self) -> DecodeJob | None:
        """END of stream: the final job of the open utterance, if one is open."""
        if not self._in_speech:
            return None
        self._in_speech = False
        return self._final(self._utt_start, self.total_samples)

    def _analyse_frame(self, start: int) -> DecodeJob | None:
        level = self._level(self._slice(start, start + self._frame))
        if not self._in_speech:
            self._track_onset(start, level)
            return None
        return self._track_speech(start + self._frame, level)

    def _level(self, frame: Audio) -> float:
        """The frame's level compared with start_dbfs/stop_dbfs (common.vad: a probability)."""
        return frame_dbfs(frame)

    def _track_onset(self, start: int, level: float) -> None:
        if level < self._cfg.start_dbfs:
            self._loud_frames = 0
            return
        if self._loud_frames == 0:
            self._onset = start
        self._loud_frames += 1
        if self._loud_frames >= self._cfg.frames(self._cfg.min_speech_ms):
            utt_start = max(self._buf_start, self._onset - self._cfg.samples(self._cfg.preroll_ms))
            self._open(utt_start, start + self._frame, self._onset)

    def _open(self, utt_start: int, speech_end: int, onset: int) -> None:
        self._in_speech = True
        self._utt_start = utt_start
        self._speech_start = onset
        self._last_speech_end = speech_end
        self._quiet_frames = 0
        self._loud_frames = 0
        self._last_partial_at = utt_start
        self._speech_since_partial = True

    def _track_speech(self, frame_end: int, level: float) -> DecodeJob | None:
        if level < self._cfg.stop_dbfs:
            self._quiet_frames += 1
        else:
            self._quiet_frames = 0
            self._last_speech_end = frame_end
            self._speech_since_partial = True
        if self._quiet_frames >= self._end_frames():
            self._in_speech = False
            end = min(frame_end, self._last_speech_end + self._cfg.samples(self._cfg.tail_ms))
            return self._final(self._utt_start, end)
        if frame_end - self._utt_start >= self._cfg.samples(self._cfg.max_utterance_s * 1000):
            job = self._final(self._utt_start, frame_end)
            self._open(frame_end, frame_end, frame_end)
            return job
        return None

    def _end_frames(self) -> int:
        short = self._cfg.samples(self._cfg.short_speech_ms)
        if self._last_speech_end - self._speech_start < short:
            return self._cfg.frames(max(self._cfg.short_end_silence_ms, self._cfg.end_silence_ms))
        return self._cfg.frames(self._cfg.end_silence_ms)

    def _final(self, start: int, end: int) -> DecodeJob:
        job = DecodeJob("final", self._segment, start, end, self._slice(start, end).copy())
        self._segment += 1
        return job

    def _partial_if_due(self) -> DecodeJob | None:
        due = self._cfg.samples(self._cfg.partial_interval_s * 1000)
        end = self.total_samples
        if not self._in_speech or not self._speech_since_partial:
            return None
        if end - self._last_partial_at < due:
            return None
        self._last_partial_at = end
        self._speech_since_partial = False
        audio = self._slice(self._utt_start, end).copy()
        return DecodeJob("partial", self._segment, self._utt_start, end, audio)

    def _slice(self, start: int, end: int) -> Audio:
        return self._buf[start - self._buf_start:end - self._buf_start]

    def _trim(self) -> None:
        if self._in_speech:
            keep_from = self._utt_start
        else:
            preroll = self._cfg.samples(self._cfg.preroll_ms)
            keep_from = min(self._analysed, self._onset if self._loud_frames else self._analysed)
            keep_from = max(self._buf_start, keep_from - preroll)
        if keep_from > self._buf_start:
            self._buf = self._buf[keep_from - self._buf_start:]
            self._buf_start = keep_from
