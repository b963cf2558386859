"""Keypad secure mode and DTMF timing on the call side, in-process (issue 16).

``POST /v1/calls/{id}/secure``: the real aiohttp app of gateway/http_api.py over loopback in
front of a real :class:`~gateway.calls.CallManager` (real media sockets, a real EventBus, SIP
replaced by the recording control of tests/shell/test_calls.py), so the route, the typed
refusal, the ``call.secure_changed`` event on the bus and the summary field are seen together.

DTMF timing: real RTP (PCMU audio and RFC 4733 telephone-event) into the call's media port,
sent as a burst so that arrival time and media time differ; the ``dtmf`` event's
``start_s``/``end_s`` must be where the recorder put the tone's audio.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.calls import CallManager
from gateway.calls.commands import SecureRefusal, SecureRefused
from gateway.calls.conversation import CallConversation
from gateway.config import GatewayConfig, HttpConfig, Secret
from gateway.events.types import CallEnded, CallSecureChanged, DtmfReceived, Envelope
from gateway.http_api import build_app
from gateway.media.g711 import encoder_for
from gateway.media.rtp import RtpPacket
from gateway.tts.playout import Reply
from tests.batch_off import NoBatchJobs
from tests.rawsip import UdpPeer
from tests.shell import test_calls
from tests.shell.test_calls import WAIT_S, Side, answered_call, make_config, until

stop_sides = test_calls.stop_sides      # the call-side fixture, shared

TOKEN = "secure-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Client = TestClient[aiohttp.web.Request, aiohttp.web.Application]


class CallSideControl(NoBatchJobs):
    """The GatewayControl of gateway.server.Gateway, reduced to what these routes reach:
    summaries and secure mode from the call manager, as the server delegates them."""

    max_text_chars = 100

    def __init__(self, calls: CallManager) -> None:
        self.calls = calls

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return True, {}

    def metrics_text(self) -> bytes:
        return b""

    def calls_summary(self) -> list[dict[str, Any]]:
        return self.calls.summaries()

    def call_summary(self, call_id: str) -> dict[str, Any] | None:
        return self.calls.summary(call_id)

    async def hangup_call(self, call_id: str, reason: str) -> bool:
        return False

    def say(self, call_id: str, text: str, *, barge_in: bool, source: str) -> Reply:
        return self.calls.say(call_id, text, barge_in=barge_in, source=source)

    def set_secure(self, call_id: str, secure: bool, *, by: str) -> bool:
        return self.calls.set_secure(call_id, secure, by=by)

    def subscribe(self, listener: Callable[[Envelope], object]) -> None:
        return None

    def unsubscribe(self, listener: Callable[[Envelope], object]) -> None:
        return None


async def _post(client: Client, call_id: str, body: Any = None, *, raw: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
    kwargs: dict[str, Any] = {"headers": AUTH if headers is None else headers}
    if raw is not None:
        kwargs["data"] = raw
    elif body is not None:
        kwargs["json"] = body
    resp = await client.post(f"/v1/calls/{call_id}/secure", **kwargs)
    return resp.status, await resp.json()


async def _secure_in_summary(client: Client, call_id: str) -> Any:
    resp = await client.get(f"/v1/calls/{call_id}", headers=AUTH)
    assert resp.status == 200
    return (await resp.json())["secure"]


def _changes(side: Side) -> list[tuple[str, bool, str]]:
    return [(e.call_id, e.secure, e.by) for e in side.of(CallSecureChanged)]


async def test_secure_mode_on_and_off_over_http_with_one_event_per_change(
        tmp_path: Path, stop_sides: Callable[[GatewayConfig], Side]) -> None:
    side = stop_sides(make_config(tmp_path))
    await answered_call(side, "c-1")
    app = build_app(CallSideControl(side.calls), HttpConfig(token=Secret(TOKEN)))
    client: Client
    async with TestClient(TestServer(app)) as client:
        assert await _secure_in_summary(client, "c-1") is False
        assert await _post(client, "c-1") == (200, {"call_id": "c-1", "secure": True})
        assert _changes(side) == [("c-1", True, "api")]
        assert await _secure_in_summary(client, "c-1") is True
        assert await _post(client, "c-1", {"secure": True}) == (
            200, {"call_id": "c-1", "secure": True})
        assert await _post(client, "c-1", {}) == (200, {"call_id": "c-1", "secure": True})
        assert _changes(side) == [("c-1", True, "api")]          # idempotent: no second event
        assert await _post(client, "c-1", {"secure": False}) == (
            200, {"call_id": "c-1", "secure": False})
        assert await _secure_in_summary(client, "c-1") is False
        assert _changes(side) == [("c-1", True, "api"), ("c-1", False, "api")]
        listed = await (await client.get("/v1/calls", headers=AUTH)).json()
        assert [c["secure"] for c in listed["calls"]] == [False]


@pytest.mark.parametrize(("raw", "message"), [
    (b"secure", "body must be JSON"),
    (b"[true]", "body must be a JSON object"),
    (b'{"secure": "yes"}', "'secure' must be true or false"),
    (b'{"secure": null}', "'secure' must be true or false"),
    (b'{"secure": 1}', "'secure' must be true or false"),
])
async def test_a_bad_body_is_400_and_changes_nothing(
        raw: bytes, message: str, tmp_path: Path,
        stop_sides: Callable[[GatewayConfig], Side]) -> None:
    side = stop_sides(make_config(tmp_path))
    await answered_call(side, "c-1")
    app = build_app(CallSideControl(side.calls), HttpConfig(token=Secret(TOKEN)))
    client: Client
    async with TestClient(TestServer(app)) as client:
        assert await _post(client, "c-1", raw=raw) == (400, {"error": message})
        assert await _secure_in_summary(client, "c-1") is False
    assert not side.of(CallSecureChanged)


async def test_unknown_call_is_404_an_ending_call_409_no_token_401(
        tmp_path: Path, stop_sides: Callable[[GatewayConfig], Side],
        monkeypatch: pytest.MonkeyPatch) -> None:
    side = stop_sides(make_config(tmp_path))
    await answered_call(side, "c-1")
    last_final = asyncio.Event()

    async def finish_asr(talk: CallConversation) -> bool:    # a last final still to come
        await last_final.wait()
        return True

    monkeypatch.setattr(side.calls.conversations, "finish_asr", finish_asr)
    app = build_app(CallSideControl(side.calls), HttpConfig(token=Secret(TOKEN)))
    client: Client
    async with TestClient(TestServer(app)) as client:
        assert await _post(client, "c-9", {"secure": True}) == (404, {"error": "unknown call"})
        status, _ = await _post(client, "c-1", {"secure": True}, headers={})
        assert status == 401
        side.calls.ended("c-1", "bye", "remote", True)
        assert await _post(client, "c-1", {"secure": True}) == (409, {"error": "call is ending"})
        with pytest.raises(SecureRefused) as refused:
            side.calls.set_secure("c-1", False, by="rule")
        assert refused.value.reason is SecureRefusal.ENDING
        last_final.set()
        await until(lambda: bool(side.of(CallEnded)))
        assert await _post(client, "c-1", {"secure": True}) == (404, {"error": "unknown call"})
    assert not side.of(CallSecureChanged)


# ------------------------------------------------------------------ DTMF on the timeline
FRAME = 160
TONE_AT = 25 * FRAME            # 0.5 s into the leg's audio
TONE = 5 * FRAME                # 100 ms: the event's duration and the in-band tone's length
SSRC = 0x5EC0


def _audio_packets(ts0: int) -> list[bytes]:
    """0.5 s silence, 100 ms of 1 kHz tone (what the phone plays in band), 0.5 s silence."""
    pcm = np.zeros(TONE_AT + TONE + 25 * FRAME, dtype=np.int16)
    t = np.arange(TONE) / 8000
    pcm[TONE_AT:TONE_AT + TONE] = (8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    encode = encoder_for("PCMU")
    return [RtpPacket(0, i == 0, 1000 + i, (ts0 + i * FRAME) & 0xFFFFFFFF, SSRC,
                      encode(pcm[i * FRAME:(i + 1) * FRAME])).serialize()
            for i in range(len(pcm) // FRAME)]


def _event_packets(ts: int, seq0: int) -> list[bytes]:
    """RFC 4733 event 7 at ``ts``: two updates, then the end packet three times."""
    bodies = [bytes([7, 10, 0, 160]), bytes([7, 10, 1, 64]),
              *[bytes([7, 0x80 | 10, TONE >> 8, TONE & 0xFF])] * 3]
    return [RtpPacket(101, i == 0, seq0 + i, ts, SSRC, body).serialize()
            for i, body in enumerate(bodies)]


def _loud_span_s(recording: str) -> tuple[float, float]:
    with wave.open(recording) as wav:
        rate = wav.getframerate()
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    loud = np.flatnonzero(np.abs(frames.reshape(-1, 2)).max(axis=1) > 1000)
    assert len(loud), "the tone's audio is not in the recording"
    return loud[0] / rate, (loud[-1] + 1) / rate


async def test_a_dtmf_event_carries_where_its_tone_is_on_the_conversation_timeline(
        tmp_path: Path, stop_sides: Callable[[GatewayConfig], Side]) -> None:
    side = stop_sides(make_config(tmp_path, record=True))
    await answered_call(side, "c-1")
    await asyncio.sleep(0.3)        # the leg's audio starts well after the conversation did
    (port,) = side.sip.answers["c-1"]
    assert port is not None
    ts0 = 0xFFFFFFFF - 10 * FRAME   # the 32-bit timestamp wraps before the tone
    audio = _audio_packets(ts0)
    peer = UdpPeer()
    try:
        # a burst: all of it arrives at once, so arrival time says nothing about media time
        for datagram in audio[:26] + _event_packets((ts0 + TONE_AT) & 0xFFFFFFFF, 1100):
            peer.send(datagram, port)
        for datagram in audio[26:]:
            peer.send(datagram, port)
        await until(lambda: bool(side.of(DtmfReceived)))
        await asyncio.sleep(0.2)
    finally:
        peer.sock.close()
    side.calls.ended("c-1", "bye", "remote", True)
    assert await side.calls.wait_idle(WAIT_S)
    (digit,) = side.of(DtmfReceived)
    (ended,) = side.of(CallEnded)
    offset_s = ended.legs[0]["offset_s"]
    assert offset_s >= 0.25 and ended.recording is not None
    assert (digit.digit, digit.duration_ms, digit.end_seen) == ("7", 100, True)
    assert digit.start_s == pytest.approx(offset_s + TONE_AT / 8000, abs=0.001)
    assert digit.end_s == pytest.approx(digit.start_s + 0.1, abs=0.0002)
    loud_start, loud_end = _loud_span_s(ended.recording)
    assert loud_start == pytest.approx(digit.start_s, abs=0.002)
    assert loud_end == pytest.approx(digit.end_s, abs=0.002)


async def test_a_dtmf_event_before_any_audio_is_placed_by_when_it_was_heard(
        tmp_path: Path, stop_sides: Callable[[GatewayConfig], Side]) -> None:
    """No audio packet to map the event's timestamp through: the time its end arrived,
    less its duration, on the conversation timeline."""
    side = stop_sides(make_config(tmp_path))
    await answered_call(side, "c-1")
    await asyncio.sleep(0.3)
    (port,) = side.sip.answers["c-1"]
    assert port is not None
    loop = asyncio.get_running_loop()
    start = side.calls.calls["c-1"].talk.media.start
    peer = UdpPeer()
    try:
        sent_at = loop.time() - start
        for datagram in _event_packets(123456, 1):
            peer.send(datagram, port)
        await until(lambda: bool(side.of(DtmfReceived)))
        seen_at = loop.time() - start
    finally:
        peer.sock.close()
    (digit,) = side.of(DtmfReceived)
    assert digit.start_s is not None and digit.end_s is not None
    assert digit.end_s - digit.start_s == pytest.approx(0.1, abs=0.0002)
    assert sent_at - 0.001 <= digit.end_s <= seen_at + 0.001
