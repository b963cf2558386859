"""train_small.py's hybrid RNNT + CTC model with an end-of-utterance token (issue 15).

The transducer loss (rnnt_loss.py) must equal NeMo's own (numba) loss in value and gradient;
a hybrid + EOU model trained a few dozen steps on a handful of real synthesized phone-line
sentences must lower its loss, keep an <EOU> piece at the end of every target, export with
both heads and its EOU id, and load and transcribe in the served runtime; --init-encoder
must copy the acoustic layers and refuse another architecture.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "triton_models" / "asr_streaming_nemo"
sys.path.insert(0, str(MODEL))
sys.path.insert(0, str(MODEL / "1"))

import train_small as ts  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
from data_gen import (  # type: ignore[import-not-found,unused-ignore]  # noqa: E402
    Voice,
    phone_line,
    synthesize,
    write_wav,
)
from rnnt_loss import rnnt_loss  # type: ignore[import-not-found,unused-ignore]  # noqa: E402

SENTENCES = [("please reset my router", Voice("espeak", "en-us", 1.0, 50)),
             ("the parcel never arrived", Voice("flite", "slt", 1.0, 0)),
             ("my account number is four two one", Voice("espeak", "en+m7", 1.1, 40)),
             ("can you call me back tomorrow", Voice("flite", "kal", 1.0, 0))]


def _nemo_loss(joint: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
               u: torch.Tensor) -> torch.Tensor:
    from nemo.collections.asr.losses.rnnt import RNNTLoss

    loss = RNNTLoss(num_classes=joint.shape[-1] - 1, loss_name="warprnnt_numba",
                    reduction="mean_batch", loss_kwargs={"fastemit_lambda": 0.0, "clamp": -1.0})
    return loss(log_probs=joint, targets=y, input_lengths=t, target_lengths=u)  # type: ignore[no-any-return]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rnnt_loss_equals_nemo_value_and_gradient(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    batch, frames, tokens, vocab = 4, 19, 6, 9
    joint = torch.randn(batch, frames, tokens + 1, vocab, generator=gen) * 2
    y = torch.randint(0, vocab - 1, (batch, tokens), generator=gen)
    t = torch.tensor([19, 12, 7, 19])
    u = torch.tensor([6, 3, 6, 0])          # a full row, short ones, one with no tokens
    grads = []
    values = []
    for fn in (_nemo_loss, lambda j, yy, tt, uu: rnnt_loss(j, yy, tt, uu, blank=vocab - 1)):
        leaf = joint.clone().requires_grad_(True)
        value = fn(leaf, y, t, u)
        value.backward()
        values.append(float(value))
        grads.append(leaf.grad)
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_rnnt_loss_without_any_token_is_all_blanks() -> None:
    joint = torch.randn(2, 5, 1, 4)
    frames = torch.tensor([5, 3])
    expected = -torch.log_softmax(joint, -1)[..., 0, 3]
    want = (expected[0].sum() + expected[1, :3].sum()) / 2
    got = rnnt_loss(joint, torch.zeros(2, 0, dtype=torch.long), frames, torch.zeros(2), 3)
    assert float(got) == pytest.approx(float(want), rel=1e-6)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hybrid_data")
    (folder / "wav").mkdir()
    rows = []
    for i, (text, voice) in enumerate(SENTENCES):
        audio, rate = synthesize(text, voice, None)
        audio = phone_line(audio, rate, np.random.default_rng(i))
        path = folder / "wav" / f"{i}.wav"
        write_wav(path, audio, 16000)
        rows.append({"audio_filepath": str(path), "duration": audio.size / 16000,
                     "text": text})
    lines = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "train.jsonl").write_text(lines, encoding="utf-8")
    (folder / "heldout.jsonl").write_text(lines, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("hybrid_work")
    done = subprocess.run(
        [sys.executable, str(MODEL / "train_small.py"), "--data", str(data), "--work",
         str(work), "--model", "hybrid", "--eou", "--steps", "40", "--minutes", "5",
         "--eval-every-min", "100", "--vocab-size", "40", "--d-model", "64", "--layers", "2",
         "--lr", "3e-3", "--warmup-steps", "5", "--threads", "2"],
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return work


def _log(work: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines()]


def test_hybrid_eou_checkpoint(trained: Path) -> None:
    from nemo.collections.asr.models import ASRModel, EncDecHybridRNNTCTCBPEModel

    model = ASRModel.restore_from(str(trained / "last.nemo"), map_location="cpu")
    assert isinstance(model, EncDecHybridRNNTCTCBPEModel)
    eou = ts.eou_token(model)
    assert eou >= 0 and model.tokenizer.vocab[eou] == "<EOU>"
    assert model.ctc_loss_weight == pytest.approx(ts.CTC_LOSS_WEIGHT)
    steps = [row for row in _log(trained) if "step" in row]
    assert steps[-1]["step"] == 40 and steps[-1]["loss"] > 0


def test_targets_end_in_eou_and_loss_falls(data: Path, trained: Path) -> None:
    from nemo.collections.asr.models import ASRModel

    rows = ts.read_manifest(data / "train.jsonl")
    trained_model = ASRModel.restore_from(str(trained / "last.nemo"), map_location="cpu")
    fresh = ts.build_model(trained / "tokenizer", ts.Arch(64, 2, 4, 40), "hybrid")
    norm = ts.FeatureNorm.load(trained / "feature_norm.npz")
    losses = []
    for model in (fresh, trained_model):
        examples = norm.apply(ts.featurize(model, rows, "cpu"))
        eou = ts.eou_token(model)
        assert all(e.tokens[-1] == eou and eou not in e.tokens[:-1] for e in examples)
        model.eval()
        with torch.no_grad():
            x, x_len, y, y_len = ts.collate(examples, list(range(len(examples))))
            losses.append(float(ts.training_loss(model, x, x_len, y, y_len, False)))
    assert losses[1] < 0.5 * losses[0], losses


def test_export_has_both_heads_and_the_eou_id(trained: Path, data: Path,
                                             tmp_path: Path) -> None:
    import export_onnx  # type: ignore[import-not-found,unused-ignore]
    from selfcheck import read_wav_16k, transcribe_together  # type: ignore[import-not-found,unused-ignore]
    from streaming_ctc import RecognizerConfig, StreamingRecognizer  # type: ignore[import-not-found,unused-ignore]

    out = tmp_path / "export"
    export_onnx.export(trained / "last.nemo", out)
    meta = json.loads((out / "model.json").read_text())
    assert meta["eou_id"] >= 0 and meta["rnnt"] and meta["ctc_head"] == "ctc_head.npz"
    audio = read_wav_16k(data / "wav" / "0.wav")
    for decoder in ("rnnt", "ctc"):
        rec = StreamingRecognizer(out, RecognizerConfig(att_context_size=(70, 13),
                                                        device="cpu", decoder=decoder))
        (done,) = transcribe_together(rec, [("s0", audio)], 2560, ())
        assert any(r["type"] == "final" for r in done.results), decoder
        assert "<EOU>" not in done.text


def test_init_encoder_copies_the_acoustic_layers(tmp_path: Path, data: Path) -> None:
    from nemo.collections.asr.models import ASRModel

    donor_path = MODEL / "1" / "model.nemo"
    donor = ASRModel.restore_from(str(donor_path), map_location="cpu")
    tok = ts.train_tokenizer([r["text"] for r in ts.read_manifest(data / "train.jsonl")],
                             tmp_path / "tok", 40, eou=True)
    model = ts.build_model(tok, ts.DEFAULT_ARCH, "hybrid")
    assert ts.copy_encoder(model, donor_path) == len(donor.encoder.state_dict())
    for key, value in donor.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value), key
    small = ts.build_model(tok, ts.Arch(64, 2, 4, 40), "hybrid")
    with pytest.raises(SystemExit, match="encoder differs"):
        ts.copy_encoder(small, donor_path)
