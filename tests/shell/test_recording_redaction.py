"""Redaction of recordings through the call side: the registry and its conversation owner
with a real EventBus and real media sockets on loopback (RTP sent from a UDP socket), as in
test_calls. ``redaction.applied`` events on the bus mask the conversation's recording:
mid-call, for a keypad (dtmf) span, and at teardown, when the processor releases a held
final's event just before ``call.ended``."""

from __future__ import annotations

import asyncio
import dataclasses
import wave
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from gateway.calls import CallManager
from gateway.calls.timeline import ChannelSink
from gateway.config import GatewayConfig
from gateway.events.bus import EventBus
from gateway.events.processing import ProcessorBase
from gateway.events.types import (
    CallEnded,
    CallOffered,
    GatewayEvent,
    RedactionApplied,
    RedactionSpan,
)
from gateway.media.g711 import ulaw_decode, ulaw_encode
from gateway.media.masking import mask_samples, span_samples
from gateway.metrics import Metrics
from tests.shell.paced_rtp import send_pcmu
from tests.shell.test_calls import WAIT_S, RecordingSip, make_config, meta, plan, until

HOST = "127.0.0.1"
RATE = 8000
FRAME = 160
SPEECH_S = 3.2
Pcm = npt.NDArray[np.int16]


class ReleasesAtEnd(ProcessorBase):
    """Stands in for the redaction processor holding a final: its ``redaction.applied``
    comes out right before the call's ``call.ended``, in the same emit."""

    name = "releases_at_end"

    def __init__(self) -> None:
        self.held: dict[str, RedactionApplied] = {}
        self.withhold_end = False

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        if isinstance(event, CallEnded) and self.withhold_end:
            return ()
        if isinstance(event, CallEnded) and event.call_id in self.held:
            return (self.held.pop(event.call_id), event)
        return (event,)


@dataclasses.dataclass
class Rig:
    calls: CallManager
    bus: EventBus
    sip: RecordingSip
    processor: ReleasesAtEnd
    events: list[GatewayEvent]


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.calls.stop()


def rig(made: list[Rig], config: GatewayConfig) -> Rig:
    metrics = Metrics()
    processor = ReleasesAtEnd()
    bus = EventBus(metrics, [processor])
    events: list[GatewayEvent] = []
    bus.subscribe(lambda envelope: events.append(envelope.event))
    calls = CallManager(config, metrics, bus, None)
    sip = RecordingSip()
    calls.bind(sip)
    calls.start()
    made.append(Rig(calls, bus, sip, processor, events))
    return made[-1]


def sine(n: int, hz: float = 400.0, amplitude: int = 8000) -> Pcm:
    t = np.arange(n) / RATE
    return np.round(amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def customer_column(path: str) -> Pcm:
    with wave.open(path, "rb") as w:
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw, dtype="<i2").reshape(-1, 2)[:, 1].astype(np.int16)


def padded(start_s: float, end_s: float) -> tuple[int, int]:
    """The samples a span masks with the default 250 ms padding."""
    span = span_samples(start_s, end_s, 0.25, RATE)
    assert span is not None
    return span


def applied(call_id: str, conversation_id: str, channel: str, source: str,
            *spans: tuple[float, float]) -> RedactionApplied:
    return RedactionApplied(call_id=call_id, conversation_id=conversation_id, channel=channel,
                            source=source, segment=0 if source != "dtmf" else None,
                            spans=tuple(RedactionSpan(entity="card", start_s=a, end_s=b)
                                        for a, b in spans))


async def test_redaction_applied_masks_the_recording_mid_call_and_at_teardown(
        tmp_path: Path, rigs: list[Rig]) -> None:
    side = rig(rigs, make_config(tmp_path, record=True))       # redaction on: tone, 250 ms
    assert side.calls.config.redaction.audio == "tone"
    side.calls.offered("c-1", meta("c-1"), plan(), None)
    await until(lambda: "c-1" in side.sip.answers)
    side.calls.answered("c-1")
    (offered,) = [e for e in side.events if isinstance(e, CallOffered)]
    conv = offered.conversation_id
    call = side.calls.calls["c-1"]
    assert call.media is not None
    recorder = call.talk.media.recorder
    assert recorder is not None and recorder.memory_window_s == 20.0
    assert side.calls.conversations.masks.subscribed
    (port,) = side.sip.answers["c-1"]
    assert port is not None
    speech = sine(int(SPEECH_S * RATE))
    sink = call.media.legs[0].sink
    assert isinstance(sink, ChannelSink)
    offset_s = 0.0

    def mid_call() -> None:
        nonlocal offset_s
        offset_s = sink.offset_s                           # where the leg starts on the timeline
        assert offset_s > 0
        # every span is on the conversation timeline (transcripts are put there when made)
        side.bus.emit(applied("c-1", conv, "customer", "transcript.final",
                              (offset_s + 0.3, offset_s + 0.5)))
        # a keypad span is on the conversation timeline already
        side.bus.emit(applied("c-1", conv, "customer", "dtmf",
                              (offset_s + 1.2, offset_s + 1.3)))
        # a bad channel, another conversation: logged / ignored, never raised into the bus
        side.bus.emit(applied("c-1", conv, "bogus", "transcript.final", (0.0, 3.0)))
        side.bus.emit(applied("c-9", "other", "customer", "transcript.final", (0.0, 3.0)))
        side.processor.held["c-1"] = applied("c-1", conv, "customer", "transcript.final",
                                             (offset_s + 2.3, offset_s + 2.5))

    await send_pcmu(port, speech, at_s=1.6, action=mid_call)
    await asyncio.sleep(0.3)
    side.calls.ended("c-1", "bye", "remote", True)
    assert await side.calls.wait_idle(WAIT_S)
    assert not side.calls.conversations.masks.subscribed      # unsubscribed at the end

    (ended,) = [e for e in side.events if isinstance(e, CallEnded)]
    assert ended.recording is not None
    right = customer_column(ended.recording)
    offset = round(offset_s * RATE)
    masks = [padded(offset_s + 0.3, offset_s + 0.5), padded(offset_s + 1.2, offset_s + 1.3),
             padded(offset_s + 2.3, offset_s + 2.5)]                 # the last at teardown
    for lo, hi in masks:
        np.testing.assert_array_equal(right[lo:hi], mask_samples("tone", lo, hi - lo, RATE))
    heard = ulaw_decode(ulaw_encode(speech))
    gaps = [(masks[0][1], masks[1][0]), (masks[1][1], masks[2][0]),
            (masks[2][1], offset + len(speech))]
    for lo, hi in gaps:
        assert hi - lo > 1000
        same = right[lo:hi] == heard[lo - offset:hi - offset]
        assert same.mean() > 0.9, (lo, hi, same.mean())     # the caller's audio, untouched


async def test_audio_redaction_off_records_as_before(tmp_path: Path, rigs: list[Rig]) -> None:
    config = make_config(tmp_path, record=True)
    config = dataclasses.replace(config, redaction=dataclasses.replace(config.redaction,
                                                                       audio="off"))
    side = rig(rigs, config)
    side.calls.offered("c-1", meta("c-1"), plan(), None)
    await until(lambda: "c-1" in side.sip.answers)
    recorder = side.calls.calls["c-1"].talk.media.recorder
    assert recorder is not None and recorder.memory_window_s == 0.5
    assert not side.calls.conversations.masks.subscribed
    side.calls.ended("c-1", "bye", "remote", True)
    assert await side.calls.wait_idle(WAIT_S)
    (ended,) = [e for e in side.events if isinstance(e, CallEnded)]
    assert ended.recording is not None and Path(ended.recording).exists()


async def test_a_recording_whose_call_ended_never_passes_is_closed_all_the_same(
        tmp_path: Path, rigs: list[Rig]) -> None:
    side = rig(rigs, make_config(tmp_path, record=True))
    side.processor.withhold_end = True
    side.calls.offered("c-1", meta("c-1"), plan(), None)
    await until(lambda: "c-1" in side.sip.answers)
    recorder = side.calls.calls["c-1"].talk.media.recorder
    assert recorder is not None
    recorder.write("customer", 0, sine(RATE))
    side.calls.ended("c-1", "bye", "remote", True)
    assert await side.calls.wait_idle(WAIT_S)
    await asyncio.sleep(0)                               # the next turn of the loop
    assert not side.calls.conversations.masks.subscribed
    assert not [e for e in side.events if isinstance(e, CallEnded)]
    with wave.open(str(recorder.path), "rb") as w:       # closed: all of it written out
        assert w.getnframes() == RATE
