"""The voice owner's per-call part (gateway/calls/voice.py CallVoice) in-process: a real
Playout with a real TtsClient (tts_cpu_default) into a real RtpEndpoint on loopback, fed
caller audio as the conversation's channel sinks feed it (8 kHz, 20 ms frames)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import numpy.typing as npt
import pytest

from gateway.calls.voice import CallVoice
from gateway.config import TritonConfig
from gateway.events.types import GatewayEvent, ReplyInterrupted, ReplyStarted
from gateway.media.endpoint import RtpEndpoint
from gateway.media.vad import EnergyVad
from gateway.triton_launcher import TritonProcess
from gateway.tts.client import TtsClient
from gateway.tts.playout import Playout
from tests.peers.ports import free_udp_port_pair

HOST = "127.0.0.1"
WAIT_S = 60.0                     # synthesis on a shared machine
LONG = ("Thanks. I have found your account and I can see that the replacement part was "
        "sent last Tuesday by express courier, so it should reach you tomorrow morning.")


async def until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.02)


def frames(level_dbfs: float, seconds: float) -> list[npt.NDArray[np.int16]]:
    """20 ms frames of a 300 Hz tone at ``level_dbfs`` (RMS)."""
    t = np.arange(int(8000 * seconds)) / 8000
    amplitude = 32768 * 10 ** (level_dbfs / 20) * np.sqrt(2)
    pcm = (amplitude * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    return [pcm[i:i + 160] for i in range(0, len(pcm), 160)]


@pytest.fixture
async def voice(shell_triton: TritonProcess
                ) -> AsyncIterator[tuple[CallVoice, list[GatewayEvent]]]:
    loop = asyncio.get_running_loop()
    sink, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                  local_addr=(HOST, 0), family=socket.AF_INET)
    endpoint = RtpEndpoint(frozenset({0}), symmetric=False)
    await endpoint.open(HOST, free_udp_port_pair(), rtcp_mux=False)
    endpoint.remote = sink.get_extra_info("sockname")[:2]
    tts = TtsClient(TritonConfig(url=shell_triton.grpc_url, tts_model="tts_cpu_default"))
    events: list[GatewayEvent] = []
    playout = Playout("c-1", endpoint, encoding="PCMU", payload_type=0, ptime_ms=20, tts=tts,
                      emit=events.append)
    call_voice = CallVoice(playout, EnergyVad(threshold_dbfs=-35.0, min_speech_ms=200))
    try:
        yield call_voice, events
    finally:
        await call_voice.close()
        await tts.close()
        endpoint.close()
        sink.close()


def cuts(events: list[GatewayEvent]) -> list[str]:
    return [e.reason for e in events if isinstance(e, ReplyInterrupted)]


async def test_caller_speech_cuts_a_reply_quiet_audio_does_not(
        voice: tuple[CallVoice, list[GatewayEvent]]) -> None:
    call_voice, events = voice
    for frame in frames(-20.0, 1.0):             # loud, but nothing is playing: no effect
        call_voice.heard_audio(frame)
    call_voice.say(LONG, barge_in=True, source="api")
    await until(lambda: any(isinstance(e, ReplyStarted) for e in events))
    for frame in frames(-50.0, 1.0):             # below the threshold
        call_voice.heard_audio(frame)
    for frame in frames(-20.0, 0.1):             # loud, but shorter than 200 ms
        call_voice.heard_audio(frame)
    for frame in frames(-50.0, 0.1):             # a pause resets the count
        call_voice.heard_audio(frame)
    assert call_voice.playout.speaking and cuts(events) == []
    for frame in frames(-20.0, 0.3):
        call_voice.heard_audio(frame)
    assert cuts(events) == ["barge-in: caller speech"]
    assert not call_voice.playout.speaking


async def test_a_notice_is_cut_only_by_the_hangup_words_cut_the_greeting(
        voice: tuple[CallVoice, list[GatewayEvent]]) -> None:
    call_voice, events = voice
    call_voice.greet("This call is recorded for quality and training purposes.", LONG)
    await until(lambda: any(isinstance(e, ReplyStarted) for e in events))
    for frame in frames(-20.0, 0.5):
        call_voice.heard_audio(frame)
    call_voice.heard_words()
    assert cuts(events) == [] and call_voice.playout.speaking   # the notice plays on
    await until(lambda: sum(isinstance(e, ReplyStarted) for e in events) == 2)
    started = [e for e in events if isinstance(e, ReplyStarted)]
    assert [e.source for e in started] == ["recording_notice", "greeting"]
    call_voice.heard_words()
    assert cuts(events) == ["barge-in: caller words"]
    call_voice.say(LONG, barge_in=False, source="api")
    await until(lambda: sum(isinstance(e, ReplyStarted) for e in events) == 3)
    await call_voice.close()
    assert cuts(events) == ["barge-in: caller words", "hangup"]
