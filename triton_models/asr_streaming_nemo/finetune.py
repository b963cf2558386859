"""Fine-tune the served asr_streaming_nemo checkpoint on exported calls and install it as a
new version of the Triton model (issue 19's fine-tune loop).

    .venv-nemo/bin/python triton_models/asr_streaming_nemo/finetune.py \\
        --manifest export/train_manifest.json --dev export/dev_manifest.json \\
        --model-repo triton_models --model asr_streaming_nemo --minutes 10 --lr 1e-4 --seed 1

Steps:
1. Inputs are checked before NeMo is imported: every `--manifest` / `--dev` must exist and
   hold rows (NeMo manifest JSONL: `audio_filepath` relative to the manifest's folder or
   absolute, `duration`, `text` normalised lowercase; other fields are ignored); rows whose
   audio is missing are counted and skipped (all missing: stop); the base version is the
   highest version folder with a `model.nemo` (`--base-version N` to pick one; one without
   `model.nemo` is an error: recover_nemo.py makes it for a folder holding only the ONNX
   export).
2. Text: redaction tags (`[card]`, any `[...]`) drop the row (`--tags drop`, the default:
   its audio is the recorder's tone, which the base model never had to map to nothing) or
   are removed from the text (`--tags strip`). Apostrophes are removed when the tokenizer has
   no piece for them ("don't" -> "dont"). A row that still holds a character the base
   tokenizer cannot spell (the committed small model's 128 pieces have no "q" and no digits)
   is skipped (`--oov skip`) or kept with those characters as `<unk>` (`--oov unk`; the model
   then learns to emit `<unk>`). The tokenizer and feature normalisation of the base are kept.
3. Dev WER before: the base version folder streamed through the runtime (selfcheck's
   `transcribe_together`, 160 ms chunks, 8 streams side by side, `--att-context`), plus
   NeMo's offline forward pass.
4. Training: train_small.py's `featurize`, `FeatureNorm`, `train_loop` (AdamW, warm-up then
   cosine over `--steps` or `--minutes`, random 0-70 ms delays `--time-shift 7` like the
   served checkpoint's last stage); with `--dev` the checkpoint with the best offline dev
   WER is kept (checked every `--eval-every-min` and at the end), else the last.
5. Export with `export_onnx.py --nemo X --out DIR` (its CLI) into `<model>/.<N+1>.tmp-<pid>`,
   copy the base version folder's `*.py` (model.py, streaming_ctc.py, ...), `model.nemo`,
   `feature_norm.npz`, stream the dev set through the exported folder (dev WER after),
   write `finetune.json`, then rename the folder to `<model>/<N+1>` (N: the highest
   version there). `--no-install` leaves the folder in `--work` instead.
config.pbtxt is not touched: choosing the served version (`triton.asr_model_version`,
version_policy) is the gateway's reload; the next steps are printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# never write __pycache__ into the model repository: Triton reloads a served version whose
# folder changed at the next load_model (the gateway's SIGHUP), restarting its live sequences
sys.dont_write_bytecode = True
sys.path.insert(0, str(HERE))

from train_small import read_manifest, word_errors  # noqa: E402

TAG = re.compile(r"\[[^\[\]]*\]")
RUNTIME_CODE = ("model.py", "streaming_ctc.py")
NEMO_NAME = "model.nemo"
NORM_NAME = "feature_norm.npz"
STREAM_CHUNK_SAMPLES = 2560   # 160 ms at 16 kHz, as the gateway sends audio
STREAMS = 8


class FinetuneError(RuntimeError):
    """Bad input: the message says what and where."""


# --- inputs (no NeMo import) ---------------------------------------------------------------


@dataclass(slots=True)
class ManifestStats:
    path: str
    sha256: str
    rows: int
    used: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "rows": self.rows,
                "used": self.used, "skipped": self.skipped}


@dataclass(frozen=True, slots=True)
class TextPolicy:
    """How tags and characters the tokenizer cannot spell are handled."""

    tags: str          # "drop" | "strip"
    oov: str           # "skip" | "unk"
    tokenizer: Any     # sentencepiece.SentencePieceProcessor

    def clean(self, text: str) -> tuple[str | None, str]:
        """(training text, "") or (None, the reason the row is skipped)."""
        if TAG.search(text):
            if self.tags == "drop":
                return None, "redaction_tag"
            text = TAG.sub(" ", text)
        if self.tokenizer.piece_to_id("'") == self.tokenizer.unk_id():
            text = text.replace("'", "")
        text = " ".join(text.split())
        if not text:
            return None, "empty_text"
        if self.oov == "skip" and self.tokenizer.unk_id() in self.tokenizer.encode(text):
            return None, "out_of_vocabulary"
        return text, ""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dev_rows_of(path: Path | None, policy: TextPolicy
                ) -> tuple[list[dict[str, Any]], ManifestStats | None]:
    """The dev rows; an empty dev manifest (export-dataset writes one for an empty split) is
    no dev set: a warning, then no dev WER and the last checkpoint is kept."""
    if path is None:
        return [], None
    if path.is_file() and not path.read_text(encoding="utf-8").strip():
        print(f"warning: dev manifest {path} is empty: no dev WER, the last checkpoint is "
              "kept", file=sys.stderr)
        return [], None
    return load_rows(path, policy)


def load_rows(path: Path, policy: TextPolicy) -> tuple[list[dict[str, Any]], ManifestStats]:
    """Usable rows of one manifest (text cleaned) and what was skipped, and why."""
    if not path.is_file():
        raise FinetuneError(f"manifest not found: {path}")
    try:
        rows = read_manifest(path)
    except (json.JSONDecodeError, KeyError) as exc:
        raise FinetuneError(f"manifest {path} is not NeMo JSONL: {exc}") from exc
    stats = ManifestStats(str(path), sha256(path), len(rows))
    if not rows:
        raise FinetuneError(f"manifest {path} holds no rows")
    out: list[dict[str, Any]] = []
    for row in rows:
        if not Path(row["audio_filepath"]).is_file():
            stats.skip("missing_audio")
            continue
        text, reason = policy.clean(str(row.get("text", "")))
        if text is None:
            stats.skip(reason)
            continue
        out.append({**row, "text": text})
    stats.used = len(out)
    _check_usable(path, stats)
    return out, stats


def _check_usable(path: Path, stats: ManifestStats) -> None:
    missing = stats.skipped.get("missing_audio", 0)
    if missing:
        print(f"finetune: {missing} of {stats.rows} audio files of {path} are missing "
              "(skipped)", file=sys.stderr)
    if missing == stats.rows:
        raise FinetuneError(f"none of the {stats.rows} audio files of {path} exist "
                            "(audio_filepath is relative to the manifest's folder or absolute)")
    if stats.used == 0:
        raise FinetuneError(f"no usable rows in {path}: skipped {stats.skipped}")


def versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def base_version(model_dir: Path, wanted: int | None) -> int:
    """`wanted`, or the highest version folder that has a model.nemo."""
    if not model_dir.is_dir():
        raise FinetuneError(f"model folder not found: {model_dir}")
    if wanted is not None:
        if not (model_dir / str(wanted) / NEMO_NAME).is_file():
            raise FinetuneError(
                f"base version {model_dir / str(wanted)} has no {NEMO_NAME} (fine-tuning needs "
                f"the NeMo checkpoint; recover_nemo.py --model-dir {model_dir / str(wanted)} "
                "rebuilds it from an export of this small model)")
        return wanted
    found = [v for v in versions(model_dir) if (model_dir / str(v) / NEMO_NAME).is_file()]
    if not found:
        raise FinetuneError(f"no version folder of {model_dir} has a {NEMO_NAME}")
    return found[-1]


# --- evaluation ----------------------------------------------------------------------------


def streaming_wer(folder: Path, rows: Sequence[dict[str, Any]],
                  att_context: tuple[int, int]) -> float:
    """WER of `rows` streamed through the runtime on an exported folder (selfcheck's code)."""
    from selfcheck import transcribe_together
    from streaming_ctc import (  # type: ignore[import-not-found,unused-ignore]
        RecognizerConfig,
        StreamingRecognizer,
    )
    from train_small import load_audio

    rec = StreamingRecognizer(folder, RecognizerConfig(att_context_size=att_context,
                                                       device="cpu", threads=1))
    errors = words = 0
    for start in range(0, len(rows), STREAMS):
        group = rows[start:start + STREAMS]
        items = [(r["audio_filepath"], load_audio(Path(r["audio_filepath"]))) for r in group]
        for row, done in zip(group, transcribe_together(rec, items, STREAM_CHUNK_SAMPLES, ()),
                             strict=True):
            errors += word_errors(row["text"], done.text)
            words += len(row["text"].split())
    return round(errors / max(words, 1), 4)


# --- training ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trained:
    nemo: Path
    steps: int
    train_s: float
    offline_dev_wer_before: float | None
    offline_dev_wer_after: float | None


def train(args: argparse.Namespace, base: Path, rows: Sequence[dict[str, Any]],
          dev_rows: Sequence[dict[str, Any]], work: Path) -> Trained:
    import torch  # type: ignore[import-not-found]
    from nemo.collections.asr.models import ASRModel  # type: ignore[import-not-found]
    from train_small import FeatureNorm, TrainOptions, featurize, offline_wer, train_loop

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = ASRModel.restore_from(str(base / NEMO_NAME), map_location="cpu").to(args.device)
    norm = FeatureNorm.load(base / NORM_NAME)
    norm.save(work / NORM_NAME)   # beside the checkpoints: export_onnx.py reads it there
    train_set = norm.apply(featurize(model, rows, args.device))
    dev_set = norm.apply(featurize(model, dev_rows, args.device)) if dev_rows else []
    before = round(offline_wer(model, dev_set), 4) if dev_set else None
    opts = TrainOptions(args.minutes or 1e9, args.eval_every_min, args.max_frames, args.lr,
                        args.warmup_steps, args.seed, amp=str(args.device).startswith("cuda"),
                        time_shift=args.time_shift,
                        sorted_first_epoch=False, max_steps=args.steps or 0)
    t0 = time.monotonic()
    best = train_loop(model, train_set, dev_set, work, opts)
    train_s = time.monotonic() - t0
    last = json.loads((work / "train_log.jsonl").read_text().splitlines()[-1])
    nemo = work / ("best.nemo" if dev_set else "last.nemo")
    return Trained(nemo, int(last["step"]), train_s, before,
                   round(best, 4) if dev_set else None)


# --- install -------------------------------------------------------------------------------


def export_cli(nemo: Path, out: Path) -> None:
    """export_onnx.py through its command line (`--nemo X --out DIR`)."""
    subprocess.run([sys.executable, str(HERE / "export_onnx.py"), "--nemo", str(nemo),
                    "--out", str(out)], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def build_version(staging: Path, base: Path, trained: Trained) -> None:
    """The new version folder's files (everything but finetune.json)."""
    export_cli(trained.nemo, staging)
    # every module of the base version's runtime (model.py imports its siblings), at least
    # RUNTIME_CODE (read_inputs checked those)
    for code in sorted(base.glob("*.py")):
        shutil.copy2(code, staging / code.name)
    shutil.copy2(trained.nemo, staging / NEMO_NAME)
    shutil.copy2(trained.nemo.parent / NORM_NAME, staging / NORM_NAME)


def next_steps(model: str, version: int) -> str:
    return (f"installed version {version} of {model}. To serve it:\n"
            f"  1. gateway config: triton.asr_model_version = \"{version}\"\n"
            "  2. kill -HUP <gateway pid>   (the gateway has Triton load it, waits until it is "
            "ready; new calls use it, live calls keep theirs; config.pbtxt serves the newest "
            "two versions)")


# --- command line --------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="fine-tune the served NeMo model on exported "
                                                 "manifests and install a new Triton version")
    parser.add_argument("--manifest", type=Path, action="append", required=True,
                        help="NeMo manifest JSONL (train split); repeatable")
    parser.add_argument("--dev", type=Path, help="dev manifest: WER before/after, best checkpoint")
    parser.add_argument("--model-repo", type=Path, required=True, help="Triton model repository")
    parser.add_argument("--model", default="asr_streaming_nemo")
    parser.add_argument("--base-version", type=int,
                        help="default: the highest version folder with a model.nemo")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int, help="optimizer steps")
    budget.add_argument("--minutes", type=float, help="wall-time budget of the training loop")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--max-frames", type=int, default=6000, help="mel frames per batch")
    parser.add_argument("--time-shift", type=int, default=7,
                        help="delay each example by 0..N mel frames (10 ms) per step")
    parser.add_argument("--eval-every-min", type=float, default=5.0)
    parser.add_argument("--tags", choices=("drop", "strip"), default="drop",
                        help="rows with redaction tags: skipped, or the tags removed")
    parser.add_argument("--oov", choices=("skip", "unk"), default="skip",
                        help="rows with characters the tokenizer cannot spell")
    parser.add_argument("--att-context", default="70,13", help="look-ahead of the dev WER")
    parser.add_argument("--work", type=Path, help="checkpoints and logs (default: a temp folder)")
    parser.add_argument("--no-install", action="store_true",
                        help="build the version folder in --work, do not install it")
    args = parser.parse_args(argv)
    if (args.steps is not None and args.steps <= 0) or (args.minutes is not None
                                                        and args.minutes <= 0):
        parser.error("--steps / --minutes must be positive")
    return args


@dataclass(frozen=True, slots=True)
class Inputs:
    base_version: int
    base: Path
    rows: list[dict[str, Any]]
    dev_rows: list[dict[str, Any]]
    stats: list[ManifestStats]
    dev_stats: ManifestStats | None


def read_inputs(args: argparse.Namespace) -> Inputs:
    import sentencepiece  # type: ignore[import-not-found]

    model_dir = args.model_repo / args.model
    version = base_version(model_dir, args.base_version)
    base = model_dir / str(version)
    for name in (NORM_NAME, "tokenizer.model", *RUNTIME_CODE):
        if not (base / name).is_file():
            raise FinetuneError(f"base version {base} has no {name}")
    policy = TextPolicy(args.tags, args.oov, sentencepiece.SentencePieceProcessor(
        model_file=str(base / "tokenizer.model")))
    rows: list[dict[str, Any]] = []
    stats: list[ManifestStats] = []
    for path in args.manifest:
        got, stat = load_rows(path, policy)
        rows.extend(got)
        stats.append(stat)
    dev_rows, dev_stats = dev_rows_of(args.dev, policy)
    return Inputs(version, base, rows, dev_rows, stats, dev_stats)


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.monotonic()
    inputs = read_inputs(args)
    model_dir = args.model_repo / args.model
    left, right = (int(v) for v in args.att_context.split(","))
    wer_before = (streaming_wer(inputs.base, inputs.dev_rows, (left, right))
                  if inputs.dev_rows else None)
    work = args.work or Path(tempfile.mkdtemp(prefix="finetune-"))
    work.mkdir(parents=True, exist_ok=True)
    trained = train(args, inputs.base, inputs.rows, inputs.dev_rows, work)
    version = max(versions(model_dir)) + 1
    staging = (work / "version" if args.no_install
               else model_dir / f".{version}.tmp-{os.getpid()}")
    try:
        build_version(staging, inputs.base, trained)
        wer_after = (streaming_wer(staging, inputs.dev_rows, (left, right))
                     if inputs.dev_rows else None)
        report = {
            "model": args.model, "base_version": inputs.base_version,
            "version": None if args.no_install else version,
            "manifests": [s.to_json() for s in inputs.stats],
            "dev": inputs.dev_stats.to_json() if inputs.dev_stats else None,
            "train_rows": len(inputs.rows),
            "train_hours": round(sum(float(r.get("duration", 0)) for r in inputs.rows) / 3600,
                                 4),
            "steps": trained.steps, "minutes": args.minutes, "lr": args.lr,
            "warmup_steps": args.warmup_steps, "seed": args.seed, "threads": args.threads,
            "device": args.device, "max_frames": args.max_frames,
            "time_shift": args.time_shift, "tags": args.tags, "oov": args.oov,
            "checkpoint": trained.nemo.name,
            "train_s": round(trained.train_s, 1),
            "steps_per_s": round(trained.steps / max(trained.train_s, 1e-9), 3),
            "dev_wer_streaming": {"att_context_size": [left, right], "before": wer_before,
                                  "after": wer_after},
            "dev_wer_offline": {"before": trained.offline_dev_wer_before,
                                "after": trained.offline_dev_wer_after},
            "wall_s": round(time.monotonic() - t0, 1),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / "finetune.json").write_text(json.dumps(report, indent=1) + "\n",
                                               encoding="utf-8")
        if not args.no_install:
            install(staging, model_dir / str(version))
    except BaseException:
        if not args.no_install:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    if args.work is None and not args.no_install:
        shutil.rmtree(work, ignore_errors=True)
    report["folder"] = str(staging if args.no_install else model_dir / str(version))
    return report


def install(staging: Path, final: Path) -> None:
    """Rename the finished folder into place (atomic on one file system)."""
    if final.exists():
        raise FinetuneError(f"{final} appeared while fine-tuning; nothing installed")
    os.rename(staging, final)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = run(args)
    except FinetuneError as exc:
        print(f"finetune: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    if report["version"] is not None:
        print(next_steps(args.model, report["version"]), file=sys.stderr)
        worse = report["dev_wer_streaming"]
        if worse["before"] is not None and worse["after"] > worse["before"]:
            print(f"finetune: WARNING dev WER got worse ({worse['before']} -> "
                  f"{worse['after']})", file=sys.stderr)
    else:
        print(f"not installed (--no-install): {report['folder']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
