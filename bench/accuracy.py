"""``bench accuracy``: word error rate of transcripts made through the gateway (8 kHz
mu-law RTP, jitter buffer, resampling, streaming) versus the same model fed the same
8 kHz speech directly (tritonclient stream, resampled to 16 kHz with soxr, no SIP/RTP),
and with packets dropped by the sender (2 %, 5 %: independent random losses).

The sentences (bench/corpus.py: each model's own corpus, piper voice, and the held-out
multi-voice set, ``--corpora``) are split over a few calls per condition; all conditions'
calls run at once. WER is over the whole corpus: word edits summed over calls divided by the
reference words (tests/speech.py normalisation); ``*_numbers_folded`` is the same with spoken
numbers and digits folded to digits on both sides (bench.numwords), so "forty five" and "45"
agree.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from bench import report, stack
from bench.corpus import OWN, Utterance, corpus_utterances, corpus_voices, resolve_corpora
from bench.figures import ratio, rounded
from bench.numwords import fold_numbers
from bench.speechcalls import CallOutcome, CallScript, build_script, run_calls
from tests.speech import normalise, wer_words
from tests.triton.fixtures import AsrStream

NAME = "accuracy"
GAP_S = 1.5
TAIL_S = 2.5
LEAD_S = 0.5
MODEL_RATE_HZ = 16000
FINALS_TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class AccuracyParams:
    models: tuple[str, ...] = ("asr_cpu_default", "asr_streaming_nemo")
    losses: tuple[float, ...] = (0.0, 0.02, 0.05)
    calls_per_condition: int = 4
    sentences: int = 36
    corpora: tuple[str, ...] = (OWN, "heldout")   # own: the model's (bench.corpus)


def corpus_wer(pairs: Sequence[tuple[str, str]], *, fold: bool = False) -> float:
    """Word edits over all (reference, hypothesis) pairs / reference words; ``fold``: spoken
    numbers and digits folded to digits first (bench.numwords)."""
    def words(text: str) -> list[str]:
        return fold_numbers(normalise(text)) if fold else normalise(text)
    total = sum(len(words(ref)) for ref, _hyp in pairs)
    edits = sum(wer_words(words(ref), words(hyp)) * max(1, len(words(ref)))
                for ref, hyp in pairs)
    return edits / max(1, total)


def scripts(corpus: Sequence[Utterance], calls: int) -> list[CallScript]:
    per_call = -(-len(corpus) // calls)
    groups = [corpus[i:i + per_call] for i in range(0, len(corpus), per_call)]
    return [build_script(g, lead_s=LEAD_S, gap_s=GAP_S, tail_s=TAIL_S) for g in groups]


def _direct_text(url: str, model: str, script: CallScript, corrid: int) -> str:
    audio = soxr.resample(script.pcm.astype(np.float32) / 32768, 8000, MODEL_RATE_HZ)
    stream = AsrStream(url, model)
    try:
        results = stream.stream(corrid, np.asarray(audio, dtype=np.float32))
    finally:
        stream.close()
    return " ".join(str(r["text"]) for r in results if r.get("type") == "final")


def _gateway_text(outcome: CallOutcome) -> str:
    finals = sorted(outcome.finals, key=lambda e: float(e.get("end_s", 0.0)))
    return " ".join(str(f["text"]) for f in finals)


def _condition(outcomes: Sequence[CallOutcome], loss: float, direct_wer: float,
               direct_folded: float) -> dict[str, Any]:
    pairs = [(o.script.reference, _gateway_text(o)) for o in outcomes]
    wer, folded = corpus_wer(pairs), corpus_wer(pairs, fold=True)
    lost = sum(int(leg.get("lost", 0)) for o in outcomes if o.ended
               for leg in o.ended.get("legs", []))
    expected = sum(int(leg.get("expected", 0)) for o in outcomes if o.ended
                   for leg in o.ended.get("legs", []))
    return {"loss_injected": loss, "wer": rounded(wer, 4),
            "wer_over_direct": rounded(ratio(wer, direct_wer), 3),
            "wer_minus_direct": rounded(wer - direct_wer, 4),
            "wer_numbers_folded": rounded(folded, 4),
            "wer_numbers_folded_over_direct": rounded(ratio(folded, direct_folded), 3),
            "gateway_lost_pct": rounded(100 * lost / max(1, expected), 2),
            "calls_failed": sum(1 for o in outcomes if o.call_id is None or o.ended is None),
            "transcripts": [{"reference": o.script.reference, "hypothesis": _gateway_text(o)}
                            for o in outcomes]}


def measure(url: str, model: str, params: AccuracyParams, corpus: Sequence[Utterance],
            workdir: Path, name: str) -> dict[str, Any]:
    per_condition = scripts(corpus, params.calls_per_condition)
    direct = [(s.reference, _direct_text(url, model, s, 1000 + i))
              for i, s in enumerate(per_condition)]
    direct_wer, direct_folded = corpus_wer(direct), corpus_wer(direct, fold=True)
    all_scripts = [s for _loss in params.losses for s in per_condition]
    losses = [loss for loss in params.losses for _s in per_condition]
    extra = {"triton": {"asr_model": model, "final_timeout_s": 60.0, "buffer_s": 120.0},
             "redaction": {"enabled": False}}      # its tags would count as word errors
    with stack.gateway(workdir / f"gw-acc-{model}-{name}", url, max_calls=len(all_scripts) + 5,
                       extra=extra) as gw:
        outcomes = run_calls(gw, all_scripts, losses=losses, finals_timeout_s=FINALS_TIMEOUT_S)
    n = len(per_condition)
    conditions = [_condition(outcomes[i * n:(i + 1) * n], loss, direct_wer, direct_folded)
                  for i, loss in enumerate(params.losses)]
    return {"model": model, "corpus": name, "voices": corpus_voices(name),
            "sentences": len(corpus), "direct_wer": rounded(direct_wer, 4),
            "direct_wer_numbers_folded": rounded(direct_folded, 4),
            "direct_transcripts": [{"reference": r, "hypothesis": h} for r, h in direct],
            "through_gateway": conditions}


def _table(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"model": r["model"], "corpus": r["corpus"], "loss_pct": 100 * c["loss_injected"],
             "wer_direct": r["direct_wer"], "wer_gateway": c["wer"],
             "ratio": c["wer_over_direct"], "diff": c["wer_minus_direct"],
             "folded_direct": r["direct_wer_numbers_folded"],
             "folded_gateway": c["wer_numbers_folded"]}
            for r in rows for c in r["through_gateway"]]


def run(params: AccuracyParams, workdir: Path, results_dir: Path) -> dict[str, Any]:
    started_at, t0 = report.now_iso(), time.monotonic()
    names = {m: resolve_corpora(m, params.corpora) for m in params.models}
    spoken = {c: corpus_utterances(c)[: params.sentences] for m in params.models
              for c in names[m]}
    with stack.triton(list(params.models), workdir / "triton") as server:
        env = report.environment(server.http_url)
        rows = [measure(server.grpc_url, m, params, spoken[c], workdir, c)
                for m in params.models for c in names[m]]
    document = {
        "benchmark": NAME, "started_at": started_at,
        "duration_s": round(time.monotonic() - t0, 1), "environment": env,
        "parameters": {"models": list(params.models), "losses": list(params.losses),
                       "calls_per_condition": params.calls_per_condition,
                       "sentences": params.sentences, "voice": "piper (joe-us), 8 kHz",
                       "corpora": {m: list(names[m]) for m in params.models},
                       "voices": {c: corpus_voices(c) + ", 8 kHz" for c in spoken},
                       "codec": "PCMU", "loss_model": "independent random drops",
                       "redaction": False},
        "results": rows,
    }
    report.write_result(NAME, document, results_dir)
    report.show("accuracy (WER, call-centre sentences)", _table(rows),
                ("model", "corpus", "loss_pct", "wer_direct", "wer_gateway", "ratio", "diff",
                 "folded_direct", "folded_gateway"))
    return document
