"""asr_streaming_nemo's speculative flush (endpointing = vad, vad_flush): once the VAD has
ended an utterance, a copy of the stream's state is run on silence to complete the encoder
chunk and its hypothesis is the final, instead of waiting for the real chunk to fill.

Small CTC and RNNT checkpoints from NeMo's streaming configs (random weights made to emit
varied tokens, as tests/nemo/test_streaming_reference.py), exported and run by the runtime
(ONNX Runtime) in 160 ms requests, with the flush on and off on the same audio. The VAD is
an oracle (probability 1 inside the scripted speech intervals, 0 elsewhere) so that what
is checked is the flush, not Silero's view of synthetic audio. Decisions are counted in
requests (audio time), not wall time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.nemo import streaming_models as sm

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "triton_models" / "asr_streaming_nemo"
sys.path.insert(0, str(MODEL_DIR / "1"))
sys.path.insert(0, str(MODEL_DIR))
sys.path.insert(0, str(ROOT / "triton_models"))

import export_onnx  # noqa: E402
from common.vad import FRAME_SAMPLES, SpeechEndpoint  # noqa: E402
from streaming_ctc import (  # noqa: E402
    RecognizerConfig,
    StreamingRecognizer,
    StreamInput,
    StreamState,
)

REQUEST = 2560  # 160 ms, the gateway's chunk
SEEDS = {"ctc": 0, "rnnt": 1}
LOOKAHEAD_S = 0.24
Span = tuple[float, float]


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            folder = tmp_path_factory.mktemp(kind)
            nemo = sm.build_checkpoint(folder, kind, seed=SEEDS[kind])
            export_onnx.export(nemo, folder / "export")
            made[kind] = folder / "export"
        return made[kind]
    return get


def oracle(speech: Sequence[Span]) -> Callable[[Any], list[float]]:
    """VAD levels: per completed 32 ms frame, 1.0 when its centre is inside a span."""
    position, received = [0], [0]

    def levels(audio: Any) -> list[float]:
        received[0] += len(audio)
        out = []
        while position[0] + FRAME_SAMPLES <= received[0]:
            centre = (position[0] + FRAME_SAMPLES / 2) / sm.RATE_HZ
            position[0] += FRAME_SAMPLES
            out.append(1.0 if any(a <= centre < b for a, b in speech) else 0.0)
        return out
    return levels


def script(parts: Sequence[tuple[str, float, int]]) -> tuple[sm.Audio, list[Span]]:
    """("speech" | "silence", seconds, seed) parts -> audio and its speech spans."""
    audio: list[sm.Audio] = []
    spans: list[Span] = []
    at = 0.0
    for kind, seconds, seed in parts:
        if kind == "speech":
            audio.append(sm.speechlike(seconds, seed=seed))
            spans.append((at, at + seconds))
        else:
            audio.append(np.zeros(int(seconds * sm.RATE_HZ), np.float32))
        at += seconds
    return np.concatenate(audio), spans


@dataclass(frozen=True, slots=True)
class Run:
    finals: list[tuple[int, Any]]  # (request index, final)
    decoded_s: list[float]         # per request: the real decoder's decoded audio after it
    state: StreamState
    frame_s: float
    marks: list[tuple[int, int]]   # per request: decoder frame, flushed_until after it


def run(folder: Path, decoder: str, att: tuple[int, int], audio: sm.Audio,
        speech: Sequence[Span], flush: bool) -> Run:
    rec = StreamingRecognizer(folder, RecognizerConfig(
        att_context_size=att, end_pad_ms=0, end_silence_ms=600, decoder=decoder,
        device="cpu", threads=1, vad_flush=flush, vad_lookahead_ms=LOOKAHEAD_S * 1000))
    state = rec.new_stream()
    state.vad = SpeechEndpoint(oracle(speech), end_silence_ms=200, lookahead_s=LOOKAHEAD_S)
    state.decoder.speech_heard = state.vad.heard_speech
    state.decoder.speech_started = state.vad.speech_since
    state.decoder.trace = []
    finals, decoded, marks = [], [], []
    for index, start in enumerate(range(0, audio.size, REQUEST)):
        end = start + REQUEST >= audio.size
        out = rec.process([StreamInput(state, audio[start:start + REQUEST], end)])[0]
        finals.extend((index, r) for r in out if r.type == "final" and r.text)
        decoded.append(state.decoder.frame * rec.spec.frame_s)
        marks.append((state.decoder.frame, state.decoder.flushed_until))
    return Run(finals, decoded, state, rec.spec.frame_s, marks)


def described(finals: Sequence[tuple[int, Any]], clip_s: Sequence[float] | None = None
              ) -> list[tuple[int, str, list[Any]]]:
    """Segment, text and word times of each final; `clip_s`: times capped per final (a
    final never reaches past the audio received when it was sent)."""
    clips = clip_s or [float("inf")] * len(finals)
    return [(r.segment, r.text,
             [(w.word, round(min(w.start_s, c), 6), round(min(w.end_s, c), 6)) for w in r.words])
            for (_, r), c in zip(finals, clips, strict=True)]


CASES = [("ctc", (70, 13)), ("ctc", (70, 1)), ("rnnt", (70, 13)), ("rnnt", (70, 1))]


@pytest.mark.parametrize(("decoder", "att"), CASES,
                         ids=[f"{d}-{a[0]}_{a[1]}" for d, a in CASES])
def test_flush_final_is_earlier_with_the_words_silence_would_give(
        exports: Callable[[str], Path], decoder: str, att: tuple[int, int]) -> None:
    """Two utterances, each followed by silence: with the flush, every final holds exactly
    the words (and times) the stream gives without it, which is what it produces when the
    audio after the utterance is silence, its times capped at the audio received; the same
    number of finals (no word emitted twice, the next utterance recognised); a final that
    comes earlier comes in the request in which the VAD ended the utterance; with big
    chunks ([70,13]) at least one does (the real stream had to wait for its chunk)."""
    audio, speech = script([("silence", 0.3, 0), ("speech", 2.0, 1), ("silence", 1.5, 0),
                            ("speech", 1.5, 2), ("silence", 1.5, 0)])
    folder = exports(decoder)
    on = run(folder, decoder, att, audio, speech, flush=True)
    off = run(folder, decoder, att, audio, speech, flush=False)
    assert len(off.state.decoder.trace or []) >= 10  # the model emits varied tokens
    assert off.finals, "no final without the flush: nothing to compare"
    assert described(on.finals) == described(off.finals, [r.audio_s for _, r in on.finals])
    assert on.state.decoder.trace == off.state.decoder.trace  # the real stream is untouched
    decisions = [decision_request(end) for _start, end in speech]
    early = 0
    for (k_on, final), (k_off, _) in zip(on.finals, off.finals, strict=True):
        assert k_on <= k_off, final
        if k_on < k_off:  # the real stream could not finalise yet: the copy did
            assert k_on in decisions, (final, k_on, decisions)
            early += 1
    if att[1] >= 6:  # big chunks: the real stream waits for one to fill
        assert early >= 1, (described(on.finals), [k for k, _ in on.finals],
                            [k for k, _ in off.finals])


def decision_request(end_s: float) -> int:
    """The request in which the oracle VAD ends an utterance whose speech ends at `end_s`:
    7 quiet 32 ms frames (end_silence_ms 200) after the first frame centred past it."""
    first_quiet = int(np.ceil((end_s * sm.RATE_HZ - FRAME_SAMPLES / 2) / FRAME_SAMPLES))
    decided = (first_quiet + 7) * FRAME_SAMPLES
    return (decided - 1) // REQUEST


@pytest.mark.parametrize(("decoder", "att"), [("rnnt", (70, 13)), ("ctc", (70, 1))],
                         ids=["rnnt-70_13", "ctc-70_1"])
def test_speech_resuming_inside_the_flushed_frames_is_kept(
        exports: Callable[[str], Path], decoder: str, att: tuple[int, int]) -> None:
    """Speech resumes 0.3 s after the utterance the flush finalised, inside the frames the
    copy decoded on silence; END right after it. The later final holds exactly the real
    stream's tokens from the flush on, less those before the new onset (the VAD's, on its
    32 ms grid) within the copy's frames: tokens of the new speech are all kept, the
    finalised utterance's are not emitted twice."""
    audio, speech = script([("silence", 0.3, 0), ("speech", 2.0, 1), ("silence", 0.3, 0),
                            ("speech", 1.5, 2)])
    on = run(folder := exports(decoder), decoder, att, audio, speech, flush=True)
    off = run(folder, decoder, att, audio, speech, flush=False)
    assert on.state.decoder.trace == off.state.decoder.trace
    assert len(on.finals) == 2, described(on.finals)
    (k, first), (_, later) = on.finals
    flush_frame, flushed_until = on.marks[k]
    assert flushed_until > flush_frame, "the first final was not a flush"
    grid = FRAME_SAMPLES / sm.RATE_HZ
    onset_s = np.ceil((speech[1][0] - grid / 2) / grid) * grid  # the oracle's first frame
    trace = on.state.decoder.trace or []
    kept = [t for t, f in trace
            if f >= flush_frame and ((f + 1) * on.frame_s > onset_s or f >= flushed_until)]
    resumed = [t for t, f in trace
               if flush_frame <= f < flushed_until and (f + 1) * on.frame_s > onset_s]
    assert resumed, "no token of the new speech fell inside the copy's frames"
    pieces = on.state.decoder.spec.pieces
    assert later.text.replace(" ", "") == "".join(pieces[t] for t in kept).replace(
        "\u2581", "")
