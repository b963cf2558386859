"""Speech played into the gateway over real calls, and what came back.

A call's *script* is its whole 8 kHz audio (a lead silence, sentences separated by gaps,
a tail silence) and where each sentence's speech starts and ends in it (pure). The
runner places the calls (tests/rawsip), plays all scripts side by side in real time
(bench.rtpcall.play, optionally dropping packets), waits a bounded time for the
transcripts, hangs up and returns each call's transcript events.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.corpus import Utterance
from bench.rtpcall import RawCall, Stream, drop_indices, play, rtp_packets
from tests.gateway_proc import GatewayProcess

RATE_HZ = 8000
ANSWER_TIMEOUT_S = 10.0
ENDED_TIMEOUT_S = 60.0
Event = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Spoken:
    text: str
    start_s: float       # speech onset, seconds from the call's first packet
    end_s: float         # end of speech


@dataclass(frozen=True, slots=True)
class CallScript:
    pcm: npt.NDArray[np.int16]
    spoken: tuple[Spoken, ...]

    @property
    def reference(self) -> str:
        return " ".join(s.text for s in self.spoken)


def build_script(utts: Sequence[Utterance], *, lead_s: float, gap_s: float, tail_s: float
                 ) -> CallScript:
    parts = [np.zeros(int(lead_s * RATE_HZ), np.int16)]
    spoken, cursor = [], lead_s
    for i, u in enumerate(utts):
        parts.append(u.pcm)
        spoken.append(Spoken(u.text, cursor + u.speech_start_s, cursor + u.speech_end_s))
        cursor += u.duration_s
        pause_s = gap_s if i < len(utts) - 1 else tail_s
        parts.append(np.zeros(int(pause_s * RATE_HZ), np.int16))
        cursor += int(pause_s * RATE_HZ) / RATE_HZ
    return CallScript(np.concatenate(parts), tuple(spoken))


@dataclass(frozen=True, slots=True)
class CallOutcome:
    script: CallScript
    call_id: str | None
    wall0: float                     # time.time() when the call's packet 0 was due
    finals: tuple[Event, ...]
    partials: tuple[Event, ...]
    ended: Event | None


def _answered_call_id(gw: GatewayProcess, sip_call_id: str) -> str | None:
    try:
        event = gw.wait_log("call.answered", ANSWER_TIMEOUT_S,
                            lambda e: e.get("sip_call_id") == sip_call_id)
    except AssertionError:
        return None
    return str(event["call_id"])


def _transcripts(gw: GatewayProcess, kind: str, call_id: str | None) -> tuple[Event, ...]:
    return tuple(e for e in gw.events(f"transcript.{kind}") if e.get("call_id") == call_id)


def _wait_finals(gw: GatewayProcess, calls: Sequence[tuple[RawCall, str | None]],
                 wanted: Sequence[int], timeout_s: float) -> None:
    """Until each call has as many finals as it has sentences, at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = [len(_transcripts(gw, "final", cid)) for _c, cid in calls]
        if all(n >= w for n, w in zip(counts, wanted, strict=True)):
            return
        time.sleep(0.2)


def run_calls(gw: GatewayProcess, scripts: Sequence[CallScript], *,
              losses: Sequence[float] | None = None, seed: int = 1,
              finals_timeout_s: float = 30.0, headers: str = "") -> list[CallOutcome]:
    """Place one call per script, play them all at once (script i loses ``losses[i]`` of its
    packets, none by default), wait for the finals, hang up; one outcome per script."""
    losses = list(losses) if losses is not None else [0.0] * len(scripts)
    calls: list[tuple[RawCall, str | None]] = []
    try:
        for _ in scripts:
            call = RawCall(gw.sip_port, headers=headers)
            call.setup()
            calls.append((call, _answered_call_id(gw, call.sip_call_id)))
        streams = []
        for i, ((call, _cid), script) in enumerate(zip(calls, scripts, strict=True)):
            pkts = rtp_packets(script.pcm, ssrc=0x1000 + i)
            streams.append(Stream(call, pkts, drop_indices(len(pkts), losses[i], seed + i)))
        wall0 = play(streams)
        _wait_finals(gw, calls, [len(s.spoken) for s in scripts], finals_timeout_s)
        for call, _cid in calls:
            call.hangup()
        return [_outcome(gw, cid, script, wall0)
                for (_call, cid), script in zip(calls, scripts, strict=True)]
    finally:
        for call, _cid in calls:
            call.close()


def _outcome(gw: GatewayProcess, call_id: str | None, script: CallScript, wall0: float
             ) -> CallOutcome:
    ended: Event | None = None
    if call_id is not None:
        try:
            ended = gw.wait_log("call.ended", ENDED_TIMEOUT_S,
                                lambda e: e.get("call_id") == call_id)
        except AssertionError:
            ended = None
    return CallOutcome(script, call_id, wall0, _transcripts(gw, "final", call_id),
                       _transcripts(gw, "partial", call_id), ended)
