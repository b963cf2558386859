"""Recover the served small model's NeMo checkpoint from its ONNX export.

The committed model (`1/encoder_ctc.onnx`, `model.json`, `frontend.npz`, `tokenizer.model`)
was exported from `build/nemo_small4/best.nemo`, which was never committed. This rebuilds
the same `EncDecCTCModelBPE` (train_small.py's config and `DEFAULT_ARCH`, the committed
tokenizer) and loads every weight from the ONNX initializers:
- named initializers (`encoder.layers.0.conv.depthwise_conv.weight`, ...) by name;
- the `onnx::MatMul_*` ones are transposed `nn.Linear` weights; the MatMul node that
  consumes each is named after its module (`/layers.0/self_attn/linear_q/MatMul`), and
  where the linear has a bias the Add after it must read that module's named bias
  (checked; `linear_pos` has none).
Every parameter of the model must be covered exactly once; the remaining buffers
(positional encodings, mel filterbank, window) are rebuilt from the config and the
filterbank/window are checked against `frontend.npz`. The feature normalisation
(frontend.npz mean/std) is written as `feature_norm.npz` beside the `.nemo`, where
train_small.py `--init` and export_onnx.py read it.

    .venv-nemo/bin/python triton_models/asr_streaming_nemo/recover_nemo.py
    # = --model-dir triton_models/asr_streaming_nemo/1 --out <model-dir>/model.nemo --verify

`--verify` re-exports the recovered checkpoint with export_onnx.py (its CLI) into a temp
folder and compares it with the committed ONNX (`compare_exports`): random inputs (several
batch sizes and chunk lengths, random caches) and real streaming (the runtime's own encoder
steps on `--wav` files or a synthesized sentence), max abs diff of log-probs and caches,
and the streamed text of both folders.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MATMUL_PREFIX = "onnx::MatMul_"
RECOVERED_BUFFERS = ("pos_enc.pe", "featurizer.fb", "featurizer.window")
TOLERANCE = 1e-4


class RecoveryError(RuntimeError):
    """The ONNX graph does not map onto the rebuilt model."""


def onnx_weights(onnx_path: Path) -> dict[str, Any]:
    """State-dict entries (name -> float32 array) read from the ONNX initializers."""
    import onnx  # type: ignore[import-not-found]
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    out = {name: value for name, value in inits.items() if not name.startswith("onnx::")}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for name, value in inits.items():
        if name.startswith(MATMUL_PREFIX):
            module = _matmul_module(name, consumers, inits)
            if module + ".weight" in out:
                raise RecoveryError(f"two initializers map to {module}.weight")
            out[module + ".weight"] = np.ascontiguousarray(value.T)
    return out


def _matmul_module(name: str, consumers: dict[str, list[Any]], inits: dict[str, Any]) -> str:
    """`encoder.layers.0.self_attn.linear_q` for the MatMul `/layers.0/self_attn/linear_q/...`,
    its bias (when the Add after it reads a named one) checked to be that module's."""
    nodes = [n for n in consumers.get(name, []) if n.op_type == "MatMul"]
    if len(nodes) != 1 or not nodes[0].name.endswith("/MatMul"):
        raise RecoveryError(f"{name}: expected one MatMul consumer, got {[n.name for n in nodes]}")
    scope = nodes[0].name.strip("/").split("/")[:-1]
    module = "encoder." + ".".join(scope)
    for add in consumers.get(nodes[0].output[0], []):
        biases = [i for i in add.input if i in inits and not i.startswith("onnx::")]
        if add.op_type == "Add" and biases and biases != [module + ".bias"]:
            raise RecoveryError(f"{name}: MatMul of {module} is followed by the bias {biases}")
    return module


def tokenizer_dir(model_file: Path, out: Path) -> Path:
    """A NeMo tokenizer folder for `model_file`: tokenizer.model, and tokenizer.vocab and
    vocab.txt written the way NeMo's create_spt_model writes them."""
    import sentencepiece  # type: ignore[import-not-found]

    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, out / "tokenizer.model")
    proc = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    pieces = [(proc.id_to_piece(i), proc.get_score(i)) for i in range(proc.get_piece_size())]
    (out / "tokenizer.vocab").write_text(
        "".join(f"{p}\t{s:g}\n" for p, s in pieces), encoding="utf-8")
    vocab = [p[1:] if p.startswith("\u2581") and len(p) > 1 else
             p if p.startswith("\u2581") else f"##{p}"
             for p, _ in pieces if p not in ("<s>", "</s>", "<pad>", "<unk>")]
    (out / "vocab.txt").write_text("".join(f"{v}\n" for v in vocab), encoding="utf-8")
    return out


def build_model(model_dir: Path, work: Path) -> Any:
    """train_small.py's model with the folder's tokenizer (nothing trained)."""
    from train_small import DEFAULT_ARCH, Arch
    from train_small import build_model as build

    spec = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
    tok_dir = tokenizer_dir(model_dir / "tokenizer.model", work / "tokenizer")
    arch = Arch(DEFAULT_ARCH.d_model, spec["cache_channel_shape"][0], DEFAULT_ARCH.n_heads,
                len(spec["pieces"]))
    model = build(tok_dir, arch)
    pieces = [model.tokenizer.ids_to_tokens([i])[0] for i in range(model.tokenizer.vocab_size)]
    if pieces != spec["pieces"]:
        raise RecoveryError("the tokenizer's pieces differ from model.json's")
    return model


def load_weights(model: Any, weights: dict[str, Any]) -> None:
    """Copy `weights` into the model: every parameter exactly once, shapes equal."""
    import torch  # type: ignore[import-not-found]

    state = model.state_dict()
    params = {name for name, _ in model.named_parameters()}
    unknown = sorted(set(weights) - set(state))
    missing = sorted(params - set(weights))
    if unknown or missing:
        raise RecoveryError(f"not in the model: {unknown}; not in the ONNX: {missing}")
    left = set(state) - set(weights) - params
    odd = sorted(n for n in left if not n.endswith(RECOVERED_BUFFERS))
    if odd:
        raise RecoveryError(f"buffers neither in the ONNX nor rebuilt from the config: {odd}")
    for name, value in weights.items():
        if tuple(state[name].shape) != value.shape:
            raise RecoveryError(f"{name}: model {tuple(state[name].shape)}, ONNX {value.shape}")
        state[name] = torch.from_numpy(np.array(value, dtype=np.float32))
    model.load_state_dict(state, strict=True)
    model.eval()


def check_frontend(model: Any, frontend: Path) -> None:
    """The rebuilt preprocessor's filterbank and window are the exported ones."""
    feat = model.preprocessor.featurizer
    with np.load(frontend) as data:
        fb_diff = float(np.abs(feat.fb.detach().numpy()[0] - data["fb"]).max())
        win_diff = float(np.abs(feat.window.detach().numpy() - data["window"]).max())
    if max(fb_diff, win_diff) > 1e-6:
        raise RecoveryError(f"preprocessor differs from frontend.npz (fb {fb_diff}, "
                            f"window {win_diff})")


def recover(model_dir: Path, out: Path) -> Path:
    """Write `out` (.nemo) and `feature_norm.npz` beside it; returns `out`."""
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model(model_dir, Path(tmp))
        load_weights(model, onnx_weights(model_dir / "encoder_ctc.onnx"))
        check_frontend(model, model_dir / "frontend.npz")
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save_to(str(out))
    with np.load(model_dir / "frontend.npz") as data:
        np.savez(out.parent / "feature_norm.npz", mean=np.asarray(data["mean"], np.float32),
                 std=np.asarray(data["std"], np.float32))
    return out


# --- verification (onnxruntime + the runtime only) -----------------------------------------


@dataclass(frozen=True, slots=True)
class Comparison:
    """Max abs differences between two exports and the texts each streamed."""

    random_max_diff: float
    stream_max_diff: float
    stream_steps: int
    texts_a: list[str]
    texts_b: list[str]
    meta_diff: list[str]

    @property
    def ok(self) -> bool:
        return (max(self.random_max_diff, self.stream_max_diff) <= TOLERANCE
                and self.texts_a == self.texts_b and not self.meta_diff)

    def to_json(self) -> dict[str, Any]:
        return {"random_max_abs_diff": self.random_max_diff,
                "stream_max_abs_diff": self.stream_max_diff, "stream_steps": self.stream_steps,
                "texts_equal": self.texts_a == self.texts_b, "texts": self.texts_a,
                "model_json_diff": self.meta_diff, "ok": self.ok}


def _session(onnx_path: Path) -> Any:
    import onnxruntime as ort  # type: ignore[import-not-found]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def random_diff(a: Path, b: Path, seed: int = 0) -> float:
    """Max abs diff of every output on random features and caches (several shapes)."""
    spec = json.loads((a / "model.json").read_text(encoding="utf-8"))
    rng = np.random.default_rng(seed)
    sa, sb = _session(a / "encoder_ctc.onnx"), _session(b / "encoder_ctc.onnx")
    layers, window, dim = spec["cache_channel_shape"]
    worst = 0.0
    for batch, frames in ((1, 61), (3, 61), (2, 9), (4, 25)):
        feed = {
            "audio_signal": rng.normal(0, 1, (batch, spec["n_mels"], frames)).astype(np.float32),
            "length": np.full(batch, frames, np.int64),
            "cache_last_channel": rng.normal(0, 1, (batch, layers, window, dim)).astype(
                np.float32),
            "cache_last_time": rng.normal(0, 1, (batch, *spec["cache_time_shape"])).astype(
                np.float32),
            "cache_last_channel_len": rng.integers(0, window + 1, batch).astype(np.int64)}
        for x, y in zip(sa.run(None, feed), sb.run(None, feed), strict=True):
            worst = max(worst, float(np.abs(x.astype(np.float64) - y).max()))
    return worst


class _Recorder:
    """Wraps a recognizer's encoder session, keeping every step's outputs."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.providers = inner.providers
        self.outputs: list[tuple[Any, ...]] = []

    def step(self, *args: Any) -> Any:
        out = self._inner.step(*args)
        self.outputs.append(tuple(np.array(o) for o in out))
        return out


def stream(folder: Path, audios: Sequence[Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Texts and raw encoder outputs of `audios` streamed through the runtime on `folder`."""
    from selfcheck import transcribe_together
    from streaming_ctc import (  # type: ignore[import-not-found,unused-ignore]
        RecognizerConfig,
        StreamingRecognizer,
    )

    rec = StreamingRecognizer(folder, RecognizerConfig(att_context_size=(70, 13), device="cpu",
                                                       threads=1))
    recorder = _Recorder(rec.session)
    rec.session = recorder  # type: ignore[assignment,unused-ignore]
    items = [(str(i), a) for i, a in enumerate(audios)]
    done = transcribe_together(rec, items, 2560, ())
    return [t.text for t in done], recorder.outputs


def meta_diff(a: Path, b: Path) -> list[str]:
    """Keys of a's model.json that b's lacks or holds another value for (b may add keys)."""
    meta_a, meta_b = (json.loads((f / "model.json").read_text(encoding="utf-8")) for f in (a, b))
    return sorted(k for k, v in meta_a.items() if meta_b.get(k) != v)


def same_runtime(a: Path, b: Path, out: Path) -> Path:
    """`a`'s files with b's encoder_ctc.onnx: the graphs compared under one runtime setup
    (an exporter that writes more files or keys changes nothing here)."""
    for path in a.iterdir():
        if path.is_file():
            shutil.copyfile(path, out / path.name)
    shutil.copyfile(b / "encoder_ctc.onnx", out / "encoder_ctc.onnx")
    return out


def compare_exports(a: Path, b: Path, audios: Sequence[Any]) -> Comparison:
    """The encoder graphs of two export folders on random inputs and streamed `audios`
    (runtime files of `a` for both), and their model.json."""
    texts_a, out_a = stream(a, audios)
    with tempfile.TemporaryDirectory() as tmp:
        texts_b, out_b = stream(same_runtime(a, b, Path(tmp)), audios)
    if len(out_a) != len(out_b):
        raise RecoveryError(f"streams took {len(out_a)} and {len(out_b)} encoder steps")
    worst = 0.0
    for step_a, step_b in zip(out_a, out_b, strict=True):
        for x, y in zip(step_a, step_b, strict=True):
            worst = max(worst, float(np.abs(x.astype(np.float64) - y).max()))
    return Comparison(random_diff(a, b), worst, len(out_a), texts_a, texts_b, meta_diff(a, b))


def export_cli(nemo: Path, out: Path) -> None:
    """export_onnx.py through its command line (the same `--nemo X --out DIR` every caller uses)."""
    subprocess.run([sys.executable, str(HERE / "export_onnx.py"), "--nemo", str(nemo),
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL)


def synthesized_audio(text: str, seed: int = 0) -> Any:
    """`text` by espeak-ng through data_gen's phone line (8 kHz, mu-law), 16 kHz float32."""
    from data_gen import DEFAULT_LINE, Voice, phone_line, synthesize

    audio, rate = synthesize(text, Voice("espeak", "en-us", 1.0, 50), None)
    return phone_line(audio, rate, np.random.default_rng(seed), DEFAULT_LINE)


def verify(model_dir: Path, nemo: Path, wavs: Sequence[Path]) -> Comparison:
    from train_small import load_audio

    audios = [load_audio(p) for p in wavs] or [
        synthesized_audio("my account number is four two seven nine one"),
        synthesized_audio("the amount due is twenty dollars", seed=1)]
    with tempfile.TemporaryDirectory() as tmp:
        export_cli(nemo, Path(tmp))
        return compare_exports(model_dir, Path(tmp), audios)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="recover the served model's .nemo from ONNX")
    parser.add_argument("--model-dir", type=Path, default=HERE / "1",
                        help="exported folder (encoder_ctc.onnx, model.json, frontend.npz, "
                             "tokenizer.model)")
    parser.add_argument("--out", type=Path, help="the .nemo to write (default: "
                                                 "<model-dir>/model.nemo)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the re-export and comparison")
    parser.add_argument("--wav", type=Path, action="append", default=[],
                        help="audio streamed through both exports (default: two espeak "
                             "sentences through the phone line)")
    args = parser.parse_args(argv)
    out = recover(args.model_dir, args.out or args.model_dir / "model.nemo")
    report: dict[str, Any] = {"nemo": str(out), "feature_norm": str(out.parent /
                                                                    "feature_norm.npz")}
    if not args.no_verify:
        result = verify(args.model_dir, out, args.wav)
        report["verify"] = result.to_json()
        print(json.dumps(report))
        return 0 if result.ok else 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
