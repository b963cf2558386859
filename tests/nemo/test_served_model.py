"""The served small model (triton_models/asr_streaming_nemo/1/) streams as NeMo streams its
committed model.nemo, chunk for chunk from the first chunk on.

NeMo's reference (tests/nemo/streaming_models.py: CacheAwareStreamingAudioBuffer +
conformer_stream_step, the first chunk shorter and without pre-encode cache) gets the
features the model was trained on: the preprocessor's log-mel normalised by the served
frontend.npz mean/std (train_small.py's feature_norm), as the runtime computes them. An
export without the first-chunk graph (`encoder_first_onnx`) pads the first chunk with zero
frames instead and differs from NeMo in the first chunks: `test_runtime_equals_nemo` fails
on it (checked on the export committed before 2026-12-03).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.nemo import streaming_models as sm

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "triton_models" / "asr_streaming_nemo"
SERVED = MODEL / "1"
sys.path.insert(0, str(SERVED))
sys.path.insert(0, str(MODEL))

import recover_nemo  # noqa: E402
import streaming_ctc  # noqa: E402
from streaming_ctc import (  # noqa: E402
    ModelFiles,
    RecognizerConfig,
    StreamingRecognizer,
    StreamInput,
)

REQUEST_SAMPLES = 2560
LOOKAHEADS = ([70, 13], [70, 6], [70, 1], [70, 0])
MIN_TOKENS = 8
FIRST_CHUNKS = 4
LOGPROB_TOLERANCE = 1e-3  # float32 ONNX Runtime vs torch: about 1e-5 here


@pytest.fixture(scope="module")
def nemo_model() -> Any:
    from nemo.collections.asr.models import ASRModel

    model = ASRModel.restore_from(str(SERVED / "model.nemo"), map_location="cpu")
    model.eval()
    return model


@pytest.fixture(scope="module")
def audio() -> sm.Audio:
    """Two phone-line sentences back to back, speech from the first 100 ms on."""
    first = recover_nemo.synthesized_audio("my account number is four two seven nine one")
    second = recover_nemo.synthesized_audio("the amount due is twenty dollars", seed=1)
    return np.concatenate([first, second]).astype(np.float32)


def _normalised_buffer(model: Any, audio: sm.Audio, att: list[int], folder: Path) -> Any:
    """NeMo's streaming buffer of `audio` holding the normalised log-mel (see module doc)."""
    from nemo.collections.asr.parts.utils.streaming_utils import CacheAwareStreamingAudioBuffer

    with np.load(folder / "frontend.npz") as data:
        mean = torch.from_numpy(np.asarray(data["mean"], np.float32))[None, :, None]
        std = torch.from_numpy(np.asarray(data["std"], np.float32))[None, :, None]
    model.encoder.set_default_att_context_size(list(att))
    model.encoder.setup_streaming_params()
    buffer = CacheAwareStreamingAudioBuffer(model, pad_and_drop_preencoded=False)
    with torch.no_grad():
        mel, mel_len = buffer.preprocess_audio(audio)
        buffer.append_processed_signal((mel[:, :, :int(mel_len[0])] - mean) / std)
    return buffer


def nemo_stream_normalised(model: Any, audio: sm.Audio, att: list[int],
                           folder: Path = SERVED) -> sm.Reference:
    """sm.nemo_stream with the served feature normalisation applied to the buffer's mel."""
    buffer = _normalised_buffer(model, audio, att, folder)
    with torch.no_grad():
        return sm._run_buffer(model, buffer, "ctc")


def nemo_chunk_logprobs(model: Any, audio: sm.Audio, att: list[int], chunks: int,
                        folder: Path = SERVED) -> list[np.ndarray]:
    """CTC log-probs [T_i, V+1] of NeMo's first `chunks` streaming chunks, computed as
    conformer_stream_step does (encoder.cache_aware_stream_step, then the CTC decoder; the
    first chunk drops no pre-encoded frames)."""
    buffer = _normalised_buffer(model, audio, att, folder)
    channel, time_cache, channel_len = model.encoder.get_initial_cache_state(batch_size=1)
    drop = model.encoder.streaming_cfg.drop_extra_pre_encoded
    out: list[np.ndarray] = []
    with torch.no_grad():
        for step, (chunk, lengths) in enumerate(buffer):
            if step == chunks:
                break
            encoded, enc_len, channel, time_cache, channel_len = (
                model.encoder.cache_aware_stream_step(
                    processed_signal=chunk, processed_signal_length=lengths,
                    cache_last_channel=channel, cache_last_time=time_cache,
                    cache_last_channel_len=channel_len,
                    keep_all_outputs=buffer.is_buffer_empty(),
                    drop_extra_pre_encoded=0 if step == 0 else drop))
            logprobs = model.decoder(encoder_output=encoded)
            out.append(logprobs[0, :int(enc_len[0])].numpy())
    return out


def runtime_chunk_logprobs(folder: Path, audio: sm.Audio, att: list[int],
                           monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The runtime's CTC log-probs of every encoder step (the frames it decodes)."""
    got: list[np.ndarray] = []
    step = streaming_ctc.encoder_step

    def keeping(*args: Any, **kwargs: Any) -> Any:
        frames = step(*args, **kwargs)
        got.extend(np.array(f) for f in frames)
        return frames

    monkeypatch.setattr(streaming_ctc, "encoder_step", keeping)
    rec = StreamingRecognizer(folder, RecognizerConfig(
        att_context_size=(att[0], att[1]), end_pad_ms=0, device="cpu", threads=1))
    rec.process([StreamInput(rec.new_stream(), audio, True)])
    return got


def stream_runtime(folder: Path, audio: sm.Audio, att: list[int],
                   monkeypatch: pytest.MonkeyPatch) -> tuple[list[tuple[int, int]], list[int]]:
    """The runtime's (token, frame) trace and encoder frames per step, 160 ms requests."""
    counts = sm.count_encoder_frames(monkeypatch, streaming_ctc)
    rec = StreamingRecognizer(folder, RecognizerConfig(
        att_context_size=(att[0], att[1]), end_pad_ms=0, end_silence_ms=1e6, device="cpu",
        threads=1))
    state = rec.new_stream()
    state.decoder.trace = []
    for start in range(0, audio.size, REQUEST_SAMPLES):
        rec.process([StreamInput(state, audio[start:start + REQUEST_SAMPLES],
                                 start + REQUEST_SAMPLES >= audio.size)])
    return list(state.decoder.trace), counts


def test_served_export_has_the_first_chunk_graph() -> None:
    spec = json.loads((SERVED / "model.json").read_text(encoding="utf-8"))
    assert spec["encoder_first_onnx"]
    assert (SERVED / spec["encoder_first_onnx"]).is_file()
    assert ModelFiles(SERVED).check().encoder_first_onnx == spec["encoder_first_onnx"]
    rec = StreamingRecognizer(SERVED, RecognizerConfig(att_context_size=(70, 1), device="cpu",
                                                       threads=1))
    assert rec.geometry.first_chunk_mel_frames > 0


@pytest.mark.parametrize("att", LOOKAHEADS, ids=lambda a: f"{a[0]}_{a[1]}")
def test_runtime_equals_nemo(nemo_model: Any, audio: sm.Audio, att: list[int],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    ref = nemo_stream_normalised(nemo_model, audio, att)
    trace, counts = stream_runtime(SERVED, audio, att, monkeypatch)
    assert len(ref.tokens) >= MIN_TOKENS
    assert len(counts) >= 5
    assert counts == list(ref.chunk_frames)
    first_chunks = sum(ref.chunk_frames[:3])
    assert [t for t in trace if t[1] < first_chunks] == [
        t for t in ref.tokens if t[1] < first_chunks]
    assert trace == list(ref.tokens)


@pytest.mark.parametrize("att", LOOKAHEADS, ids=lambda a: f"{a[0]}_{a[1]}")
def test_first_chunks_logprobs_equal_nemo(nemo_model: Any, audio: sm.Audio, att: list[int],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The values, not only the arg-max: NeMo's first chunks' log-probs, frame for frame."""
    want = nemo_chunk_logprobs(nemo_model, audio, att, FIRST_CHUNKS)
    got = runtime_chunk_logprobs(SERVED, audio, att, monkeypatch)[:FIRST_CHUNKS]
    assert [g.shape for g in got] == [w.shape for w in want]
    worst = max(float(np.abs(g - w).max()) for g, w in zip(got, want, strict=True))
    assert worst <= LOGPROB_TOLERANCE
