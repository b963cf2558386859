"""``asr-gateway tail``'s pure part: lines for events, the call summary, backoff, messages."""

from __future__ import annotations

from typing import Any

from gateway.tail import (
    BACKOFF_MAX_S,
    MAX_TRACKED_CALLS,
    TailFormatter,
    backoff_s,
    close_reason,
    refused_message,
)

CALL = "c-0123456789abcdef"


def _ev(kind: str, **data: Any) -> dict[str, Any]:
    return {"type": kind, "call_id": CALL, **data}


def test_transcripts_and_partials() -> None:
    plain, live = TailFormatter(colour=False), TailFormatter(colour=True)
    final = _ev("transcript.final", channel="customer", text="hello there")
    partial = _ev("transcript.partial", channel="customer", text="hel")
    assert plain.lines(final) == ["[abcdef] customer: hello there"]
    assert plain.lines(partial) == []
    assert live.lines(partial)[0].endswith("hel …\033[0m")


def test_spoken_replies_are_shown() -> None:
    f = TailFormatter(colour=False)
    assert f.lines(_ev("tts.started", reply_id="r-1", source="api", text="Your parcel ships.",
                       latency_s=0.3)) == ["[abcdef]    reply: Your parcel ships. (api)"]
    assert f.lines(_ev("tts.finished", reply_id="r-1", played_ms=2340)) == [
        "[abcdef]    reply: (finished, 2.3 s spoken)"]
    assert f.lines(_ev("tts.interrupted", reply_id="r-2", reason="barge_in", played_ms=600,
                       text="x")) == ["[abcdef]    reply: (interrupted: barge_in, after 0.6 s)"]
    assert f.lines(_ev("tts.failed", reply_id="r-3", error="Triton down")) == [
        "[abcdef]    reply: (failed: Triton down)"]


def test_call_ended_carries_a_summary_of_the_call() -> None:
    f = TailFormatter(colour=False)
    f.lines(_ev("call.answered"))
    for channel in ("customer", "agent", "customer"):
        f.lines(_ev("transcript.final", channel=channel, text="x"))
    f.lines(_ev("tts.started", text="hi", source="bot"))
    f.lines(_ev("tts.finished", played_ms=1500))
    ended = _ev("call.ended", reason="remote hangup", by="remote", answered=True,
                duration_s=12.34, asr_finals_flushed=True, recording="/r/c.flac",
                legs=[{"channel": "customer", "received": 600, "lost": 2}])
    assert f.lines(ended) == [
        "[abcdef] call.ended remote hangup: 12.3 s; 3 finals (agent 1, customer 2); "
        "1 reply (1.5 s spoken); customer RTP 600 packets, 2 lost; recording /r/c.flac"]
    again = f.lines(ended)[0]                     # the tally was dropped with the call
    assert "0 finals" in again and "reply" not in again


def test_unanswered_call_and_unflushed_finals_are_said() -> None:
    line = TailFormatter(colour=False).lines(_ev(
        "call.ended", reason="timeout", answered=False, duration_s=0.0,
        asr_finals_flushed=False, legs=[]))[0]
    assert "not answered" in line and "ASR did not flush its last finals in time" in line


def test_tracked_calls_are_bounded() -> None:
    f = TailFormatter(colour=False)
    for i in range(MAX_TRACKED_CALLS + 10):
        f.lines({"type": "transcript.final", "call_id": f"c-{i}", "channel": "customer",
                 "text": "x"})
    assert len(f._calls) == MAX_TRACKED_CALLS


def test_backoff_doubles_to_a_cap() -> None:
    delays = [backoff_s(i) for i in range(10)]
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert max(delays) == BACKOFF_MAX_S and delays[-1] == BACKOFF_MAX_S
    assert backoff_s(10_000) == BACKOFF_MAX_S


def test_messages_say_why() -> None:
    assert "shutting down" in close_reason(1001)
    assert "dropped" in close_reason(None) and "dropped" in close_reason(1006)
    assert "close code 1011" in close_reason(1011)
    unset = refused_message("http://gw", 401, None, "ASR_GW_HTTP_TOKEN")
    assert "HTTP 401" in unset and "ASR_GW_HTTP_TOKEN is not set" in unset
    wrong = refused_message("http://gw", 401, "x", "MY_TOKEN")
    assert "MY_TOKEN" in wrong and "http.token" in wrong
    assert "disabled" in refused_message("http://gw", 403, "x", "ASR_GW_HTTP_TOKEN")
