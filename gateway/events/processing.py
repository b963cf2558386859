"""The processing stage: ordered processors every event passes before any consumer sees it.

Layer: pure core (synchronous; time is the ``now`` parameter; failures are returned, the
bus logs and counts them).

A processor takes one event and returns the events to pass on, in order:

- ``(event,)``: unchanged;
- ``(dataclasses.replace(event, text=...),)``: transformed (redaction);
- ``(event, CategoryMatched(...))``: the event plus events it caused (analytics);
- ``()``: dropped.

Processors run in the configured order; each one's outputs (added events included) are the
next one's inputs, so a later processor sees what an earlier one added, never the other way
round. A processor that raises, or returns something that is not a sequence of events, is
a failure: the event goes on to the next processor unchanged, or, for a processor with
``fail_closed = True`` (redaction: better lost than leaked), it is dropped. Either way the
daemon carries on.

Where processors come from: :func:`build_processors`, the one place that turns the config
into the ordered list (redaction first, then analytics).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from gateway.config import GatewayConfig
from gateway.events.types import GatewayEvent


class Processor(Protocol):
    """One step of the stage: pure and synchronous, called once per event."""

    name: str
    fail_closed: bool

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]: ...


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


class ProcessingStage:
    def __init__(self, processors: Sequence[Processor] = ()) -> None:
        self.processors = tuple(processors)

    def run(self, event: GatewayEvent, now: float) -> StageResult:
        events: list[GatewayEvent] = [event]
        failures: list[ProcessorFailure] = []
        for processor in self.processors:
            passed: list[GatewayEvent] = []
            for item in events:
                try:
                    passed.extend(_checked(processor.process(item, now)))
                except Exception as exc:  # a processor's bug must never stop the events
                    failures.append(ProcessorFailure(processor.name, item.TYPE, repr(exc)[:300],
                                                     processor.fail_closed))
                    if not processor.fail_closed:
                        passed.append(item)
            events = passed
        return StageResult(tuple(events), tuple(failures))


def _checked(out: Sequence[GatewayEvent]) -> list[GatewayEvent]:
    items = list(out)
    for item in items:
        if not isinstance(item, GatewayEvent):
            raise TypeError(f"processor returned {type(item).__name__}, not an event")
    return items


def build_processors(config: GatewayConfig) -> list[Processor]:
    """The ordered processors for a config. None yet: PII redaction goes first here, then
    conversation analytics (which must see redacted text)."""
    return []
