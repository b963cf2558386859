"""Cache-aware streaming recognition (CTC, RNNT, hybrid) of a NeMo FastConformer exported
to ONNX.

Everything but `EncoderSession` (ONNX Runtime) is pure computation on arrays:
- `LogMelFrontend`: incremental log-mel features equal to NeMo's
  AudioToMelSpectrogramPreprocessor (normalize "NA", centred STFT, pre-emphasis),
  then a fixed per-bin mean/std normalisation (from training, in frontend.npz).
- `EncoderStream`: the per-stream feature buffer and encoder caches; one encoder
  step consumes one chunk of 4*(r+1) mel frames (r = right context of
  att_context_size) plus the pre-encode cache of the previous chunk. Streams of a
  batch are stepped together with their caches stacked on the batch axis.
- `CtcSegmenter`: greedy CTC with word times from frame indices, optional phrase
  boosting, and endpointing on trailing blank frames; `RnntSegmenter`: the same
  utterance building from the tokens of greedy RNNT (rnnt_decoder.py). Endpointing
  is decided in one place, `CtcSegmenter.silence_ends_utterance`, plus the EOU token
  (`_Utterances.eou`) for models that have one.
- `StreamingRecognizer`: ties them together and builds contract results. With
  `endpointing = "vad"` each stream also runs Silero VAD (common/vad.py,
  `SpeechEndpoint`): once the VAD has ended an utterance and the decoder has emitted
  the frames up to its end plus `vad_lookahead_ms` with no later token, the hypothesis
  is the final, without waiting for the blank rule (which then applies only where the
  VAD heard no speech in its last `end_silence_ms`). With `vad_flush` that coverage does
  not wait for the real audio to fill the encoder's chunk: a copy of the stream is run on
  silence (`StreamingRecognizer._flush`, the speculative flush).

Phrase boosting (PHRASES): every SentencePiece token of the phrases gets
`phrase_boost` added to its log-probability before the greedy arg-max (blank is
never boosted). It only changes frames where a phrase token nearly won; a large
value forces phrase tokens and makes errors.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.asr_contract import AsrResult, Word  # noqa: E402
from common.vad import SileroVad, SpeechEndpoint, SpeechSpan  # noqa: E402
from rnnt_decoder import (  # noqa: E402
    DecoderJointSession,
    Emission,
    PredictionState,
    greedy_batch,
)

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
WORD_START = "\u2581"
ONNX_NAME = "encoder_ctc.onnx"
TRAINED_LOOKAHEADS = ((70, 0), (70, 1), (70, 6), (70, 13))
DECODERS = ("rnnt", "ctc")
ENDPOINTING = ("vad", "blank")


class ModelFilesError(ValueError):
    """The model folder lacks a file the runtime needs (the message names the path)."""


class StreamConfigError(ValueError):
    """A streaming setting the exported model cannot honour."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Geometry of the exported model (model.json written by export_onnx.py)."""

    sample_rate_hz: int
    n_fft: int
    hop_samples: int
    win_samples: int
    preemph: float
    log_guard: float
    n_mels: int
    subsampling_factor: int
    first_chunk_mel_frames_offset: int
    pre_encode_cache_frames: int
    cache_channel_shape: tuple[int, int, int]
    cache_time_shape: tuple[int, int, int]
    att_context_sizes: tuple[tuple[int, int], ...]
    blank_id: int
    pieces: tuple[str, ...]
    # since the RNNT/hybrid export; the defaults describe the first CTC exports
    decoders: tuple[str, ...] = ("ctc",)
    encoder_onnx: str = ONNX_NAME
    encoder_first_onnx: str = ""  # first-chunk graph (no pre-encode cache, nothing dropped)
    encoder_output: str = "logprobs"  # or "encoded" [B, D, T] for the decoder heads
    ctc_head: str = ""  # npz (weight [V+1, D], bias [V+1]) on encoded frames
    rnnt_onnx: str = ""
    rnnt_state_shape: tuple[int, int] = (0, 0)  # LSTM layers, hidden
    max_symbols: int = 10
    eou_id: int = -1
    export_att_context_size: tuple[int, int] = (70, 13)  # the graph serves [left, <= right]

    @classmethod
    def from_json(cls, path: Path) -> ModelSpec:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        rnnt = raw.get("rnnt") or {}
        return cls(
            sample_rate_hz=int(raw["sample_rate_hz"]), n_fft=int(raw["n_fft"]),
            hop_samples=int(raw["hop_samples"]), win_samples=int(raw["win_samples"]),
            preemph=float(raw["preemph"]), log_guard=float(raw["log_guard"]),
            n_mels=int(raw["n_mels"]), subsampling_factor=int(raw["subsampling_factor"]),
            first_chunk_mel_frames_offset=int(raw["first_chunk_mel_frames_offset"]),
            pre_encode_cache_frames=int(raw["pre_encode_cache_frames"]),
            cache_channel_shape=_triple(raw["cache_channel_shape"]),
            cache_time_shape=_triple(raw["cache_time_shape"]),
            att_context_sizes=tuple((int(a[0]), int(a[1])) for a in raw["att_context_sizes"]),
            blank_id=int(raw["blank_id"]), pieces=tuple(str(p) for p in raw["pieces"]),
            decoders=tuple(str(d) for d in raw.get("decoders", ["ctc"])),
            encoder_onnx=str(raw.get("encoder_onnx", ONNX_NAME)),
            encoder_first_onnx=str(raw.get("encoder_first_onnx", "")),
            encoder_output=str(raw.get("encoder_output", "logprobs")),
            ctc_head=str(raw.get("ctc_head", "")), rnnt_onnx=str(rnnt.get("onnx", "")),
            rnnt_state_shape=_pair(rnnt.get("state_shape", [0, 0])),
            max_symbols=int(rnnt.get("max_symbols", 10)), eou_id=int(raw.get("eou_id", -1)),
            export_att_context_size=_pair(raw.get("export_att_context_size", [70, 13])))

    @property
    def frame_s(self) -> float:
        """Duration of one encoder frame."""
        return self.subsampling_factor * self.hop_samples / self.sample_rate_hz


def _triple(values: Sequence[int]) -> tuple[int, int, int]:
    return int(values[0]), int(values[1]), int(values[2])


def _pair(values: Sequence[int]) -> tuple[int, int]:
    return int(values[0]), int(values[1])


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """Paths of one exported model folder."""

    folder: Path

    @property
    def onnx(self) -> Path:
        """The legacy CTC encoder (see `ModelSpec.encoder_onnx` for the one a model uses)."""
        return self.folder / ONNX_NAME

    @property
    def spec(self) -> Path:
        return self.folder / "model.json"

    @property
    def frontend(self) -> Path:
        return self.folder / "frontend.npz"

    @property
    def tokenizer(self) -> Path:
        return self.folder / "tokenizer.model"

    def check(self) -> ModelSpec:
        """The folder's spec; raise ModelFilesError naming the first missing file."""
        if not self.folder.is_dir():
            raise ModelFilesError(f"model_path {self.folder} is not a folder")
        if not self.spec.is_file():
            raise ModelFilesError(f"model file missing: {self.spec} (model_path {self.folder})")
        spec = ModelSpec.from_json(self.spec)
        names = (spec.encoder_onnx, spec.encoder_first_onnx, spec.ctc_head, spec.rnnt_onnx)
        for path in (*(self.folder / n for n in names if n), self.frontend):
            if not path.is_file():
                raise ModelFilesError(f"model file missing: {path} (model_path {self.folder})")
        return spec


# --- features ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MelTables:
    """Filterbank [n_mels, n_fft/2+1], the analysis window zero-padded to n_fft, and the
    per-bin mean/std [n_mels, 1] the model's input is normalised with."""

    filterbank: F32
    window: F32
    mean: F32
    std: F32

    @classmethod
    def load(cls, path: Path, n_fft: int) -> MelTables:
        with np.load(path) as data:
            fb = np.asarray(data["fb"], dtype=np.float32)
            win = np.asarray(data["window"], dtype=np.float32)
            n_mels = fb.shape[0]
            mean = np.asarray(data["mean"] if "mean" in data else np.zeros(n_mels), np.float32)
            std = np.asarray(data["std"] if "std" in data else np.ones(n_mels), np.float32)
        padded = np.zeros(n_fft, dtype=np.float32)
        left = (n_fft - win.size) // 2
        padded[left:left + win.size] = win
        return cls(fb, padded, mean.reshape(-1, 1), std.reshape(-1, 1))


class LogMelFrontend:
    """Incremental log-mel frames of one stream (same values as NeMo's preprocessor)."""

    def __init__(self, spec: ModelSpec, tables: MelTables) -> None:
        self._spec = spec
        self._tables = tables
        self._half = spec.n_fft // 2
        # pre-emphasised samples; index 0 is absolute sample -n_fft/2 (centre padding)
        self._buf: F32 = np.zeros(self._half, dtype=np.float32)
        self._buf_start = -self._half
        self._last_raw = 0.0
        self.total_samples = 0
        self._next_frame = 0

    def push(self, audio: F32) -> F32:
        """Add samples; the frames [n_mels, n] that became complete."""
        if audio.size:
            emph = audio.astype(np.float32, copy=True)
            emph[1:] -= self._spec.preemph * audio[:-1]
            emph[0] -= self._spec.preemph * self._last_raw
            self._last_raw = float(audio[-1])
            self._buf = np.concatenate([self._buf, emph])
            self.total_samples += audio.size
        hop = self._spec.hop_samples
        last = (self.total_samples - self._half) // hop  # highest frame index computable
        return self._frames(last + 1)

    def clone(self) -> LogMelFrontend:
        """An independent copy (a speculative flush pads it; the stream's own is untouched:
        every method replaces the buffer, none writes into it)."""
        twin = copy.copy(self)
        twin._buf = self._buf.copy()
        return twin

    def flush(self) -> F32:
        """End of stream: the remaining frames, zero-padded on the right like the offline STFT;
        the offline preprocessor keeps total_samples // hop frames."""
        self._buf = np.concatenate([self._buf, np.zeros(self._half, dtype=np.float32)])
        return self._frames(self.total_samples // self._spec.hop_samples)

    def _frames(self, stop: int) -> F32:
        hop, n_fft = self._spec.hop_samples, self._spec.n_fft
        count = stop - self._next_frame
        if count <= 0:
            return np.zeros((self._spec.n_mels, 0), dtype=np.float32)
        first = self._next_frame * hop - self._half - self._buf_start
        span = self._buf[first:first + (count - 1) * hop + n_fft]
        frames = np.lib.stride_tricks.sliding_window_view(span, n_fft)[::hop][:count]
        spectrum = np.fft.rfft(frames * self._tables.window, axis=1)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        mel = self._tables.filterbank @ power.T
        self._next_frame = stop
        keep_from = self._next_frame * hop - self._half - self._buf_start
        self._buf = self._buf[keep_from:]
        self._buf_start += keep_from
        logmel = np.log(mel + np.float32(self._spec.log_guard))
        normalised: F32 = ((logmel - self._tables.mean) / self._tables.std).astype(np.float32)
        return normalised


# --- encoder ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkGeometry:
    """Mel frames per encoder step for one look-ahead."""

    right_context: int
    chunk_mel_frames: int
    pre_cache_mel_frames: int
    lead_zero_frames: int
    first_chunk_mel_frames: int = 0  # > 0: the first step runs the first-chunk graph
    # the fewest new frames that make an encoder frame (first step, later steps): a shorter
    # tail after END is dropped, as CacheAwareStreamingAudioBuffer does
    min_frames: tuple[int, int] = (1, 1)

    @classmethod
    def for_lookahead(cls, spec: ModelSpec, att_context_size: tuple[int, int]) -> ChunkGeometry:
        trained = set(spec.att_context_sizes)
        if tuple(att_context_size) not in trained:
            raise StreamConfigError(
                f"att_context_size {list(att_context_size)} was not trained; "
                f"trained: {sorted(list(a) for a in trained)}")
        left, widest = spec.export_att_context_size
        if att_context_size[0] != left or att_context_size[1] > widest:
            raise StreamConfigError(
                f"att_context_size {list(att_context_size)} is not served by this export "
                f"(traced at [{left}, {widest}]: same left context, right <= {widest})")
        right = att_context_size[1]
        chunk = spec.subsampling_factor * (right + 1)
        pre = spec.pre_encode_cache_frames
        sub = spec.subsampling_factor
        sampling = (sub - spec.first_chunk_mel_frames_offset, sub)
        if spec.encoder_first_onnx:
            # NeMo's reference chunking exactly: a first chunk of sampling_frames[0] + 4r (8r)
            # frames without pre-encode cache, run by a graph that drops nothing
            return cls(right, chunk, pre, 0, chunk - spec.first_chunk_mel_frames_offset,
                       sampling)
        # leading zero frames put the first real frame where NeMo's first (shorter) chunk
        # puts it, so every step has the same shape and the same stride phase as training
        return cls(right, chunk, pre, pre + spec.first_chunk_mel_frames_offset,
                   min_frames=(sampling[1], sampling[1]))

    @property
    def step_frames(self) -> int:
        return self.pre_cache_mel_frames + self.chunk_mel_frames


@dataclass(slots=True)
class EncoderStream:
    """Per-stream pending features and encoder caches."""

    feats: F32
    cache_channel: F32
    cache_time: F32
    cache_len: int = 0
    frames_out: int = 0
    ended: bool = False
    steps: int = 0

    @classmethod
    def fresh(cls, spec: ModelSpec, geometry: ChunkGeometry) -> EncoderStream:
        return cls(np.zeros((spec.n_mels, geometry.lead_zero_frames), dtype=np.float32),
                   np.zeros(spec.cache_channel_shape, dtype=np.float32),
                   np.zeros(spec.cache_time_shape, dtype=np.float32))

    def clone(self) -> EncoderStream:
        """An independent copy (caches and features are replaced by each step, never
        written into, so sharing the arrays is safe)."""
        return dataclasses.replace(self)

    def missing_frames(self, geometry: ChunkGeometry) -> int:
        """Mel frames still needed for the next full chunk."""
        if self.first_step(geometry):
            return max(0, geometry.first_chunk_mel_frames - int(self.feats.shape[1]))
        pending = int(self.feats.shape[1]) - geometry.pre_cache_mel_frames
        return max(0, geometry.chunk_mel_frames - pending)

    def first_step(self, geometry: ChunkGeometry) -> bool:
        """The next step is the first one and runs the first-chunk graph."""
        return self.steps == 0 and geometry.first_chunk_mel_frames > 0

    def ready(self, geometry: ChunkGeometry) -> bool:
        """A full chunk is waiting, or the last partial one after END."""
        if self.first_step(geometry):
            pending, need = self.feats.shape[1], geometry.first_chunk_mel_frames
            least = geometry.min_frames[0]
        else:
            pending = self.feats.shape[1] - geometry.pre_cache_mel_frames
            need, least = geometry.chunk_mel_frames, geometry.min_frames[1]
        return pending >= need or (self.ended and pending >= least)

    def take_chunk(self, geometry: ChunkGeometry) -> tuple[F32, int]:
        """The next step's input [n_mels, step_frames] (zero-padded) and its valid length."""
        if self.first_step(geometry):
            return self._take_first(geometry)
        self.steps += 1
        step = geometry.step_frames
        chunk = self.feats[:, :step]
        valid = chunk.shape[1]
        if valid < step:
            chunk = np.pad(chunk, ((0, 0), (0, step - valid)))
        self.feats = self.feats[:, geometry.chunk_mel_frames:]
        return chunk, valid

    def _take_first(self, geometry: ChunkGeometry) -> tuple[F32, int]:
        """NeMo's first chunk; what stays is the next step's pre-encode cache, zero-padded on
        the left when the first chunk was shorter than it (as CacheAwareStreamingAudioBuffer)."""
        self.steps += 1
        size, pre = geometry.first_chunk_mel_frames, geometry.pre_cache_mel_frames
        chunk = self.feats[:, :size]
        valid = chunk.shape[1]
        if valid < size:
            chunk = np.pad(chunk, ((0, 0), (0, size - valid)))
        rest = self.feats[:, max(0, size - pre):]
        if size < pre:
            rest = np.pad(rest, ((0, 0), (pre - size, 0)))
        self.feats = rest
        return chunk, valid


class EncoderSession:
    """ONNX Runtime session of the encoder (CUDA when asked for and available); with
    `first_path`, a second session for the first chunk of each stream."""

    def __init__(self, onnx_path: Path, *, device: str, threads: int,
                 first_path: Path | None = None) -> None:
        import onnxruntime as ort  # type: ignore[import-not-found,unused-ignore]

        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif device == "cuda":
            raise StreamConfigError("device=cuda asked but onnxruntime has no CUDA provider "
                                    "(install onnxruntime-gpu)")
        self._session: Any = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self._first: Any = None if first_path is None else ort.InferenceSession(
            str(first_path), options, providers=providers)
        self.providers: tuple[str, ...] = tuple(self._session.get_providers())
        self.threads = threads

    def step(self, feats: F32, lengths: I64, cache_channel: F32, cache_time: F32,
             cache_len: I64, first: bool = False) -> tuple[F32, I64, F32, F32, I64]:
        session = self._first if first and self._first is not None else self._session
        outputs = session.run(None, {
            "audio_signal": feats, "length": lengths, "cache_last_channel": cache_channel,
            "cache_last_time": cache_time, "cache_last_channel_len": cache_len})
        logprobs, enc_len, next_channel, next_time, next_len = outputs
        return logprobs, enc_len, next_channel, next_time, next_len


def encoder_step(session: EncoderSession, streams: Sequence[EncoderStream],
                 geometry: ChunkGeometry, encoded: bool = False) -> list[F32]:
    """One batched encoder step for streams that are all ready (all at their first step or
    none); their output frames [n_i, X]: CTC log-probs, or with `encoded` the encoder's
    output [B, D, T] transposed to frames."""
    first = streams[0].first_step(geometry)
    chunks, valid = zip(*(s.take_chunk(geometry) for s in streams), strict=True)
    feats = np.ascontiguousarray(np.stack(chunks), dtype=np.float32)
    lengths = np.asarray(valid, dtype=np.int64)
    out = session.step(
        feats, lengths, np.stack([s.cache_channel for s in streams]),
        np.stack([s.cache_time for s in streams]),
        np.asarray([s.cache_len for s in streams], dtype=np.int64), first)
    logprobs, enc_len, next_channel, next_time, next_len = out
    if encoded:
        logprobs = np.transpose(logprobs, (0, 2, 1))
    result: list[F32] = []
    for row, stream in enumerate(streams):
        stream.cache_channel = next_channel[row]
        stream.cache_time = next_time[row]
        stream.cache_len = int(next_len[row])
        frames = max(0, min(int(enc_len[row]), geometry.right_context + 1))
        result.append(np.asarray(logprobs[row, :frames], dtype=np.float32))
    return result


# --- CTC decoding and endpointing ----------------------------------------------------------


@dataclass(slots=True)
class _Token:
    token_id: int
    first_frame: int
    last_frame: int
    prob: float


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """Decoded words of one utterance with times in seconds from stream start."""

    segment: int
    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        return " ".join(w.word for w in self.words)


@dataclass(slots=True)
class CtcSegmenter:
    """Greedy CTC over frames as they arrive; an utterance ends after `end_silence_frames`
    blank frames following its last token."""

    spec: ModelSpec
    end_silence_frames: int
    boost: F32 | None = None
    segment: int = 0
    frame: int = 0
    endpoint_until: int | None = None  # frames from here on (END's padding) never endpoint
    trace: list[tuple[int, int]] | None = None  # (token id, frame) of every token, when set
    speech_heard: Callable[[float, float], bool] | None = None  # endpointing = vad
    # (after sample, until s) -> whether the VAD heard an utterance start in between
    speech_started: Callable[[int, float], bool] | None = None
    # a speculative flush finalised the utterance decoded up to frame `flushed_until`, whose
    # speech ended at sample `flushed_after`: tokens before that frame are its (already in
    # its final), unless the VAD heard new speech start before them
    flushed_until: int = 0
    flushed_after: int = 0
    _tokens: list[_Token] = field(default_factory=list)
    _last_id: int = -1
    _trailing_blank: int = 0

    def feed(self, logprobs: F32) -> list[Hypothesis]:
        """Consume frames [n, V]; the finals that endpointing closed."""
        if logprobs.shape[0] == 0:
            return []
        scores = logprobs if self.boost is None else logprobs + self.boost
        best = np.argmax(scores, axis=1)
        probs = np.exp(logprobs[np.arange(best.size), best])
        finals: list[Hypothesis] = []
        for tok, prob in zip(best.tolist(), probs.tolist(), strict=True):
            final = self._frame(int(tok), float(prob))
            if final is not None:
                finals.append(final)
        return finals

    def _frame(self, tok: int, prob: float) -> Hypothesis | None:
        index = self.frame
        self.frame += 1
        if tok == self.spec.blank_id:
            self._last_id = tok
            self._trailing_blank += 1
            if (self._trailing_blank >= self.end_silence_frames
                    and self.silence_ends_utterance(self._trailing_blank, index)):
                return self.close()
            return None
        self._trailing_blank = 0
        if tok != self._last_id:
            final = self._token(tok, index, prob)
            self._last_id = tok  # after _token: an EOU's repeated frames stay one token
            return final
        if self._tokens and tok != self.spec.eou_id:
            last = self._tokens[-1]
            last.last_frame = index
            last.prob = max(last.prob, prob)
        return None

    def silence_ends_utterance(self, silent_frames: int, index: int) -> bool:
        """THE endpointing rule of both decoders: an open utterance ends once `silent_frames`
        encoder frames without a token follow its last token (checked at frame `index`),
        except over END's padding, and (endpointing = vad) while the VAD heard speech in
        the last `end_silence_frames`. The EOU token (`_token`) ends one at once."""
        return (bool(self._tokens) and silent_frames >= self.end_silence_frames
                and (self.endpoint_until is None or index < self.endpoint_until)
                and not self._speech_heard_in(index + 1 - self.end_silence_frames, index + 1))

    def _speech_heard_in(self, first: int, stop: int) -> bool:
        frame_s = self.spec.frame_s
        return self.speech_heard is not None and self.speech_heard(first * frame_s,
                                                                   stop * frame_s)

    def _token(self, tok: int, index: int, prob: float) -> Hypothesis | None:
        """A new token at frame `index`; the EOU token closes the utterance (never in text)."""
        if self.trace is not None:
            self.trace.append((tok, index))
        if self._flushed(index):
            return None
        if tok == self.spec.eou_id:
            return self.close() if self._tokens else None
        self._tokens.append(_Token(tok, index, index, prob))
        return None

    def _flushed(self, index: int) -> bool:
        """A token at frame `index` belongs to an utterance a speculative flush finalised."""
        if index >= self.flushed_until:
            return False
        started = self.speech_started
        return started is None or not started(self.flushed_after,
                                              (index + 1) * self.spec.frame_s)

    def clone(self) -> Self:
        """An independent copy for a speculative flush (no trace: its tokens are not the
        stream's)."""
        return dataclasses.replace(self, trace=None,
                                   _tokens=[dataclasses.replace(t) for t in self._tokens])

    def adopt_flush(self, trial: CtcSegmenter, speech_end: int) -> None:
        """A speculative flush on `trial` (a clone of this segmenter) finalised the open
        utterance: drop its tokens here, continue with the trial's segment numbers, and
        do not emit again what the real stream decodes before the trial's last frame
        (unless the VAD hears speech start after `speech_end`, a sample)."""
        self._tokens = []
        self._trailing_blank = 0
        self.segment = trial.segment
        self.flushed_until = trial.frame
        self.flushed_after = speech_end

    def pending(self) -> Hypothesis:
        """The open utterance so far (for partials)."""
        return Hypothesis(self.segment, tuple(self._words()))

    def close(self) -> Hypothesis:
        """Final of the open utterance; the next tokens start a new segment."""
        hyp = self.pending()
        self._tokens = []
        self._last_id = -1
        self._trailing_blank = 0
        self.segment += 1
        return hyp

    @property
    def has_tokens(self) -> bool:
        return bool(self._tokens)

    def _words(self) -> list[Word]:
        words: list[list[_Token]] = []
        for tok in self._tokens:
            piece = self.spec.pieces[tok.token_id] if tok.token_id < len(self.spec.pieces) else ""
            if piece.startswith(WORD_START) or not words:
                words.append([tok])
            else:
                words[-1].append(tok)
        return [w for w in (self._word(group) for group in words) if w is not None]

    def _word(self, group: list[_Token]) -> Word | None:
        text = "".join(self.spec.pieces[t.token_id] for t in group).replace(WORD_START, "")
        if not text:
            return None
        frame_s = self.spec.frame_s
        confidence = float(np.mean([t.prob for t in group]))
        return Word(text, group[0].first_frame * frame_s, (group[-1].last_frame + 1) * frame_s,
                    min(1.0, max(0.0, confidence)))


@dataclass(slots=True)
class RnntSegmenter(CtcSegmenter):
    """Utterances from greedy RNNT tokens (each emission is a token: no CTC collapsing);
    endpointing by the same rule on the frames without a token."""

    prediction: PredictionState | None = None
    _last_token_frame: int = -1

    def clone(self) -> Self:
        twin = CtcSegmenter.clone(self)
        if self.prediction is not None:  # greedy_batch replaces h, c: sharing them is safe
            twin.prediction = PredictionState(self.prediction.h, self.prediction.c,
                                              self.prediction.last_token)
        return twin

    def feed_tokens(self, emissions: Sequence[Emission], frames: int) -> list[Hypothesis]:
        """A chunk's `frames` encoder frames and its tokens (frames relative to the chunk)."""
        base = self.frame
        finals: list[Hypothesis] = []
        for emission in emissions:
            index = base + emission.frame
            closed = self._silence_before(index)
            if closed is not None:
                finals.append(closed)
            final = self._token(emission.token_id, index, emission.prob)
            self._last_token_frame = index
            if final is not None:
                finals.append(final)
        self.frame = base + frames
        closed = self._silence_before(self.frame)
        if closed is not None:
            finals.append(closed)
        return finals

    def _silence_before(self, index: int) -> Hypothesis | None:
        """Close the open utterance when the silence rule fired on a frame before `index`."""
        due = self._last_token_frame + self.end_silence_frames
        if due < index and self.silence_ends_utterance(self.end_silence_frames, due):
            return self.close()
        return None


def ctc_head_logprobs(weight: F32, bias: F32, frames: F32) -> F32:
    """A hybrid model's CTC head (NeMo ConvASRDecoder: 1x1 conv, log-softmax) on encoder
    frames [n, D] -> log-probs [n, V+1]."""
    logits = frames @ weight.T + bias
    peak = logits.max(axis=1, keepdims=True)
    shifted = logits - peak
    out: F32 = (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))).astype(np.float32)
    return out


# --- phrases -------------------------------------------------------------------------------


def phrase_token_ids(phrase: str, pieces: Sequence[str]) -> list[int]:
    """Token ids of a phrase by greedy longest match over the vocabulary pieces, word by
    word ("▁" marks a word start): close to SentencePiece's own split, and needs no
    tokenizer library at run time."""
    index = {piece: i for i, piece in enumerate(pieces)}
    longest = max((len(p) for p in pieces), default=1)
    text = "".join(c if c.isalpha() or c == "'" else " " for c in phrase.lower())
    ids: list[int] = []
    for word in text.split():
        rest = WORD_START + word
        while rest:
            for size in range(min(longest, len(rest)), 0, -1):
                if rest[:size] in index:
                    ids.append(index[rest[:size]])
                    rest = rest[size:]
                    break
            else:
                rest = rest[1:]  # a character outside the vocabulary
    return ids


def phrase_boost_vector(phrases: Sequence[str], pieces: Sequence[str],
                        boost: float) -> F32 | None:
    """Log-prob bonus per class for the tokens of the phrases (None when nothing to boost)."""
    if boost == 0.0 or not phrases:
        return None
    vector = np.zeros(len(pieces) + 1, dtype=np.float32)
    for phrase in phrases:
        for token_id in phrase_token_ids(phrase, pieces):
            vector[token_id] = boost
    return vector if vector.any() else None


# --- the recognizer -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecognizerConfig:
    att_context_size: tuple[int, int] = (70, 13)
    end_silence_ms: float = 600.0
    end_pad_ms: float = 800.0
    phrase_boost: float = 2.0
    max_batch: int = 32
    device: str = "auto"
    threads: int = 0
    decoder: str = ""  # "rnnt" | "ctc"; empty: rnnt when the export has it, else ctc
    endpointing: str = "blank"  # "vad": Silero VAD ends utterances too (common/vad.py)
    vad_threshold: float = 0.5
    vad_end_silence_ms: int = 160
    vad_lookahead_ms: float = 240.0
    vad_flush: bool = True  # speculative flush once the VAD ended an utterance (see _flush)

    def __post_init__(self) -> None:
        if self.end_silence_ms <= 0:
            raise StreamConfigError(f"end_silence_ms must be > 0, got {self.end_silence_ms}")
        if not 0 <= self.end_pad_ms <= 5000:
            raise StreamConfigError(f"end_pad_ms must be 0-5000, got {self.end_pad_ms}")
        if self.max_batch < 1:
            raise StreamConfigError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise StreamConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.endpointing not in ENDPOINTING:
            raise StreamConfigError(f"endpointing must be vad or blank, got {self.endpointing!r}")
        if self.decoder not in DECODERS + ("",):
            raise StreamConfigError(f"decoder must be rnnt or ctc (or empty for the model's "
                                    f"default), got {self.decoder!r}")


@dataclass(slots=True)
class StreamState:
    """Everything one CORRID owns."""

    frontend: LogMelFrontend
    encoder: EncoderStream
    decoder: CtcSegmenter  # an RnntSegmenter (with its prediction state) for RNNT
    last_partial: str = ""
    pad_samples: int = 0
    vad: SpeechEndpoint | None = None  # endpointing = vad
    flush_tried: SpeechSpan | None = None  # the ended utterance a flush last tried


@dataclass(frozen=True, slots=True)
class StreamInput:
    """One request's audio for one stream."""

    state: StreamState
    audio: F32
    end: bool


class StreamingRecognizer:
    """Runs many streams through one encoder session, batching ready chunks."""

    def __init__(self, folder: Path, config: RecognizerConfig) -> None:
        files = ModelFiles(folder)
        self.spec = files.check()
        self.config = config
        self.decoder = choose_decoder(self.spec, config.decoder)
        self.geometry = ChunkGeometry.for_lookahead(self.spec, config.att_context_size)
        self._tables = MelTables.load(files.frontend, self.spec.n_fft)
        first = folder / self.spec.encoder_first_onnx if self.spec.encoder_first_onnx else None
        self.session = EncoderSession(folder / self.spec.encoder_onnx, device=config.device,
                                      threads=config.threads, first_path=first)
        self._end_frames = max(1, math.ceil(config.end_silence_ms / 1000 / self.spec.frame_s))
        self._vad = SileroVad() if config.endpointing == "vad" else None
        self._end_pad_samples = int(config.end_pad_ms / 1000 * self.spec.sample_rate_hz)
        self._ctc_head: tuple[F32, F32] | None = None
        if self.decoder == "ctc" and self.spec.encoder_output == "encoded":
            with np.load(folder / self.spec.ctc_head) as head:
                self._ctc_head = (np.asarray(head["weight"], np.float32),
                                  np.asarray(head["bias"], np.float32))
        self._joint: DecoderJointSession | None = None
        if self.decoder == "rnnt":
            self._joint = DecoderJointSession(folder / self.spec.rnnt_onnx,
                                              providers=self.session.providers,
                                              threads=config.threads)

    def new_stream(self, phrases: Sequence[str] = ()) -> StreamState:
        segmenter: CtcSegmenter
        if self.decoder == "rnnt":
            segmenter = RnntSegmenter(self.spec, self._end_frames, prediction=PredictionState.fresh(
                self.spec.rnnt_state_shape, self.spec.blank_id))
        else:
            segmenter = CtcSegmenter(self.spec, self._end_frames)
        state = StreamState(LogMelFrontend(self.spec, self._tables),
                            EncoderStream.fresh(self.spec, self.geometry), segmenter)
        if self._vad is not None:
            state.vad = SpeechEndpoint(
                self._vad.new_stream().push, threshold=self.config.vad_threshold,
                end_silence_ms=self.config.vad_end_silence_ms,
                lookahead_s=self.config.vad_lookahead_ms / 1000)
            segmenter.speech_heard = state.vad.heard_speech
            segmenter.speech_started = state.vad.speech_since
        self.set_phrases(state, phrases)
        return state

    def set_phrases(self, state: StreamState, phrases: Sequence[str]) -> None:
        """Custom vocabulary of a stream (sent with START)."""
        state.decoder.boost = phrase_boost_vector(phrases, self.spec.pieces,
                                                  self.config.phrase_boost)

    def process(self, inputs: Sequence[StreamInput]) -> list[list[AsrResult]]:
        """Feed each stream its audio, run the encoder over every ready chunk (batched),
        and return each input's results in order: finals, then a partial if the open
        utterance changed, and at END the final of the open utterance (always)."""
        results: list[list[AsrResult]] = [[] for _ in inputs]
        for item in inputs:
            self._featurize(item)
        owners = {id(item.state): i for i, item in enumerate(inputs)}
        states = [item.state for item in inputs]
        while True:
            ready = [s for s in states if s.encoder.ready(self.geometry)]
            if not ready:
                break
            for state, finals in self._step_batched(ready):
                finals = finals + self._vad_final(state)
                audio_s = self._audio_s(state)
                results[owners[id(state)]].extend(_final(h, audio_s) for h in finals)
                if finals:
                    state.last_partial = ""
        for index, item in enumerate(inputs):
            if not item.end:  # the VAD may end an utterance the decoder already passed
                results[index].extend(_final(h, self._audio_s(item.state))
                                      for h in self._vad_final(item.state))
        if self.config.vad_flush:
            flushed = self._flush([item.state for item in inputs if not item.end])
            for index, item in enumerate(inputs):
                hyps = flushed.get(id(item.state), [])
                results[index].extend(_final(h, self._audio_s(item.state)) for h in hyps)
                if hyps:
                    item.state.last_partial = ""
        for index, item in enumerate(inputs):
            results[index].extend(self._close_or_partial(item))
        return results

    def _flush(self, states: Sequence[StreamState]) -> dict[int, list[Hypothesis]]:
        """Speculative flush (endpointing = vad): for each stream whose VAD ended an
        utterance the decoder has not yet decoded far enough to finalise (the encoder runs
        on whole chunks only, so it would wait for the chunk to fill in real time), run a
        copy of its frontend, encoder caches and decoder on silence (zero samples) until
        the copy's hypothesis covers the utterance, batched across streams. That
        hypothesis is what the stream itself would finalise if silence followed; it is the
        final now. The copy is discarded; the stream goes on with real audio and does not
        emit again the tokens it decodes for frames the copy covered (unless the VAD hears
        new speech start there). A flush that does not end in a final (the copy's tokens
        run past the next onset, or never settle) is not retried for that utterance: the
        stream's own rule decides. Returns id(state) -> finals."""
        trials: list[tuple[StreamState, StreamState, SpeechSpan]] = []
        for state in states:
            vad = state.vad
            if vad is None or not vad.ended or vad.ended[0] == state.flush_tried:
                continue
            if self._verdict(state) != "wait":
                continue
            state.flush_tried = vad.ended[0]
            trial = StreamState(state.frontend.clone(), state.encoder.clone(),
                                state.decoder.clone())
            trials.append((state, trial, vad.ended[0]))
        out: dict[int, list[Hypothesis]] = {}
        finals: dict[int, list[Hypothesis]] = {id(t): [] for _, t, _ in trials}
        chunk_s = self.geometry.chunk_mel_frames * self.spec.hop_samples / self.spec.sample_rate_hz
        bound = math.ceil((self.config.vad_lookahead_ms / 1000 + 1.0) / chunk_s) + 2
        for _round in range(bound):
            if not trials:
                break
            for _state, trial, _span in trials:
                self._pad_to_chunk(trial)
            for trial, closed in self._step_batched([t for _, t, _ in trials]):
                finals[id(trial)].extend(closed)
            live = []
            for state, trial, span in trials:
                verdict = self._verdict(trial, state.vad)
                if verdict == "final":
                    finals[id(trial)].append(trial.decoder.close())
                if verdict == "final" or (verdict == "drop" and finals[id(trial)]):
                    state.decoder.adopt_flush(trial.decoder, span.end)
                    if state.vad is not None:
                        state.vad.finalized()
                    out[id(state)] = finals[id(trial)]
                elif verdict == "wait":
                    live.append((state, trial, span))
            trials = live
        return out

    def _pad_to_chunk(self, trial: StreamState) -> None:
        """Zero samples through the trial's frontend until its encoder has a whole chunk."""
        for _ in range(4):
            missing = trial.encoder.missing_frames(self.geometry)
            if missing <= 0:
                return
            frames = trial.frontend.push(
                np.zeros(missing * self.spec.hop_samples, dtype=np.float32))
            trial.encoder.feats = np.concatenate([trial.encoder.feats, frames], axis=1)

    def _verdict(self, state: StreamState, vad: SpeechEndpoint | None = None) -> str:
        """The VAD's verdict (SpeechEndpoint.verdict) on a stream's open hypothesis; `vad`:
        the endpoint to ask (a trial has none of its own)."""
        endpoint = vad if vad is not None else state.vad
        if endpoint is None:
            return "none"
        return endpoint.verdict(*self._coverage(state))

    def _coverage(self, state: StreamState) -> tuple[float, float | None]:
        """How far a stream's decoder has decoded (s) and where its open hypothesis's last
        token ends (None: no token): what the VAD's endpoint judges."""
        words = state.decoder.pending().words if state.decoder.has_tokens else ()
        return state.decoder.frame * self.spec.frame_s, words[-1].end_s if words else None

    def _step_batched(self, states: Sequence[StreamState]
                      ) -> list[tuple[StreamState, list[Hypothesis]]]:
        """One encoder step of each stream (each has a whole chunk), in batches of at most
        max_batch, first-chunk streams apart (they run the first-chunk graph); each stream
        with the utterances its step closed."""
        firsts = [s for s in states if s.encoder.first_step(self.geometry)]
        rest = [s for s in states if not s.encoder.first_step(self.geometry)]
        stepped: list[tuple[StreamState, list[Hypothesis]]] = []
        for group in (firsts, rest):
            for start in range(0, len(group), self.config.max_batch):
                batch = group[start:start + self.config.max_batch]
                stepped.extend(zip(batch, self._step(batch), strict=True))
        return stepped

    def _step(self, batch: Sequence[StreamState]) -> list[list[Hypothesis]]:
        """One encoder step of a batch and its decoding; each stream's closed utterances."""
        frames = encoder_step(self.session, [s.encoder for s in batch], self.geometry,
                              encoded=self.spec.encoder_output == "encoded")
        if self._joint is None:
            head = self._ctc_head
            return [s.decoder.feed(f if head is None else ctc_head_logprobs(*head, f))
                    for s, f in zip(batch, frames, strict=True)]
        segmenters = [s.decoder for s in batch]
        emissions = greedy_batch(
            self._joint, frames, [_prediction(s) for s in segmenters],
            blank_id=self.spec.blank_id, max_symbols=self.spec.max_symbols,
            boosts=[s.boost for s in segmenters])
        return [_prediction_owner(s).feed_tokens(e, f.shape[0])
                for s, e, f in zip(segmenters, emissions, frames, strict=True)]

    def _vad_final(self, state: StreamState) -> list[Hypothesis]:
        """endpointing = vad: the open hypothesis as a final once it covers the utterance
        the VAD ended (the blank rule did not close it yet)."""
        if state.vad is None:
            return []
        if not state.vad.final_due(*self._coverage(state)):
            return []
        state.vad.finalized()
        return [state.decoder.close()]

    def _featurize(self, item: StreamInput) -> None:
        frontend, enc = item.state.frontend, item.state.encoder
        if item.state.vad is not None:
            item.state.vad.push(np.asarray(item.audio, dtype=np.float32).reshape(-1))
        frames = [frontend.push(np.asarray(item.audio, dtype=np.float32).reshape(-1))]
        if item.end:
            # Streaming CTC models emit a word's tokens some frames after it was spoken:
            # silence after END lets the last word out instead of cutting it off.
            pad = np.zeros(self._end_pad_samples, dtype=np.float32)
            item.state.pad_samples = pad.size
            # the pad only lets words out; END's own final closes the utterance
            item.state.decoder.endpoint_until = math.ceil(
                frontend.total_samples / self.spec.sample_rate_hz / self.spec.frame_s)
            frames.append(frontend.push(pad))
            frames.append(frontend.flush())
            enc.ended = True
        enc.feats = np.concatenate([enc.feats, *frames], axis=1)

    def _audio_s(self, state: StreamState) -> float:
        real = state.frontend.total_samples - state.pad_samples
        return real / self.spec.sample_rate_hz

    def _close_or_partial(self, item: StreamInput) -> list[AsrResult]:
        state = item.state
        audio_s = self._audio_s(state)
        if item.end:
            return [_final(state.decoder.close(), audio_s)]
        pending = state.decoder.pending()
        if pending.text == state.last_partial:
            return []
        state.last_partial = pending.text
        return [_result("partial", pending, audio_s)]


def choose_decoder(spec: ModelSpec, asked: str) -> str:
    """The decoder to run: the one asked for if the export has it; by default rnnt when
    present (NeMo's default for hybrids), else ctc."""
    if asked and asked not in DECODERS:
        raise StreamConfigError(f"decoder {asked!r} is not supported (rnnt or ctc)")
    chosen = asked or ("rnnt" if "rnnt" in spec.decoders else spec.decoders[0])
    if chosen not in spec.decoders:
        raise StreamConfigError(f"decoder {chosen!r} is not in this export (it has "
                                f"{', '.join(spec.decoders)})")
    if chosen == "ctc" and spec.encoder_output == "encoded" and not spec.ctc_head:
        raise StreamConfigError("decoder 'ctc': the export has no CTC head file")
    return chosen


def _prediction_owner(segmenter: CtcSegmenter) -> RnntSegmenter:
    if not isinstance(segmenter, RnntSegmenter):
        raise TypeError("an RNNT step got a CTC stream")
    return segmenter


def _prediction(segmenter: CtcSegmenter) -> PredictionState:
    state = _prediction_owner(segmenter).prediction
    if state is None:
        raise TypeError("an RNNT stream without prediction state")
    return state


def _final(hyp: Hypothesis, audio_s: float) -> AsrResult:
    return _result("final", hyp, audio_s)


def _result(kind: str, hyp: Hypothesis, audio_s: float) -> AsrResult:
    words = tuple(Word(w.word, min(w.start_s, audio_s), min(w.end_s, audio_s), w.confidence)
                  for w in hyp.words)
    if not words:
        return AsrResult("final" if kind == "final" else "partial", hyp.segment, "", audio_s,
                         audio_s, audio_s)
    return AsrResult("final" if kind == "final" else "partial", hyp.segment, hyp.text,
                     words[0].start_s, words[-1].end_s, audio_s, words)
