"""The processing stage for what plugs in next: deadlines (timer-driven outputs through one
timer for the stage), call end flushing per-call state, rebuilding the processors between
events, and raw sinks that get events before the redacting processors."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.config import ConfigError, EventSink, parse_config
from gateway.events.bus import EventBus
from gateway.events.processing import (
    TIMER,
    ProcessingStage,
    ProcessorBase,
)
from gateway.events.sinks import JsonlSink, RawSink, build_sinks
from gateway.events.types import (
    CallEnded,
    DtmfReceived,
    Envelope,
    GatewayEvent,
    ReplyFailed,
    TranscriptFinal,
    TranscriptPartial,
)
from gateway.metrics import Metrics
from gateway.processors import reconfigures_processors


def _final(text: str, call_id: str = "c1") -> TranscriptFinal:
    return TranscriptFinal(call_id=call_id, channel="customer", participant=None,
                           conversation_id="conv-1", text=text, segment=0, start_s=0.5,
                           end_s=1.5, words=(), latency_s=0.2)


def _partial(text: str, call_id: str = "c1") -> TranscriptPartial:
    return TranscriptPartial(call_id=call_id, channel="customer", participant=None,
                             conversation_id="conv-1", text=text, segment=0, start_s=0.5,
                             end_s=1.0, words=(), latency_s=0.1)


def _dtmf(call_id: str = "c1", digit: str = "5") -> DtmfReceived:
    return DtmfReceived(call_id=call_id, channel="customer", digit=digit, duration_ms=100,
                        end_seen=True)


def _ended(call_id: str = "c1") -> CallEnded:
    return CallEnded(call_id=call_id, reason="remote hangup", by="remote", answered=True,
                     duration_s=1.0, sip_call_id="sip-1", conversation_id="conv-1",
                     channels=("customer",), legs=(), asr_finals_flushed=True,
                     recording=None)


def _missed(call_id: str, what: str) -> ReplyFailed:
    """Stands in for analytics' compliance.missed (not a type yet): an event it adds."""
    return ReplyFailed(call_id=call_id, reply_id="deadline", error=what)


@dataclass
class Deadline(ProcessorBase):
    """Per call: a deadline ``after_s`` from its first event; fires one event if no DTMF
    came before it (the shape of "the agent did not say the disclosure within 30 s")."""

    name: str = "deadline"
    after_s: float = 30.0
    due: dict[str, float] = field(default_factory=dict)
    satisfied: set[str] = field(default_factory=set)

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        cid = event.call_id
        if cid is not None and cid not in self.satisfied:
            if isinstance(event, DtmfReceived):
                self.due.pop(cid, None)
                self.satisfied.add(cid)
            else:
                self.due.setdefault(cid, now + self.after_s)
        return (event,)

    def next_deadline(self) -> float | None:
        return min(self.due.values(), default=None)

    def on_timer(self, now: float) -> Sequence[GatewayEvent]:
        fired = sorted(c for c, t in self.due.items() if t <= now)
        for cid in fired:
            del self.due[cid]
            self.satisfied.add(cid)
        return [_missed(cid, "no digit in time") for cid in fired]

    def forget_call(self, call_id: str) -> None:
        self.due.pop(call_id, None)
        self.satisfied.discard(call_id)


@dataclass
class Seen(ProcessorBase):
    name: str = "seen"
    types: list[str] = field(default_factory=list)

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        self.types.append(event.TYPE)
        return (event,)


@dataclass
class DropsCallEnded(ProcessorBase):
    name: str = "drops-ended"

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        return () if isinstance(event, CallEnded) else (event,)


@dataclass
class StuckDeadline(ProcessorBase):
    """A buggy processor: its deadline never moves, and on_timer raises."""

    name: str = "stuck"
    at: float = 10.0
    fired: int = 0

    def next_deadline(self) -> float | None:
        return self.at

    def on_timer(self, now: float) -> Sequence[GatewayEvent]:
        self.fired += 1
        raise RuntimeError("timer bug")


_DIGITS = re.compile(r"\d")


@dataclass
class MaskDigits(ProcessorBase):
    """The toy redactor of these tests (registered nowhere else): digits become '#',
    partials with digits are withheld, and a note event is added per change."""

    name: str = "mask-digits"
    redacting: bool = True
    fail_closed: bool = True

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        if isinstance(event, TranscriptPartial) and _DIGITS.search(event.text):
            return ()
        if isinstance(event, TranscriptFinal) and _DIGITS.search(event.text):
            masked = replace(event, text=_DIGITS.sub("#", event.text))
            return (masked, _missed(event.call_id, "redacted"))
        return (event,)


@dataclass
class Shout(ProcessorBase):
    """Not redacting: upper-cases finals after redaction (what raw sinks do not get)."""

    name: str = "shout"

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        if isinstance(event, TranscriptFinal):
            return (replace(event, text=event.text.upper()),)
        return (event,)


class MemorySink:
    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.got: list[Envelope] = []

    async def write(self, event: Envelope) -> None:
        self.got.append(event)

    async def close(self) -> None:
        return None


# ------------------------------------------------------------------ deadlines, pure
def test_a_deadline_fires_at_tick_and_its_event_passes_only_the_later_processors() -> None:
    before, deadline, after = Seen(), Deadline(after_s=30.0), Seen()
    stage = ProcessingStage([before, deadline, after])
    assert stage.next_deadline() is None
    stage.run(_final("hello"), 100.0)
    assert stage.next_deadline() == 130.0
    assert stage.tick(129.9).events == ()                  # not yet
    out = stage.tick(130.0)
    assert [(e.TYPE, e.call_id) for e in out.events] == [("tts.failed", "c1")]
    assert before.types == ["transcript.final"]
    assert after.types == ["transcript.final", "tts.failed"]
    assert stage.next_deadline() is None and stage.tick(500.0).events == ()


def test_an_event_before_the_deadline_cancels_it() -> None:
    stage = ProcessingStage([Deadline(after_s=5.0)])
    stage.run(_final("hi"), 0.0)
    stage.run(_dtmf(), 3.0)
    assert stage.next_deadline() is None and stage.tick(10.0).events == ()


def test_the_earliest_deadline_of_all_processors_counts() -> None:
    a, b = Deadline(name="a", after_s=30.0), Deadline(name="b", after_s=5.0)
    stage = ProcessingStage([a, b])
    stage.run(_final("hi"), 0.0)
    assert stage.next_deadline() == 5.0
    assert [e.TYPE for e in stage.tick(5.0).events] == ["tts.failed"]
    assert stage.next_deadline() == 30.0


def test_a_deadline_that_does_not_move_is_reported_once_then_ignored() -> None:
    stuck = StuckDeadline(at=10.0)
    stage = ProcessingStage([stuck, Deadline(after_s=20.0)])
    stage.run(_final("hi"), 0.0)
    out = stage.tick(10.0)
    assert [(f.processor, f.event_type) for f in out.failures] == [
        ("stuck", TIMER), ("stuck", TIMER)]                 # raised; deadline did not move
    assert "timer bug" in out.failures[0].error
    assert stage.next_deadline() == 20.0                   # the stuck one no longer counts
    assert stage.tick(15.0).failures == () and stuck.fired == 1
    stuck.at = 40.0                                        # it moved: it counts again
    assert stage.next_deadline() == 20.0
    stage.tick(20.0)
    assert stage.next_deadline() == 40.0


# ------------------------------------------------------------------ call end, pure
def test_call_end_flushes_per_call_state_even_when_an_earlier_processor_drops_it() -> None:
    deadline = Deadline(after_s=30.0)
    stage = ProcessingStage([DropsCallEnded(), deadline])
    for n in range(200):
        cid = f"call-{n}"
        stage.run(_final("hi", cid), float(n))
        if n % 2:
            stage.run(_dtmf(cid), float(n))
    assert len(deadline.due) == 100 and len(deadline.satisfied) == 100
    for n in range(200):
        out = stage.run(_ended(f"call-{n}"), 300.0)
        assert out.events == ()                            # dropped on the way ...
    assert deadline.due == {} and deadline.satisfied == set()   # ... state gone anyway
    assert stage.next_deadline() is None


def test_call_end_passes_through_every_processor_in_order() -> None:
    first, second = Seen(), Seen()
    out = ProcessingStage([first, second]).run(_ended(), 0.0)
    assert [e.TYPE for e in out.events] == ["call.ended"]
    assert first.types == second.types == ["call.ended"]


# ------------------------------------------------------------------ raw pairing, pure
def test_the_stage_keeps_the_pre_redaction_event_beside_the_redacted_one() -> None:
    stage = ProcessingStage([MaskDigits(), Shout()])
    out = stage.run(_final("card 4111"), 0.0)
    assert [getattr(e, "text", e.TYPE) for e in out.events] == ["CARD ####", "tts.failed"]
    raw = out.raw[0]
    assert isinstance(raw, TranscriptFinal) and raw.text == "card 4111"
    assert out.raw[1] is None                              # an added event: the same for all
    plain = stage.run(_final("hello"), 0.0)
    assert plain.raw == (None,)                            # unchanged by redaction
    assert stage.run(_partial("card 41"), 0.0).events == ()     # withheld from every sink


# ------------------------------------------------------------------ the bus shell
class _Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


async def _until(predicate: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.01)


async def test_the_bus_fires_a_deadline_without_an_incoming_event() -> None:
    memory, seen = MemorySink(), Seen()
    bus = EventBus(Metrics(), [Deadline(after_s=0.15), seen])
    bus.start([memory])
    subscribed: list[str] = []
    bus.subscribe(lambda env: subscribed.append(env.type))
    try:
        bus.emit(_final("hi"))
        await _until(lambda: len(memory.got) == 2)
    finally:
        await bus.close()
    assert [e.type for e in memory.got] == ["transcript.final", "tts.failed"]
    assert subscribed == ["transcript.final", "tts.failed"]
    assert seen.types == ["transcript.final", "tts.failed"]    # later processors see it
    assert memory.got[1].seq == 2 and memory.got[1].ts >= memory.got[0].ts + 0.1


async def test_the_bus_keeps_one_timer_for_the_stage_and_drops_it_at_call_end() -> None:
    clock = _Clock()
    deadlines = [Deadline(name=f"d{i}", after_s=60.0 + i) for i in range(10)]
    bus = EventBus(Metrics(), deadlines, clock=clock)
    bus.start([])
    loop = asyncio.get_running_loop()
    before = len(loop._scheduled)  # type: ignore[attr-defined]
    for n in range(20):
        bus.emit(_final("hi", f"c{n}"))
    assert len(loop._scheduled) - before == 1  # type: ignore[attr-defined]
    assert bus._timer_at == clock.t + 60.0
    for n in range(20):
        bus.emit(_ended(f"c{n}"))
    assert bus._timer is None and all(not d.due for d in deadlines)
    await bus.close()


async def test_processors_are_rebuilt_between_two_events() -> None:
    memory = MemorySink()
    old, new = Deadline(name="old", after_s=0.1), Seen(name="new")
    bus = EventBus(Metrics(), [old], clock=time.time)
    bus.start([memory])
    try:
        bus.emit(_final("one"))
        bus.replace_processors([new])
        bus.emit(_final("two"))
        await asyncio.sleep(0.3)                         # the old deadline would fire here
    finally:
        await bus.close()
    assert [e.type for e in memory.got] == ["transcript.final", "transcript.final"]
    assert new.types == ["transcript.final"] and bus.processors == (new,)


def test_only_processor_config_keys_rebuild_the_processors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import processors
    monkeypatch.setattr(processors, "PROCESSOR_CONFIG_KEYS", ("redaction",))
    assert not reconfigures_processors(("events.sinks", "logging.level"))
    assert reconfigures_processors(("redaction.card.keep_last",))
    assert reconfigures_processors(("redaction",))
    assert not reconfigures_processors(("redactions", "events"))


async def test_a_raw_sink_gets_the_event_before_the_redacting_processors(
        tmp_path: Path) -> None:
    redacted, raw = MemorySink("redacted"), MemorySink("raw")
    bus = EventBus(Metrics(), [MaskDigits(), Shout()])
    jsonl = JsonlSink(tmp_path / "events.jsonl")
    bus.start([redacted, RawSink(raw), jsonl, RawSink(JsonlSink(tmp_path / "raw.jsonl"))])
    subscribed: list[dict[str, object]] = []
    bus.subscribe(lambda env: subscribed.append(env.to_dict()))
    bus.emit(_partial("card 41"))                         # withheld from everyone
    delivered = bus.emit(_final("card 4111 1111"))
    bus.emit(_dtmf())
    await bus.close()
    texts = [(e.seq, e.type, e.to_dict().get("text")) for e in redacted.got]
    assert texts == [(1, "transcript.final", "CARD #### ####"), (2, "tts.failed", None),
                     (3, "dtmf", None)]
    assert [(e.seq, e.type, e.to_dict().get("text")) for e in raw.got] == [
        (1, "transcript.final", "card 4111 1111"), (2, "tts.failed", None), (3, "dtmf", None)]
    assert [s.get("text") for s in subscribed] == ["CARD #### ####", None, None]
    assert "4111" not in (tmp_path / "events.jsonl").read_text()
    assert "4111" not in delivered[0].to_json()           # the envelope never serialises raw
    raw_lines = [json.loads(x) for x in (tmp_path / "raw.jsonl").read_text().splitlines()]
    assert [x.get("text") for x in raw_lines] == ["card 4111 1111", None, None]


def test_raw_is_a_sink_key_default_false_and_warned_at_start(tmp_path: Path) -> None:
    cfg = parse_config({"events": {"sinks": [
        {"type": "log"},
        {"type": "jsonl", "path": "raw.jsonl", "raw": True}]}}, {}, tmp_path)
    assert [s.raw for s in cfg.events.sinks] == [False, True]
    with pytest.raises(ConfigError, match=r"events\.sinks\[0\]\.raw"):
        parse_config({"events": {"sinks": [{"type": "log", "raw": "yes"}]}}, {}, tmp_path)
    with capture_logs() as logs:
        sinks = build_sinks(cfg.events.sinks)
    assert [type(s).__name__ for s in sinks] == ["LogSink", "RawSink"]
    assert [(x["event"], x["log_level"], x["sink"]) for x in logs] == [
        ("events.raw_sink", "warning", f"jsonl:{tmp_path / 'raw.jsonl'}")]
    for s in sinks:
        asyncio.run(s.close())
    assert EventSink(type="log").raw is False


def test_the_stage_bench_measures_every_case_side_by_side(tmp_path: Path) -> None:
    from bench import event_stage
    doc = event_stage.run(event_stage.StageParams(events=200, repeats=1), tmp_path, tmp_path)
    rows = doc["results"]["per_event_us"]
    assert [(r["event"].split()[0], r["processors"]) for r in rows] == [
        ("transcript.final", 0), ("transcript.final", 1), ("transcript.final", 10),
        ("dtmf", 0), ("dtmf", 1), ("dtmf", 10)]
    assert all(r["stage_us"] > 0 and r["emit_us"] > 0 for r in rows)
    assert [r["emit_ratio"] for r in rows if r["processors"] == 0] == [1.0, 1.0]
    assert json.loads((tmp_path / "event_stage.json").read_text())["benchmark"] == "event_stage"
