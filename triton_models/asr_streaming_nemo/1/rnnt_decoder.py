"""Greedy RNNT (transducer) decoding of cache-aware streaming encoder frames, batched over
streams, on NeMo's exported decoder+joint ONNX graph (`RNNTDecoderJoint`).

NeMo's greedy rule (GreedyRNNTInfer / the batched label-looping decoder, the same
result): at each encoder frame the joint of the frame and the prediction network's
output for the last emitted token is arg-maxed; a non-blank token is emitted, the
prediction network consumes it (its LSTM state advances) and the same frame is tried
again, up to `max_symbols` tokens per frame; blank moves to the next frame with the
state unchanged. The prediction network starts from a zero state and the blank id as
its start symbol (blank is the padding index of its embedding: a zero vector).

Batching: one decoder-joint call serves every stream that still has frames left in
its chunk, and covers all of those frames at once (the prediction output is the same
for every frame until the next token), so a chunk costs 1 + (tokens emitted) calls,
not one call per frame. Pure computation but for `DecoderJointSession` (ONNX Runtime).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Emission:
    """A token emitted at encoder frame `frame` (index within the chunk) with probability."""

    token_id: int
    frame: int
    prob: float


@dataclass(slots=True)
class PredictionState:
    """Per-stream prediction network state: LSTM h/c [layers, hidden] and the last token."""

    h: F32
    c: F32
    last_token: int

    @classmethod
    def fresh(cls, shape: tuple[int, int], blank_id: int) -> PredictionState:
        return cls(np.zeros(shape, np.float32), np.zeros(shape, np.float32), blank_id)


class DecoderJointSession:
    """ONNX Runtime session of decoder_joint.onnx: encoder_outputs [B, D, W], targets [B, 1],
    target_length [B], input_states_1/2 [L, B, H] -> outputs [B, W, 1, V+1] (joint logits or
    log-probs), prednet_lengths, output_states_1/2 [L, B, H]."""

    def __init__(self, onnx_path: Path, *, providers: Sequence[str], threads: int) -> None:
        import onnxruntime as ort  # type: ignore[import-not-found,unused-ignore]

        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session: Any = ort.InferenceSession(str(onnx_path), options,
                                                  providers=list(providers))

    def run(self, enc: F32, targets: npt.NDArray[np.int32], h: F32,
            c: F32) -> tuple[F32, F32, F32]:
        outputs = self._session.run(None, {
            "encoder_outputs": enc, "targets": targets,
            "target_length": np.ones(targets.shape[0], dtype=np.int32),
            "input_states_1": h, "input_states_2": c})
        logits, _lengths, next_h, next_c = outputs
        return np.asarray(logits[:, :, 0, :], np.float32), next_h, next_c


@dataclass(slots=True)
class _Cursor:
    """Where one stream's greedy search stands within its chunk."""

    row: int
    frames: F32  # [n, D]
    frame: int = 0
    symbols: int = 0  # tokens already emitted at `frame`


def greedy_batch(session: DecoderJointSession, chunks: Sequence[F32],
                 states: Sequence[PredictionState], *, blank_id: int, max_symbols: int,
                 boosts: Sequence[F32 | None] | None = None) -> list[list[Emission]]:
    """Decode each stream's chunk of encoder frames [n_i, D]; updates `states` in place and
    returns each stream's emissions (frame = index within its chunk)."""
    out: list[list[Emission]] = [[] for _ in chunks]
    cursors = [_Cursor(i, f) for i, f in enumerate(chunks) if f.shape[0] > 0]
    while cursors:
        logits, next_h, next_c = _joint(session, cursors, states)
        live: list[_Cursor] = []
        for pos, cur in enumerate(cursors):
            boost = boosts[cur.row] if boosts is not None else None
            scores = logits[pos] if boost is None else logits[pos] + boost
            if _advance(cur, scores, logits[pos], out[cur.row], blank_id, max_symbols):
                state = states[cur.row]
                state.h, state.c = next_h[:, pos], next_c[:, pos]
                state.last_token = out[cur.row][-1].token_id
                live.append(cur)
        cursors = live
    return out


def _joint(session: DecoderJointSession, cursors: Sequence[_Cursor],
           states: Sequence[PredictionState]) -> tuple[F32, F32, F32]:
    """One call over every remaining frame of every cursor ([A, W, V+1], zero-padded)."""
    width = max(c.frames.shape[0] - c.frame for c in cursors)
    dim = cursors[0].frames.shape[1]
    enc = np.zeros((len(cursors), dim, width), np.float32)
    for pos, cur in enumerate(cursors):
        rest = cur.frames[cur.frame:]
        enc[pos, :, :rest.shape[0]] = rest.T
    targets = np.asarray([[states[c.row].last_token] for c in cursors], np.int32)
    h = np.stack([states[c.row].h for c in cursors], axis=1)
    c = np.stack([states[c.row].c for c in cursors], axis=1)
    return session.run(enc, targets, h, c)


def _advance(cur: _Cursor, scores: F32, logits: F32, emitted: list[Emission], blank_id: int,
             max_symbols: int) -> bool:
    """Apply one call's arg-max to a cursor: True when it emitted a token (and must be called
    again with the new state), False when its chunk is done."""
    remaining = cur.frames.shape[0] - cur.frame
    best = np.argmax(scores[:remaining], axis=1)
    start = 1 if cur.symbols >= max_symbols else 0  # frame full: NeMo moves on
    hits = np.flatnonzero(best[start:] != blank_id)
    if hits.size == 0:
        cur.frame = cur.frames.shape[0]
        return False
    offset = start + int(hits[0])
    token = int(best[offset])
    row = logits[offset]
    peak = float(np.max(row))
    prob = float(np.exp(row[token] - peak) / np.sum(np.exp(row - peak)))
    cur.symbols = cur.symbols + 1 if offset == 0 else 1
    cur.frame += offset
    emitted.append(Emission(token, cur.frame, prob))
    return True
