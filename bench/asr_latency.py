"""``bench asr_latency``: end of speech -> ``transcript.final`` and speech onset -> first
partial, for real ASR models, at 1 and at 10 simultaneous calls.

Each call plays piper sentences in real time from the bench's RTP sender; the sender
knows when each sentence's speech started and ended (from the audio, bench.audio), and
the gateway's events carry their wall-clock ``ts``. A transcript belongs to the sentence
whose speech interval is nearest to the transcript's ``end_s`` (conversation timeline: the
call's first packet is at its leg's offset, a fraction of a second, small next to the pauses
between sentences). Calls start staggered so sentence ends spread out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report, stack
from bench.corpus import CORPORA, Utterance, corpus_name, utterances
from bench.figures import median, percentile, rounded
from bench.speechcalls import CallOutcome, CallScript, Event, Spoken, build_script, run_calls
from tests.speech import word_error_rate

NAME = "asr_latency"
GAP_S = 1.5
TAIL_S = 2.5
LEAD_S = 0.5
FINALS_TIMEOUT_S = 40.0


@dataclass(frozen=True, slots=True)
class LatencyParams:
    models: tuple[str, ...] = ("asr_cpu_default", "asr_streaming_nemo")
    concurrency: tuple[int, ...] = (1, 10)
    sentences_single: int = 8          # sentences the lone call speaks
    sentences_each: int = 3            # sentences each call speaks when several run


@dataclass(frozen=True, slots=True)
class SentenceLatency:
    final_s: float | None          # end of speech -> last final of the sentence
    partial_s: float | None        # speech onset -> first non-empty partial
    gateway_final_s: float | None  # the gateway's own latency_s of that final


def nearest_sentence(spoken: Sequence[Spoken], end_s: float) -> int:
    """Index of the sentence whose [start, end] interval is closest to ``end_s``."""
    def distance(s: Spoken) -> float:
        return max(s.start_s - end_s, 0.0, end_s - s.end_s)
    return min(range(len(spoken)), key=lambda i: distance(spoken[i]))


def sentence_latencies(spoken: Sequence[Spoken], wall0: float, finals: Sequence[Event],
                       partials: Sequence[Event]) -> list[SentenceLatency]:
    """Per sentence: latencies measured from the sender's clock to the events' ``ts``."""
    last_final: dict[int, Event] = {}
    for f in finals:
        k = nearest_sentence(spoken, float(f["end_s"]))
        if k not in last_final or f["ts"] > last_final[k]["ts"]:
            last_final[k] = f
    first_partial: dict[int, float] = {}
    for p in partials:
        k = nearest_sentence(spoken, float(p["end_s"]))
        if p.get("text") and (k not in first_partial or p["ts"] < first_partial[k]):
            first_partial[k] = float(p["ts"])
    out = []
    for k, s in enumerate(spoken):
        final = last_final.get(k)
        out.append(SentenceLatency(
            None if final is None else float(final["ts"]) - (wall0 + s.end_s),
            None if k not in first_partial else first_partial[k] - (wall0 + s.start_s),
            None if final is None or final.get("latency_s") is None
            else float(final["latency_s"])))
    return out


def _scripts(corpus: Sequence[Utterance], calls: int, per_call: int) -> list[CallScript]:
    cycle_s = sum(u.duration_s for u in corpus) / len(corpus) + GAP_S
    out = []
    for k in range(calls):
        picked = [corpus[(k * per_call + j) % len(corpus)] for j in range(per_call)]
        out.append(build_script(picked, lead_s=LEAD_S + k * cycle_s / calls, gap_s=GAP_S,
                                tail_s=TAIL_S))
    return out


def _summary(model: str, calls: int, outcomes: Sequence[CallOutcome]) -> dict[str, Any]:
    rows = [lat for o in outcomes for lat in sentence_latencies(
        o.script.spoken, o.wall0, o.finals, o.partials)]
    finals = [r.final_s for r in rows if r.final_s is not None]
    partials = [r.partial_s for r in rows if r.partial_s is not None]
    gw = [r.gateway_final_s for r in rows if r.gateway_final_s is not None]
    hyp = [" ".join(str(f["text"]) for f in o.finals) for o in outcomes]
    wers = [word_error_rate(o.script.reference, h) for o, h in zip(outcomes, hyp, strict=True)]
    return {
        "model": model, "calls": calls, "sentences": len(rows),
        "finals_missing": len(rows) - len(finals),
        "partials_missing": len(rows) - len(partials),
        "final_after_speech_end_s": {"p50": rounded(median(finals), 3),
                                     "p95": rounded(percentile(finals, 0.95), 3)},
        "first_partial_after_speech_start_s": {"p50": rounded(median(partials), 3),
                                               "p95": rounded(percentile(partials, 0.95), 3)},
        "gateway_reported_final_latency_s": {"p50": rounded(median(gw), 3),
                                             "p95": rounded(percentile(gw, 0.95), 3)},
        "wer_mean": rounded(sum(wers) / len(wers), 4) if wers else None,
        "calls_failed": sum(1 for o in outcomes if o.call_id is None or o.ended is None),
    }


def measure(server_url: str, model: str, calls: int, params: LatencyParams,
            corpus: Sequence[Utterance], workdir: Path) -> dict[str, Any]:
    per_call = params.sentences_single if calls == 1 else params.sentences_each
    extra = {"triton": {"asr_model": model, "final_timeout_s": 30.0, "buffer_s": 60.0}}
    with stack.gateway(workdir / f"gw-{model}-{calls}", server_url, max_calls=calls + 5,
                       extra=extra) as gw:
        outcomes = run_calls(gw, _scripts(corpus, calls, per_call),
                             finals_timeout_s=FINALS_TIMEOUT_S)
    return {"corpus": corpus_name(model), **_summary(model, calls, outcomes)}


COLUMNS = ("model", "calls", "sentences", "final_p50_s", "final_p95_s", "partial_p50_s",
           "partial_p95_s", "missing_finals", "wer_mean")


def _table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"model": r["model"], "calls": r["calls"], "sentences": r["sentences"],
             "final_p50_s": r["final_after_speech_end_s"]["p50"],
             "final_p95_s": r["final_after_speech_end_s"]["p95"],
             "partial_p50_s": r["first_partial_after_speech_start_s"]["p50"],
             "partial_p95_s": r["first_partial_after_speech_start_s"]["p95"],
             "missing_finals": r["finals_missing"], "wer_mean": r["wer_mean"]} for r in rows]


def run(params: LatencyParams, workdir: Path, results_dir: Path) -> dict[str, Any]:
    started_at, t0 = report.now_iso(), time.monotonic()
    corpora = {m: utterances(CORPORA[corpus_name(m)]) for m in params.models}
    with stack.triton(list(params.models), workdir / "triton") as server:
        env = report.environment(server.http_url)
        rows = [measure(server.grpc_url, m, c, params, corpora[m], workdir)
                for m in params.models for c in params.concurrency]
    document = {
        "benchmark": NAME, "started_at": started_at,
        "duration_s": round(time.monotonic() - t0, 1), "environment": env,
        "parameters": {"models": list(params.models), "concurrency": list(params.concurrency),
                       "sentences_single": params.sentences_single,
                       "sentences_each": params.sentences_each, "gap_s": GAP_S,
                       "chunk_ms": 160, "codec": "PCMU",
                       "corpora": {m: corpus_name(m) for m in params.models}},
        "results": rows,
    }
    report.write_result(NAME, document, results_dir)
    report.show("asr_latency (piper speech over PCMU, real time)", _table(rows), COLUMNS)
    return document
