"""asr_streaming_nemo's greedy RNNT and its utterance building, without ONNX (pure numpy).

`greedy_batch` (one decoder-joint call over all remaining frames of all streams) is held
to a plain frame-by-frame greedy transducer loop written here, on a fake decoder-joint
whose logits depend on the frame, the last token and the LSTM state; `RnntSegmenter`'s
silence endpointing and EOU are checked on hand-made emissions.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.triton.fixtures import MODEL_REPOSITORY

sys.path.insert(0, str(MODEL_REPOSITORY / "asr_streaming_nemo" / "1"))
from rnnt_decoder import Emission, PredictionState, greedy_batch  # noqa: E402
from streaming_ctc import ModelSpec, RnntSegmenter  # noqa: E402

F32 = npt.NDArray[np.float32]
VOCAB, BLANK, DIM, HIDDEN = 6, 6, 4, 3


class FakeJoint:
    """logits[b, w] = frame @ A + embed[target] @ B + h @ C; the state is a function of the
    target and the old state (an LSTM stand-in). Counts its calls."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.standard_normal((DIM, VOCAB + 1)).astype(np.float32)
        self.b = rng.standard_normal((VOCAB + 1, VOCAB + 1)).astype(np.float32)
        self.c = rng.standard_normal((HIDDEN, VOCAB + 1)).astype(np.float32)
        self.b[:, BLANK] += 1.0  # blank fairly often
        self.mix = rng.standard_normal((VOCAB + 1, HIDDEN)).astype(np.float32)
        self.calls = 0

    def step_state(self, target: int, h: F32) -> F32:
        out: F32 = np.tanh(h * 0.5 + self.mix[target]).astype(np.float32)
        return out

    def logits(self, frame: F32, target: int, h: F32) -> F32:
        out: F32 = frame @ self.a + self.b[target] + h[0] @ self.c
        return out

    def run(self, enc: F32, targets: Any, h: F32, c: F32) -> tuple[F32, F32, F32]:
        self.calls += 1
        out = np.zeros((enc.shape[0], enc.shape[2], VOCAB + 1), np.float32)
        next_h = np.zeros_like(h)
        for b in range(enc.shape[0]):
            target = int(targets[b, 0])
            for w in range(enc.shape[2]):
                out[b, w] = self.logits(enc[b, :, w], target, h[:, b])
            next_h[:, b] = self.step_state(target, h[:, b])
        return out, next_h, c


def plain_greedy(joint: FakeJoint, frames: F32, state: PredictionState,
                 max_symbols: int) -> list[tuple[int, int]]:
    """The textbook loop: per frame, emit while not blank, at most max_symbols."""
    out = []
    h, last = state.h.copy(), state.last_token
    for t in range(frames.shape[0]):
        for _ in range(max_symbols):
            token = int(np.argmax(joint.logits(frames[t], last, h)))
            if token == BLANK:
                break
            h = joint.step_state(last, h)
            last = token
            out.append((token, t))
    state.h, state.last_token = h, last
    return out


@pytest.mark.parametrize("max_symbols", [1, 2, 10])
def test_batched_greedy_equals_the_frame_by_frame_loop(max_symbols: int) -> None:
    rng = np.random.default_rng(max_symbols)
    joint = FakeJoint(seed=3)
    streams = 5
    mine = [PredictionState.fresh((1, HIDDEN), BLANK) for _ in range(streams)]
    plain = [PredictionState.fresh((1, HIDDEN), BLANK) for _ in range(streams)]
    emitted = 0
    for _chunk in range(6):  # the state carries over chunks
        chunks = [rng.standard_normal((int(rng.integers(0, 5)), DIM)).astype(np.float32) * 2
                  for _ in range(streams)]
        got = greedy_batch(joint, chunks, mine, blank_id=BLANK,  # type: ignore[arg-type]
                           max_symbols=max_symbols)
        for index, chunk in enumerate(chunks):
            want = plain_greedy(joint, chunk, plain[index], max_symbols)
            assert [(e.token_id, e.frame) for e in got[index]] == want
            assert mine[index].last_token == plain[index].last_token
            np.testing.assert_allclose(mine[index].h, plain[index].h, atol=1e-6)
            emitted += len(want)
    assert emitted >= 20


def test_one_call_per_emitted_token_per_batch() -> None:
    joint = FakeJoint(seed=4)
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal((8, DIM)).astype(np.float32) for _ in range(4)]
    states = [PredictionState.fresh((1, HIDDEN), BLANK) for _ in chunks]
    got = greedy_batch(joint, chunks, states, blank_id=BLANK,  # type: ignore[arg-type]
                       max_symbols=10)
    assert joint.calls == 1 + max(len(e) for e in got) < 1 + 8 * 4


def spec(eou_id: int = -1) -> ModelSpec:
    pieces = ("\u2581a", "b", "\u2581c", "d", "<EOU>", "\u2581e")
    return ModelSpec(16000, 512, 160, 400, 0.97, 1e-5, 80, 8, 7, 9, (1, 70, 4), (1, 4, 8),
                     ((70, 1),), len(pieces), pieces, decoders=("rnnt",), eou_id=eou_id)


def test_silence_after_the_last_token_ends_the_utterance() -> None:
    seg = RnntSegmenter(spec(), end_silence_frames=3)
    assert seg.feed_tokens([Emission(0, 0, 0.9), Emission(1, 1, 0.8)], 2) == []
    assert seg.feed_tokens([], 2) == []  # frames 2, 3: two silent frames so far
    closed = seg.feed_tokens([Emission(2, 1, 0.7)], 2)  # due at frame 4, token at frame 5
    assert [h.text for h in closed] == ["ab"]
    assert closed[0].words[0].start_s == 0.0 and closed[0].words[0].end_s == pytest.approx(0.16)
    assert seg.pending().text == "c" and seg.segment == 1
    seg.endpoint_until = 6  # END's padding never endpoints
    assert seg.feed_tokens([], 10) == []


def test_eou_token_closes_at_once_and_is_not_text() -> None:
    seg = RnntSegmenter(spec(eou_id=4), end_silence_frames=1000)
    seg.trace = []
    closed = seg.feed_tokens([Emission(0, 0, 0.9), Emission(3, 0, 0.9), Emission(4, 1, 0.9),
                              Emission(5, 2, 0.9)], 3)
    assert [h.text for h in closed] == ["ad"]
    assert seg.pending().text == "e" and seg.segment == 1
    assert seg.trace == [(0, 0), (3, 0), (4, 1), (5, 2)]
    assert seg.feed_tokens([Emission(4, 0, 0.9)], 1)[0].text == "e"
    assert seg.feed_tokens([Emission(4, 0, 0.9)], 1) == []  # nothing open: no empty final


def test_adopted_flush_drops_the_finalised_tokens_but_not_new_speech() -> None:
    """After a speculative flush finalised the open utterance on a copy, the real stream
    does not emit again the tokens it decodes for frames the copy covered, unless the VAD
    heard speech start there; the segment numbers continue from the copy's."""
    seg = RnntSegmenter(spec(), end_silence_frames=1000)
    starts: list[float] = []  # VAD onsets after the finalised utterance (seconds)
    seg.speech_started = lambda after, until_s: any(after / 16000 <= s < until_s
                                                    for s in starts)
    seg.feed_tokens([Emission(0, 0, 0.9), Emission(1, 1, 0.9)], 4)
    trial = seg.clone()
    assert trial.feed_tokens([Emission(2, 1, 0.9)], 4) == []  # the copy runs on silence
    assert seg.pending().text == "ab" and trial.pending().text == "ab c"
    hyp = trial.close()
    seg.adopt_flush(trial, speech_end=int(0.3 * 16000))
    assert hyp.text == "ab c" and seg.segment == trial.segment == 1
    assert not seg.has_tokens
    # the real stream decodes the same frames 4-7 (the copy's): "c" again, not emitted
    assert seg.feed_tokens([Emission(2, 1, 0.9)], 4) == [] and not seg.has_tokens
    starts.append(8 * 0.08)  # new speech starts at frame 8, inside the flushed frames
    seg.flushed_until = 12
    assert seg.feed_tokens([Emission(5, 0, 0.9), Emission(3, 2, 0.9)], 4) == []
    assert seg.pending().text == "ed" and seg.pending().segment == 1


def test_clone_is_independent() -> None:
    seg = RnntSegmenter(spec(), end_silence_frames=1000, prediction=PredictionState.fresh(
        (1, HIDDEN), BLANK))
    seg.trace = []
    seg.feed_tokens([Emission(0, 0, 0.9)], 2)
    twin = seg.clone()
    assert twin.trace is None and twin.prediction is not seg.prediction
    twin.feed_tokens([Emission(1, 0, 0.9)], 2)
    assert seg.pending().text == "a" and seg.frame == 2 and seg.trace == [(0, 0)]
    assert twin.pending().text == "ab" and twin.frame == 4
