"""Conversation statistics through the call side: two legs (customer, then agent, joined by
X-Conversation-Id) of a CallManager with a real EventBus running the statistics processor,
real media sockets on loopback, RTP tone bursts with known spans from two UDP sockets at
once. The voice events land on the conversation timeline exactly where the bursts are
(each leg's offset plus the burst's position, to the sample), and the live snapshot
(``GET /v1/calls/{id}``), the interruption, the dead air and the final figures match them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gateway.analytics.talk import TalkStatistics
from gateway.calls import CallManager
from gateway.calls.timeline import ChannelSink
from gateway.events.bus import EventBus
from gateway.events.types import (
    CallEnded,
    CallOffered,
    ConversationInterrupted,
    ConversationStatistics,
    DeadAirDetected,
    GatewayEvent,
    VoiceEnded,
    VoiceStarted,
    VoiceStopped,
)
from gateway.metrics import Metrics
from tests.shell.paced_rtp import send_pcmu
from tests.shell.test_calls import WAIT_S, RecordingSip, make_config, meta, plan, until

HOST = "127.0.0.1"
RATE = 8000
FRAME = 160
LEG_S = 6.0
DEAD_AIR_S = 1.0
# leg-relative spans (each on the 20 ms grid of its leg); the agent starts while the
# customer talks and the customer stops 0.3 s later: the agent interrupted the customer
CUSTOMER = [(0.2, 1.5), (2.6, 3.0)]
AGENT = [(1.2, 2.2), (3.5, 3.8)]
Pcm = npt.NDArray[np.int16]
Span = tuple[float, float]


def bursts(spans: list[Span]) -> Pcm:
    pcm = np.zeros(round(LEG_S * RATE), dtype=np.int16)
    for a, b in spans:
        lo, hi = round(a * RATE), round(b * RATE)
        t = np.arange(hi - lo) / RATE
        pcm[lo:hi] = np.round(6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return pcm


@dataclasses.dataclass
class Rig:
    calls: CallManager
    sip: RecordingSip
    events: list[GatewayEvent]

    def of(self, kind: type[GatewayEvent]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = make_config(tmp_path)
    config = dataclasses.replace(config, statistics=dataclasses.replace(
        config.statistics, dead_air_s=DEAD_AIR_S))
    metrics = Metrics()
    bus = EventBus(metrics, [TalkStatistics(config.statistics)])
    events: list[GatewayEvent] = []
    bus.subscribe(lambda envelope: events.append(envelope.event))
    calls = CallManager(config, metrics, bus, None)
    sip = RecordingSip()
    calls.bind(sip)
    calls.start()
    yield Rig(calls, sip, events)
    await calls.stop()


async def answered(rig: Rig, call_id: str) -> int:
    rig.calls.offered(call_id, meta(call_id, ("X-Conversation-Id", "conv-7")), plan(), None)
    await until(lambda: call_id in rig.sip.answers)
    rig.calls.answered(call_id)
    (port,) = rig.sip.answers[call_id]
    assert port is not None
    return port


def offset_of(rig: Rig, call_id: str) -> int:
    media = rig.calls.calls[call_id].media
    assert media is not None
    sink = media.legs[0].sink
    assert isinstance(sink, ChannelSink)
    return round(sink.offset_s * RATE)


def assert_ms(figure: float, exact: float) -> None:
    """A figure the gateway rounded to the millisecond, against the exact value from the
    bursts: the legs' offsets fall on 8 kHz samples, so a value can lie on a half
    millisecond, and the same sum computed here differs in the last float bits: it may round
    either way (CI once saw 3.345 vs 3.346, and 2.700 vs 2.701)."""
    assert abs(figure - exact) <= 0.0005 + 1e-9, (figure, exact)


def on_timeline(offset: int, leg_s: float) -> float:
    return round((offset + round(leg_s * RATE)) / RATE, 6)


async def test_two_legs_voice_events_and_statistics_match_the_bursts(rig: Rig) -> None:
    customer_port = await answered(rig, "c-cust")          # first leg: customer (default)
    agent_port = await answered(rig, "c-agent")            # second: the other channel
    assert [e.channel for e in rig.of(CallOffered)] == ["customer", "agent"]
    live: dict[str, Any] = {}

    def look() -> None:                                    # GET /v1/calls/{id}, mid-call
        live.update(rig.calls.summary("c-agent") or {})

    await asyncio.gather(
        send_pcmu(customer_port, bursts(CUSTOMER), ssrc=0x11, seq0=100, ts0=9_000, at_s=2.4,
                  action=look),
        send_pcmu(agent_port, bursts(AGENT), ssrc=0x22, seq0=100, ts0=9_000))
    await asyncio.sleep(0.1)
    oc, oa = offset_of(rig, "c-cust"), offset_of(rig, "c-agent")
    rig.calls.ended("c-cust", "bye", "remote", True)
    rig.calls.ended("c-agent", "bye", "remote", True)
    assert await rig.calls.wait_idle(WAIT_S)

    # the voice events: exactly the bursts, on the conversation timeline
    def spurts(channel: str) -> list[Span]:
        stops = [e for e in rig.of(VoiceStopped) if e.channel == channel]
        starts = [e.at_s for e in rig.of(VoiceStarted) if e.channel == channel]
        assert starts == [e.start_s for e in stops]
        return [(e.start_s, e.at_s) for e in stops]

    expect_c = [(on_timeline(oc, a), on_timeline(oc, b)) for a, b in CUSTOMER]
    expect_a = [(on_timeline(oa, a), on_timeline(oa, b)) for a, b in AGENT]
    assert spurts("customer") == expect_c and spurts("agent") == expect_a
    ends = {e.channel: e.at_s for e in rig.of(VoiceEnded)}
    assert ends["customer"] >= on_timeline(oc, LEG_S) and ends["agent"] >= on_timeline(oa, LEG_S)

    # live: the snapshot at 2.4 s of the customer leg (after the interruption)
    stats = live["statistics"]
    conversation_id = rig.of(CallOffered)[0].conversation_id
    assert stats["final"] is False and stats["conversation_id"] == conversation_id
    by_channel = {c["channel"]: c for c in stats["channels"]}
    assert by_channel["customer"]["talk_s"] == 1.3 and by_channel["customer"]["spurts"] == 1
    assert len(stats["interruptions"]) == 1

    (interrupted,) = rig.of(ConversationInterrupted)
    overlap = expect_c[0][1] - expect_a[0][0]
    assert interrupted.call_id == "c-agent"
    assert (interrupted.interruption.channel, interrupted.interruption.interrupted,
            interrupted.interruption.at_s) == ("agent", "customer", expect_a[0][0])
    assert_ms(interrupted.interruption.overlap_s, overlap)
    dead = rig.of(DeadAirDetected)
    assert dead and dead[-1].start_s == expect_a[1][1]       # after the agent's last burst
    assert all(d.silent_s >= DEAD_AIR_S for d in dead)

    # final: conversation.statistics just before the last call.ended
    (final_event,) = rig.of(ConversationStatistics)
    ended = rig.of(CallEnded)
    assert rig.events.index(final_event) == rig.events.index(ended[-1]) - 1
    final = final_event.statistics
    duration = max(ends.values())
    assert final.final
    assert_ms(final.duration_s, duration)
    agent, customer = final.channels
    assert (agent.channel, agent.talk_s, agent.spurts) == ("agent", 1.3, 2)
    assert (customer.channel, customer.talk_s, customer.spurts) == ("customer", 1.7, 2)
    assert (agent.interruptions, customer.interrupted) == (1, 1)
    assert_ms(final.overtalk_s, overlap)
    talk = sum(b - a for a, b in [*expect_c, *expect_a]) - overlap
    assert_ms(final.talk_s, talk)
    assert_ms(final.non_talk_s, duration - talk)
    assert final.first_speaker == "customer" and final.first_agent_response_s == 0.0
    gaps = [(0.0, expect_c[0][0]), (expect_a[0][1], expect_c[1][0]),
            (expect_c[1][1], expect_a[1][0]), (expect_a[1][1], duration)]
    lengths = [b - a for a, b in gaps]
    assert_ms(final.longest_silence_s, max(lengths))
    long_gaps = [g for g in lengths if g >= DEAD_AIR_S]
    assert final.dead_air == len(long_gaps)
    assert_ms(final.dead_air_s, sum(long_gaps))
    assert {d.start_s for d in dead} <= {a for a, b in gaps if b - a >= DEAD_AIR_S}
    assert agent.talk_ratio == round(1.3 / 3.0, 3) and customer.talk_ratio == round(1.7 / 3.0, 3)
