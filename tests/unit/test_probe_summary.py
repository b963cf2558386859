"""``asr-gateway probe``'s pure parts: the tracker with spoken replies, what the phone heard,
and the summary in words."""

from __future__ import annotations

import numpy as np

from gateway.probe import (
    EXIT_NO_TRANSCRIPT,
    EXIT_OK,
    EXIT_SETUP,
    Action,
    FinalTranscript,
    ProbeReport,
    ProbeTracker,
    ReceivedAudio,
    SpokenReply,
    finals_sentence,
    received_audio,
    replies_sentence,
    reply_audio_sentence,
    summary_message,
    with_reply_audio,
)

CALL = "c-66ad2f7881a1b87a"
SIP_ID = "sip-call-1"


def _tone(seconds: float, dbfs: float = -20.0, rate_hz: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    amplitude = 10 ** (dbfs / 20) * np.sqrt(2) * 32767
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def test_received_audio_counts_sound_not_silence() -> None:
    pcm = np.concatenate([np.zeros(8000, np.int16), _tone(1.5), np.zeros(4000, np.int16)])
    heard = received_audio(pcm)
    assert heard.recorded_s == 3.0
    assert heard.sound_s == 1.5
    assert heard.first_sound_s == 1.0 and heard.last_sound_s == 2.5


def test_received_audio_of_silence_and_of_nothing() -> None:
    noise_floor = (np.random.default_rng(1).normal(0, 30, 16000)).astype(np.int16)  # ~-60 dBFS
    assert received_audio(noise_floor) == ReceivedAudio(2.0, 0.0, None, None)
    assert received_audio(np.zeros(0, np.int16)) == ReceivedAudio(0.0, 0.0, None, None)


def test_finals_sentence_says_when_the_last_one_came() -> None:
    after = [FinalTranscript("customer", "a", -1.2), FinalTranscript("customer", "b", 0.7)]
    assert finals_sentence(after) == "2 finals (the last 0.70 s after the audio ended)"
    during = [FinalTranscript("customer", "a", -14.37)]
    text = finals_sentence(during)
    assert text == ("1 final, all while the audio played (the last 14.37 s before its end; "
                    "none came after it)")
    assert "-14.37" not in text
    assert finals_sentence([FinalTranscript("customer", "a", None)]) == "1 final"


def test_replies_sentence() -> None:
    assert replies_sentence([]) == "no spoken reply from the gateway"
    greeting = SpokenReply("r-1", "greeting", "Hello, how can I help?", "finished", 1.8)
    assert replies_sentence([greeting]) == (
        "1 spoken reply (greeting, finished, 1.80 s played): 'Hello, how can I help?'")
    cut = SpokenReply("r-2", "bot", "Let me check.", "interrupted", 0.4, "barge_in")
    failed = SpokenReply("r-3", "api", "x", "failed", 0.0, "Triton down")
    text = replies_sentence([greeting, cut, failed])
    assert text.startswith("3 spoken replies (2.20 s played; ")
    assert "bot, interrupted (barge_in), 0.40 s played" in text
    assert "api, failed (Triton down)" in text


def test_reply_audio_sentence_tells_one_way_audio_apart() -> None:
    reply = SpokenReply("r-1", "greeting", "Hello", "finished", 1.8)
    heard = ReceivedAudio(6.2, 1.76, 0.42, 2.2)
    assert reply_audio_sentence(heard, [reply]) == (
        "reply audio received: 1.76 s of sound in 6.20 s heard, from 0.42 s")
    silent = ReceivedAudio(6.2, 0.0, None, None)
    assert "one-way audio" in (reply_audio_sentence(silent, [reply]) or "")
    assert reply_audio_sentence(silent, []) == "no reply audio received"
    assert reply_audio_sentence(None, [reply]) is None


def _report(**kw: object) -> ProbeReport:
    base: dict[str, object] = dict(
        exit_code=EXIT_OK, message="OK", uri="sip:asr@127.0.0.1", call_id=CALL,
        sip_call_id=SIP_ID, sip_status=200, sip_reason="OK", answered=True, audio_s=3.04,
        finals=(FinalTranscript("customer", "Hello there.", -14.37),))
    base.update(kw)
    return ProbeReport(**base)  # type: ignore[arg-type]


def test_summary_of_a_call_with_a_spoken_reply() -> None:
    reply = SpokenReply("r-1", "greeting", "Hello, how can I help?", "finished", 1.8)
    report = with_reply_audio(_report(replies=(reply,)), ReceivedAudio(18.0, 1.76, 0.4, 2.2))
    assert report.message == (
        f"OK: call {CALL}; played 3.04 s of audio; 1 final, all while the audio played (the "
        "last 14.37 s before its end; none came after it); 1 spoken reply (greeting, finished, "
        "1.80 s played): 'Hello, how can I help?'; reply audio received: 1.76 s of sound in "
        "18.00 s heard, from 0.40 s; hangup SIP 200 OK")
    assert "trailing final" not in report.message
    assert report.reply_audio is not None and report.reply_audio.sound_s == 1.76


def test_summary_without_transcript_and_setup_errors() -> None:
    none = _report(exit_code=EXIT_NO_TRANSCRIPT, message="no transcript for call c-1", finals=())
    text = summary_message(none)
    assert text.startswith("no transcript for call c-1; played 3.04 s of audio; ")
    assert "no spoken reply from the gateway" in text
    setup = _report(exit_code=EXIT_SETUP, message="call refused: SIP 403 Forbidden")
    assert summary_message(setup) == "call refused: SIP 403 Forbidden"


def _tracker_in_call(now: float = 0.0) -> ProbeTracker:
    tracker = ProbeTracker(now=now, timeout_s=60, settle_s=1.5)
    tracker.on_phone({"event": "calling", "sip_call_id": SIP_ID, "mono_s": now}, now)
    tracker.on_gateway({"type": "call.answered", "call_id": CALL, "sip_call_id": SIP_ID}, now)
    tracker.on_phone({"event": "call_state", "state": "CONFIRMED", "mono_s": now}, now)
    tracker.on_phone({"event": "play_started", "audio_s": 3.0, "mono_s": 0.1}, 0.1)
    return tracker


def test_tracker_waits_for_a_reply_being_spoken() -> None:
    tracker = _tracker_in_call()
    tracker.on_phone({"event": "play_done", "mono_s": 3.1}, 3.1)
    tracker.on_gateway({"type": "transcript.final", "call_id": CALL, "channel": "customer",
                        "text": "Hello."}, 3.5)
    tracker.on_gateway({"type": "tts.started", "call_id": CALL, "reply_id": "r-1",
                        "source": "bot", "text": "Hi, how can I help?"}, 4.0)
    assert tracker.next_action(10.0) is Action.WAIT        # the reply is still playing
    tracker.on_gateway({"type": "tts.finished", "call_id": CALL, "reply_id": "r-1",
                        "played_ms": 1800}, 11.0)
    assert tracker.next_action(12.0) is Action.WAIT        # settling after the reply
    assert tracker.next_action(12.6) is Action.HANGUP
    assert tracker.replies == (SpokenReply("r-1", "bot", "Hi, how can I help?", "finished",
                                           1.8),)


def test_tracker_records_interrupted_and_failed_replies() -> None:
    tracker = _tracker_in_call()
    for event in ({"type": "tts.started", "reply_id": "r-1", "source": "api", "text": "A"},
                  {"type": "tts.interrupted", "reply_id": "r-1", "reason": "barge_in",
                   "played_ms": 400, "text": "A"},
                  {"type": "tts.failed", "reply_id": "r-2", "error": "Triton down"}):
        tracker.on_gateway({**event, "call_id": CALL}, 1.0)
    assert [(r.reply_id, r.outcome, r.played_s, r.detail) for r in tracker.replies] == [
        ("r-1", "interrupted", 0.4, "barge_in"), ("r-2", "failed", 0.0, "Triton down")]
    tracker.on_gateway({"type": "tts.started", "call_id": "c-other", "reply_id": "r-9",
                        "source": "api", "text": "not mine"}, 1.0)
    assert len(tracker.replies) == 2
