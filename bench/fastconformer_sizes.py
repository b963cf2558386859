"""FastConformer sizes from the small served model up to the 0.6B architecture, on the
Triton model's runtime (triton_models/asr_streaming_nemo/1/streaming_ctc.py, ONNX Runtime):

1. equivalence: a randomly initialised cache-aware FastConformer of each large size is built
   from NeMo's published cache-aware streaming configs (tests/nemo/configs/, the sizes below),
   saved as .nemo, exported by export_onnx.py, loaded by StreamingRecognizer, and its greedy
   tokens compared chunk by chunk with NeMo's conformer_stream_step driven by
   CacheAwareStreamingAudioBuffer (tests/nemo/streaming_models.nemo_stream) on 4 s of audio,
   at every trained look-ahead;
2. speed: per-chunk time of the runtime's process() (log-mel + encoder + decoder) for 1, 4 and
   16 concurrent streams stepped together (one batched encoder call per round), at [70,1]
   and [70,6], ONNX Runtime CPU with 1 intra-op thread (the served config's cpu_threads),
   p50/p99 over the measured rounds, and the real-time streams one core sustains:
   streams x chunk duration / p50 round time.

Runs in the NeMo venv (not in CI: the 0.6B export alone takes minutes and ~10 GB of disk):

    .venv-nemo/bin/python bench/fastconformer_sizes.py [--sizes small,114m,600m]

Sizes (everything not listed is the config file's value):
- small: the served model (triton_models/asr_streaming_nemo/1/, CTC, 2.7M parameters, 4x
  subsampling: 40 ms frames);
- 114m: fastconformer_hybrid_transducer_ctc_bpe_streaming.yaml as published (17 layers,
  d_model 512, 8 heads, 8x dw_striding subsampling, conv kernel 9, pred/joint 640; the
  stt_en_fastconformer_hybrid_large_streaming architecture), RNNT head served;
- 600m: fastconformer_transducer_bpe_streaming.yaml with n_layers 24, d_model 1024 (the
  FastConformer XL / Nemotron speech streaming 0.6B encoder size), n_heads 8,
  subsampling_conv_channels 256, ff_expansion 4, conv kernel 9, pred_hidden = joint_hidden 640,
  1 LSTM layer;
both large ones: att_context_size [[70,13],[70,6],[70,1],[70,0]], a 1024-piece SentencePiece
BPE tokenizer (trained here on the repository's README text), seeded random weights with the
output layer rescaled so greedy decoding emits tokens (streaming_models.liven).

Writes bench/results/fastconformer_sizes.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "triton_models" / "asr_streaming_nemo"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(MODEL_DIR / "1"))
sys.path.insert(0, str(MODEL_DIR))

RESULTS = ROOT / "bench" / "results" / "fastconformer_sizes.json"
VOCAB = 1024
SPEED_LOOKAHEADS = ((70, 1), (70, 6))
STREAMS = (1, 4, 16)
WARMUP_ROUNDS = 2
MIN_ROUNDS, MAX_ROUNDS, CONDITION_BUDGET_S = 5, 40, 10.0
EQUIV_AUDIO_S = 4.0
# disk and memory the 0.6B build needs: .nemo + two encoder graphs + the exporter's temp copy
NEEDS = {"114m": (4.0, 5.0), "600m": (14.0, 14.0)}  # (GB RAM available, GB disk free)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1e6
    return 0.0


def resources_ok(size: str, work: Path) -> tuple[bool, str]:
    ram, disk = NEEDS[size]
    have_ram = _available_gb()
    have_disk = shutil.disk_usage(work).free / 1e9
    why = f"RAM available {have_ram:.1f} GB (needs {ram}), disk free {have_disk:.1f} GB " \
          f"(needs {disk})"
    return have_ram >= ram and have_disk >= disk, why


def readme_tokenizer(folder: Path) -> Path:
    """A 1024-piece BPE tokenizer trained on the repository's README text (lower case)."""
    from nemo.collections.common.tokenizers.sentencepiece_tokenizer import create_spt_model

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for path in (ROOT / "README.md", MODEL_DIR / "README.md", ROOT / "bench" / "README.md"):
        for line in path.read_text(encoding="utf-8").lower().splitlines():
            words = re.sub(r"[^a-z' ]+", " ", line).split()
            if words:
                lines.append(" ".join(words))
    text = folder / "text.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    create_spt_model(str(text), VOCAB, 100000, True, tokenizer_type="bpe",
                     output_dir=str(folder / "tok"))
    return folder / "tok"


def size_spec(size: str) -> tuple[str, Any]:
    from tests.nemo import streaming_models as sm

    if size == "114m":
        return "hybrid", sm.FULL
    return "rnnt", sm.Size(n_layers=24, d_model=1024, n_heads=8, conv_channels=None,
                           pred_hidden=None)


def build(size: str, work: Path) -> tuple[Any, Path, dict[str, Any]]:
    """The random checkpoint of `size` (model in memory, .nemo path, what was built)."""
    import torch
    from nemo.collections.asr.models import EncDecHybridRNNTCTCBPEModel, EncDecRNNTBPEModel

    from tests.nemo import streaming_models as sm

    kind, spec = size_spec(size)
    cfg = sm.model_config(kind, readme_tokenizer(work / "tokenizer"), spec)
    torch.manual_seed(0)
    t0 = time.monotonic()
    cls = EncDecHybridRNNTCTCBPEModel if kind == "hybrid" else EncDecRNNTBPEModel
    model = cls(cfg=cfg)
    model.eval()
    sm.liven(model, sm.speechlike(3.0, seed=100), seed=0)
    path = work / f"{size}.nemo"
    model.save_to(str(path))
    enc = cfg.encoder
    info = {"kind": kind, "config": sm.CONFIG_FILES[kind],
            "encoder": {k: (list(map(list, v)) if k == "att_context_size" else v)
                        for k, v in ((k, enc[k]) for k in (
                            "n_layers", "d_model", "n_heads", "subsampling",
                            "subsampling_factor", "subsampling_conv_channels",
                            "ff_expansion_factor", "conv_kernel_size", "att_context_style",
                            "att_context_size"))},
            "pred_hidden": int(cfg.model_defaults.pred_hidden),
            "joint_hidden": int(cfg.model_defaults.joint_hidden),
            "vocab_size": int(model.tokenizer.vocab_size),
            "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "encoder_parameters_m": round(
                sum(p.numel() for p in model.encoder.parameters()) / 1e6, 1),
            "build_s": round(time.monotonic() - t0, 1),
            "nemo_gb": round(path.stat().st_size / 1e9, 2)}
    return model, path, info


def export(nemo: Path, out: Path) -> float:
    import export_onnx

    t0 = time.monotonic()
    export_onnx.export(nemo, out, decoder="rnnt")
    gc.collect()
    return round(time.monotonic() - t0, 1)


def equivalence(model: Any, folder: Path) -> list[dict[str, Any]]:
    """Runtime vs NeMo tokens per chunk at every trained look-ahead."""
    from tests.nemo import streaming_models as sm
    from tests.nemo.test_streaming_reference import stream_runtime

    audio = sm.speechlike(EQUIV_AUDIO_S, seed=1)
    rows = []
    for att in sm.LOOKAHEADS:
        t0 = time.monotonic()
        ref = sm.nemo_stream(model, audio, att, "rnnt")
        t_ref = time.monotonic() - t0
        states, _ = stream_runtime(folder, [audio], att, "rnnt")
        got = list(states[0].decoder.trace)
        want = list(ref.tokens)
        frames = att[1] + 1

        def per_chunk(tokens: list[tuple[int, int]], frames: int = frames) -> list[list[int]]:
            chunks = int(audio.size / sm.RATE_HZ / 0.08 / frames) + 2
            out: list[list[int]] = [[] for _ in range(chunks)]
            for tok, frame in tokens:
                out[min(frame // frames, chunks - 1)].append(tok)
            return out

        a, b = per_chunk(got), per_chunk(want)
        rows.append({"att_context_size": list(att), "chunks": len(b),
                     "nemo_tokens": len(want), "distinct_tokens": len({t for t, _ in want}),
                     "equal": got == want,
                     "chunks_equal": sum(x == y for x, y in zip(a, b, strict=True)),
                     "first_differing_chunk": next(
                         (i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y),
                         None),
                     "nemo_tokens_per_chunk": b, "nemo_s": round(t_ref, 1)})
    return rows


class _Timed:
    """Wraps a session: seconds spent in its method `name`."""

    def __init__(self, inner: Any, name: str) -> None:
        self._inner = inner
        self._name = name
        self.seconds = 0.0
        self.providers = getattr(inner, "providers", ())

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._inner, attr)
        if attr != self._name:
            return value

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
        return timed


def speed(folder: Path, decoder: str, att: tuple[int, int], streams: int) -> dict[str, Any]:
    from streaming_ctc import RecognizerConfig, StreamingRecognizer, StreamInput

    from tests.nemo import streaming_models as sm

    rec = StreamingRecognizer(folder, RecognizerConfig(
        att_context_size=att, end_pad_ms=0, endpointing="blank", decoder=decoder,
        device="cpu", threads=1, max_batch=32))
    enc = _Timed(rec.session, "step")
    rec.session = enc  # type: ignore[assignment]
    joint = None
    if rec._joint is not None:
        joint = rec._joint = _Timed(rec._joint, "run")  # type: ignore[assignment]
    chunk = rec.geometry.chunk_mel_frames * rec.spec.hop_samples
    chunk_s = chunk / rec.spec.sample_rate_hz
    rounds_max = WARMUP_ROUNDS + MAX_ROUNDS
    audios = [sm.speechlike(chunk_s * (rounds_max + 1), seed=10 + i) for i in range(streams)]
    states = [rec.new_stream() for _ in range(streams)]
    totals: list[float] = []
    encs: list[float] = []
    joints: list[float] = []
    started = time.monotonic()
    for r in range(rounds_max):
        items = [StreamInput(s, a[r * chunk:(r + 1) * chunk], False)
                 for s, a in zip(states, audios, strict=True)]
        e0, j0 = enc.seconds, joint.seconds if joint else 0.0
        t0 = time.perf_counter()
        rec.process(items)
        elapsed = time.perf_counter() - t0
        if r >= WARMUP_ROUNDS:
            totals.append(elapsed)
            encs.append(enc.seconds - e0)
            joints.append((joint.seconds if joint else 0.0) - j0)
            if len(totals) >= MIN_ROUNDS and time.monotonic() - started > CONDITION_BUDGET_S:
                break
    p50, p99 = (float(np.percentile(totals, q)) for q in (50, 99))
    return {"att_context_size": list(att), "chunk_ms": round(chunk_s * 1000),
            "streams": streams, "rounds": len(totals),
            "round_p50_ms": round(p50 * 1000, 1), "round_p99_ms": round(p99 * 1000, 1),
            "encoder_p50_ms": round(float(np.percentile(encs, 50)) * 1000, 1),
            "decoder_joint_p50_ms": round(float(np.percentile(joints, 50)) * 1000, 1),
            "rtf_p50": round(p50 / chunk_s, 3),
            "realtime_streams_per_core_p50": round(streams * chunk_s / p50, 1),
            "realtime_streams_per_core_p99": round(streams * chunk_s / p99, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description="FastConformer sizes: equivalence and speed")
    parser.add_argument("--sizes", default="small,114m,600m")
    parser.add_argument("--work", type=Path,
                        help="build and keep the exports here (default: a temp folder, removed)")
    parser.add_argument("--phase", choices=("all", "equivalence", "speed"), default="all",
                        help="speed alone reuses the exports of an earlier run in --work "
                             "(its equivalence results are kept from the results file)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    started = _now()
    doc: dict[str, Any] = {
        "benchmark": "fastconformer_sizes", "started_at": started,
        "environment": {"cores": os.cpu_count(), "git_commit": _git_commit(),
                        "platform": platform.platform(), "python": platform.python_version(),
                        "torch": torch.__version__, "load_average_at_start": [
                            round(x, 2) for x in os.getloadavg()],
                        "gpu": "none in this session (CPU only)"},
        "runtime": "streaming_ctc.StreamingRecognizer, ONNX Runtime CPUExecutionProvider, "
                   "1 intra-op thread, endpointing blank, streams batched per round",
        "sizes": {}}
    try:
        import onnxruntime

        doc["environment"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="fc-sizes-")
    work = args.work or Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if args.phase == "speed" and earlier:
        doc["equivalence_run"] = {k: earlier.get(k) for k in ("started_at", "environment")}
    elif args.phase == "equivalence":  # sizes not rerun keep their earlier results
        doc["sizes"].update({k: v for k, v in earlier.get("sizes", {}).items()
                             if k not in args.sizes.split(",") and "equivalence" in v})
    try:
        for size in args.sizes.split(","):
            entry: dict[str, Any] = {}
            doc["sizes"][size] = entry
            if size == "small":
                folder, decoder = MODEL_DIR / "1", "ctc"
                spec = json.loads((folder / "model.json").read_text())
                entry.update(kind="ctc (served model)", folder=str(folder.relative_to(ROOT)),
                             parameters_m=2.7, encoder=spec["cache_channel_shape"])
            elif args.phase == "speed":
                entry.update({k: v for k, v in earlier.get("sizes", {}).get(size, {}).items()
                              if k != "speed"})
                folder, decoder = work / size / "export", "rnnt"
                if not (folder / "model.json").is_file():
                    entry["skipped"] = f"no export in {folder} (run --phase equivalence first)"
                    continue
            else:
                ok, why = resources_ok(size, work)
                entry["resources"] = why
                if not ok:
                    entry["skipped"] = why
                    print(f"{size}: skipped ({why})", flush=True)
                    continue
                model, nemo, info = build(size, work / size)
                entry.update(info)
                print(f"{size}: built {info['parameters_m']}M in {info['build_s']} s",
                      flush=True)
                folder, decoder = work / size / "export", "rnnt"
                entry["export_s"] = export(nemo, folder)
                entry["export_gb"] = round(sum(p.stat().st_size for p in folder.iterdir())
                                           / 1e9, 2)
                entry["export_files"] = sorted(p.name for p in folder.iterdir())
                print(f"{size}: exported in {entry['export_s']} s", flush=True)
                entry["equivalence"] = equivalence(model, folder)
                print(f"{size}: equivalence "
                      f"{[(r['att_context_size'], r['equal']) for r in entry['equivalence']]}",
                      flush=True)
                del model
                gc.collect()
                nemo.unlink()
            if args.phase != "equivalence":
                entry["speed"] = []
                for att in SPEED_LOOKAHEADS:
                    for n in STREAMS:
                        row = speed(folder, decoder, att, n)
                        entry["speed"].append(row)
                        print(f"{size} {att} x{n}: {row}", flush=True)
            RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    finally:
        if tmp is not None:
            tmp.cleanup()
    doc["finished_at"] = _now()
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
