"""Train the small cache-aware streaming FastConformer model (CTC, or hybrid RNNT + CTC
with an optional end-of-utterance token) for CI and CPU demos.

Runs in the Triton venv with triton_models/requirements-nemo.txt installed, on CPU or
(`--device cuda`) on a GPU host that has NeMo (see README: how the committed model was
trained).

    nice -n 10 .venv-triton/bin/python triton_models/asr_streaming_nemo/data_gen.py \\
        --out build/nemo_data --n-train 3500 --n-heldout 300
    nice -n 10 .venv-triton/bin/python triton_models/asr_streaming_nemo/train_small.py \\
        --data build/nemo_data --work build/nemo_small --minutes 45 --threads 2

Steps: SentencePiece BPE tokenizer on the training texts; EncDecCTCModelBPE built
from the config below (FastConformer encoder, 4x causal depthwise-striding
subsampling, chunked_limited attention with several look-aheads, causal
convolutions); log-mel features computed once; a plain PyTorch loop (AdamW,
warm-up then cosine by elapsed time, gradient clipping, optional SpecAugment and
dropout, bf16 autocast on CUDA); an
offline held-out WER and a `.nemo` checkpoint every `--eval-every-min`. The
last and the best checkpoints are kept in `--work`. Export and the streaming
evaluation are separate steps (export_onnx.py, selfcheck.py --manifest).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from data_gen import read_wav
from rnnt_loss import rnnt_loss

ATT_CONTEXT_SIZES: list[list[int]] = [[70, 1], [70, 0], [70, 6], [70, 13]]
ATT_CONTEXT_PROBS: list[float] = [0.4, 0.2, 0.2, 0.2]


@dataclass(frozen=True, slots=True)
class Arch:
    """Encoder size."""

    d_model: int = 144
    n_layers: int = 5
    n_heads: int = 4
    vocab_size: int = 128
    subsampling_channels: int = 64
    dropout: float = 0.0
    xscaling: bool = False
    spec_augment: bool = False


DEFAULT_ARCH = Arch()
CTC_LOSS_WEIGHT = 0.3          # hybrid: loss = 0.7 RNNT + 0.3 CTC, as NeMo's hybrid configs
EOU_PIECE = "<EOU>"           # appended to every transcript with --eou (export_onnx finds it)
SPEC_AUGMENT: dict[str, Any] = {
    "_target_": "nemo.collections.asr.modules.SpectrogramAugmentation",
    "freq_masks": 2, "freq_width": 15, "time_masks": 5, "time_width": 0.05,
}


def model_config(tokenizer_dir: Path, arch: Arch) -> dict[str, Any]:
    """A cache-aware streaming FastConformer-CTC config (after NeMo's
    fastconformer_ctc_bpe_streaming.yaml, scaled down, 4x subsampling)."""
    return {
        "sample_rate": 16000,
        "log_prediction": False,
        "ctc_reduction": "mean_batch",
        "skip_nan_grad": False,
        "train_ds": None,
        "validation_ds": None,
        "test_ds": None,
        "tokenizer": {"dir": str(tokenizer_dir), "type": "bpe"},
        "preprocessor": {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": 16000, "normalize": "NA", "window_size": 0.025,
            "window_stride": 0.01, "window": "hann", "features": 80, "n_fft": 512,
            "frame_splicing": 1, "dither": 1e-5, "pad_to": 0,
        },
        "spec_augment": SPEC_AUGMENT if arch.spec_augment else None,
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConformerEncoder",
            "feat_in": 80, "feat_out": -1, "n_layers": arch.n_layers, "d_model": arch.d_model,
            "subsampling": "dw_striding", "subsampling_factor": 4,
            "subsampling_conv_channels": arch.subsampling_channels, "causal_downsampling": True,
            "ff_expansion_factor": 4, "self_attention_model": "rel_pos", "n_heads": arch.n_heads,
            "att_context_size": ATT_CONTEXT_SIZES, "att_context_style": "chunked_limited",
            "att_context_probs": ATT_CONTEXT_PROBS,
            "xscaling": arch.xscaling, "pos_emb_max_len": 512, "conv_kernel_size": 9,
            "conv_norm_type": "layer_norm", "conv_context_size": "causal",
            "dropout": arch.dropout, "dropout_pre_encoder": arch.dropout, "dropout_emb": 0.0,
            "dropout_att": arch.dropout,
            "stochastic_depth_drop_prob": 0.0,
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
            "feat_in": None, "num_classes": -1, "vocabulary": [],
        },
        "optim": None,
    }


def hybrid_config(tokenizer_dir: Path, arch: Arch, pred_hidden: int = 160) -> dict[str, Any]:
    """The same encoder with an RNNT decoder + joint and the CTC head as auxiliary (after
    NeMo's fastconformer_hybrid_transducer_ctc_bpe_streaming.yaml, scaled down)."""
    cfg = model_config(tokenizer_dir, arch)
    ctc_head = cfg.pop("decoder")
    cfg.pop("ctc_reduction")
    cfg.update({
        "model_defaults": {"enc_hidden": arch.d_model, "pred_hidden": pred_hidden,
                           "joint_hidden": pred_hidden},
        "decoder": {
            "_target_": "nemo.collections.asr.modules.RNNTDecoder",
            "normalization_mode": None, "random_state_sampling": False, "blank_as_pad": True,
            "prednet": {"pred_hidden": pred_hidden, "pred_rnn_layers": 1, "t_max": None,
                        "dropout": arch.dropout},
        },
        "joint": {
            "_target_": "nemo.collections.asr.modules.RNNTJoint",
            "log_softmax": None, "preserve_memory": False, "fuse_loss_wer": False,
            "fused_batch_size": 4,
            "jointnet": {"joint_hidden": pred_hidden, "activation": "relu",
                         "dropout": arch.dropout},
        },
        "decoding": {"strategy": "greedy_batch", "greedy": {"max_symbols": 10}},
        "aux_ctc": {"ctc_loss_weight": CTC_LOSS_WEIGHT, "use_cer": False,
                    "ctc_reduction": "mean_batch", "decoder": ctc_head,
                    "decoding": {"strategy": "greedy"}},
        # what training_loss computes (rnnt_loss.py has no FastEmit)
        "loss": {"loss_name": "default", "warprnnt_numba_kwargs": {"fastemit_lambda": 0.0,
                                                                   "clamp": -1.0}},
    })
    return cfg


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """Manifest rows; relative audio paths are taken relative to the manifest's folder
    when they exist there (pack_data.py output), else as given (data_gen.py output)."""
    with path.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    for row in rows:
        audio = Path(row["audio_filepath"])
        if not audio.is_absolute() and (path.parent / audio).is_file():
            row["audio_filepath"] = str(path.parent / audio)
    return rows


def load_audio(path: Path) -> Any:
    """Mono float32 at 16 kHz: WAV through data_gen.read_wav, anything else (pack_data.py's
    8 kHz Opus) through soundfile, resampled with soxr as the gateway does."""
    import soxr

    if path.suffix == ".wav":
        audio, rate = read_wav(path)
    else:
        import soundfile  # type: ignore[import-not-found]

        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    if rate != 16000:
        audio = soxr.resample(audio, rate, 16000).astype(np.float32)
    return audio


def train_tokenizer(texts: Sequence[str], out_dir: Path, vocab_size: int,
                    eou: bool = False) -> Path:
    """SentencePiece BPE via NeMo's helper (writes tokenizer.model, vocab.txt); with `eou`
    the end-of-utterance piece is one of its symbols."""
    from nemo.collections.common.tokenizers.sentencepiece_tokenizer import (  # type: ignore[import-not-found]
        create_spt_model,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = out_dir / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")
    create_spt_model(str(corpus), vocab_size, -1, True, "bpe", output_dir=str(out_dir),
                     user_defined_symbols=[EOU_PIECE] if eou else None)
    return out_dir


@dataclass(frozen=True, slots=True)
class Example:
    """Precomputed log-mel features [80, T] and target token ids."""

    features: Any
    tokens: list[int]
    text: str


def featurize(model: Any, rows: Sequence[dict[str, Any]], device: str) -> list[Example]:
    """Log-mel features through the model's own preprocessor (eval mode: no dither),
    computed on `device` and kept there; audio is decoded in a thread pool."""
    from concurrent.futures import ThreadPoolExecutor

    import torch  # type: ignore[import-not-found]

    model.preprocessor.eval()
    eou_id = eou_token(model)
    out: list[Example] = []
    with ThreadPoolExecutor() as pool, torch.no_grad():
        audios = pool.map(lambda r: load_audio(Path(r["audio_filepath"])), rows)
        for row, audio in zip(rows, audios, strict=True):
            signal = torch.from_numpy(audio).unsqueeze(0).to(device)
            feats, length = model.preprocessor(
                input_signal=signal, length=torch.tensor([signal.shape[1]], device=device)
            )
            # Only the valid frames: the preprocessor returns one more, masked to 0 (a log-mel
            # far louder than speech). Trained with it, the model learnt to emit an
            # utterance's last word on that frame, which streaming never has: it dropped the
            # last word of most utterances (the digits test's final "one").
            valid = feats[0, :, : int(length[0])].clone()
            tokens = model.tokenizer.text_to_ids(row["text"])
            if eou_id >= 0:
                tokens = [*tokens, eou_id]
            out.append(Example(valid, tokens, row["text"]))
    return out


def eou_token(model: Any) -> int:
    """The id of the model's end-of-utterance piece, -1 without one."""
    vocab = list(model.tokenizer.vocab)
    return vocab.index(EOU_PIECE) if EOU_PIECE in vocab else -1


def is_hybrid(model: Any) -> bool:
    return hasattr(model, "ctc_decoder")


def training_loss(model: Any, x: Any, x_len: Any, y: Any, y_len: Any, amp: bool) -> Any:
    """CTC loss, or for a hybrid model (1 - w) x RNNT + w x CTC on the same encoder pass."""
    import torch

    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16,
                        enabled=amp and x.device.type == "cuda"):
        if not is_hybrid(model):
            log_probs, enc_len, _ = model.forward(processed_signal=x,
                                                  processed_signal_length=x_len)
        else:
            encoded, enc_len = model.forward(processed_signal=x, processed_signal_length=x_len)
            decoded, target_len, _ = model.decoder(targets=y, target_length=y_len)
            joint = model.joint(encoder_outputs=encoded, decoder_outputs=decoded)
            log_probs = model.ctc_decoder(encoder_output=encoded)
    ctc = model.ctc_loss if is_hybrid(model) else model.loss
    ctc_loss = ctc(log_probs=log_probs.float(), targets=y, input_lengths=enc_len,
                   target_lengths=y_len)
    if not is_hybrid(model):
        return ctc_loss
    # rnnt_loss.py, not model.loss: NeMo's CPU transducer losses are 100x slower here
    transducer = rnnt_loss(joint, y, enc_len, target_len, blank=model.decoder.blank_idx)
    return (1.0 - model.ctc_loss_weight) * transducer + model.ctc_loss_weight * ctc_loss


def ctc_log_probs(model: Any, x: Any, x_len: Any) -> tuple[Any, Any]:
    """The CTC head's log-probs and lengths (a hybrid model's auxiliary head)."""
    if not is_hybrid(model):
        log_probs, enc_len, _ = model.forward(processed_signal=x, processed_signal_length=x_len)
        return log_probs, enc_len
    encoded, enc_len = model.forward(processed_signal=x, processed_signal_length=x_len)
    return model.ctc_decoder(encoder_output=encoded), enc_len


@dataclass(frozen=True, slots=True)
class FeatureNorm:
    """Global per-mel-bin mean and standard deviation of the training features.

    The model reads (log-mel - mean) / std; the runtime applies the same (frontend.npz).
    Raw log-mels span about -17 (digital silence) to +5; unnormalised they slowed the
    small model's escape from the CTC blank plateau a lot on CPU budgets.
    """

    mean: Any
    std: Any

    @classmethod
    def fit(cls, examples: Sequence[Example]) -> FeatureNorm:
        frames = np.concatenate([e.features.cpu().numpy() for e in examples], axis=1)
        return cls(frames.mean(axis=1).astype(np.float32),
                   np.maximum(frames.std(axis=1), 1e-3).astype(np.float32))

    @classmethod
    def load(cls, path: Path) -> FeatureNorm:
        with np.load(path) as data:
            return cls(np.asarray(data["mean"]), np.asarray(data["std"]))

    def save(self, path: Path) -> None:
        np.savez(path, mean=self.mean, std=self.std)

    def apply(self, examples: Sequence[Example]) -> list[Example]:
        import torch

        device = examples[0].features.device if examples else "cpu"
        mean = torch.from_numpy(self.mean)[:, None].to(device)
        std = torch.from_numpy(self.std)[:, None].to(device)
        return [Example((e.features - mean) / std, e.tokens, e.text) for e in examples]


def batches(
    examples: Sequence[Example], max_frames: int, rng: random.Random, *, shuffle: bool = True
) -> Iterator[list[int]]:
    """Length-bucketed batches of indices (sorted by length; batch order shuffled unless
    `shuffle` is false: shortest first, SortaGrad, for the first epoch)."""
    order = sorted(range(len(examples)), key=lambda i: examples[i].features.shape[1])
    groups: list[list[int]] = []
    current: list[int] = []
    for idx in order:
        frames = examples[idx].features.shape[1]
        if current and frames * (len(current) + 1) > max_frames:
            groups.append(current)
            current = []
        current.append(idx)
    if current:
        groups.append(current)
    if shuffle:
        rng.shuffle(groups)
    yield from groups


def shifted(features: Any, frames: int) -> Any:
    """`features` [80, T] with `frames` copies of its first frame in front: the speech moves
    later by frames x 10 ms, so it falls at another phase of the encoder's 40 ms steps."""
    import torch

    if frames <= 0:
        return features
    return torch.cat([features[:, :1].expand(-1, frames), features], dim=1)


def collate(examples: Sequence[Example], idxs: Sequence[int],
            shifts: Sequence[int] | None = None) -> tuple[Any, Any, Any, Any]:
    import torch

    feats = [shifted(examples[i].features, shifts[n] if shifts else 0)
             for n, i in enumerate(idxs)]
    toks = [examples[i].tokens for i in idxs]
    device = feats[0].device
    max_t = max(f.shape[1] for f in feats)
    max_u = max(len(t) for t in toks)
    x = torch.zeros(len(idxs), feats[0].shape[0], max_t, device=device)
    y = torch.zeros(len(idxs), max_u, dtype=torch.long)
    for row, (f, t) in enumerate(zip(feats, toks, strict=True)):
        x[row, :, : f.shape[1]] = f
        y[row, : len(t)] = torch.tensor(t)
    x_len = torch.tensor([f.shape[1] for f in feats], device=device)
    y_len = torch.tensor([len(t) for t in toks], device=device)
    return x, x_len, y.to(device), y_len


def word_errors(ref: str, hyp: str) -> int:
    """Word-level Levenshtein distance."""
    r, h = ref.split(), hyp.split()
    prev = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        cur = [i] + [0] * len(h)
        for j, hw in enumerate(h, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rw != hw))
        prev = cur
    return prev[-1]


def greedy_text(model: Any, log_probs: Any, length: int) -> str:
    ids = log_probs[:length].argmax(dim=-1).tolist()
    blank = log_probs.shape[-1] - 1
    eou = eou_token(model)
    out: list[int] = []
    last = blank
    for tok in ids:
        if tok != last and tok not in (blank, eou):
            out.append(tok)
        last = tok
    return str(model.tokenizer.ids_to_text(out))


def offline_wer(model: Any, examples: Sequence[Example]) -> float:
    """Greedy WER with the default (first) look-ahead, by the CTC head or, for a hybrid
    model, the RNNT head (the one served by default); chunked attention masks make this
    equal to cache-aware streaming up to the first chunk's padding."""
    import torch

    model.eval()
    errors = words = 0
    with torch.no_grad():
        for start in range(0, len(examples), 32):
            idxs = list(range(start, min(start + 32, len(examples))))
            x, x_len, _, _ = collate(examples, idxs)
            for idx, hyp in zip(idxs, _greedy_texts(model, x, x_len), strict=True):
                errors += word_errors(examples[idx].text, hyp)
                words += len(examples[idx].text.split())
    model.train()
    return errors / max(words, 1)


def _greedy_texts(model: Any, x: Any, x_len: Any) -> list[str]:
    if not is_hybrid(model):
        log_probs, enc_len = ctc_log_probs(model, x, x_len)
        return [greedy_text(model, log_probs[row], int(enc_len[row]))
                for row in range(x.shape[0])]
    encoded, enc_len = model.forward(processed_signal=x, processed_signal_length=x_len)
    hyps = model.decoding.rnnt_decoder_predictions_tensor(encoder_output=encoded,
                                                          encoded_lengths=enc_len)
    return [" ".join(w for w in str(h.text).replace(EOU_PIECE, " ").split()) for h in hyps]


@dataclass(frozen=True, slots=True)
class Schedule:
    """Linear warm-up in steps, then cosine decay over the wall-time budget (over
    `total_steps` instead when that is set)."""

    peak_lr: float
    warmup_steps: int
    budget_s: float
    floor: float = 0.05
    total_steps: int = 0

    def lr(self, step: int, elapsed_s: float) -> float:
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        progress = (min(step / self.total_steps, 1.0) if self.total_steps > 0
                    else min(elapsed_s / self.budget_s, 1.0))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.peak_lr * (self.floor + (1.0 - self.floor) * cosine)


@dataclass(frozen=True, slots=True)
class TrainOptions:
    minutes: float
    eval_every_min: float
    max_frames: int
    peak_lr: float
    warmup_steps: int
    seed: int
    amp: bool = False
    time_shift: int = 0
    sorted_first_epoch: bool = True   # SortaGrad: from scratch only (not with --init)
    max_steps: int = 0                # > 0: also stop after this many steps (finetune.py)

    def finished(self, step: int, elapsed_s: float) -> bool:
        return elapsed_s >= self.minutes * 60 or 0 < self.max_steps <= step


def _log(work: Path, row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)
    with (work / "train_log.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def train_loop(
    model: Any, train: Sequence[Example], heldout: Sequence[Example], work: Path,
    opts: TrainOptions,
) -> float:
    """Train until the time budget runs out; returns the best offline held-out WER."""
    import torch

    optim = torch.optim.AdamW(model.parameters(), lr=opts.peak_lr, betas=(0.9, 0.98),
                              weight_decay=1e-3)
    sched = Schedule(opts.peak_lr, opts.warmup_steps, opts.minutes * 60,
                     total_steps=opts.max_steps)
    rng = random.Random(opts.seed)
    t0 = time.monotonic()
    next_eval = opts.eval_every_min * 60
    step, epoch, best = 0, 0, float("inf")
    losses: list[float] = []
    model.train()
    while not opts.finished(step, time.monotonic() - t0):
        epoch += 1
        for idxs in batches(train, opts.max_frames, rng,
                             shuffle=epoch > 1 or not opts.sorted_first_epoch):
            elapsed = time.monotonic() - t0
            if opts.finished(step, elapsed):
                break
            for group in optim.param_groups:
                group["lr"] = sched.lr(step, elapsed)
            # no draws at time_shift 0: runs without it keep their batch order for a seed
            shifts = [rng.randint(0, opts.time_shift) for _ in idxs] if opts.time_shift else None
            x, x_len, y, y_len = collate(train, idxs, shifts)
            loss = training_loss(model, x, x_len, y, y_len, opts.amp)
            optim.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            losses.append(float(loss))
            step += 1
            if elapsed >= next_eval:
                best = _checkpoint(model, heldout, work, step, epoch, elapsed, losses, best)
                losses = []
                next_eval += opts.eval_every_min * 60
    elapsed = time.monotonic() - t0
    return _checkpoint(model, heldout, work, step, epoch, elapsed, losses, best)


def _checkpoint(
    model: Any, heldout: Sequence[Example], work: Path, step: int, epoch: int,
    elapsed_s: float, losses: Sequence[float], best: float,
) -> float:
    wer = offline_wer(model, heldout)
    model.save_to(str(work / "last.nemo"))
    if wer < best:
        model.save_to(str(work / "best.nemo"))
        best = wer
    _log(work, {"step": step, "epoch": epoch, "minutes": round(elapsed_s / 60, 2),
                "loss": round(float(np.mean(losses)), 4) if losses else None,
                "heldout_wer_offline": round(wer, 4), "best": round(best, 4)})
    return best


def build_model(tokenizer_dir: Path, arch: Arch, kind: str = "ctc") -> Any:
    """A new EncDecCTCModelBPE (`ctc`) or EncDecHybridRNNTCTCBPEModel (`hybrid`)."""
    from nemo.collections.asr.models import (  # type: ignore[import-not-found]
        EncDecCTCModelBPE,
        EncDecHybridRNNTCTCBPEModel,
    )
    from omegaconf import OmegaConf  # type: ignore[import-not-found]

    if kind == "hybrid":
        return EncDecHybridRNNTCTCBPEModel(cfg=OmegaConf.create(hybrid_config(tokenizer_dir,
                                                                              arch)))
    if kind != "ctc":
        raise ValueError(f"unknown model kind {kind!r} (ctc or hybrid)")
    return EncDecCTCModelBPE(cfg=OmegaConf.create(model_config(tokenizer_dir, arch)))


def copy_encoder(model: Any, source: Path) -> int:
    """Start `model`'s encoder from another checkpoint's (same architecture: a new
    tokenizer or head keeps the acoustic layers); returns the tensors copied."""
    from nemo.collections.asr.models import ASRModel

    donor = ASRModel.restore_from(str(source), map_location="cpu")
    state = donor.encoder.state_dict()
    mine = model.encoder.state_dict()
    bad = [k for k in mine if k not in state or state[k].shape != mine[k].shape]
    if bad:
        raise SystemExit(f"--init-encoder {source}: encoder differs ({len(bad)} tensors, "
                         f"e.g. {bad[0]})")
    model.encoder.load_state_dict(state)
    return len(state)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="train the small streaming CTC model")
    parser.add_argument("--data", type=Path, action="append", required=True,
                        help="data_gen.py (or pack_data.py) output folder; repeatable: every "
                             "folder's train.jsonl is used, held-out comes from the first")
    parser.add_argument("--work", type=Path, required=True, help="checkpoints and logs")
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--steps", type=int, default=0,
                        help="also stop after this many steps (0: time budget only)")
    parser.add_argument("--eval-every-min", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-frames", type=int, default=6000, help="mel frames per batch")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--d-model", type=int, default=DEFAULT_ARCH.d_model)
    parser.add_argument("--layers", type=int, default=DEFAULT_ARCH.n_layers)
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_ARCH.vocab_size)
    parser.add_argument("--heldout-eval", type=int, default=150, help="held-out rows per eval")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--init", type=Path, help="continue from this .nemo checkpoint")
    parser.add_argument("--model", choices=("ctc", "hybrid"), default="ctc",
                        help="from scratch: CTC, or hybrid RNNT + CTC (NeMo's streaming "
                             "hybrid; export serves either head)")
    parser.add_argument("--eou", action="store_true",
                        help="from scratch: an <EOU> piece ends every transcript, so the "
                             "model learns to emit end of utterance (finals without a "
                             "silence timer)")
    parser.add_argument("--init-encoder", type=Path,
                        help="from scratch, but the encoder's weights (and feature_norm.npz "
                             "beside it) from this .nemo")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dropout", type=float, default=DEFAULT_ARCH.dropout)
    parser.add_argument("--spec-augment", action="store_true", help="SpecAugment masks")
    parser.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA")
    parser.add_argument("--time-shift", type=int, default=0,
                        help="delay each training example by 0..N feature frames (10 ms), "
                             "drawn anew every step")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    args.work.mkdir(parents=True, exist_ok=True)
    train_rows = [row for folder in args.data for row in read_manifest(folder / "train.jsonl")]
    held_rows = read_manifest(args.data[0] / "heldout.jsonl")[: args.heldout_eval]
    if args.init is not None:  # continue training a checkpoint (its tokenizer and config)
        from nemo.collections.asr.models import ASRModel

        model = ASRModel.restore_from(str(args.init), map_location="cpu")
        if args.spec_augment and model.spec_augmentation is None:
            # built the way the model builds its own (train mode only; export ignores it)
            from omegaconf import OmegaConf

            model.spec_augmentation = model.from_config_dict(OmegaConf.create(SPEC_AUGMENT))
    else:
        tok_dir = train_tokenizer([r["text"] for r in train_rows], args.work / "tokenizer",
                                  args.vocab_size, eou=args.eou)
        arch = Arch(args.d_model, args.layers, 4, args.vocab_size, dropout=args.dropout,
                    spec_augment=args.spec_augment)
        model = build_model(tok_dir, arch, args.model)
        if args.init_encoder is not None:
            copy_encoder(model, args.init_encoder)
    model = model.to(args.device)
    params = sum(p.numel() for p in model.parameters())
    t0 = time.monotonic()
    train = featurize(model, train_rows, args.device)
    heldout = featurize(model, held_rows, args.device)
    norm_path = args.work / "feature_norm.npz"
    donor = args.init if args.init is not None else args.init_encoder
    if donor is not None and (donor.parent / "feature_norm.npz").is_file():
        norm = FeatureNorm.load(donor.parent / "feature_norm.npz")
    else:
        norm = FeatureNorm.fit(train)
    norm.save(norm_path)
    train, heldout = norm.apply(train), norm.apply(heldout)
    _log(args.work, {"params": params, "train": len(train), "heldout_eval": len(heldout),
                     "featurize_s": round(time.monotonic() - t0, 1)})
    opts = TrainOptions(args.minutes, args.eval_every_min, args.max_frames, args.lr,
                        args.warmup_steps, args.seed, amp=not args.no_amp,
                        time_shift=args.time_shift, sorted_first_epoch=args.init is None,
                        max_steps=args.steps)
    best = train_loop(model, train, heldout, args.work, opts)
    _log(args.work, {"done": True, "best_offline_wer": round(best, 4)})


if __name__ == "__main__":
    main()
