"""The processing stage and the bus: processors run once per event, in order, before every
consumer (sinks, subscribers, the bot); failures are contained."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from aiohttp import web

from gateway.bot import BotAction, BotClient
from gateway.config import BotConfig
from gateway.events.bus import EventBus
from gateway.events.processing import ProcessingStage, ProcessorBase
from gateway.events.sinks import CallFilesSink, JsonlSink
from gateway.events.types import (
    CallEnded,
    CallOffered,
    DtmfReceived,
    Envelope,
    GatewayEvent,
    ReplyFailed,
    TranscriptFinal,
)
from gateway.metrics import Metrics
from gateway.processors import build_processors


def _final(text: str, call_id: str = "c1", channel: str = "customer") -> TranscriptFinal:
    return TranscriptFinal(call_id=call_id, channel=channel, participant=None,
                           conversation_id="conv-1", text=text, segment=0, start_s=0.5,
                           end_s=1.5, words=(), latency_s=0.2)


def _dtmf(digit: str = "5") -> DtmfReceived:
    return DtmfReceived(call_id="c1", channel="customer", digit=digit, duration_ms=100,
                        end_seen=True)


def _offered(call_id: str = "c1") -> CallOffered:
    return CallOffered(call_id=call_id, conversation_id="conv-1", channel="customer",
                       channels=("customer",), siprec=False, participants=(),
                       session_id=None, sip_call_id="sip-1", from_uri="sip:alice@pbx",
                       from_display=None, to_uri="sip:asr@gw", request_uri="sip:asr@gw",
                       remote="127.0.0.1:5060", transport="udp", headers={})


def _ended(call_id: str = "c1") -> CallEnded:
    return CallEnded(call_id=call_id, reason="remote hangup", by="remote", answered=True,
                     duration_s=1.0, sip_call_id="sip-1", conversation_id="conv-1",
                     channels=("customer",), legs=(), asr_finals_flushed=True,
                     recording=None)


@dataclass
class Upper(ProcessorBase):
    """Transforms transcript text (what redaction will do)."""

    name: str = "upper"
    fail_closed: bool = False
    seen: list[str] = field(default_factory=list)

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        self.seen.append(event.TYPE)
        if isinstance(event, TranscriptFinal):
            return (replace(event, text=event.text.upper()),)
        return (event,)


@dataclass
class Tag(ProcessorBase):
    """Appends its name to transcript text: shows the order processors ran in."""

    name: str
    fail_closed: bool = False

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        if isinstance(event, TranscriptFinal):
            return (replace(event, text=f"{event.text}+{self.name}"),)
        return (event,)


@dataclass
class AddsFailure(ProcessorBase):
    """Adds an event after each DTMF (what analytics will do); records what it saw."""

    name: str = "adds"
    fail_closed: bool = False
    times: list[float] = field(default_factory=list)

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        self.times.append(now)
        if isinstance(event, DtmfReceived):
            return (event, ReplyFailed(call_id=event.call_id, reply_id="r-x",
                                       error=f"digit {event.digit}"))
        return (event,)


@dataclass
class Explodes(ProcessorBase):
    name: str = "explodes"
    fail_closed: bool = False
    returns_garbage: bool = False

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        if self.returns_garbage:
            return [{"type": "not an event"}]  # type: ignore[list-item]
        raise RuntimeError("processor bug")


@dataclass
class Drops(ProcessorBase):
    name: str = "drops"
    fail_closed: bool = False

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        return () if isinstance(event, DtmfReceived) else (event,)


class MemorySink:
    def __init__(self) -> None:
        self.name = "memory"
        self.got: list[Envelope] = []

    async def write(self, event: Envelope) -> None:
        self.got.append(event)

    async def close(self) -> None:
        return None


def _clock(t: float = 1700000000.0) -> float:
    return t


def _counter(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# ------------------------------------------------------------------ the pure stage
def test_processors_run_in_the_configured_order() -> None:
    stage = ProcessingStage([Tag("a"), Tag("b"), Tag("c")])
    assert [e.text for e in stage.run(_final("hi"), 0.0).events  # type: ignore[attr-defined]
            ] == ["hi+a+b+c"]
    stage = ProcessingStage([Tag("c"), Tag("a")])
    assert stage.run(_final("hi"), 0.0).events[0].text == "hi+c+a"  # type: ignore[attr-defined]


def test_added_events_go_to_the_later_processors_only() -> None:
    before, adds, after = Upper(), AddsFailure(), Upper()
    out = ProcessingStage([before, adds, after]).run(_dtmf("7"), 12.5)
    assert [e.TYPE for e in out.events] == ["dtmf", "tts.failed"]
    assert before.seen == ["dtmf"] and after.seen == ["dtmf", "tts.failed"]
    assert adds.times == [12.5]                   # time is the caller's parameter


def test_a_raising_processor_passes_the_event_on_unchanged_and_reports_it() -> None:
    out = ProcessingStage([Explodes(), Tag("after")]).run(_final("hi"), 0.0)
    assert [e.text for e in out.events] == ["hi+after"]  # type: ignore[attr-defined]
    assert len(out.failures) == 1
    failure = out.failures[0]
    assert (failure.processor, failure.event_type, failure.dropped) == (
        "explodes", "transcript.final", False)
    assert "processor bug" in failure.error


def test_a_fail_closed_processor_drops_the_event_it_failed_on() -> None:
    out = ProcessingStage([Explodes(fail_closed=True), Tag("after")]).run(_final("1234"), 0.0)
    assert out.events == () and out.failures[0].dropped


def test_a_processor_returning_something_else_than_events_is_a_failure() -> None:
    out = ProcessingStage([Explodes(returns_garbage=True)]).run(_dtmf(), 0.0)
    assert [e.TYPE for e in out.events] == ["dtmf"]
    assert "processor returned dict, not an event" in out.failures[0].error


def test_the_default_config_runs_the_redactor_first() -> None:
    from gateway.config import GatewayConfig
    from gateway.redaction.processor import Redactor
    processor = build_processors(GatewayConfig())[0]
    assert isinstance(processor, Redactor) and processor.fail_closed and processor.redacting


# ------------------------------------------------------------------ the bus
async def test_every_consumer_sees_what_the_processors_made(tmp_path: Path) -> None:
    metrics, memory = Metrics(), MemorySink()
    bus = EventBus(metrics, [Upper()], clock=_clock)
    bus.start([memory, JsonlSink(tmp_path / "events.jsonl"), CallFilesSink(tmp_path / "calls")])
    subscribed: list[str] = []
    bus.subscribe(lambda env: subscribed.append(env.to_json()))
    delivered = bus.emit(_final("card four one one one"))
    await bus.close()
    assert [e.to_dict()["text"] for e in delivered] == ["CARD FOUR ONE ONE ONE"]
    texts = [json.loads(subscribed[0])["text"], memory.got[0].to_dict()["text"],
             json.loads((tmp_path / "events.jsonl").read_text())["text"],
             json.loads((tmp_path / "calls" / "c1.jsonl").read_text())["text"]]
    assert texts == ["CARD FOUR ONE ONE ONE"] * 4
    assert "card four" not in (tmp_path / "events.jsonl").read_text()
    assert _counter(metrics, "gateway_events_total", type="transcript.final") == 1


async def test_added_events_are_stamped_and_delivered_in_order() -> None:
    memory = MemorySink()
    bus = EventBus(Metrics(), [AddsFailure()], clock=_clock)
    bus.start([memory])
    bus.emit(_dtmf("9"))
    bus.emit(_final("x"))
    await bus.close()
    assert [(e.type, e.seq) for e in memory.got] == [
        ("dtmf", 1), ("tts.failed", 2), ("transcript.final", 3)]
    assert {e.ts for e in memory.got} == {1700000000.0}
    assert memory.got[1].to_dict()["error"] == "digit 9"


async def test_a_processor_failure_is_logged_counted_and_the_daemon_goes_on() -> None:
    metrics, memory = Metrics(), MemorySink()
    bus = EventBus(metrics, [Explodes(), Drops()], clock=_clock)
    bus.start([memory])
    bus.emit(_final("kept"))
    bus.emit(_dtmf())                          # Drops removes it: nobody gets it
    await bus.close()
    assert [e.type for e in memory.got] == ["transcript.final"]
    assert memory.got[0].to_dict()["text"] == "kept"
    assert _counter(metrics, "gateway_event_processor_errors_total",
                    processor="explodes") == 2
    assert _counter(metrics, "gateway_events_total", type="dtmf") == 0


async def test_a_failing_subscriber_does_not_reach_the_producer_or_the_others() -> None:
    metrics, memory = Metrics(), MemorySink()
    bus = EventBus(metrics, clock=_clock)
    bus.start([memory])
    got: list[str] = []

    def broken(env: Envelope) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    bus.subscribe(lambda env: got.append(env.type))
    bus.emit(_dtmf())
    await bus.close()
    assert got == ["dtmf"] and [e.type for e in memory.got] == ["dtmf"]
    assert _counter(metrics, "gateway_event_sink_errors_total", sink="subscriber") == 1


# ------------------------------------------------------------------ the bot is a subscriber
async def test_the_bot_gets_the_processed_transcript_with_from_and_to() -> None:
    received: list[dict[str, object]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    actions: list[tuple[str, BotAction]] = []

    async def act(call_id: str, action: BotAction) -> None:
        actions.append((call_id, action))

    bot = BotClient(BotConfig(webhook_url=f"http://127.0.0.1:{port}/hook", retries=0), act)
    bus = EventBus(Metrics(), [Upper()], clock=_clock)
    bus.start([])
    bus.subscribe(bot.on_event)
    try:
        bus.emit(_offered())
        bus.emit(_final("agent words", channel="agent"))      # not the bot's channel
        bus.emit(_final("where is my parcel"))
        bus.emit(_ended())
        for _ in range(200):
            if received:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    finally:
        await bot.close()
        await bus.close()
        await runner.cleanup()
    assert received == [{"type": "transcript.final", "call_id": "c1", "channel": "customer",
                         "conversation_id": "conv-1", "text": "WHERE IS MY PARCEL",
                         "start_s": 0.5, "end_s": 1.5, "from": "sip:alice@pbx",
                         "to": "sip:asr@gw"}]
    assert actions == []                           # an empty JSON object asks for nothing
