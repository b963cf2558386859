"""Export a cache-aware streaming NeMo model (CTC, RNNT or hybrid RNNT/CTC) for the Triton
model (ONNX Runtime).

    .venv-nemo/bin/python triton_models/asr_streaming_nemo/export_onnx.py \\
        --nemo build/nemo_small/best.nemo --out triton_models/asr_streaming_nemo/1 \\
        [--decoder rnnt|ctc]

CTC models (EncDecCTCModel) as before, plus `encoder_ctc_first.onnx`. RNNT models
(EncDecRNNTModel) and hybrids (EncDecHybridRNNTCTCModel) write instead:
- `encoder.onnx` / `encoder_first.onnx`: the cache-aware encoder (same inputs as below)
  returning the encoder output [B, D, T'] (not log-probs) and the next caches;
- `decoder_joint.onnx` (RNNT head): NeMo's own decoder+joint export (`RNNTDecoderJoint`):
  encoder_outputs [B, D, W], targets [B, 1], target_length [B], LSTM states [L, B, H] x2 ->
  joint outputs [B, W, 1, V+1], the next states;
- `ctc_head.npz` (hybrid CTC head): the 1x1 conv weight [V+1, D] and bias.
`--decoder` keeps one head of a hybrid (default: both; the Triton parameter `decoder`
chooses at load time); asking a model for a head it has not fails.
The `*_first.onnx` graphs run NeMo's first chunk (sampling_frames[0] + subsampling*r mel
frames, no pre-encode cache, nothing dropped after the subsampling), so the runtime's
chunks equal CacheAwareStreamingAudioBuffer's from the first one on.

Writes into `--out`:
- `encoder_ctc.onnx`: audio_signal [B, 80, T] log-mel, length [B], cache_last_channel
  [B, L, C, D], cache_last_time [B, L, D, K-1], cache_last_channel_len [B] ->
  logprobs [B, T', V+1], encoded_lengths [B] and the three next caches.
  Traced with the largest trained look-ahead ([70, 13], chunk 14 frames): fed one
  chunk of r+1 encoder frames per call after a full 70-frame cache window, the
  chunked_limited mask is the same for every look-ahead r <= 13, so this one graph
  serves all att_context_size values the model was trained with.
- `tokenizer.model`: the SentencePiece model.
- `frontend.npz`: mel filterbank [80, 257] and analysis window [400] of the preprocessor,
  and the per-bin feature mean/std the model was trained with (train_small.py's
  feature_norm.npz; identity for models trained on raw log-mels).
- `model.json`: everything the runtime needs (feature and streaming geometry, vocabulary).
A graph over protobuf's 2 GB limit (the 0.6B FastConformer: 2.4 GB of float32 weights) is
written as `<name>.onnx` plus its weights in one `<name>.onnx.data` beside it (ONNX external
data; ONNX Runtime reads it from the same folder) instead of the exporter's file per tensor.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

EXPORT_ATT_CONTEXT = [70, 13]
ONNX_NAME = "encoder_ctc.onnx"
DECODERS = ("rnnt", "ctc")
EOU_PIECES = ("<eou>", "<EOU>")


class ExportError(ValueError):
    """A checkpoint this export cannot serve (the message says why)."""


def load_model(nemo_path: Path) -> Any:
    if not nemo_path.is_file():
        raise FileNotFoundError(f"no .nemo checkpoint at {nemo_path}")
    from nemo.collections.asr.models import ASRModel  # type: ignore[import-not-found]

    model = ASRModel.restore_from(str(nemo_path), map_location="cpu")
    model.eval()
    return model


def check_streaming(model: Any, nemo_path: Path) -> list[int]:
    """The att_context_size to export with (largest trained look-ahead); ExportError when the
    encoder is not a cache-aware streaming one."""
    enc = getattr(model, "encoder", None)
    style = getattr(enc, "att_context_style", None)
    sizes = [list(map(int, a)) for a in getattr(enc, "att_context_size_all", None) or []]
    conv = list(getattr(enc, "conv_context_size", None) or [])
    causal = len(conv) == 2 and int(conv[1]) == 0
    if style != "chunked_limited" or not sizes or min(a[0] for a in sizes) < 0 or not causal:
        raise ExportError(
            f"{nemo_path}: not a cache-aware streaming checkpoint (encoder "
            f"{type(enc).__name__}: att_context_style={style!r}, att_context_size={sizes}, "
            f"conv_context_size={conv}); export needs an encoder trained with NeMo's "
            "cache-aware streaming config: att_context_style chunked_limited, a finite left "
            "context, conv_context_size causal (examples/asr/conf/fastconformer/"
            "cache_aware_streaming/)")
    left = max(a[0] for a in sizes)
    return max((a for a in sizes if a[0] == left), key=lambda a: a[1])


def check_frontend(model: Any, nemo_path: Path) -> None:
    """The runtime computes NeMo's log-mel without per-utterance normalisation (what
    streaming needs): refuse a preprocessor it would not reproduce."""
    feat = model.preprocessor.featurizer
    normalize = feat.normalize if feat.normalize not in (None, "None") else "NA"
    settings = {"normalize": normalize, "log": bool(feat.log),
                "mag_power": float(feat.mag_power), "frame_splicing": int(feat.frame_splicing)}
    if settings != {"normalize": "NA", "log": True, "mag_power": 2.0, "frame_splicing": 1}:
        raise ExportError(f"{nemo_path}: preprocessor {settings} is not streamable by the "
                          "runtime (needs normalize NA, log, mag_power 2, frame_splicing 1, "
                          "as NeMo's cache-aware streaming configs)")


def model_heads(model: Any) -> tuple[str, ...]:
    """The decoders a checkpoint has: rnnt (transducer), ctc, or both (hybrid)."""
    rnnt = hasattr(model, "joint") and type(model.decoder).__name__.startswith("RNNT")
    ctc = hasattr(model, "ctc_decoder") or (not rnnt and hasattr(model, "decoder"))
    return tuple(d for d, has in (("rnnt", rnnt), ("ctc", ctc)) if has)


def chosen_heads(heads: tuple[str, ...], asked: str | None, nemo_path: Path) -> tuple[str, ...]:
    if asked is None:
        return heads
    if asked not in DECODERS:
        raise ExportError(f"unknown decoder {asked!r}: rnnt or ctc")
    if asked not in heads:
        raise ExportError(f"{nemo_path} has no {asked} decoder (it has {', '.join(heads)})")
    return (asked,)


def streaming_meta(model: Any, att_context: list[int] | None = None) -> dict[str, Any]:
    """Feature and streaming geometry read from the model (not hard-coded)."""
    att_context = att_context or EXPORT_ATT_CONTEXT
    enc = model.encoder
    feat = model.preprocessor.featurizer
    enc.set_default_att_context_size(att_context)
    enc.setup_streaming_params()
    cfg = enc.streaming_cfg
    cache_channel, cache_time, _ = enc.get_initial_cache_state(batch_size=1)
    sampling = enc.pre_encode.get_sampling_frames()
    pieces = [model.tokenizer.ids_to_tokens([i])[0] for i in range(model.tokenizer.vocab_size)]
    return {
        "sample_rate_hz": int(model.preprocessor._sample_rate),
        "n_fft": int(feat.n_fft), "hop_samples": int(feat.hop_length),
        "win_samples": int(feat.win_length), "preemph": float(feat.preemph or 0.0),
        "mag_power": float(feat.mag_power), "log_guard": float(feat.log_zero_guard_value_fn(
            model.preprocessor.featurizer.fb)), "n_mels": int(feat.nfilt),
        "subsampling_factor": int(enc.subsampling_factor),
        "first_chunk_mel_frames_offset": int(sampling[1] - sampling[0]),
        "pre_encode_cache_frames": int(cfg.pre_encode_cache_size[1]),
        "drop_extra_pre_encoded": int(cfg.drop_extra_pre_encoded),
        "cache_channel_shape": [int(cache_channel.shape[0]), int(cache_channel.shape[2]),
                                int(cache_channel.shape[3])],
        "cache_time_shape": [int(cache_time.shape[0]), int(cache_time.shape[2]),
                             int(cache_time.shape[3])],
        "att_context_sizes": [list(map(int, a)) for a in enc.att_context_size_all],
        "export_att_context_size": list(att_context),
        "sampling_frames": [int(v) for v in sampling],
        "blank_id": int(model.tokenizer.vocab_size),
        "pieces": pieces,
        "eou_id": next((i for i, p in enumerate(pieces) if p in EOU_PIECES), -1),
    }


def rnnt_meta(model: Any) -> dict[str, Any]:
    """Greedy RNNT settings: the prediction network's LSTM state shape, max symbols per frame
    (the checkpoint's decoding config, NeMo's default 10)."""
    greedy = (model.cfg.get("decoding") or {}).get("greedy") or {}
    max_symbols = greedy.get("max_symbols", greedy.get("max_symbols_per_step", 10)) or 10
    if int(model.decoder.blank_idx) != int(model.tokenizer.vocab_size):
        raise ExportError(f"RNNT blank id {model.decoder.blank_idx} is not the vocabulary size")
    return {"onnx": "decoder_joint.onnx", "max_symbols": int(max_symbols),
            "state_shape": [int(model.decoder.pred_rnn_layers), int(model.decoder.pred_hidden)]}


def feature_norm(path: Path | None, n_mels: int) -> tuple[Any, Any]:
    """(mean, std) per mel bin the model was trained with; identity when there is none."""
    if path is None or not path.is_file():
        return np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32)
    with np.load(path) as data:
        return (np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))


def _export_graph(model: Any, path: Path, first: bool) -> None:
    """model.export with caches; `first`: the first-chunk graph (nothing dropped)."""
    drop = model.encoder.streaming_cfg.drop_extra_pre_encoded
    if first:
        model.encoder.streaming_cfg.drop_extra_pre_encoded = 0
    try:
        model.export(str(path), onnx_opset_version=17, check_trace=False)
    finally:
        model.encoder.streaming_cfg.drop_extra_pre_encoded = drop


def _tensors(graph: Any) -> Any:
    """Every tensor of an ONNX graph: initializers and node attributes (Constant values),
    subgraphs included; the exporter writes both kinds as external data."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in [*attr.graphs, *([attr.g] if attr.HasField("g") else [])]:
                yield from _tensors(sub)


def place_graph(src: Path, dst: Path) -> None:
    """Move an exported graph to `dst`. A graph the exporter wrote with external data (over
    2 GB: one file per tensor beside `src`) is saved as `dst` + `dst.name`.data (one file),
    the exporter's tensor files removed."""
    import onnx  # type: ignore[import-not-found,unused-ignore]

    graph = onnx.load(str(src), load_external_data=False)
    locations = {entry.value for tensor in _tensors(graph.graph)
                 if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    if not locations:
        src.replace(dst)
        return
    del graph
    full = onnx.load(str(src), load_external_data=True)
    data = dst.with_name(dst.name + ".data")
    data.unlink(missing_ok=True)
    onnx.save_model(full, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    del full
    data.chmod(dst.stat().st_mode & 0o777)  # onnx writes it 0600; readable like the graph
    for name in locations:
        (src.parent / name).unlink(missing_ok=True)
    if src != dst:
        src.unlink(missing_ok=True)


def export_ctc(model: Any, out_dir: Path, meta: dict[str, Any]) -> None:
    """A CTC model: encoder + CTC head in one graph (log-probs out), as the first exports."""
    model.set_export_config({"cache_support": "True"})
    work = out_dir / "_export"
    work.mkdir(exist_ok=True)
    for first, name in ((False, ONNX_NAME), (True, "encoder_ctc_first.onnx")):
        _export_graph(model, work / name, first=first)
        place_graph(work / name, out_dir / name)
    work.rmdir()
    meta.update(decoders=["ctc"], encoder_onnx=ONNX_NAME,
                encoder_first_onnx="encoder_ctc_first.onnx", encoder_output="logprobs")


def export_heads(model: Any, out_dir: Path, meta: dict[str, Any],
                 heads: tuple[str, ...]) -> None:
    """RNNT / hybrid: the encoder (encoded frames out), the decoder-joint, the CTC head."""
    if hasattr(model, "ctc_decoder"):
        model.set_export_config({"decoder_type": "rnnt"})
    model.set_export_config({"cache_support": "True"})
    work = out_dir / "_export"
    work.mkdir(exist_ok=True)
    for first, name in ((False, "encoder.onnx"), (True, "encoder_first.onnx")):
        _export_graph(model, work / "m.onnx", first=first)
        place_graph(work / "encoder-m.onnx", out_dir / name)
        joint = work / "decoder_joint-m.onnx"
        if "rnnt" in heads and not first:
            place_graph(joint, out_dir / "decoder_joint.onnx")
        joint.unlink(missing_ok=True)
    work.rmdir()
    meta.update(decoders=list(heads), encoder_onnx="encoder.onnx",
                encoder_first_onnx="encoder_first.onnx", encoder_output="encoded")
    if "rnnt" in heads:
        meta["rnnt"] = rnnt_meta(model)
    if "ctc" in heads:
        conv = model.ctc_decoder.decoder_layers[0]
        np.savez(out_dir / "ctc_head.npz",
                 weight=conv.weight.detach().cpu().numpy()[:, :, 0].astype(np.float32),
                 bias=conv.bias.detach().cpu().numpy().astype(np.float32))
        meta["ctc_head"] = "ctc_head.npz"


def export(nemo_path: Path, out_dir: Path, norm_path: Path | None = None,
           decoder: str | None = None) -> dict[str, Any]:
    model = load_model(nemo_path)
    att_context = check_streaming(model, nemo_path)
    check_frontend(model, nemo_path)
    heads = chosen_heads(model_heads(model), decoder, nemo_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = streaming_meta(model, att_context)
    if "rnnt" in model_heads(model):
        export_heads(model, out_dir, meta, heads)
    else:
        export_ctc(model, out_dir, meta)
    feat = model.preprocessor.featurizer
    mean, std = feature_norm(norm_path if norm_path is not None else
                             nemo_path.parent / "feature_norm.npz", meta["n_mels"])
    np.savez(out_dir / "frontend.npz",
             fb=feat.fb.detach().cpu().numpy()[0].astype(np.float32),
             window=feat.window.detach().cpu().numpy().astype(np.float32), mean=mean, std=std)
    proto = model.tokenizer.tokenizer.serialized_model_proto()
    (out_dir / "tokenizer.model").write_bytes(bytes(proto))
    (out_dir / "model.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return meta


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="export the streaming model to ONNX")
    parser.add_argument("--nemo", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--feature-norm", type=Path,
                        help="train_small.py's feature_norm.npz (default: beside --nemo)")
    parser.add_argument("--decoder", help="rnnt or ctc: export only this head of a hybrid "
                        "(default: every head the checkpoint has)")
    args = parser.parse_args(argv)
    try:
        meta = export(args.nemo, args.out, args.feature_norm, args.decoder)
    except (ExportError, FileNotFoundError) as exc:
        raise SystemExit(f"export_onnx: {exc}") from None
    print(json.dumps({k: v for k, v in meta.items() if k != "pieces"}))


if __name__ == "__main__":
    main()
