"""``bench flywheel``: consented calls -> de-identified dataset -> fine-tuned model -> better
WER on that domain, end to end on this machine.

1. Domain calls (bench/flywheel_corpus.py: solar/heat-pump vocabulary the small NeMo model
   never heard; piper, espeak-ng and flite voices) are placed through a real gateway that
   records them and transcribes them live with ``asr_cpu_default`` (Whisper): those live
   transcripts are the labels. The training calls carry ``X-Consent: yes``; a few more calls
   carry no consent (they must not reach the dataset).
2. ``asr-gateway export-dataset`` cuts the consented conversations into a NeMo dataset.
3. ``finetune.py`` (NeMo venv) fine-tunes the served ``asr_streaming_nemo`` version on the
   exported train split and installs the result as a new version in a copy of the model
   repository (never in triton_models/ itself).
4. Held-out domain calls (sentences never in the training calls) go through the gateway
   served by the old version and by the new one: WER before and after, side by side, with
   Whisper's WER on the same calls for reference.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import report, stack
from bench.corpus import Utterance
from bench.figures import rounded
from bench.flywheel_corpus import sentences, utterances
from bench.speechcalls import CallOutcome, CallScript, build_script, run_calls
from gateway.triton_launcher import TritonProcess
from tests.gateway_proc import REPO
from tests.peers.ports import distinct_tcp_ports
from tests.speech import normalise, word_edits
from tests.triton.fixtures import MODEL_REPOSITORY, TRITON_VENV

NAME = "flywheel"
NEMO_MODEL = "asr_streaming_nemo"
LABEL_MODEL = "asr_cpu_default"
NEMO_PY = REPO / ".venv-nemo" / "bin" / "python"
FINETUNE = REPO / "triton_models" / "asr_streaming_nemo" / "finetune.py"
LEAD_S, GAP_S, TAIL_S = 0.5, 1.2, 2.5
FINALS_TIMEOUT_S = 240.0
STEP_TIMEOUT_S = 3600.0


@dataclass(frozen=True, slots=True)
class FlywheelParams:
    train_sentences: int = 120
    heldout_sentences: int = 30
    sentences_per_call: int = 8
    unconsented_calls: int = 2
    parallel_calls: int = 8
    finetune_steps: int = 300      # optimizer steps (a step budget: the same run on a loaded host)
    lr: float = 3e-4
    seed: int = 7


def _scripts(utts: Sequence[Utterance], per_call: int) -> list[CallScript]:
    return [build_script(utts[i:i + per_call], lead_s=LEAD_S, gap_s=GAP_S, tail_s=TAIL_S)
            for i in range(0, len(utts), per_call)]


def _hypothesis(outcome: CallOutcome) -> str:
    finals = sorted(outcome.finals, key=lambda e: float(e.get("end_s", 0.0)))
    return " ".join(str(e.get("text", "")) for e in finals)


def _wer(outcomes: Sequence[CallOutcome]) -> dict[str, Any]:
    edits = words = 0
    for o in outcomes:
        ref, hyp = normalise(o.script.reference), normalise(_hypothesis(o))
        edits += word_edits(ref, hyp)
        words += len(ref)
    return {"wer": rounded(edits / max(1, words), 4), "reference_words": words,
            "calls": len(outcomes), "calls_without_finals": sum(1 for o in outcomes
                                                                if not o.finals)}


def _triton(repo: Path, models: Sequence[str], workdir: Path) -> TritonProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    http, grpc, metrics = distinct_tcp_ports(3)
    server = TritonProcess(repo, venv=TRITON_VENV, workdir=workdir, http_port=http,
                           grpc_port=grpc, metrics_port=metrics, models=list(models),
                           log_path=workdir / "triton.log")
    return server.start(timeout_s=stack.TRITON_START_TIMEOUT_S)


def _copy_repo(dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for model in (NEMO_MODEL, LABEL_MODEL):
        shutil.copytree(MODEL_REPOSITORY / model, dst / model,
                        ignore=shutil.ignore_patterns("__pycache__"))
    if (MODEL_REPOSITORY / "common").is_dir():
        shutil.copytree(MODEL_REPOSITORY / "common", dst / "common",
                        ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def _record_calls(url: str, workdir: Path, train: list[CallScript], unconsented:
                  list[CallScript], parallel: int) -> tuple[Path, dict[str, Any]]:
    extra = {"triton": {"asr_model": LABEL_MODEL, "final_timeout_s": 120.0, "buffer_s": 300.0},
             "storage": {"record": True, "recording_format": "wav",
                         "state_dir": str(workdir / "state")}}
    outcomes: list[CallOutcome] = []
    with stack.gateway(workdir / "gw-record", url, max_calls=parallel + 4, extra=extra) as gw:
        for i in range(0, len(train), parallel):
            outcomes += run_calls(gw, train[i:i + parallel], finals_timeout_s=FINALS_TIMEOUT_S,
                                  headers="X-Consent: yes\r\n")
        declined = run_calls(gw, unconsented, finals_timeout_s=FINALS_TIMEOUT_S)
        config = gw.config_path
    labels = {"label_wer_whisper": _wer(outcomes),
              "consented_calls": len(outcomes), "unconsented_calls": len(declined),
              "unconsented_call_ids": [o.call_id for o in declined]}
    return config, labels


def _run(cmd: Sequence[str], log: Path) -> None:
    with log.open("w") as out:
        proc = subprocess.run(list(cmd), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                              timeout=STEP_TIMEOUT_S, check=False)
    if proc.returncode not in (0, 1):
        tail = log.read_text()[-3000:]
        raise stack.BenchSetupError(f"{cmd[0:3]} failed ({proc.returncode}):\n{tail}")


def _export(config: Path, out: Path, since: datetime, workdir: Path) -> dict[str, Any]:
    until = datetime.now(UTC) + timedelta(minutes=1)
    _run([sys.executable, "-m", "gateway", "export-dataset", "--config", str(config),
          "--since", since.isoformat(), "--until", until.isoformat(), "--out", str(out)],
         workdir / "export.log")
    summary = out / "export.json"
    return dict(json.loads(summary.read_text())) if summary.exists() else {}


def _finetune(repo: Path, dataset: Path, params: FlywheelParams, workdir: Path
              ) -> dict[str, Any]:
    cmd = [str(NEMO_PY), str(FINETUNE), "--manifest", str(dataset / "train_manifest.json"),
           "--model-repo", str(repo), "--model", NEMO_MODEL,
           "--steps", str(params.finetune_steps), "--lr", str(params.lr),
           "--seed", str(params.seed), "--threads", "2"]
    dev = dataset / "dev_manifest.json"
    if dev.exists() and dev.read_text().strip():
        cmd += ["--dev", str(dev)]
    t0 = time.monotonic()
    _run(cmd, workdir / "finetune.log")
    versions = sorted(int(p.name) for p in (repo / NEMO_MODEL).iterdir() if p.name.isdigit())
    info_path = repo / NEMO_MODEL / str(versions[-1]) / "finetune.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    return {"versions": versions, "wall_s": round(time.monotonic() - t0, 1), "finetune": info}


def _heldout(url: str, workdir: Path, scripts: list[CallScript], model: str, version: str,
             parallel: int) -> dict[str, Any]:
    extra = {"triton": {"asr_model": model, "asr_model_version": version,
                        "final_timeout_s": 120.0, "buffer_s": 300.0}}
    outcomes: list[CallOutcome] = []
    name = f"gw-heldout-{model}-{version or 'latest'}"
    with stack.gateway(workdir / name, url, max_calls=parallel + 4, extra=extra) as gw:
        for i in range(0, len(scripts), parallel):
            outcomes += run_calls(gw, scripts[i:i + parallel], finals_timeout_s=FINALS_TIMEOUT_S)
    result = _wer(outcomes)
    result.update({"model": model, "version": version or "latest",
                   "transcripts": [{"reference": o.script.reference,
                                    "hypothesis": _hypothesis(o)} for o in outcomes]})
    return result


def run(params: FlywheelParams, workdir: Path, results_dir: Path) -> dict[str, Any]:
    started_at, t0 = report.now_iso(), time.monotonic()
    since = datetime.now(UTC) - timedelta(minutes=1)
    train_text, heldout_text = sentences(params.train_sentences, params.heldout_sentences,
                                         params.seed)
    train_utts = [u for u, _v in utterances(train_text)]
    heldout_utts = [u for u, _v in utterances(heldout_text, voice_offset=3)]
    per_call = params.sentences_per_call
    train = _scripts(train_utts, per_call)
    unconsented = train[: params.unconsented_calls]
    heldout = _scripts(heldout_utts, per_call)
    repo = _copy_repo(workdir / "models")
    triton = _triton(repo, [LABEL_MODEL, NEMO_MODEL], workdir / "triton-1")
    try:
        env = report.environment(triton.http_url)
        config, labels = _record_calls(triton.grpc_url, workdir, train, unconsented,
                                       params.parallel_calls)
        before = _heldout(triton.grpc_url, workdir, heldout, NEMO_MODEL, "1",
                          params.parallel_calls)
        whisper = _heldout(triton.grpc_url, workdir, heldout, LABEL_MODEL, "",
                           params.parallel_calls)
    finally:
        triton.stop()
    exported = _export(config, workdir / "dataset", since, workdir)
    tuned = _finetune(repo, workdir / "dataset", params, workdir)
    new_version = str(tuned["versions"][-1])
    triton = _triton(repo, [NEMO_MODEL], workdir / "triton-2")
    try:
        after = _heldout(triton.grpc_url, workdir, heldout, NEMO_MODEL, new_version,
                         params.parallel_calls)
    finally:
        triton.stop()
    document = {
        "benchmark": NAME, "started_at": started_at,
        "duration_s": round(time.monotonic() - t0, 1), "environment": env,
        "parameters": {**asdict(params), "label_model": LABEL_MODEL, "model": NEMO_MODEL,
                       "voices": "piper joe, flite slt/kal/awb, espeak-ng en-us+m3/f2, en+m1",
                       "codec": "PCMU"},
        "results": {"labels": labels, "export": exported, "finetune": tuned,
                    "heldout_before": before, "heldout_after": after,
                    "heldout_whisper": whisper},
    }
    report.write_result(NAME, document, results_dir)
    report.show("flywheel (held-out domain calls, WER)", [
        {"model": f"{NEMO_MODEL} v1 (served)", "wer": before["wer"]},
        {"model": f"{NEMO_MODEL} v{new_version} (fine-tuned)", "wer": after["wer"]},
        {"model": f"{LABEL_MODEL} (labels)", "wer": whisper["wer"]},
    ], ("model", "wer"))
    return document
