"""The call side (gateway/calls/) in-process: the registry with its conversation and voice
owners, real media sockets on loopback, a real EventBus, and a recording SIP control.

SIP is replaced by :class:`RecordingSip` (the :class:`~gateway.sip.callside.SipControl` the
registry is bound to), and the SIP service's calls into the registry are made directly in
the order the SIP core makes them. No ASR; the TTS, where a test needs a voice, is a
TtsClient pointed at a closed port (each reply fails with tts.failed, which is enough to
see which replies were queued).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.calls import CallManager
from gateway.calls.commands import SayRefusal, SayRefused
from gateway.calls.lifecycle import CallPhase, LifecycleError
from gateway.config import GatewayConfig
from gateway.events.bus import EventBus
from gateway.events.types import (
    CallAnswered,
    CallEnded,
    CallMediaChanged,
    CallOffered,
    GatewayEvent,
    ReplyFailed,
    SiprecMetadataUpdated,
)
from gateway.metrics import Metrics
from gateway.sip.core import MediaOffer
from gateway.sip.dialog import CallMetadata
from gateway.sip.message import SipRequest, parse_message
from gateway.sip.multipart import find_part, parse_multipart
from gateway.sip.sdp import AnswerPlan, negotiate, parse_sdp
from gateway.sip.siprec import parse_metadata
from gateway.tts.client import TtsClient
from tests.peers.ports import free_tcp_port, free_udp_port, free_udp_port_pair
from tests.rawsip import sdp_offer

HOST = "127.0.0.1"
CORPUS = Path(__file__).resolve().parents[1] / "siprec_corpus"
WAIT_S = 20.0                     # generous: a shared 2-core machine


async def until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.02)


class RecordingSip:
    """The SIP control the registry is bound to: records what it is asked."""

    def __init__(self) -> None:
        self.answers: dict[str, list[int | None]] = {}
        self.rejects: list[tuple[str, int, str]] = []
        self.hangups: list[tuple[str, str]] = []

    def answer(self, call_id: str, ports: Sequence[int | None]) -> None:
        self.answers[call_id] = list(ports)

    def reject(self, call_id: str, status: int, reason: str) -> None:
        self.rejects.append((call_id, status, reason))

    def hangup(self, call_id: str, reason: str) -> bool:
        self.hangups.append((call_id, reason))
        return True


@dataclasses.dataclass
class Side:
    calls: CallManager
    sip: RecordingSip
    events: list[GatewayEvent]

    def of(self, kind: type[GatewayEvent]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def make_config(tmp_path: Path, *, record: bool = False, tts: bool = False,
                rtp_ports: tuple[int, int] | None = None, **tts_changes: Any) -> GatewayConfig:
    cfg = GatewayConfig()
    base = free_udp_port_pair()
    port_min, port_max = rtp_ports or (base, base + 40)
    return dataclasses.replace(
        cfg,
        rtp=dataclasses.replace(cfg.rtp, bind_address=HOST, port_min=port_min,
                                port_max=port_max),
        storage=dataclasses.replace(cfg.storage, state_dir=tmp_path, recordings_dir=tmp_path,
                                    record=record),
        triton=dataclasses.replace(cfg.triton, url=f"{HOST}:{free_tcp_port()}",
                                   asr_enabled=False, final_timeout_s=2.0),
        tts=dataclasses.replace(cfg.tts, enabled=tts, **tts_changes))


@pytest.fixture
async def stop_sides() -> AsyncIterator[Callable[[GatewayConfig], Side]]:
    """Builds started call sides (bound to a RecordingSip); stops them after the test."""
    sides: list[Side] = []

    def make(config: GatewayConfig) -> Side:
        metrics = Metrics()
        bus = EventBus(metrics)
        events: list[GatewayEvent] = []
        bus.subscribe(lambda envelope: events.append(envelope.event))
        tts = TtsClient(config.triton) if config.tts.enabled else None
        calls = CallManager(config, metrics, bus, None, tts)
        sip = RecordingSip()
        calls.bind(sip)
        calls.start()
        sides.append(Side(calls, sip, events))
        return sides[-1]

    yield make
    for side in sides:
        await side.calls.stop()


def meta(call_id: str, *headers: tuple[str, str]) -> CallMetadata:
    return CallMetadata(call_id, f"sip-{call_id}", "sip:alice@example.com", "Alice",
                        "sip:gw@127.0.0.1", "sip:gw@127.0.0.1", (HOST, 5062), "udp",
                        tuple(headers))


def plan(direction: str = "sendrecv") -> AnswerPlan:
    return negotiate(parse_sdp(sdp_offer(free_udp_port(), direction=direction)))


def state(calls: CallManager, call_id: str) -> str:
    summary = calls.summary(call_id)
    assert summary is not None
    return str(summary["state"])


async def answered_call(side: Side, call_id: str, *headers: tuple[str, str]) -> None:
    side.calls.offered(call_id, meta(call_id, *headers), plan(), None)
    await until(lambda: call_id in side.sip.answers)
    side.calls.answered(call_id)


async def test_a_call_through_its_lifecycle(
        tmp_path: Path, stop_sides: Callable[[GatewayConfig], Side]) -> None:
    side = stop_sides(make_config(tmp_path))
    calls = side.calls
    calls.offered("c-1", meta("c-1"), plan(), None)
    assert state(calls, "c-1") == "offered"
    await until(lambda: "c-1" in side.sip.answers)
    (port,) = side.sip.answers["c-1"]
    assert port is not None and calls.config.rtp.port_min <= port <= calls.config.rtp.port_max
    calls.answered("c-1")
    calls.confirmed("c-1")
    calls.media_changed("c-1", plan("sendonly"))
    held = state(calls, "c-1")
    calls.media_changed("c-1", plan("sendrecv"))
    assert held == "held" and state(calls, "c-1") == "confirmed"
    assert [e.state for e in side.of(CallMediaChanged)] == ["held", "confirmed"]
    assert calls.active == 1 and not await calls.wait_idle(0.05)
    calls.ended("c-1", "bye", "remote", True)
    assert calls.calls["c-1"].lifecycle.phase is CallPhase.ENDING
    with pytest.raises(LifecycleError):
        calls.ended("c-1", "bye", "remote", True)              # one teardown per call
    assert await calls.wait_idle(WAIT_S)
    assert calls.active == 0 and calls.summary("c-1") is None
    kinds = [type(e) for e in side.events]
    assert kinds == [CallOffered, CallAnswered, CallMediaChanged, CallMediaChanged, CallEnded]
    (ended,) = side.of(CallEnded)
    assert (ended.reason, ended.by, ended.answered, ended.asr_finals_flushed) == (
        "bye", "remote", True, True)
    assert ended.conversation_id == side.of(CallOffered)[0].conversation_id
    assert ended.channels == ("customer",) and len(ended.legs) == 1


async def test_correlated_calls_share_one_conversation_and_one_recording(
        tmp_path: Path, stop_sides: Callable[[GatewayConfig], Side]) -> None:
    side = stop_sides(make_config(tmp_path, record=True))
    header = ("X-Conversation-Id", "conv-42")
    await answered_call(side, "c-a", header)
    await answered_call(side, "c-b", header)
    first, second = side.of(CallOffered)
    assert first.conversation_id == second.conversation_id
    assert {first.channel, second.channel} == {"agent", "customer"}
    side.calls.ended("c-a", "bye", "remote", True)
    await until(lambda: len(side.of(CallEnded)) == 1)
    assert side.of(CallEnded)[0].recording is None             # the other call is still on
    side.calls.ended("c-b", "bye", "remote", True)
    assert await side.calls.wait_idle(WAIT_S)
    recording = side.of(CallEnded)[1].recording
    assert recording is not None and Path(recording).parent == tmp_path
    with wave.open(recording) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
    assert first.conversation_id in Path(recording).name


async def test_say_is_refused_with_a_typed_reason(
        tmp_path: Path, stop_sides: Callable[[GatewayConfig], Side]) -> None:
    silent = stop_sides(make_config(tmp_path))
    await answered_call(silent, "c-1")
    with pytest.raises(SayRefused) as refused:
        silent.calls.say("c-9", "hello", barge_in=True, source="api")
    assert refused.value.reason is SayRefusal.UNKNOWN_CALL
    with pytest.raises(SayRefused) as refused:
        silent.calls.say("c-1", "hello", barge_in=True, source="api")
    assert refused.value.reason is SayRefusal.TTS_DISABLED

    voiced = stop_sides(make_config(tmp_path, tts=True))
    voiced.calls.offered("c-2", meta("c-2"), plan(), None)
    with pytest.raises(SayRefused) as refused:              # offered, not answered yet
        voiced.calls.say("c-2", "hello", barge_in=True, source="api")
    assert refused.value.reason is SayRefusal.CANNOT_PLAY
    voiced.calls.offered("c-3", meta("c-3"), negotiate(
        parse_sdp(sdp_offer(free_udp_port(), direction="sendonly"))), None)
    await until(lambda: "c-3" in voiced.sip.answers)
    voiced.calls.answered("c-3")                            # we may only receive on c-3
    with pytest.raises(SayRefused) as refused:
        voiced.calls.say("c-3", "hello", barge_in=True, source="api")
    assert refused.value.reason is SayRefusal.CANNOT_PLAY
    await until(lambda: "c-2" in voiced.sip.answers)
    voiced.calls.answered("c-2")
    reply = voiced.calls.say("c-2", "hello", barge_in=True, source="api")
    await until(lambda: any(e.reply_id == reply.reply_id for e in voiced.of(ReplyFailed)))


async def test_greeting_on_the_first_ack_only(
        tmp_path: Path, stop_sides: Callable[[GatewayConfig], Side]) -> None:
    side = stop_sides(make_config(tmp_path, tts=True, greeting="Hello.",
                                  recording_notice="This call is recorded."))
    await answered_call(side, "c-1")
    assert not side.of(ReplyFailed)
    side.calls.confirmed("c-1")
    await until(lambda: len(side.of(ReplyFailed)) == 2)    # notice and greeting were queued
    await answered_call(side, "c-2")
    side.calls.media_changed("c-2", plan("sendrecv"))       # a re-INVITE before the ACK
    side.calls.confirmed("c-2")
    await asyncio.sleep(1.0)
    assert {e.call_id for e in side.of(ReplyFailed)} == {"c-1"}
    assert state(side.calls, "c-2") == "confirmed"


async def test_no_rtp_port_rejects_the_call_with_503(
        tmp_path: Path, stop_sides: Callable[[GatewayConfig], Side]) -> None:
    port = free_udp_port_pair()
    side = stop_sides(make_config(tmp_path, rtp_ports=(port, port + 1)))
    await answered_call(side, "c-1")
    side.calls.offered("c-2", meta("c-2"), plan(), None)       # the only pair is taken
    await until(lambda: bool(side.sip.rejects))
    assert side.sip.rejects == [("c-2", 503, "Service Unavailable (no RTP port)")]
    side.calls.ended("c-2", "rejected 503", "local", False)
    await until(lambda: len(side.of(CallEnded)) == 1)
    assert side.of(CallEnded)[0].answered is False and side.calls.active == 1



def siprec_offer(name: str) -> MediaOffer:
    """What the SIP core hands over for a corpus INVITE: SDP, receive-only plan, metadata."""
    invite = parse_message((CORPUS / name).read_bytes())
    assert isinstance(invite, SipRequest)
    parts = parse_multipart(invite.headers.get("Content-Type") or "", invite.body)
    sdp_part = find_part(parts, "application/sdp")
    meta_part = find_part(parts, "application/rs-metadata+xml")
    assert sdp_part is not None and meta_part is not None
    sdp = parse_sdp(sdp_part.body)
    return MediaOffer(sdp, negotiate(sdp, recv_only=True), True, parse_metadata(meta_part.body))


async def test_a_siprec_session_gets_a_channel_and_participant_per_stream(
        tmp_path: Path, stop_sides: Callable[[GatewayConfig], Side]) -> None:
    side = stop_sides(make_config(tmp_path))
    offer = siprec_offer("invite_generic_crlf.sip")
    side.calls.offered("c-rec", meta("c-rec"), offer.plan, offer)
    (offered,) = side.of(CallOffered)
    assert offered.siprec is True and offered.channel is None
    assert offered.channels == ("customer", "agent")          # metadata order (no rules)
    assert [p.aor if p else None for p in offered.participants] == [
        "sip:+15551234567@carrier.example.net", "sip:1001@pbx.example.com"]
    await until(lambda: "c-rec" in side.sip.answers)
    assert len(side.sip.answers["c-rec"]) == 2 and None not in side.sip.answers["c-rec"]
    side.calls.answered("c-rec")
    side.calls.metadata_updated("c-rec", None, "bad XML")     # refused: nothing changes
    assert not side.of(SiprecMetadataUpdated)
    side.calls.metadata_updated("c-rec", offer.metadata, None)
    (updated,) = side.of(SiprecMetadataUpdated)
    assert updated.channels == offered.channels and updated.participants == offered.participants
    side.calls.metadata_updated("c-9", offer.metadata, None)  # unknown call: ignored
    assert len(side.of(SiprecMetadataUpdated)) == 1
