"""``bench batch``: stored recordings through the batch path (``asr-gateway transcribe``).

For each model, on one Triton:

- **Throughput** in audio-hours per wall-hour (audio seconds / wall seconds) at each
  concurrency (files in flight), plain (one process, one ASR hub: what the command runs)
  and on a local Ray cluster (``--ray local``: a pool of actors, each its own hub; its wall
  time includes starting the pool, not ``ray.init``, which is timed apart). The files are
  piper call-centre sentences (bench/corpus.py, the model's corpus) joined into calls of a
  few sentences, written as 8 kHz mu-law WAV (what call recorders store). Every run is
  forced (nothing skipped) and must give each file a document; its WER is kept.
- **Batching in Triton**: per run, the growth of the model's statistics
  (``GET /v2/models/<m>/stats``: inferences, executions and the per-batch-size execution
  counts, the real distribution) and of its Prometheus counters (``nv_inference_count``,
  ``nv_inference_exec_count``, ``nv_inference_request_success``): mean batch size =
  inferences / executions.
- **WER batch vs live**: the first files' audio also played as live calls through a gateway
  daemon (RTP PCMU in real time, bench.speechcalls), the same corpus WER as bench accuracy.
- **Live latency with a batch job running**: end of speech -> ``transcript.final`` for live
  calls (bench.asr_latency's measure), alone and then while the same daemon runs a batch
  job (``POST /v1/transcriptions``) over the files: batch and live share its Triton stream.

Redaction is off in every path (the WERs compare ASR, not the redactor). Loopback only.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import soundfile  # type: ignore[import-untyped]
import uvloop

from bench import report, stack
from bench.accuracy import corpus_wer
from bench.asr_latency import FINALS_TIMEOUT_S as LATENCY_FINALS_TIMEOUT_S
from bench.asr_latency import _scripts as latency_scripts
from bench.asr_latency import _summary as latency_summary
from bench.corpus import CORPORA, Utterance, corpus_name, utterances
from bench.figures import ratio, rounded
from bench.speechcalls import CallOutcome, CallScript, build_script, run_calls
from gateway.batch.runner import FileJob, transcribe_many
from gateway.batch.task import BatchOptions, FileResult, asr_hub
from gateway.config import GatewayConfig, RedactionConfig, TritonConfig
from gateway.triton_launcher import TritonProcess

NAME = "batch"
LEAD_S, GAP_S, TAIL_S = 0.5, 1.5, 1.5
RUN_TIMEOUT_S = 900.0
JOB_START_TIMEOUT_S = 30.0
JOB_STOP_TIMEOUT_S = 60.0
MAX_JOB_COPIES = 100
WINDOW_SLACK_S = 10.0          # the live run beyond its longest script: the finals' wait
OPTIONS = BatchOptions(force=True)
NO_REDACTION = {"redaction": {"enabled": False}}


@dataclass(frozen=True, slots=True)
class BatchParams:
    models: tuple[str, ...] = ("asr_cpu_default", "asr_streaming_nemo")
    concurrency: tuple[int, ...] = (1, 4, 16)
    files: int = 16                  # the same files at every concurrency
    sentences_per_file: int = 3
    ray: bool = True
    ray_cpus: int = 2
    wer_calls: int = 2               # files also played as live calls
    latency_calls: int = 2
    latency_sentences: int = 3       # per live call
    job_concurrency: tuple[int, ...] = (1, 4)   # the daemon's [batch] concurrency beside
                                                # the live calls (a daemon for each)
    job_outlasts: float = 2.0        # the job holds this many times the audio the daemon
                                     # could do while the live calls run (then cancelled)


QUICK = BatchParams(files=16, sentences_per_file=1, wer_calls=1, latency_calls=1,
                    latency_sentences=2)


@dataclass(frozen=True, slots=True)
class AudioSet:
    folder: Path
    scripts: tuple[CallScript, ...]
    paths: tuple[Path, ...]

    @property
    def audio_s(self) -> float:
        return sum(len(s.pcm) / 8000 for s in self.scripts)

    def jobs(self) -> list[FileJob]:
        return [FileJob(p, self.folder) for p in self.paths]

    def job_dirs(self, copies: int) -> list[str]:
        """The files ``copies`` times (hard links in ``job-<k>/``), as the job's folders."""
        for k in range(copies):
            sub = self.folder / f"job-{k}"
            sub.mkdir(exist_ok=True)
            for path in self.paths:
                if not (sub / path.name).exists():
                    os.link(path, sub / path.name)
        return [f"job-{k}/" for k in range(copies)]


def job_copies(audio_s: float, speed: float | None, window_s: float, outlasts: float) -> int:
    """How many copies of the files keep a job at ``speed`` (audio s per wall s) busy for
    ``outlasts`` x ``window_s`` (pure; at least 1, at most MAX_JOB_COPIES)."""
    if not speed or audio_s <= 0:
        return MAX_JOB_COPIES
    return max(1, min(MAX_JOB_COPIES, math.ceil(outlasts * window_s * speed / audio_s)))


def audio_set(corpus: Sequence[Utterance], files: int, per_file: int, folder: Path
              ) -> AudioSet:
    """``files`` recordings of ``per_file`` consecutive sentences each (the corpus cycled),
    as 8 kHz mono mu-law WAV in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    scripts, paths = [], []
    for i in range(files):
        picked = [corpus[(i * per_file + j) % len(corpus)] for j in range(per_file)]
        script = build_script(picked, lead_s=LEAD_S, gap_s=GAP_S, tail_s=TAIL_S)
        path = folder / f"call-{i:03d}.wav"
        soundfile.write(path, script.pcm, 8000, subtype="ULAW", format="WAV")
        scripts.append(script)
        paths.append(path)
    return AudioSet(folder, tuple(scripts), tuple(paths))


def batch_config(url: str, model: str) -> GatewayConfig:
    """What ``transcribe --triton-url URL --model MODEL`` runs with, redaction off."""
    return GatewayConfig(triton=TritonConfig(url=url, asr_model=model),
                         redaction=RedactionConfig(enabled=False))


# ------------------------------------------------------------------ Triton's counters
_SAMPLE = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
COUNTERS = ("nv_inference_count", "nv_inference_exec_count", "nv_inference_request_success")


def prometheus_counters(text: str, model: str, names: Sequence[str] = COUNTERS
                        ) -> dict[str, float]:
    """Each counter of ``names`` summed over the series of ``model`` (pure)."""
    out = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group("name") in out and f'model="{model}"' in m.group("labels"):
            out[m.group("name")] += float(m.group("value"))
    return out


def model_snapshot(server: TritonProcess, model: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server.http_url}/v2/models/{model}/stats",
                                timeout=10) as reply:
        stats = json.loads(reply.read())["model_stats"][0]
    with urllib.request.urlopen(f"http://{server.host}:{server.ports.metrics}/metrics",
                                timeout=10) as reply:
        counters = prometheus_counters(reply.read().decode(), model)
    sizes = {int(b["batch_size"]): int(b["compute_infer"]["count"])
             for b in stats.get("batch_stats", [])}
    return {"inferences": int(stats.get("inference_count", 0)),
            "executions": int(stats.get("execution_count", 0)),
            "batch_sizes": sizes, "prometheus": counters}


def batching(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What Triton did between two snapshots (pure): executions per batch size, means."""
    sizes = {k: v - before["batch_sizes"].get(k, 0) for k, v in after["batch_sizes"].items()}
    sizes = {k: v for k, v in sorted(sizes.items()) if v > 0}
    prom = {k: after["prometheus"][k] - before["prometheus"][k] for k in COUNTERS}
    inferences = after["inferences"] - before["inferences"]
    executions = after["executions"] - before["executions"]
    return {"inferences": inferences, "executions": executions,
            "mean_batch": rounded(ratio(inferences, executions), 2),
            "executions_by_batch_size": {str(k): v for k, v in sizes.items()},
            "prometheus_delta": prom,
            "prometheus_mean_batch": rounded(ratio(prom["nv_inference_count"],
                                                   prom["nv_inference_exec_count"]), 2)}


# ------------------------------------------------------------------ the batch runs
async def _plain(jobs: Sequence[FileJob], out: Path, config: GatewayConfig,
                 concurrency: int) -> list[FileResult]:
    async with asr_hub(config) as hub:
        return await transcribe_many(jobs, out, hub=hub, config=config, options=OPTIONS,
                                     concurrency=concurrency, on_result=lambda _i, _r: None)


async def _ray(jobs: Sequence[FileJob], out: Path, config: GatewayConfig,
               concurrency: int, cpus: int) -> list[FileResult]:
    from gateway.batch.ray_runner import RayOptions, run_files

    found = [r async for _i, r in run_files(jobs, out, config=config, options=OPTIONS,
                                            concurrency=concurrency,
                                            ray_options=RayOptions(local_cpus=cpus))]
    return found


def _batch_text(result: FileResult) -> str:
    json_out = next((p for p in result.outputs if p.suffix == ".json"), None)
    if result.status != "done" or json_out is None:
        return ""
    turns = json.loads(json_out.read_text())["turns"]
    return " ".join(str(t["text"]) for t in sorted(turns, key=lambda t: t["start_s"]))


def run_once(mode: str, concurrency: int, audio: AudioSet, config: GatewayConfig,
             server: TritonProcess, out: Path, ray_cpus: int) -> dict[str, Any]:
    """One forced pass over the files; throughput, Triton's batching, WER."""
    before = model_snapshot(server, config.triton.asr_model)
    work = (_plain(audio.jobs(), out, config, concurrency) if mode == "plain"
            else _ray(audio.jobs(), out, config, concurrency, ray_cpus))
    t0 = time.monotonic()
    try:
        results = uvloop.run(asyncio.wait_for(work, RUN_TIMEOUT_S))
    except TimeoutError:
        results = []
    wall = time.monotonic() - t0
    texts = {r.path: _batch_text(r) for r in results}
    pairs = [(s.reference, texts.get(p, "")) for s, p in zip(audio.scripts, audio.paths,
                                                            strict=True)]
    done_s = sum(r.audio_s for r in results if r.status == "done")
    return {"mode": mode, "concurrency": concurrency, "files": len(audio.paths),
            "files_done": sum(1 for r in results if r.status == "done"),
            "timed_out": not results, "audio_s": round(done_s, 2), "wall_s": round(wall, 2),
            "audio_h_per_wall_h": rounded(ratio(done_s, wall), 2),
            "rtf": rounded(ratio(wall, done_s), 4), "wer": rounded(corpus_wer(pairs), 4),
            "triton": batching(before, model_snapshot(server, config.triton.asr_model)),
            "transcripts": [{"file": p.name, "hypothesis": h} for p, h in texts.items()]}


@contextmanager
def local_ray(cpus: int) -> Iterator[float]:
    """A local Ray cluster for the Ray runs (the seconds ``ray.init`` took)."""
    from gateway.batch.ray_runner import RayOptions, import_ray, init_kwargs

    ray = import_ray()
    t0 = time.monotonic()
    ray.init(**init_kwargs(RayOptions(local_cpus=cpus)))
    try:
        yield time.monotonic() - t0
    finally:
        ray.shutdown()


def throughput(audio: AudioSet, config: GatewayConfig, server: TritonProcess,
               params: BatchParams, workdir: Path) -> tuple[list[dict[str, Any]], float | None]:
    rows = [run_once("plain", c, audio, config, server, workdir / f"plain-{c}",
                     params.ray_cpus) for c in params.concurrency]
    if not params.ray:
        return rows, None
    with local_ray(params.ray_cpus) as init_s:
        rows += [run_once("ray", c, audio, config, server, workdir / f"ray-{c}",
                          params.ray_cpus) for c in params.concurrency]
    return rows, round(init_s, 2)


# ------------------------------------------------------------------ live calls
def _live_text(outcome: CallOutcome) -> str:
    finals = sorted(outcome.finals, key=lambda e: float(e.get("end_s", 0.0)))
    return " ".join(str(f["text"]) for f in finals)


def _post_job(gw: Any, files: Sequence[str]) -> str:
    body = json.dumps({"files": list(files), "options": {"force": True}}).encode()
    status, reply = gw.http("/v1/transcriptions", "POST", stack.BENCH_TOKEN, body)
    if status != 201:
        raise stack.BenchSetupError(f"POST /v1/transcriptions: {status} {reply[:300]!r}")
    return str(json.loads(reply)["id"])


def _job(gw: Any, job_id: str) -> dict[str, Any]:
    status, reply = gw.http(f"/v1/transcriptions/{job_id}", "GET", stack.BENCH_TOKEN)
    view: dict[str, Any] = json.loads(reply) if status == 200 else {"status": f"http {status}"}
    return view


def _wait_job(gw: Any, job_id: str, wanted: Sequence[str], timeout_s: float
              ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    view = _job(gw, job_id)
    while view.get("status") not in wanted and time.monotonic() < deadline:
        time.sleep(0.2)
        view = _job(gw, job_id)
    return view


def _latency_scripts(corpus: Sequence[Utterance], params: BatchParams) -> list[CallScript]:
    return latency_scripts(corpus, params.latency_calls, params.latency_sentences)


def _latency_run(gw: Any, model: str, corpus: Sequence[Utterance], params: BatchParams
                 ) -> dict[str, Any]:
    outcomes = run_calls(gw, _latency_scripts(corpus, params),
                         finals_timeout_s=LATENCY_FINALS_TIMEOUT_S)
    return latency_summary(model, params.latency_calls, outcomes)


def _with_job(gw: Any, audio: AudioSet, model: str, corpus: Sequence[Utterance],
              params: BatchParams, speed: float | None, concurrency: int) -> dict[str, Any]:
    window_s = max(len(s.pcm) / 8000 for s in _latency_scripts(corpus, params))
    copies = job_copies(audio.audio_s, speed, window_s + WINDOW_SLACK_S, params.job_outlasts)
    files = audio.job_dirs(copies)
    job_id = _post_job(gw, files)
    started = _wait_job(gw, job_id, ("running",), JOB_START_TIMEOUT_S)
    summary = _latency_run(gw, model, corpus, params)
    during = _job(gw, job_id)
    if during.get("status") == "running":      # cancel what is left
        gw.http(f"/v1/transcriptions/{job_id}", "DELETE", stack.BENCH_TOKEN)
        _wait_job(gw, job_id, ("succeeded", "failed", "cancelled"), JOB_STOP_TIMEOUT_S)
    progress = during.get("progress", {})
    return {**summary, "batch_job": {
        "files": copies * len(audio.paths), "audio_s": round(copies * audio.audio_s, 1),
        "concurrency": concurrency,
        "status_at_start": started.get("status"),
        "running_when_calls_ended": during.get("status") == "running",
        "files_finished_during_calls": progress.get("files_finished"),
        "files_failed_during_calls": progress.get("files_failed"),
        "audio_s_during_calls": progress.get("audio_s")}}


def _daemon(server: TritonProcess, model: str, audio: AudioSet, params: BatchParams,
            workdir: Path, concurrency: int) -> Any:
    extra = {"triton": {"asr_model": model, "final_timeout_s": 30.0, "buffer_s": 60.0},
             "batch": {"root": str(audio.folder), "concurrency": concurrency},
             **NO_REDACTION}
    return stack.gateway(workdir / f"gw-batch-{model}-{concurrency}", server.grpc_url,
                         max_calls=params.wer_calls + params.latency_calls + 5, extra=extra)


def _wer(outcomes: Sequence[CallOutcome], audio: AudioSet, batch_texts: Mapping[str, str]
         ) -> dict[str, Any]:
    batch = [batch_texts.get(p.name, "") for p in audio.paths[: len(outcomes)]]
    live_wer = corpus_wer([(o.script.reference, _live_text(o)) for o in outcomes])
    batch_wer = corpus_wer([(o.script.reference, b)
                            for o, b in zip(outcomes, batch, strict=True)])
    return {"files": len(outcomes), "live": rounded(live_wer, 4),
            "batch": rounded(batch_wer, 4),
            "batch_over_live": rounded(ratio(batch_wer, live_wer), 3),
            "transcripts": [{"reference": o.script.reference, "live": _live_text(o),
                             "batch": b} for o, b in zip(outcomes, batch, strict=True)]}


def live(server: TritonProcess, model: str, audio: AudioSet, corpus: Sequence[Utterance],
         batch_texts: Mapping[str, str], params: BatchParams, workdir: Path,
         speed: float | None) -> dict[str, Any]:
    """WER of live calls vs batch on the same audio; latency alone and beside a job (a
    daemon per job concurrency; the first also runs the WER calls and the lone latency)."""
    first, *others = params.job_concurrency
    with _daemon(server, model, audio, params, workdir, first) as gw:
        outcomes = run_calls(gw, list(audio.scripts[: params.wer_calls]),
                             finals_timeout_s=LATENCY_FINALS_TIMEOUT_S)
        alone = _latency_run(gw, model, corpus, params)
        beside = [_with_job(gw, audio, model, corpus, params, speed, first)]
    for concurrency in others:
        with _daemon(server, model, audio, params, workdir, concurrency) as gw:
            beside.append(_with_job(gw, audio, model, corpus, params, speed, concurrency))
    ratios = {str(b["batch_job"]["concurrency"]): {"final_p50_ratio": _p_ratio(b, alone, "p50"),
                                                   "final_p95_ratio": _p_ratio(b, alone, "p95")}
              for b in beside}
    return {"wer": _wer(outcomes, audio, batch_texts),
            "latency": {"alone": alone, "with_batch_job": beside,
                        "ratio_by_job_concurrency": ratios}}


def _p_ratio(a: Mapping[str, Any], b: Mapping[str, Any], key: str) -> float | None:
    return rounded(ratio(a["final_after_speech_end_s"][key],
                         b["final_after_speech_end_s"][key]), 3)


# ------------------------------------------------------------------ the whole bench
def _ray_vs_plain(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    plain = {r["concurrency"]: r["audio_h_per_wall_h"] for r in rows if r["mode"] == "plain"}
    return {str(r["concurrency"]): rounded(ratio(r["audio_h_per_wall_h"],
                                                 plain.get(r["concurrency"])), 3)
            for r in rows if r["mode"] == "ray"}


def measure(server: TritonProcess, model: str, params: BatchParams, workdir: Path
            ) -> dict[str, Any]:
    corpus = utterances(CORPORA[corpus_name(model)])
    audio = audio_set(corpus, params.files, params.sentences_per_file,
                      workdir / f"audio-{model}")
    config = batch_config(server.grpc_url, model)
    rows, ray_init_s = throughput(audio, config, server, params, workdir / f"out-{model}")
    texts = {t["file"]: t["hypothesis"] for t in rows[0]["transcripts"]}
    speed = max((r["audio_h_per_wall_h"] or 0.0 for r in rows if r["mode"] == "plain"),
                default=None)
    return {"model": model, "corpus": corpus_name(model), "files": len(audio.paths),
            "audio_s": round(audio.audio_s, 1), "ray_init_s": ray_init_s,
            "throughput": rows, "ray_over_plain": _ray_vs_plain(rows),
            **live(server, model, audio, corpus, texts, params, workdir, speed)}


def _tables(results: Sequence[Mapping[str, Any]]) -> None:
    rows = [{"model": r["model"], "mode": t["mode"], "conc": t["concurrency"],
             "audio_s": t["audio_s"], "wall_s": t["wall_s"],
             "audio_h/wall_h": t["audio_h_per_wall_h"], "wer": t["wer"],
             "mean_batch": t["triton"]["mean_batch"],
             "batch_sizes": " ".join(f"{k}:{v}" for k, v in
                                     t["triton"]["executions_by_batch_size"].items())}
            for r in results for t in r["throughput"]]
    report.show("batch throughput (piper calls, 8 kHz mu-law WAV, forced)", rows,
                ("model", "mode", "conc", "audio_s", "wall_s", "audio_h/wall_h", "wer",
                 "mean_batch", "batch_sizes"))
    summary = [{"model": r["model"], "ray/plain": " ".join(
        f"c{k}:{v}" for k, v in r["ray_over_plain"].items()),
        "wer_live": r["wer"]["live"], "wer_batch": r["wer"]["batch"],
        "final_p50_alone": r["latency"]["alone"]["final_after_speech_end_s"]["p50"],
        "final_p50_beside_job": " ".join(
            f"c{b['batch_job']['concurrency']}:{b['final_after_speech_end_s']['p50']}"
            for b in r["latency"]["with_batch_job"]),
        "p50/p95_ratio": " ".join(f"c{k}:{v['final_p50_ratio']}/{v['final_p95_ratio']}"
                                  for k, v in r["latency"]["ratio_by_job_concurrency"].items()),
        "job_ran_throughout": all(b["batch_job"]["running_when_calls_ended"]
                                  for b in r["latency"]["with_batch_job"])} for r in results]
    report.show("Ray vs plain, live vs batch", summary,
                ("model", "ray/plain", "wer_live", "wer_batch", "final_p50_alone",
                 "final_p50_beside_job", "p50/p95_ratio", "job_ran_throughout"))


def run(params: BatchParams, workdir: Path, results_dir: Path, *, quick: bool = False
        ) -> dict[str, Any]:
    from gateway.logs import configure_logging

    configure_logging("warning")          # the plain runs' hub in this process: quiet
    started_at, t0 = report.now_iso(), time.monotonic()
    with stack.triton(list(params.models), workdir / "triton") as server:
        env = report.environment(server.http_url)
        results = [measure(server, m, params, workdir) for m in params.models]
    document = {
        "benchmark": NAME, "started_at": started_at, "quick": quick,
        "duration_s": round(time.monotonic() - t0, 1),
        "environment": {**env, "ray": _ray_version()},
        "parameters": {**{k: getattr(params, k) for k in params.__dataclass_fields__},
                       "format": "WAV mu-law 8 kHz mono", "redaction": False,
                       "corpora": {m: corpus_name(m) for m in params.models}},
        "results": results,
    }
    report.write_result(NAME, document, results_dir)
    _tables(results)
    return document


def _ray_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:
        return None


def quick_params(params: BatchParams) -> BatchParams:
    """``--quick``: QUICK's sizes with the models and concurrencies asked for."""
    return replace(QUICK, models=params.models, concurrency=params.concurrency, ray=params.ray,
                   ray_cpus=params.ray_cpus, job_concurrency=params.job_concurrency)
