"""The processing stage: ordered processors every event passes before any consumer sees it.

Layer: pure core (synchronous; time is the ``now`` parameter; failures are returned, the
bus logs and counts them).

A processor takes one event and returns the events to pass on, in order:

- ``(event,)``: unchanged;
- ``(dataclasses.replace(event, text=...),)``: transformed (redaction);
- ``(event, CategoryMatched(...))``: the event plus events it caused (analytics);
- ``()``: dropped (withheld).

Processors run in the configured order; each one's outputs (added events included) are the
next one's inputs, so a later processor sees what an earlier one added, never the other way
round. A processor that raises, or returns something that is not a sequence of events, is
a failure: the event goes on to the next processor unchanged, or, for a processor with
``fail_closed = True`` (redaction: better lost than leaked), it is dropped. Either way the
daemon carries on.

**Deadlines.** A processor may need to speak without an incoming event ("the agent did not
say the disclosure within 30 s", dead air): ``next_deadline()`` says when (same timebase as
``now``, ``None`` for never) and the bus calls :meth:`ProcessingStage.tick` once the
earliest deadline of the stage has passed (one timer for the whole stage). ``on_timer(now)``
must deal with every deadline up to ``now`` and move ``next_deadline()`` on; its events pass
the later processors, and then fan out, like any others. A processor whose deadline does not
move is reported once and its timer ignored until the deadline changes (never a busy loop).
``next_deadline()`` is asked after every event: keep it O(1) (a heap's first entry).

**Call end.** ``call.ended`` passes through the processors like any event (a processor that
emits a summary at call end returns it *before* the ``call.ended``, so the per-call file
still gets it). Whatever happened to it on the way (dropped, a failure), once the stage has
run a ``call.ended`` it calls ``forget_call(call_id)`` on every processor: per-call state
never outlives the call. A conversation spans several calls: a processor keeping
conversation state drops it when the last of its calls is forgotten.

**Raw sinks.** A processor marked ``redacting = True`` removes sensitive content. The stage
keeps, next to each event it outputs, the event as it was before the first redacting
processor changed it (``raw``; ``None`` when no redacting processor changed it). A sink
configured with ``raw = true`` gets that one instead (see ``gateway.events.sinks.RawSink``).
Pairing: the first output of the same event type as the input is the input's successor
(transformed or not); any other output is an added event and has no raw counterpart. An
event a redacting processor withholds reaches no sink, raw ones included. Events added by
non-redacting processors after redaction (analytics) go to raw sinks as they are.

Where processors come from: :func:`gateway.processors.build_processors`, the one place that
turns the config into the ordered list (redaction first, then analytics).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.events.types import CallEnded, GatewayEvent

TIMER = "timer"
"""``ProcessorFailure.event_type`` of a failure in ``next_deadline``/``on_timer``."""

class Processor(Protocol):
    """One step of the stage: pure and synchronous, called once per event."""

    name: str
    fail_closed: bool
    redacting: bool

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]: ...

    def next_deadline(self) -> float | None: ...

    def on_timer(self, now: float) -> Sequence[GatewayEvent]: ...

    def forget_call(self, call_id: str) -> None: ...

    def raw_of(self, event: GatewayEvent) -> GatewayEvent | None:
        """For a redacting processor: the input event an output of its last call was made
        from (``None``: use the default pairing below). Lets a redactor that held an event
        and releases it later still give raw sinks the right original."""


class ProcessorBase:
    """Defaults for the optional parts: no deadlines, no per-call state, not redacting."""

    name: str = "processor"
    fail_closed: bool = False
    redacting: bool = False

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        return (event,)

    def next_deadline(self) -> float | None:
        return None

    def on_timer(self, now: float) -> Sequence[GatewayEvent]:
        return ()

    def forget_call(self, call_id: str) -> None:
        return None

    def raw_of(self, event: GatewayEvent) -> GatewayEvent | None:
        return None


@dataclass(frozen=True, slots=True)
class ProcessorFailure:
    processor: str
    event_type: str
    error: str
    dropped: bool


@dataclass(frozen=True, slots=True)
class StageResult:
    events: tuple[GatewayEvent, ...]
    failures: tuple[ProcessorFailure, ...]
    raw: tuple[GatewayEvent | None, ...] = ()
    """Parallel to ``events``: the pre-redaction event, or ``None`` (the same event)."""


_Item = tuple[GatewayEvent, GatewayEvent | None]


class ProcessingStage:
    def __init__(self, processors: Sequence[Processor] = ()) -> None:
        self.processors = tuple(processors)
        self._stuck: dict[int, float] = {}      # processor index -> deadline that did not move

    def run(self, event: GatewayEvent, now: float) -> StageResult:
        if not self.processors:
            return StageResult((event,), ())
        items: list[_Item] = [(event, None)]
        failures: list[ProcessorFailure] = []
        for processor in self.processors:
            items = _apply(processor, items, now, failures)
        if isinstance(event, CallEnded):
            self._forget(event.call_id, failures)
        return _result(items, failures)

    def next_deadline(self) -> float | None:
        """The earliest deadline of any processor (``None``: no timer needed)."""
        earliest: float | None = None
        for index, processor in enumerate(self.processors):
            deadline = self._deadline(index, processor, [])
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        return earliest

    def tick(self, now: float) -> StageResult:
        """Fire every processor whose deadline has passed, in order; what one emits passes
        the processors after it."""
        items: list[_Item] = []
        failures: list[ProcessorFailure] = []
        for index, processor in enumerate(self.processors):
            if items:
                items = _apply(processor, items, now, failures)
            deadline = self._deadline(index, processor, failures)
            if deadline is not None and deadline <= now:
                items.extend(_timed(processor, self._fire(index, processor, now, failures)))
        return _result(items, failures)

    def flush(self, now: float) -> StageResult:
        """At close: every processor's deadlines are due (``on_timer(inf)``), so whatever a
        processor holds (a redactor's held finals of calls that never ended) goes out
        instead of being lost with the process."""
        items: list[_Item] = []
        failures: list[ProcessorFailure] = []
        for processor in self.processors:
            if items:
                items = _apply(processor, items, now, failures)
            try:
                items.extend(_timed(processor, _checked(processor.on_timer(math.inf))))
            except Exception as exc:
                failures.append(ProcessorFailure(processor.name, TIMER, repr(exc)[:300], False))
        return _result(items, failures)

    def _fire(self, index: int, processor: Processor, now: float,
              failures: list[ProcessorFailure]) -> list[GatewayEvent]:
        try:
            out = _checked(processor.on_timer(now))
        except Exception as exc:  # a processor's bug must never stop the events
            failures.append(ProcessorFailure(processor.name, TIMER, repr(exc)[:300], False))
            out = []
        after = self._deadline(index, processor, failures)
        if after is not None and after <= now:
            self._stuck[index] = after
            failures.append(ProcessorFailure(processor.name, TIMER,
                                             f"deadline {after} did not move past {now}", False))
        return out

    def _deadline(self, index: int, processor: Processor,
                  failures: list[ProcessorFailure]) -> float | None:
        try:
            deadline = processor.next_deadline()
        except Exception as exc:
            failures.append(ProcessorFailure(processor.name, TIMER, repr(exc)[:300], False))
            return None
        stuck = self._stuck.get(index)
        if stuck is not None:
            if deadline == stuck:
                return None
            del self._stuck[index]
        return deadline

    def _forget(self, call_id: str, failures: list[ProcessorFailure]) -> None:
        for processor in self.processors:
            try:
                processor.forget_call(call_id)
            except Exception as exc:
                failures.append(ProcessorFailure(processor.name, CallEnded.TYPE,
                                                 repr(exc)[:300], False))


def _apply(processor: Processor, items: list[_Item], now: float,
           failures: list[ProcessorFailure]) -> list[_Item]:
    passed: list[_Item] = []
    for event, raw in items:
        try:
            out = _checked(processor.process(event, now))
        except Exception as exc:  # a processor's bug must never stop the events
            failures.append(ProcessorFailure(processor.name, event.TYPE, repr(exc)[:300],
                                             processor.fail_closed))
            if not processor.fail_closed:
                passed.append((event, raw))
            continue
        passed.extend(_paired(processor, event, raw, out))
    return passed


def _paired(processor: Processor, event: GatewayEvent, raw: GatewayEvent | None,
            out: list[GatewayEvent]) -> list[_Item]:
    """Each output with its raw counterpart: the input's successor keeps the input's (a
    redacting processor's change makes the input itself the raw one); added events have
    none. A redacting processor that names the original of an output (``raw_of``) is
    believed."""
    if len(out) == 1 and out[0] is event:
        return [(event, raw)]
    redacting = processor.redacting
    if redacting:
        named = [(e, processor.raw_of(e)) for e in out]
        if any(r is not None for _e, r in named):
            return [(e, raw if (raw is not None and r is event) else r) for e, r in named]
    successor = next((e for e in out if type(e) is type(event)), None)
    paired: list[_Item] = []
    for e in out:
        if e is not successor:
            paired.append((e, None))
        elif redacting and e is not event and raw is None:
            paired.append((e, None if e == event else event))
        else:
            paired.append((e, raw))
    return paired


def _timed(processor: Processor, out: list[GatewayEvent]) -> list[_Item]:
    """What a timer released, each with the original a redacting processor names for it
    (a held final let out at its deadline keeps its raw counterpart)."""
    if not processor.redacting:
        return [(e, None) for e in out]
    return [(e, processor.raw_of(e)) for e in out]


def _result(items: list[_Item], failures: list[ProcessorFailure]) -> StageResult:
    return StageResult(tuple(e for e, _r in items), tuple(failures), tuple(r for _e, r in items))


def _checked(out: Sequence[GatewayEvent]) -> list[GatewayEvent]:
    items = list(out)
    for item in items:
        if not isinstance(item, GatewayEvent):
            raise TypeError(f"processor returned {type(item).__name__}, not an event")
    return items
