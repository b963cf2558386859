"""``bench event_stage``: what the event processing stage costs per event.

The same events (a transcript final with ten words, as a call produces after each
utterance, and a DTMF digit) through :class:`gateway.events.processing.ProcessingStage`
alone and through :meth:`gateway.events.bus.EventBus.emit` (stage, stamping, the events
counter, the timer check; no sinks or subscribers, whose work is queued off the media path
anyway) with 0, 1 and 10 trivial processors (each returns its input). Microseconds per
event, best of ``--repeats`` timings of ``--events`` calls each, the cases taking turns
within each repeat, so other jobs on the host inflate it least and alike; ``ratio`` is the
time over the time with no processors, measured side by side in the same run. The media
path never waits on it: ``emit`` is synchronous and does no I/O, so its cost is what an
event can add to the loop, as a share of one 20 ms media frame (``frame_share_pct``).
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench import report
from bench.figures import ratio, rounded
from gateway.events.bus import EventBus
from gateway.events.processing import ProcessingStage, ProcessorBase
from gateway.events.types import DtmfReceived, GatewayEvent, TranscriptFinal, TranscriptWord
from gateway.metrics import Metrics

NAME = "event_stage"
PROCESSOR_COUNTS = (0, 1, 10)
FRAME_US = 20_000.0


@dataclass(frozen=True, slots=True)
class StageParams:
    events: int = 20_000
    repeats: int = 7


class Passes(ProcessorBase):
    """The trivial processor: returns its input (the floor of any real processor)."""

    def __init__(self, index: int) -> None:
        self.name = f"passes-{index}"

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        return (event,)


def _events() -> dict[str, GatewayEvent]:
    words = tuple(TranscriptWord(word=w, start_s=0.3 * i, end_s=0.3 * i + 0.25,
                                 confidence=0.9)
                  for i, w in enumerate("i would like to check the status of my order".split()))
    final = TranscriptFinal(call_id="c-0123456789", channel="customer", participant=None,
                            conversation_id="conv-1", text=" ".join(w.word for w in words),
                            segment=3, start_s=0.0, end_s=3.0, words=words, latency_s=0.4)
    dtmf = DtmfReceived(call_id="c-0123456789", channel="customer", digit="5",
                        duration_ms=100, end_seen=True)
    return {"transcript.final (10 words)": final, "dtmf": dtmf}


def _side_by_side_us(cases: dict[str, Callable[[], object]], params: StageParams
                     ) -> dict[str, float]:
    """Best time per call of each case; the cases take turns within each repeat, so load
    from other jobs that comes and goes hits them alike."""
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(params.repeats):
        for name, fn in cases.items():
            best[name] = min(best[name], timeit.timeit(fn, number=params.events))
    return {name: t / params.events * 1e6 for name, t in best.items()}


def _clock() -> float:
    return 1_700_000_000.0


def measure(params: StageParams) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for label, event in _events().items():
        cases: dict[str, Callable[[], object]] = {}
        for count in PROCESSOR_COUNTS:
            processors = [Passes(i) for i in range(count)]
            bus = EventBus(Metrics(), processors, clock=_clock)
            bus.emit(event)                          # the counter's label exists from here
            cases[f"stage {count}"] = partial(ProcessingStage(processors).run, event, 0.0)
            cases[f"emit {count}"] = partial(bus.emit, event)
        us = _side_by_side_us(cases, params)
        for count in PROCESSOR_COUNTS:
            stage_us, emit_us = us[f"stage {count}"], us[f"emit {count}"]
            rows.append({"event": label, "processors": count,
                         "stage_us": rounded(stage_us, 3), "emit_us": rounded(emit_us, 3),
                         "stage_ratio": rounded(ratio(stage_us, us["stage 0"]), 2),
                         "emit_ratio": rounded(ratio(emit_us, us["emit 0"]), 2),
                         "frame_share_pct": rounded(emit_us / FRAME_US * 100, 4)})
    return rows


def run(params: StageParams, workdir: Path, results_dir: Path) -> dict[str, Any]:
    del workdir  # nothing to keep: no processes, no sockets
    started_at, t0 = report.now_iso(), time.monotonic()
    env = report.environment()
    rows = measure(params)
    document = {
        "benchmark": NAME, "started_at": started_at,
        "duration_s": round(time.monotonic() - t0, 1), "environment": env,
        "parameters": {"events": params.events, "repeats": params.repeats,
                       "processor_counts": list(PROCESSOR_COUNTS),
                       "processor": "returns its input"},
        "results": {"per_event_us": rows},
    }
    report.write_result(NAME, document, results_dir)
    report.show("event_stage: microseconds per event (best of repeats)", rows,
                ("event", "processors", "stage_us", "stage_ratio", "emit_us", "emit_ratio",
                 "frame_share_pct"))
    return document
