"""``bench redaction``: recall and precision of PII redaction on the labelled corpus
(``tests/redaction_corpus``), and the time it adds to a final.

**Text mode** (always): each corpus item is one call; its turns become
``transcript.final`` events of the agent and customer channels (words = the text split on
spaces, 0.3 s each, 1.2 s between turns, each final arriving 0.4 s after its last word)
fed to :class:`gateway.redaction.processor.Redactor` (default ``[redaction]`` config plus
the corpus's custom patterns), the way the event stage does: a processor deadline that
has passed fires (``on_timer``) before the next event, ``call.ended`` 1 s after the last
final releases anything still held, then ``forget_call``. What comes out for each turn is
matched by channel and segment.

- **recall** per entity: labelled values that do not leak (``tests/redaction_corpus/leaks``:
  no surface form of the value survives in the turn's output text, nor in its words);
  ``typed``: the output's ``redaction`` block names the label's entity; a turn that never
  came out is counted as ``lost`` (no leak, but reported);
- **precision** on the PII-free items: items whose every turn came out unchanged (text and
  no ``redaction`` block), with each false redaction listed; turns of PII items without a
  label that changed are listed as ``collateral``;
- **latency added per final**: ``time.perf_counter`` around each ``process()`` call of a
  final, over ``--repeats`` passes of the corpus (p50, p99, max).

**Call mode** (``--calls``): ``bench/redaction_calls.py`` (piper voice, Whisper, real calls).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import report
from bench.figures import percentile, rounded
from gateway.config import CustomRedaction, RedactionConfig
from gateway.events.processing import Processor
from gateway.events.types import (
    CallEnded,
    GatewayEvent,
    RedactionApplied,
    TranscriptFinal,
    TranscriptWord,
)
from gateway.redaction.processor import Redactor
from tests.redaction_corpus.corpus import CorpusItem, Label, Pattern, custom_patterns, load
from tests.redaction_corpus.leaks import leaks

NAME = "redaction"
WORD_S = 0.3
GAP_S = 1.2
ASR_LATENCY_S = 0.4
END_AFTER_S = 1.0
ITEM_SPACING_S = 10_000.0
MAX_TIMER_FIRES = 100
GOALS = {"card_recall": 1.0, "entity_recall": 0.95, "precision": 0.95, "p99_ms": 1.0}


@dataclass(frozen=True, slots=True)
class RedactionParams:
    repeats: int = 5
    calls: bool = False
    call_items: int = 24
    model: str = "asr_cpu_default"
    corpus: Path | None = None          # text mode on another JSONL (held-out variant)


def redaction_config(patterns: Sequence[Pattern] | None = None) -> RedactionConfig:
    """The default ``[redaction]`` with the corpus's custom patterns."""
    patterns = custom_patterns() if patterns is None else patterns
    return RedactionConfig(custom=tuple(
        CustomRedaction(p.name, re.compile(p.pattern, re.IGNORECASE), p.tag) for p in patterns))


# --------------------------------------------------------------------------- what came out
@dataclass(frozen=True, slots=True)
class TurnOutput:
    text: str
    words: str
    entities: tuple[str, ...]
    redacted: bool                  # a ``redaction`` block was attached

    @classmethod
    def of(cls, event: TranscriptFinal) -> TurnOutput:
        block = event.redaction
        return cls(event.text, " ".join(w.word for w in event.words),
                   tuple(block.entities) if block is not None else (), block is not None)


Outputs = list[TurnOutput | None]   # per turn; None: nothing came out for it


def final_event(call_id: str, channel: str, text: str, segment: int, start_s: float
                ) -> TranscriptFinal:
    words = tuple(TranscriptWord(word=w, start_s=start_s + k * WORD_S,
                                 end_s=start_s + (k + 1) * WORD_S - 0.05, confidence=0.9)
                  for k, w in enumerate(text.split(" ")))
    return TranscriptFinal(call_id=call_id, channel=channel, participant=None,
                           conversation_id=call_id, text=text, segment=segment,
                           start_s=start_s, end_s=start_s + len(words) * WORD_S,
                           words=words, latency_s=ASR_LATENCY_S)


def ended_event(call_id: str, duration_s: float) -> CallEnded:
    return CallEnded(call_id=call_id, reason="bye", by="remote", answered=True,
                     duration_s=duration_s, sip_call_id=call_id, conversation_id=call_id,
                     channels=("agent", "customer"), legs=(), asr_finals_flushed=True,
                     recording=None)


@dataclass(slots=True)
class ItemRun:
    outputs: Outputs
    process_s: list[float] = field(default_factory=list)
    applied: int = 0
    extra: int = 0                  # finals that matched no turn


def fire_timers(processor: Processor, now: float, sink: list[GatewayEvent]) -> None:
    """What the event stage does before an event at ``now``: every deadline passed fires."""
    for _ in range(MAX_TIMER_FIRES):
        deadline = processor.next_deadline()
        if deadline is None or deadline > now:
            return
        sink += processor.on_timer(deadline)


class _Feeder:
    """Drives one Redactor the way the event stage does, for one item at a time."""

    def __init__(self, redactor: Processor) -> None:
        self.redactor = redactor

    def _fire_timers(self, now: float, sink: list[GatewayEvent]) -> None:
        fire_timers(self.redactor, now, sink)

    def run(self, item: CorpusItem, call_id: str, base: float) -> ItemRun:
        run = ItemRun([None] * len(item.turns))
        out: list[GatewayEvent] = []
        cursor, now = 0.0, base
        for k, turn in enumerate(item.turns):
            event = final_event(call_id, turn.channel, turn.text, k, cursor)
            cursor = event.end_s + GAP_S
            now = base + event.end_s + ASR_LATENCY_S
            self._fire_timers(now, out)
            t0 = time.perf_counter()
            result = self.redactor.process(event, now)
            run.process_s.append(time.perf_counter() - t0)
            out += result
        now += END_AFTER_S
        self._fire_timers(now, out)
        out += self.redactor.process(ended_event(call_id, cursor), now)
        self.redactor.forget_call(call_id)
        self._collect(item, out, run)
        return run

    @staticmethod
    def _collect(item: CorpusItem, events: Iterable[GatewayEvent], run: ItemRun) -> None:
        for e in events:
            if isinstance(e, RedactionApplied):
                run.applied += 1
            if not isinstance(e, TranscriptFinal):
                continue
            k = e.segment
            if 0 <= k < len(item.turns) and item.turns[k].channel == e.channel:
                run.outputs[k] = TurnOutput.of(e)
            else:
                run.extra += 1


def run_text(items: Sequence[CorpusItem], config: RedactionConfig, repeats: int = 1,
             processor: Processor | None = None) -> tuple[list[ItemRun], list[float]]:
    """Every item through one Redactor (or ``processor``, a stand-in); the runs of the
    first pass and every final's ``process()`` time over all passes."""
    feeder = _Feeder(processor if processor is not None else Redactor(config))
    first: list[ItemRun] = []
    times: list[float] = []
    for rep in range(max(1, repeats)):
        for i, item in enumerate(items):
            run = feeder.run(item, f"corpus-{rep}-{i}", (rep * len(items) + i) * ITEM_SPACING_S)
            times += run.process_s
            if rep == 0:
                first.append(run)
    return first, times


# --------------------------------------------------------------------------- scoring
@dataclass(frozen=True, slots=True)
class LabelOutcome:
    item: str
    label: Label
    leaked: bool
    typed: bool
    lost: bool
    output: str | None


def _same(a: str, b: str) -> bool:
    return a.split() == b.split()


def score_labels(item: CorpusItem, outputs: Outputs) -> list[LabelOutcome]:
    result = []
    for label in item.labels:
        out = outputs[label.turn] if label.turn < len(outputs) else None
        if out is None:
            result.append(LabelOutcome(item.id, label, False, False, True, None))
            continue
        leaked = leaks(label.value, out.text) or leaks(label.value, out.words)
        result.append(LabelOutcome(item.id, label, leaked, label.entity in out.entities, False,
                                   out.text))
    return result


def changed_turns(item: CorpusItem, outputs: Outputs, labelled: bool
                  ) -> list[dict[str, Any]]:
    """Turns (with labels or without, as asked) whose output differs from the input."""
    rows = []
    for k, turn in enumerate(item.turns):
        if bool(item.labels_of(k)) != labelled:
            continue
        out = outputs[k] if k < len(outputs) else None
        if out is None or out.redacted or not _same(out.text, turn.text):
            rows.append({"id": item.id, "turn": k, "channel": turn.channel, "text": turn.text,
                         "output": None if out is None else out.text,
                         "entities": [] if out is None else list(out.entities)})
    return rows


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def entity_rows(outcomes: Sequence[LabelOutcome]) -> list[dict[str, Any]]:
    rows = []
    for entity in sorted({o.label.entity for o in outcomes}):
        mine = [o for o in outcomes if o.label.entity == entity]
        leaked = sum(o.leaked for o in mine)
        rows.append({"entity": entity, "labels": len(mine), "leaked": leaked,
                     "lost": sum(o.lost for o in mine),
                     "recall": rounded(_ratio(len(mine) - leaked, len(mine)), 4),
                     "typed": rounded(_ratio(sum(o.typed for o in mine), len(mine)), 4)})
    return rows


def _form_rows(outcomes: Sequence[LabelOutcome]) -> list[dict[str, Any]]:
    keys = sorted({(o.label.entity, o.label.form) for o in outcomes})
    rows = []
    for entity, form in keys:
        mine = [o for o in outcomes if (o.label.entity, o.label.form) == (entity, form)]
        rows.append({"entity": entity, "form": form, "labels": len(mine),
                     "leaked": sum(o.leaked for o in mine)})
    return rows


def _leak_rows(outcomes: Sequence[LabelOutcome]) -> list[dict[str, Any]]:
    return [{"id": o.item, "turn": o.label.turn, "entity": o.label.entity,
             "form": o.label.form, "surface": o.label.surface, "output": o.output}
            for o in outcomes if o.leaked]


def score(items: Sequence[CorpusItem], outputs: Sequence[Outputs]) -> dict[str, Any]:
    """Recall per entity, precision on the PII-free items, and what went wrong where."""
    outcomes = [o for item, out in zip(items, outputs, strict=True)
                for o in score_labels(item, out)]
    clean = [(item, out) for item, out in zip(items, outputs, strict=True)
             if item.kind == "clean"]
    false = [row for item, out in clean for row in changed_turns(item, out, labelled=False)]
    unchanged = len(clean) - len({row["id"] for row in false})
    collateral = [row for item, out in zip(items, outputs, strict=True) if item.kind == "pii"
                  for row in changed_turns(item, out, labelled=False)]
    return {
        "entities": entity_rows(outcomes),
        "forms": _form_rows(outcomes),
        "leaks": _leak_rows(outcomes),
        "lost": [{"id": o.item, "turn": o.label.turn, "entity": o.label.entity}
                 for o in outcomes if o.lost],
        "clean": {"items": len(clean), "unchanged": unchanged,
                  "precision": rounded(_ratio(unchanged, len(clean)), 4),
                  "false_redactions": false},
        "collateral": {"unlabelled_turns_changed": len(collateral), "turns": collateral},
    }


def goals(scored: dict[str, Any], p99_ms: float | None) -> dict[str, Any]:
    rows = scored["entities"]
    card = next((r["recall"] for r in rows if r["entity"] == "card"), None)
    worst = min(rows, key=lambda r: r["recall"] if r["recall"] is not None else 1.0,
                default=None)
    precision = scored["clean"]["precision"]
    return {
        "card_recall_100pct": card is not None and card >= GOALS["card_recall"],
        "every_entity_recall_95pct": all(r["recall"] is not None
                                         and r["recall"] >= GOALS["entity_recall"]
                                         for r in rows),
        "worst_entity": None if worst is None else worst["entity"],
        "precision_95pct": precision is not None and precision >= GOALS["precision"],
        "p99_under_1ms": None if p99_ms is None else p99_ms <= GOALS["p99_ms"],
    }


def latency(times: Sequence[float]) -> dict[str, Any]:
    us = [t * 1e6 for t in times]
    return {"finals": len(us), "p50_us": rounded(percentile(us, 0.5), 3),
            "p99_us": rounded(percentile(us, 0.99), 3),
            "max_us": rounded(max(us) if us else None, 3),
            "mean_us": rounded(sum(us) / len(us) if us else None, 3)}


def text_mode(items: Sequence[CorpusItem] | None = None, repeats: int = 1,
              config: RedactionConfig | None = None, processor: Processor | None = None
              ) -> dict[str, Any]:
    items = load() if items is None else items
    runs, times = run_text(items, config or redaction_config(), repeats, processor)
    scored = score(items, [r.outputs for r in runs])
    lat = latency(times)
    p99_ms = None if lat["p99_us"] is None else lat["p99_us"] / 1000
    return {"items": len(items), "pii_items": sum(i.kind == "pii" for i in items),
            "clean_items": sum(i.kind == "clean" for i in items),
            "labels": sum(len(i.labels) for i in items), "repeats": repeats,
            "redaction_applied_events": sum(r.applied for r in runs),
            "finals_unmatched": sum(r.extra for r in runs),
            **scored, "latency_per_final": lat, "goals": goals(scored, p99_ms)}


# --------------------------------------------------------------------------- the command
TEXT_COLUMNS = ("entity", "labels", "leaked", "lost", "recall", "typed")
CALL_COLUMNS = ("entity", "labels", "heard", "leaked", "recall", "recall_heard",
                "partial_leaks")


def show(title: str, result: dict[str, Any], columns: Sequence[str] = TEXT_COLUMNS) -> None:
    report.show(f"{title}: recall per entity", result["entities"], columns)
    clean = result["clean"]
    rows = [{"items": clean["items"], "unchanged": clean["unchanged"],
             "precision": clean["precision"],
             "collateral_turns": result["collateral"]["unlabelled_turns_changed"]}]
    report.show(f"{title}: precision on PII-free items", rows,
                ("items", "unchanged", "precision", "collateral_turns"))
    if "latency_per_final" in result:
        report.show(f"{title}: time added per final (process())",
                    [result["latency_per_final"]],
                    ("finals", "p50_us", "p99_us", "max_us", "mean_us"))
    for leak in result["leaks"][:40]:
        print(f"  leak {leak['id']} turn {leak['turn']} {leak['entity']}/{leak['form']}: "
              f"{leak['output']!r}")
    for row in result["clean"]["false_redactions"][:40]:
        print(f"  false {row['id']} turn {row['turn']}: {row['text']!r} -> {row['output']!r}")
    print(f"  goals: {result['goals']}", flush=True)


def run(params: RedactionParams, workdir: Path, results_dir: Path) -> dict[str, Any]:
    started_at, t0 = report.now_iso(), time.monotonic()
    text = text_mode(load(params.corpus) if params.corpus else None, repeats=params.repeats)
    show("redaction (text)", text)
    document: dict[str, Any] = {
        "benchmark": NAME, "started_at": started_at, "environment": report.environment(),
        "parameters": {"repeats": params.repeats, "calls": params.calls,
                       "corpus": str(params.corpus or "tests/redaction_corpus/utterances.jsonl"),
                       "call_items": params.call_items, "model": params.model,
                       "config": "default [redaction] + tests/redaction_corpus custom patterns"},
        "text": text,
    }
    if params.calls:
        from bench import redaction_calls
        calls = redaction_calls.run_calls_mode(params, workdir, document)
        document["calls"] = calls
        report.write_result(NAME, document, results_dir)
        for view in ("gateway", "whisper_text_one_call"):
            calls[view]["goals"] = goals(calls[view], None)
            show(f"redaction (calls, Whisper, {view})", calls[view], CALL_COLUMNS)
    document["duration_s"] = round(time.monotonic() - t0, 1)
    report.write_result(NAME, document, results_dir)
    return document
