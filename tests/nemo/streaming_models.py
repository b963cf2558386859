"""Checkpoints from NeMo's own cache-aware streaming FastConformer configs, for the reference
tests: a SentencePiece tokenizer made here, seeded random weights with the output layer
rescaled so greedy decoding emits varied tokens, saved as .nemo; plus NeMo's reference
streaming (CacheAwareStreamingAudioBuffer + conformer_stream_step) and test audio.

The configs are copies of NeMo's examples/asr/conf/fastconformer/... YAMLs (configs/README.md);
`build_checkpoint` keeps their architecture and overrides only sizes (small), the trained
look-aheads (multi-lookahead [[70,13],[70,6],[70,1],[70,0]] as the configs describe) and the
datasets (none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from omegaconf import OmegaConf

CONFIGS = Path(__file__).resolve().parent / "configs"
CONFIG_FILES = {
    "ctc": "fastconformer_ctc_bpe_streaming.yaml",
    "rnnt": "fastconformer_transducer_bpe_streaming.yaml",
    "hybrid": "fastconformer_hybrid_transducer_ctc_bpe_streaming.yaml",
}
LOOKAHEADS = ([70, 13], [70, 6], [70, 1], [70, 0])
SENTENCES = (
    "hello my account number is four two seven nine one",
    "please transfer me to the billing department",
    "i would like to check the status of my order",
    "can you call me back tomorrow morning",
    "thank you very much goodbye",
    "my card was charged twice for the same order",
)
RATE_HZ = 16000
Audio = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Size:
    """Encoder / decoder sizes; `None` keeps the config's value (the full-size model)."""

    n_layers: int | None = 2
    d_model: int | None = 64
    n_heads: int | None = 2
    conv_channels: int | None = 32
    pred_hidden: int | None = 64


SMALL = Size()
FULL = Size(None, None, None, None, None)


def make_tokenizer(folder: Path, vocab_size: int, eou: bool) -> Path:
    from nemo.collections.common.tokenizers.sentencepiece_tokenizer import create_spt_model

    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "text.txt"
    text.write_text("\n".join(SENTENCES * 20) + "\n", encoding="utf-8")
    create_spt_model(str(text), vocab_size, 10000, True, tokenizer_type="bpe",
                     output_dir=str(folder / "tok"),
                     user_defined_symbols=["<EOU>"] if eou else None)
    return folder / "tok"


def model_config(kind: str, tokenizer: Path, size: Size) -> Any:
    cfg = OmegaConf.load(CONFIGS / CONFIG_FILES[kind]).model
    cfg.tokenizer.dir = str(tokenizer)
    for split in ("train_ds", "validation_ds", "test_ds"):
        cfg[split] = None
    enc = cfg.encoder
    for key, value in (("n_layers", size.n_layers), ("d_model", size.d_model),
                       ("n_heads", size.n_heads),
                       ("subsampling_conv_channels", size.conv_channels)):
        if value is not None:
            enc[key] = value
    enc.att_context_size = [list(a) for a in LOOKAHEADS]
    enc.att_context_probs = [1.0 / len(LOOKAHEADS)] * len(LOOKAHEADS)
    if kind != "ctc" and size.pred_hidden is not None:
        cfg.model_defaults.pred_hidden = size.pred_hidden
        cfg.model_defaults.joint_hidden = size.pred_hidden
    return cfg


def build_checkpoint(folder: Path, kind: str, *, size: Size = SMALL, seed: int = 0,
                     eou: bool = False, vocab_size: int = 48, eou_rate: float = 0.03,
                     calibration: Audio | None = None) -> Path:
    """A .nemo of `kind` (ctc, rnnt, hybrid) with seeded random weights, output layers
    rescaled (see `liven`) on `calibration` audio (default: 3 s of `speechlike`)."""
    from nemo.collections.asr.models import (
        EncDecCTCModelBPE,
        EncDecHybridRNNTCTCBPEModel,
        EncDecRNNTBPEModel,
    )

    classes = {"ctc": EncDecCTCModelBPE, "rnnt": EncDecRNNTBPEModel,
               "hybrid": EncDecHybridRNNTCTCBPEModel}
    cfg = model_config(kind, make_tokenizer(folder, vocab_size, eou), size)
    torch.manual_seed(seed)
    model = classes[kind](cfg=cfg)
    model.eval()
    audio = speechlike(3.0, seed=seed + 100) if calibration is None else calibration
    liven(model, audio, seed=seed)
    if eou:
        make_eou_fire(model, audio, eou_rate)
    path = folder / f"{kind}.nemo"
    model.save_to(str(path))
    return path


def _offline_encoded(model: Any, audio: Audio) -> torch.Tensor:
    signal = torch.from_numpy(audio).unsqueeze(0)
    mel, mel_len = model.preprocessor(input_signal=signal,
                                      length=torch.tensor([audio.size]))
    encoded, _ = model.encoder(audio_signal=mel, length=mel_len)
    return encoded  # [1, D, T]


def _set_blank_rate(layer: torch.nn.Module, hidden: torch.Tensor, blank: int, unk: int,
                    seed: int, blank_rate: float = 0.5) -> None:
    """Random output weights on the centred input, <unk> never wins, and the blank bias set
    so blank is the arg-max on about `blank_rate` of the rows of `hidden` [N, H] (frames, or
    frames x prediction states): the arg-max then follows the frame, not one token whose
    weights happen to match the inputs' mean."""
    gen = torch.Generator().manual_seed(seed)
    weight = layer.weight  # [V+1, H] (Linear) or [V+1, H, 1] (1x1 conv)
    centred = hidden - hidden.mean(dim=0, keepdim=True)
    scale = 1.0 / float(centred.norm(dim=1).mean().clamp(min=1e-6))
    new = torch.randn(weight.shape, generator=gen) * scale * 3.0
    flat = new.reshape(new.shape[0], -1)
    with torch.no_grad():
        weight.copy_(new)
        layer.bias.copy_(-(hidden.mean(dim=0) @ flat.T))
        logits = hidden @ flat.T + layer.bias
        others = torch.cat([logits[:, :blank], logits[:, blank + 1:]], dim=1)
        margin = logits[:, blank] - others.max(dim=1).values
        layer.bias[blank] -= float(torch.quantile(margin, 1.0 - blank_rate))
        layer.bias[unk] = -1e4


def liven(model: Any, audio: Audio, seed: int) -> None:
    """Random weights decode to all blank or one token repeated: give the output layers
    (CTC head; RNNT joint's last layer) weights whose arg-max varies with the frame, and a
    blank bias that makes about half the frames blank."""
    blank = int(model.tokenizer.vocab_size)
    unk = int(model.tokenizer.token_to_id("<unk>"))
    with torch.no_grad():
        encoded = _offline_encoded(model, audio)
    ctc = getattr(model, "ctc_decoder", None)
    if ctc is None and not hasattr(model, "joint"):
        ctc = model.decoder
    if ctc is not None:
        _set_blank_rate(ctc.decoder_layers[0], encoded[0].T, blank, unk, seed)
    if hasattr(model, "joint"):
        hidden = _joint_hidden(model, encoded)
        _set_blank_rate(model.joint.joint_net[-1], hidden, blank, unk, seed + 1, 0.85)


def make_eou_fire(model: Any, audio: Audio, rate: float = 0.03) -> None:
    """An EOU model: raise the <EOU> logit of every output layer so it is the arg-max on about
    `rate` of the (frame, state) rows: random weights then end utterances now and then."""
    eou = int(model.tokenizer.token_to_id("<EOU>"))
    with torch.no_grad():
        encoded = _offline_encoded(model, audio)
    layers = []
    if hasattr(model, "joint"):
        layers.append((model.joint.joint_net[-1], _joint_hidden(model, encoded)))
    ctc = getattr(model, "ctc_decoder", None) or (None if hasattr(model, "joint")
                                                  else model.decoder)
    if ctc is not None:
        layers.append((ctc.decoder_layers[0], encoded[0].T))
    for layer, hidden in layers:
        with torch.no_grad():
            flat = layer.weight.reshape(layer.weight.shape[0], -1)
            logits = hidden @ flat.T + layer.bias
            others = torch.cat([logits[:, :eou], logits[:, eou + 1:]], dim=1)
            margin = logits[:, eou] - others.max(dim=1).values
            layer.bias[eou] -= float(torch.quantile(margin, 1.0 - rate))


def _joint_hidden(model: Any, encoded: torch.Tensor) -> torch.Tensor:
    """The joint's last-layer input [T * (V+1), H] for every frame with the prediction
    network's output after the start symbol and after each single token."""
    captured: list[torch.Tensor] = []
    last = model.joint.joint_net[-1]
    hook = last.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
    vocab = int(model.tokenizer.vocab_size)
    try:
        with torch.no_grad():
            targets = torch.arange(vocab).reshape(1, vocab)
            pred, _, _ = model.decoder(targets=targets, target_length=torch.tensor([vocab]))
            model.joint.joint(encoded.transpose(1, 2), pred.transpose(1, 2))
    finally:
        hook.remove()
    return captured[0].reshape(-1, captured[0].shape[-1])


def speechlike(seconds: float, seed: int = 0, pauses: Sequence[tuple[float, float]] = ()
               ) -> Audio:
    """Deterministic audio whose spectrum keeps changing (gliding harmonics, noise bursts,
    syllable-rate envelope), silent in `pauses` (start_s, end_s)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
    pitch = 120 + 60 * np.sin(2 * np.pi * 0.9 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE_HZ
    voiced = sum(np.sin(k * phase) / k * (1 + np.sin(2 * np.pi * (0.3 + 0.2 * k) * t))
                 for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6)), 0, None)
    noise = rng.standard_normal(t.size) * (np.sin(2 * np.pi * 1.7 * t) > 0.6)
    audio = 0.08 * voiced * envelope + 0.05 * noise
    for start, end in pauses:
        audio[int(start * RATE_HZ):int(end * RATE_HZ)] = 0.0
    return np.asarray(audio, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class Reference:
    """NeMo's streaming result: tokens with their (first) encoder frames, each token's last
    frame (CTC: the end of its run of frames; RNNT: its frame), frames per chunk (CTC), text."""

    tokens: tuple[tuple[int, int], ...]
    last_frames: tuple[int, ...]
    chunk_frames: tuple[int, ...]
    text: str


def nemo_stream(model: Any, audio: Audio, att_context: Sequence[int], decoder: str
                ) -> Reference:
    """NeMo's cache-aware streaming of `audio` (speech_to_text_cache_aware_streaming_infer.py:
    CacheAwareStreamingAudioBuffer chunks, conformer_stream_step per chunk, the first chunk
    without dropping pre-encoded frames). The buffer gets the preprocessor's valid frames
    (append_processed_signal), not the one padding frame past the valid length that
    append_audio would add."""
    from nemo.collections.asr.parts.utils.streaming_utils import CacheAwareStreamingAudioBuffer

    if hasattr(model, "ctc_decoder"):
        model.change_decoding_strategy(decoder_type=decoder, verbose=False)
    model.encoder.set_default_att_context_size(list(att_context))
    model.encoder.setup_streaming_params()
    buffer = CacheAwareStreamingAudioBuffer(model, pad_and_drop_preencoded=False)
    with torch.no_grad():
        mel, mel_len = buffer.preprocess_audio(audio)
        buffer.append_processed_signal(mel[:, :, :int(mel_len[0])])
        return _run_buffer(model, buffer, decoder)


def _run_buffer(model: Any, buffer: Any, decoder: str) -> Reference:
    channel, time_cache, channel_len = model.encoder.get_initial_cache_state(batch_size=1)
    hyps: Any = None
    preds: Any = None
    chunk_frames: list[int] = []
    drop = model.encoder.streaming_cfg.drop_extra_pre_encoded
    for step, (chunk, lengths) in enumerate(buffer):
        before = 0 if preds is None else len(preds[0])
        preds, texts, channel, time_cache, channel_len, hyps = model.conformer_stream_step(
            processed_signal=chunk, processed_signal_length=lengths,
            cache_last_channel=channel, cache_last_time=time_cache,
            cache_last_channel_len=channel_len, keep_all_outputs=buffer.is_buffer_empty(),
            previous_hypotheses=hyps, previous_pred_out=preds,
            drop_extra_pre_encoded=0 if step == 0 else drop, return_transcription=True)
        if decoder == "ctc":
            chunk_frames.append(len(preds[0]) - before)
    if decoder == "ctc":
        return _ctc_reference(model, preds[0].tolist(), tuple(chunk_frames), texts[0])
    hyp = hyps[0]
    tokens = tuple((int(t), int(f)) for t, f in zip(hyp.y_sequence.tolist(),
                                                    hyp.timestamp.tolist(), strict=True))
    return Reference(tokens, tuple(f for _, f in tokens), (),
                     model.tokenizer.ids_to_text(hyp.y_sequence.tolist()))


def _ctc_reference(model: Any, frames: list[int], chunk_frames: tuple[int, ...],
                   text: Any) -> Reference:
    blank = int(model.tokenizer.vocab_size)
    tokens: list[tuple[int, int]] = []
    ends: list[int] = []
    last = -1
    for index, tok in enumerate(frames):
        if tok != blank and tok != last:
            tokens.append((tok, index))
            ends.append(index)
        elif tok != blank:
            ends[-1] = index
        last = tok
    plain = text if isinstance(text, str) else text.text
    return Reference(tuple(tokens), tuple(ends), chunk_frames, plain)


def count_encoder_frames(monkeypatch: Any, runtime: Any) -> list[int]:
    """Wrap ``runtime.encoder_step`` (streaming_ctc) so that every encoder step's frame
    count per stream is appended to the returned list (cleared by the caller as needed)."""
    counts: list[int] = []
    step = runtime.encoder_step

    def counting(*args: Any, **kwargs: Any) -> Any:
        frames = step(*args, **kwargs)
        counts.extend(int(f.shape[0]) for f in frames)
        return frames

    monkeypatch.setattr(runtime, "encoder_step", counting)
    return counts
