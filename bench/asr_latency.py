"""``bench asr_latency``: end of speech -> ``transcript.final`` and speech onset -> first
partial, for real ASR models, at 1 and at 10 simultaneous calls.

Each call plays piper sentences in real time from the bench's RTP sender; the sender
knows when each sentence's speech started and ended (from the audio, bench.audio), and
the gateway's events carry their wall-clock ``ts``. A transcript belongs to the sentence
whose speech interval is nearest to the transcript's ``end_s`` (conversation timeline: the
call's first packet is at its leg's offset, a fraction of a second, small next to the pauses
between sentences). Calls start staggered so sentence ends spread out.

RTP modes (``--rtp``): ``continuous`` sends packets all along (silence in the pauses);
``stop_after_speech`` sends RTP only while a sentence is spoken, as a phone with silence
suppression and no comfort noise does: packets stop at each sentence's end of speech and
resume at the next onset, and after the last sentence none come at all (the call stays up
for ``stop_bound_s``). The gateway's media clock fills silence once no packet came for
``FILL_AFTER_MS`` (gateway/media/leg.py), so endpointing can fire; the last sentence's rows
say whether a final came within the bound, before the hangup.

Endpointing modes (``--endpointing energy,vad``): a model whose config.pbtxt has an
``endpointing`` parameter runs once per value, the ones other than its configured value
from a temporary model repository (bench.modelrepo: the model copied under another name with
that parameter changed, every other model linked), all in one Triton and one run, so the
JSON compares them side by side (``endpointing_comparison``). ``--att-context 70,13/70,1``
does the same for asr_streaming_nemo's look-ahead (``parameter_comparison`` has both), and
``--vary MODEL:KEY=V1,V2`` for any parameter of a model's config.pbtxt (e.g.
``asr_streaming_nemo:vad_flush=off,on``). ``--chunk-ms 160,80`` runs every condition once per
gateway ``triton.chunk_ms`` (audio per Triton request; ``chunk_comparison``), and
``--resampler soxr,lowdelay`` once per gateway ``rtp.resampler`` (the receive leg's 8 kHz ->
model-rate resampler; ``resampler_comparison``, WER side by side too).

Redaction is off unless ``--redaction``: the gateway's redaction stage holds a final that
ends in digits up to ``redaction.hold_s`` (3 s) for the next final (a card number read in
groups), which is a policy delay on top of the ASR's, not the ASR's own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import modelrepo, report, stack
from bench.corpus import CORPORA, Utterance, corpus_name, utterances
from bench.figures import median, percentile, ratio, rounded
from bench.speechcalls import (
    CallOutcome,
    CallScript,
    Event,
    Spoken,
    build_script,
    nearest_sentence,
    run_calls,
)
from tests.speech import word_error_rate

NAME = "asr_latency"
GAP_S = 1.5
TAIL_S = 2.5
LEAD_S = 0.5
FINALS_TIMEOUT_S = 40.0
RTP_MODES = ("continuous", "stop_after_speech")
STOP_BOUND_S = 10.0     # after RTP stopped for good: how long the call stays up for a final
SETTLE_S = 2.0          # then: no new final for this long (a sentence may end in two)


@dataclass(frozen=True, slots=True)
class LatencyParams:
    models: tuple[str, ...] = ("asr_cpu_default", "asr_streaming_nemo")
    concurrency: tuple[int, ...] = (1, 10)
    sentences_single: int = 8          # sentences the lone call speaks
    sentences_each: int = 3            # sentences each call speaks when several run
    rtp_modes: tuple[str, ...] = RTP_MODES
    endpointing: tuple[str, ...] = ()  # values of a model's endpointing parameter to compare
    endpointing_models: tuple[str, ...] = ("asr_cpu_default",)   # the models compared so
    att_contexts: tuple[str, ...] = ()  # asr_streaming_nemo att_context_size values
    nemo_endpointing: tuple[str, ...] = ()  # asr_streaming_nemo endpointing values
    vary: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (model, parameter, values)
    chunk_ms: tuple[int, ...] = (160,)  # the gateway's triton.chunk_ms values
    resamplers: tuple[str, ...] = ("lowdelay",)  # the gateway's rtp.resampler values
    stop_bound_s: float = STOP_BOUND_S
    redaction: bool = False            # the gateway's redaction stage (holds digit finals)


@dataclass(frozen=True, slots=True)
class SentenceLatency:
    final_s: float | None          # end of speech -> last final of the sentence
    partial_s: float | None        # speech onset -> first non-empty partial
    gateway_final_s: float | None  # the gateway's own latency_s of that final


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


def _scripts(corpus: Sequence[Utterance], calls: int, per_call: int,
             rtp: str = "continuous") -> list[CallScript]:
    cycle_s = sum(u.duration_s for u in corpus) / len(corpus) + GAP_S
    out = []
    for k in range(calls):
        picked = [corpus[(k * per_call + j) % len(corpus)] for j in range(per_call)]
        script = build_script(picked, lead_s=LEAD_S + k * cycle_s / calls, gap_s=GAP_S,
                              tail_s=TAIL_S)
        out.append(CallScript(script.pcm, script.spoken, talk_only=True)
                   if rtp == "stop_after_speech" else script)
    return out


def after_rtp_stop(outcomes: Sequence[CallOutcome], bound_s: float) -> dict[str, Any]:
    """The last sentence of each call, after which no packet came: whether its (last)
    final came within ``bound_s`` of the end of speech, later, or only after the BYE (the
    END request flushed it), and how late."""
    within: list[float] = []
    late = after_hangup = 0
    for o in outcomes:
        last = sentence_latencies(o.script.spoken, o.wall0, o.finals, o.partials)[-1]
        if last.final_s is None:
            continue
        end_wall = o.wall0 + o.script.spoken[-1].end_s
        up_s = None if o.hung_up_at is None else o.hung_up_at - end_wall
        if up_s is not None and last.final_s > up_s:
            after_hangup += 1
        elif last.final_s > bound_s:
            late += 1
        else:
            within.append(last.final_s)
    return {"bound_s": bound_s, "last_sentences": len(outcomes),
            "finals_within_bound": len(within), "finals_later": late,
            "finals_after_hangup": after_hangup,
            "final_after_speech_end_s": {"p50": rounded(median(within), 3),
                                         "p95": rounded(percentile(within, 0.95), 3),
                                         "max": rounded(max(within, default=None), 3)}}


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
        # finals with text: more than sentences means sentences split at a pause
        "finals": sum(1 for o in outcomes for f in o.finals if str(f.get("text") or "")),
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


def _per_sentence(outcomes: Sequence[CallOutcome]) -> list[dict[str, Any]]:
    """Each sentence's figures (seconds), in call order: for outliers and reruns."""
    return [{"call": i, "sentence": k, "final_s": rounded(lat.final_s, 3),
             "partial_s": rounded(lat.partial_s, 3),
             "gateway_final_s": rounded(lat.gateway_final_s, 3)}
            for i, o in enumerate(outcomes)
            for k, lat in enumerate(sentence_latencies(o.script.spoken, o.wall0, o.finals,
                                                       o.partials))]


@dataclass(frozen=True, slots=True)
class Condition:
    model: str              # the model as the bench names it
    served: str             # the model the gateway asks Triton for (a variant's own name)
    varied: tuple[str, str] | None   # the parameter (key, value) this run differs in
    rtp: str
    calls: int
    configured_endpointing: str | None = None   # the model's, read when the run started
    chunk_ms: int = 160                          # the gateway's triton.chunk_ms
    resampler: str = "lowdelay"                  # the gateway's rtp.resampler

    @property
    def endpointing(self) -> str | None:
        """Its endpointing parameter (None: the model has none)."""
        if self.varied is not None and self.varied[0] == modelrepo.ENDPOINTING:
            return self.varied[1]
        return self.configured_endpointing


def measure(server_url: str, cond: Condition, params: LatencyParams,
            corpus: Sequence[Utterance], workdir: Path) -> dict[str, Any]:
    per_call = params.sentences_single if cond.calls == 1 else params.sentences_each
    stop = cond.rtp == "stop_after_speech"
    extra = {"triton": {"asr_model": cond.served, "final_timeout_s": 30.0, "buffer_s": 60.0,
                        "chunk_ms": cond.chunk_ms},
             "redaction": {"enabled": params.redaction},
             "rtp": {"resampler": cond.resampler}}
    folder = workdir / (f"gw-{cond.served}-{cond.rtp}-{cond.calls}-{cond.chunk_ms}"
                        f"-{cond.resampler}")
    with stack.gateway(folder, server_url, max_calls=cond.calls + 5, extra=extra) as gw:
        outcomes = run_calls(gw, _scripts(corpus, cond.calls, per_call, cond.rtp),
                             finals_timeout_s=params.stop_bound_s if stop else FINALS_TIMEOUT_S,
                             until_last=stop, settle_s=SETTLE_S if stop else 0.0)
    row = {"corpus": corpus_name(cond.model), **_summary(cond.model, cond.calls, outcomes),
           "endpointing": cond.endpointing, "rtp": cond.rtp, "chunk_ms": cond.chunk_ms,
           "resampler": cond.resampler,
           "varied": None if cond.varied is None else dict([cond.varied]),
           "per_sentence": _per_sentence(outcomes)}
    if stop:
        row["after_rtp_stop"] = after_rtp_stop(outcomes, params.stop_bound_s)
    return row


COLUMNS = ("model", "endpointing", "varied", "chunk_ms", "resampler", "rtp", "calls", "sentences",
           "final_p50_s",
           "final_p95_s",
           "partial_p50_s", "partial_p95_s", "missing_finals", "last_within_bound",
           "wer_mean")


def _last_within(row: dict[str, Any]) -> str | None:
    stop = row.get("after_rtp_stop")
    return None if stop is None else f"{stop['finals_within_bound']}/{stop['last_sentences']}"


def _table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"model": r["model"], "endpointing": r.get("endpointing"), "rtp": r.get("rtp"),
             "varied": ",".join(f"{k}={v}" for k, v in (r.get("varied") or {}).items()) or None,
             "chunk_ms": r.get("chunk_ms", 160), "resampler": r.get("resampler"),
             "calls": r["calls"], "sentences": r["sentences"],
             "last_within_bound": _last_within(r),
             "final_p50_s": r["final_after_speech_end_s"]["p50"],
             "final_p95_s": r["final_after_speech_end_s"]["p95"],
             "partial_p50_s": r["first_partial_after_speech_start_s"]["p50"],
             "partial_p95_s": r["first_partial_after_speech_start_s"]["p95"],
             "missing_finals": r["finals_missing"], "wer_mean": r["wer_mean"]} for r in rows]


def parameter_comparison(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model, varied parameter, RTP mode and calls: each value's p50/p95 (end of speech
    -> final) over the first value's, from rows of one run."""
    out = []
    groups: dict[tuple[str, str, str, int, int], list[tuple[str, dict[str, Any]]]] = {}
    for r in rows:
        for key, value in (r.get("varied") or {}).items():
            groups.setdefault((r["model"], key, r.get("rtp", "continuous"), r["calls"],
                               r.get("chunk_ms", 160)), []).append((value, r))
    for (model, key, rtp, calls, chunk_ms), group in groups.items():
        base_value, base = group[0]
        for value, other in group[1:]:
            item: dict[str, Any] = {"model": model, "parameter": key, "rtp": rtp,
                                    "calls": calls, "baseline": base_value, "value": value}
            if chunk_ms != 160:
                item["chunk_ms"] = chunk_ms
            for q in ("p50", "p95"):
                item[f"final_{q}_ratio"] = rounded(ratio(
                    other["final_after_speech_end_s"][q], base["final_after_speech_end_s"][q]), 3)
            out.append(item)
    return out


def chunk_comparison(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model variant (varied value), RTP mode and calls: each gateway chunk_ms's p50/p95
    (end of speech -> final) over the first chunk_ms's, from rows of one run."""
    out = []
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        varied = ",".join(f"{k}={v}" for k, v in (r.get("varied") or {}).items())
        groups.setdefault((r["model"], varied, r.get("rtp", "continuous"), r["calls"]),
                          []).append(r)
    for (model, varied, rtp, calls), group in groups.items():
        base = group[0]
        for other in group[1:]:
            if other.get("chunk_ms", 160) == base.get("chunk_ms", 160):
                continue
            item: dict[str, Any] = {"model": model, "varied": varied or None, "rtp": rtp,
                                    "calls": calls, "baseline_chunk_ms": base.get("chunk_ms", 160),
                                    "chunk_ms": other.get("chunk_ms", 160)}
            for q in ("p50", "p95"):
                item[f"final_{q}_ratio"] = rounded(ratio(
                    other["final_after_speech_end_s"][q], base["final_after_speech_end_s"][q]), 3)
            out.append(item)
    return out


def resampler_comparison(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model variant, chunk_ms, RTP mode and calls: each gateway rtp.resampler's p50/p95
    (end of speech -> final) over the first resampler's, and both WERs, from rows of one run."""
    out = []
    groups: dict[tuple[str, str, int, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("resampler") is None:
            continue
        varied = ",".join(f"{k}={v}" for k, v in (r.get("varied") or {}).items())
        groups.setdefault((r["model"], varied, r.get("chunk_ms", 160),
                           r.get("rtp", "continuous"), r["calls"]), []).append(r)
    for (model, varied, chunk_ms, rtp, calls), group in groups.items():
        base = group[0]
        for other in group[1:]:
            if other["resampler"] == base["resampler"]:
                continue
            item: dict[str, Any] = {"model": model, "varied": varied or None,
                                    "chunk_ms": chunk_ms, "rtp": rtp, "calls": calls,
                                    "baseline_resampler": base["resampler"],
                                    "resampler": other["resampler"]}
            for q in ("p50", "p95"):
                item[f"final_{q}_ratio"] = rounded(ratio(
                    other["final_after_speech_end_s"][q], base["final_after_speech_end_s"][q]), 3)
            item["baseline_wer_mean"] = base["wer_mean"]
            item["wer_mean"] = other["wer_mean"]
            out.append(item)
    return out


def endpointing_comparison(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """:func:`parameter_comparison` of the endpointing parameter (value as ``endpointing``)."""
    return [{"model": c["model"], "rtp": c["rtp"], "calls": c["calls"],
             "baseline": c["baseline"], "endpointing": c["value"],
             "final_p50_ratio": c["final_p50_ratio"], "final_p95_ratio": c["final_p95_ratio"]}
            for c in parameter_comparison(rows) if c["parameter"] == modelrepo.ENDPOINTING]


def _conditions(params: LatencyParams, variants: modelrepo.Variants
                ) -> list[Condition]:
    configured = {m: modelrepo.configured(m, modelrepo.ENDPOINTING) for m in params.models}
    return [Condition(m, served, varied, rtp, c, configured[m], chunk, resampler)
            for m in params.models
            for served, varied in variants.served(m) for rtp in params.rtp_modes
            for c in params.concurrency for chunk in params.chunk_ms
            for resampler in params.resamplers]


def _variations(params: LatencyParams) -> list[modelrepo.Variation]:
    return [*(modelrepo.Variation(key, values, (model,)) for model, key, values in params.vary),
            modelrepo.Variation(modelrepo.ENDPOINTING, params.endpointing,
                                params.endpointing_models),
            modelrepo.Variation(modelrepo.ENDPOINTING, params.nemo_endpointing,
                                ("asr_streaming_nemo",)),
            modelrepo.Variation("att_context_size", params.att_contexts,
                                ("asr_streaming_nemo",))]


def run(params: LatencyParams, workdir: Path, results_dir: Path) -> dict[str, Any]:
    started_at, t0 = report.now_iso(), time.monotonic()
    corpora = {m: utterances(CORPORA[corpus_name(m)]) for m in params.models}
    variants = modelrepo.parameter_variants(params.models, _variations(params),
                                            workdir / "model-repository")
    conditions = _conditions(params, variants)
    with stack.triton(variants.models, workdir / "triton", variants.repository) as server:
        env = report.environment(server.http_url)
        rows = [measure(server.grpc_url, cond, params, corpora[cond.model], workdir)
                for cond in conditions]
    document = {
        "benchmark": NAME, "started_at": started_at,
        "duration_s": round(time.monotonic() - t0, 1), "environment": env,
        "parameters": {"models": list(params.models), "concurrency": list(params.concurrency),
                       "sentences_single": params.sentences_single,
                       "sentences_each": params.sentences_each, "gap_s": GAP_S,
                       "chunk_ms": list(params.chunk_ms), "codec": "PCMU",
                       "resamplers": list(params.resamplers),
                       "vary": [{"model": m, "parameter": k, "values": list(v)}
                                for m, k, v in params.vary],
                       "corpora": {m: corpus_name(m) for m in params.models},
                       "rtp_modes": list(params.rtp_modes),
                       "endpointing": list(params.endpointing),
                       "endpointing_models": list(params.endpointing_models),
                       "att_contexts": list(params.att_contexts),
                       "nemo_endpointing": list(params.nemo_endpointing),
                       "stop_bound_s": params.stop_bound_s,
                       "redaction": params.redaction},
        "results": rows,
        "endpointing_comparison": endpointing_comparison(rows),
        "parameter_comparison": parameter_comparison(rows),
        "chunk_comparison": chunk_comparison(rows),
        "resampler_comparison": resampler_comparison(rows),
    }
    report.write_result(NAME, document, results_dir)
    report.show("asr_latency (piper speech over PCMU, real time)", _table(rows), COLUMNS)
    return document
