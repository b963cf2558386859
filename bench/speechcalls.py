"""Speech played into the gateway over real calls, and what came back.

A call's *script* is its whole 8 kHz audio (a lead silence, sentences separated by gaps,
a tail silence) and where each sentence's speech starts and ends in it (pure). The
runner places the calls (tests/rawsip), plays all scripts side by side in real time
(bench.rtpcall.play, optionally dropping packets), waits a bounded time for the
transcripts, hangs up and returns each call's transcript events. A script with
``talk_only`` is sent as a sender with silence suppression sends it: RTP only while a
sentence is spoken (onset to end of speech), nothing in the pauses and nothing after the
last sentence (the call stays up until the wait for the finals is over).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.corpus import Utterance
from bench.rtpcall import (
    FRAME_SAMPLES,
    RawCall,
    Stream,
    drop_indices,
    play,
    rtp_packets,
    talkspurt_packets,
)
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
    talk_only: bool = False          # RTP only while a sentence is spoken (see the module)

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


def talkspurts(spoken: Sequence[Spoken]) -> list[tuple[int, int]]:
    """The 20 ms slots ``[first, last)`` covering each sentence's speech."""
    slot_s = FRAME_SAMPLES / RATE_HZ
    return [(int(s.start_s / slot_s), -int(-s.end_s // slot_s)) for s in spoken]


def nearest_sentence(spoken: Sequence[Spoken], end_s: float) -> int:
    """Index of the sentence whose [start, end] interval is closest to ``end_s``."""
    def distance(s: Spoken) -> float:
        return max(s.start_s - end_s, 0.0, end_s - s.end_s)
    return min(range(len(spoken)), key=lambda i: distance(spoken[i]))


def heard_last(spoken: Sequence[Spoken], finals: Sequence[Event]) -> bool:
    """Whether a final belongs to the last sentence (the one nearest its ``end_s``)."""
    last = len(spoken) - 1
    return any(nearest_sentence(spoken, float(f.get("end_s", 0.0))) == last for f in finals)


@dataclass(frozen=True, slots=True)
class CallOutcome:
    script: CallScript
    call_id: str | None
    wall0: float                     # time.time() when the call's packet 0 was due
    finals: tuple[Event, ...]
    partials: tuple[Event, ...]
    ended: Event | None
    hung_up_at: float | None = None  # time.time() when the BYEs started


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
                 scripts: Sequence[CallScript], timeout_s: float, until_last: bool,
                 settle_s: float = 0.0) -> None:
    """Until each call has as many finals as it has sentences (and, ``until_last``, one of
    them for its last sentence) and no new final came for ``settle_s`` (a sentence may end
    in two finals), at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    seen, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        finals = [_transcripts(gw, "final", cid) for _c, cid in calls]
        count = sum(len(f) for f in finals)
        if count != seen:
            seen, since = count, time.monotonic()
        if all(len(f) >= len(s.spoken) and (not until_last or heard_last(s.spoken, f))
               for f, s in zip(finals, scripts, strict=True)) \
                and time.monotonic() - since >= settle_s:
            return
        time.sleep(0.2)


def _stream(call: RawCall, script: CallScript, index: int, loss: float, seed: int) -> Stream:
    if script.talk_only:
        pkts, silent = talkspurt_packets(script.pcm, 0x1000 + index, talkspurts(script.spoken))
        lost = drop_indices(len(pkts), loss, seed + index) if loss else frozenset()
        return Stream(call, pkts, silent | lost)
    pkts = rtp_packets(script.pcm, ssrc=0x1000 + index)
    return Stream(call, pkts, drop_indices(len(pkts), loss, seed + index))


def run_calls(gw: GatewayProcess, scripts: Sequence[CallScript], *,
              losses: Sequence[float] | None = None, seed: int = 1,
              finals_timeout_s: float = 30.0, headers: str = "", until_last: bool = False,
              settle_s: float = 0.0) -> list[CallOutcome]:
    """Place one call per script, play them all at once (script i loses ``losses[i]`` of its
    packets, none by default), wait for the finals (``until_last``: also for one of the
    last sentence; then ``settle_s`` with no new final), hang up; one outcome per script."""
    losses = list(losses) if losses is not None else [0.0] * len(scripts)
    calls: list[tuple[RawCall, str | None]] = []
    try:
        for _ in scripts:
            call = RawCall(gw.sip_port, headers=headers)
            call.setup()
            calls.append((call, _answered_call_id(gw, call.sip_call_id)))
        streams = [_stream(call, script, i, losses[i], seed)
                   for i, ((call, _cid), script) in enumerate(zip(calls, scripts, strict=True))]
        wall0 = play(streams)
        _wait_finals(gw, calls, scripts, finals_timeout_s, until_last, settle_s)
        hung_up_at = time.time()
        for call, _cid in calls:
            call.hangup()
        return [_outcome(gw, cid, script, wall0, hung_up_at)
                for (_call, cid), script in zip(calls, scripts, strict=True)]
    finally:
        for call, _cid in calls:
            call.close()


def _outcome(gw: GatewayProcess, call_id: str | None, script: CallScript, wall0: float,
             hung_up_at: float) -> CallOutcome:
    ended: Event | None = None
    if call_id is not None:
        try:
            ended = gw.wait_log("call.ended", ENDED_TIMEOUT_S,
                                lambda e: e.get("call_id") == call_id)
        except AssertionError:
            ended = None
    return CallOutcome(script, call_id, wall0, _transcripts(gw, "final", call_id),
                       _transcripts(gw, "partial", call_id), ended, hung_up_at)
