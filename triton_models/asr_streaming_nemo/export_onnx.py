"""Export a cache-aware streaming NeMo CTC model for the Triton model (ONNX Runtime).

    .venv-triton/bin/python triton_models/asr_streaming_nemo/export_onnx.py \\
        --nemo build/nemo_small/best.nemo --out triton_models/asr_streaming_nemo/1

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


def load_model(nemo_path: Path) -> Any:
    from nemo.collections.asr.models import ASRModel  # type: ignore[import-not-found]

    if not nemo_path.is_file():
        raise FileNotFoundError(f"no .nemo checkpoint at {nemo_path}")
    model = ASRModel.restore_from(str(nemo_path), map_location="cpu")
    model.eval()
    return model


def streaming_meta(model: Any) -> dict[str, Any]:
    """Feature and streaming geometry read from the model (not hard-coded)."""
    enc = model.encoder
    feat = model.preprocessor.featurizer
    enc.set_default_att_context_size(EXPORT_ATT_CONTEXT)
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
        "export_att_context_size": EXPORT_ATT_CONTEXT,
        "blank_id": int(model.tokenizer.vocab_size),
        "pieces": pieces,
    }


def feature_norm(path: Path | None, n_mels: int) -> tuple[Any, Any]:
    """(mean, std) per mel bin the model was trained with; identity when there is none."""
    if path is None or not path.is_file():
        return np.zeros(n_mels, np.float32), np.ones(n_mels, np.float32)
    with np.load(path) as data:
        return (np.asarray(data["mean"], np.float32), np.asarray(data["std"], np.float32))


def export(nemo_path: Path, out_dir: Path, norm_path: Path | None = None) -> dict[str, Any]:
    model = load_model(nemo_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = streaming_meta(model)
    export_config = {"cache_support": "True"}
    if hasattr(model, "ctc_decoder"):  # hybrid RNNT/CTC: export the CTC branch
        export_config["decoder_type"] = "ctc"
    model.set_export_config(export_config)
    model.export(str(out_dir / ONNX_NAME), onnx_opset_version=17, check_trace=False)
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
    args = parser.parse_args(argv)
    meta = export(args.nemo, args.out, args.feature_norm)
    print(json.dumps({k: v for k, v in meta.items() if k != "pieces"}))


if __name__ == "__main__":
    main()
