"""Conversation analytics end to end (issue 17): one real two-leg conversation into the daemon,
Whisper (``asr_cpu_default``) on the shared Triton, a piper voice on both sides.

The agent leg (``X-Leg: agent``) and the customer leg share an ``X-Conversation-Id``. The
agent greets ("thank you for calling": a category) and never says the recording disclosure
(a compliance rule with a deadline: ``compliance.missed`` while the call still runs); the
customer says "cancel" (a category, and a hint for the agent's screen). Sentiment is on.
Both legs hang up; the gateway records the conversation.

Afterwards (one conversation, module-scoped; a test per check): the rule events; one
``conversation.summary`` just before the last ``call.ended`` whose document has both
participants, the turns, the outcomes, a signal per turn, and statistics whose talk time
per channel is what the test played (within 0.12 s per utterance); and beside the recording
the ``.summary.json`` (the event's document), ``.txt`` and ``.vtt`` files.
"""

from __future__ import annotations

import contextlib
import json
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from gateway.analytics.summary import speaker_label, timestamp
from gateway.triton_launcher import TritonProcess
from tests.event_files import schema_errors
from tests.gateway_proc import GatewayProcess, base_config, merge
from tests.integration.test_media import Caller
from tests.media_tools import FRAME, RATE, packets
from tests.speech import piper_wavs, read_pcm, word_error_rate
from tests.unit.test_analytics_summary import parse_webvtt

pytestmark = pytest.mark.slow

TURNS = (
    ("agent", "Thank you for calling Acme broadband, my name is Sam. How can I help you?"),
    ("customer", "Hi Sam. I would like to cancel my internet contract please."),
    ("agent", "I am sorry to hear that. May I ask why you want to leave us?"),
    ("customer", "The connection keeps dropping every evening and I am really frustrated."),
    ("agent", "I understand. I can offer you twenty percent off for the next twelve months."),
    ("customer", "Okay, that sounds good. Thank you for your help."),
)
LEAD_S = 0.5                # silence before the first turn
GAP_S = 1.5                 # silence after each turn (the ASR ends the utterance)
TRAILING_S = 2.5
DISCLOSURE_S = 8.0          # the disclosure is due within the first 8 s of the conversation
LATE_S = 2.0                # analytics.late_s: a missed deadline is reported this much later
HINT = "Retention: ask what made them want to leave, then offer 20% off for 12 months."
RULES = [
    {"name": "greeting", "kind": "category", "channel": "agent",
     "phrases": ["thank you for calling"]},
    {"name": "recording_disclosure", "kind": "compliance", "channel": "agent",
     "phrases": ["call is being recorded", "calls are recorded"], "first_s": DISCLOSURE_S},
    {"name": "cancellation_intent", "kind": "category", "channel": "customer",
     "phrases": ["cancel"]},
    {"name": "retention_offer", "kind": "hint", "channel": "customer", "phrases": ["cancel"],
     "hint": HINT},
]
VOICED_DBFS = -40.0         # [statistics] threshold_dbfs (the default)
TALK_TOLERANCE_S = 0.12     # per utterance: the VAD's frame grid, G.711, piper's pauses
RTP_RANGE = (51400, 51498)  # outside the ranges tests/conftest.py hands out
Pcm = npt.NDArray[np.int16]


# ------------------------------------------------------------------ the conversation

@dataclass(frozen=True, slots=True)
class Conversation:
    agent: Pcm
    customer: Pcm
    talk_s: dict[str, float]          # per channel: voiced span of each utterance, summed
    utterances: dict[str, int]


def _voiced_span_s(pcm: Pcm) -> float:
    """From the first to the last 20 ms frame at or above VOICED_DBFS (piper's own leading
    and trailing silence left out)."""
    frames = pcm[: len(pcm) // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    rms = np.sqrt(np.mean(frames ** 2, axis=1)) / 32768
    voiced = np.flatnonzero(20 * np.log10(np.maximum(rms, 1e-10)) >= VOICED_DBFS)
    return float((voiced[-1] - voiced[0] + 1) * FRAME / RATE) if voiced.size else 0.0


def _silence(seconds: float) -> Pcm:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


@pytest.fixture(scope="module")
def conversation(tmp_path_factory: pytest.TempPathFactory) -> Conversation:
    """Both legs on one timeline: a turn on one side is silence on the other."""
    speech = [read_pcm(p) for p in piper_wavs([t for _c, t in TURNS],
                                              tmp_path_factory.mktemp("piper"))]
    sides: dict[str, list[Pcm]] = {"agent": [_silence(LEAD_S)], "customer": [_silence(LEAD_S)]}
    talk = {"agent": 0.0, "customer": 0.0}
    for (channel, _text), pcm in zip(TURNS, speech, strict=True):
        other = "customer" if channel == "agent" else "agent"
        sides[channel] += [pcm, _silence(GAP_S)]
        sides[other].append(_silence(len(pcm) / RATE + GAP_S))
        talk[channel] += _voiced_span_s(pcm)
    for side in sides.values():
        side.append(_silence(TRAILING_S))
    counts = {c: sum(1 for ch, _t in TURNS if ch == c) for c in talk}
    return Conversation(np.concatenate(sides["agent"]), np.concatenate(sides["customer"]),
                        talk, counts)


def _talk(agent: Caller, customer: Caller, conv: Conversation) -> None:
    """Both legs' RTP, interleaved and paced like two phones (20 ms each)."""
    streams = (packets(conv.agent, "PCMU", ssrc=0xA1), packets(conv.customer, "PCMU", ssrc=0xC1))
    start = time.monotonic()
    for i, (a, c) in enumerate(zip(*streams, strict=True)):
        delay = start + i * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        agent.rtp.sendto(a, agent.gw_rtp)
        customer.rtp.sendto(c, customer.gw_rtp)


def _analytics_config(triton_url: str) -> dict[str, Any]:
    return {
        "triton": {"url": triton_url, "asr_model": "asr_cpu_default", "buffer_s": 60.0},
        "tts": {"enabled": False},
        "storage": {"record": True, "recording_format": "wav"},
        "channels": {"rules": [
            {"match": "header", "header": "X-Leg", "pattern": "^agent$", "channel": "agent"}]},
        "analytics": {"rules": RULES, "late_s": LATE_S, "sentiment": True},
    }


@dataclass
class Outputs:
    events: list[dict[str, Any]]          # the JSONL sink, in delivery order
    agent_call: str
    customer_call: str
    log: list[dict[str, Any]]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    def summary(self) -> dict[str, Any]:
        (event,) = self.of("conversation.summary")
        return event


@contextlib.contextmanager
def _module_gateway(tmp: Path, triton_url: str) -> Iterator[GatewayProcess]:
    """A gateway for the module (tests/conftest.py's factory is per test), killed at the
    end, and every event it wrote checked against the schema."""
    workdir = tmp / "gw"
    workdir.mkdir()
    gw = GatewayProcess(workdir, merge(base_config(workdir, RTP_RANGE),
                                       _analytics_config(triton_url)))
    try:
        yield gw.start()
    finally:
        gw.kill()
    errors = schema_errors(gw.config)[1]
    assert not errors, "events not matching the schema:\n" + "\n".join(errors)


@pytest.fixture(scope="module")
def outputs(triton: TritonProcess, conversation: Conversation,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outputs]:
    tmp = tmp_path_factory.mktemp("analytics")
    with _module_gateway(tmp, triton.grpc_url) as gw:
        gw.wait_log("triton.ready", 30)
        agent = Caller(gw, headers="X-Leg: agent\r\nX-Conversation-Id: analytics-e2e")
        customer = Caller(gw, headers="X-Leg: customer\r\nX-Conversation-Id: analytics-e2e")
        _talk(agent, customer, conversation)
        customer.bye()
        agent.bye()
        agent_call = agent.ended(30)["call_id"]
        customer_call = customer.ended(30)["call_id"]
        gw.wait_log("conversation.summary_written", 10)
        assert gw.stop() == 0
        events = [json.loads(line) for line in
                  (gw.tmp / "events.jsonl").read_text().splitlines() if line]
        yield Outputs(events, agent_call, customer_call, list(gw.lines))


# ------------------------------------------------------------------ the rules

def test_the_greeting_and_the_cancellation_are_categories(outputs: Outputs) -> None:
    matched = {e["rule"]: e for e in outputs.of("category.matched")}
    assert set(matched) == {"greeting", "cancellation_intent"}, matched
    assert matched["greeting"]["evidence"]["channel"] == "agent"
    cancel = matched["cancellation_intent"]["evidence"]
    assert cancel["channel"] == "customer" and "cancel" in cancel["text"].lower()
    assert cancel["call_id"] == outputs.customer_call


def test_the_disclosure_is_missed_at_its_deadline_while_the_call_runs(
        outputs: Outputs) -> None:
    (missed,) = [e for e in outputs.of("compliance.missed")
                 if e["rule"] == "recording_disclosure"]
    assert missed["reason"] == "deadline" and missed["deadline_s"] == DISCLOSURE_S
    assert not [e for e in outputs.of("compliance.passed")
                if e["rule"] == "recording_disclosure"]
    first_end = min(e["seq"] for e in outputs.of("call.ended"))
    assert missed["seq"] < first_end, "reported at the deadline, not at the end"
    offered = min(e["ts"] for e in outputs.of("call.offered"))
    assert DISCLOSURE_S <= missed["ts"] - offered <= DISCLOSURE_S + LATE_S + 2.0


def test_cancel_gives_the_agent_a_hint(outputs: Outputs) -> None:
    (hint,) = outputs.of("assist.hint")
    assert hint["rule"] == "retention_offer" and hint["hint"] == HINT
    assert hint["call_id"] == outputs.agent_call          # the agent's screen
    assert "cancel" in hint["evidence"]["text"].lower()


# ------------------------------------------------------------------ the summary event

def test_one_summary_just_before_the_last_call_ended(outputs: Outputs) -> None:
    summary = outputs.summary()
    ended = outputs.of("call.ended")
    last = max(ended, key=lambda e: e["seq"])
    assert summary["call_id"] == last["call_id"]
    later = [e["type"] for e in outputs.events if e["seq"] > summary["seq"]]
    assert later == ["call.ended"], later
    assert summary["seq"] > min(e["seq"] for e in ended)    # after the first call ended
    assert summary["conversation_id"] == last["conversation_id"]


def test_the_document_has_both_participants_and_the_turns(outputs: Outputs) -> None:
    doc = outputs.summary()["summary"]
    assert doc["channels"] == ["agent", "customer"]
    assert sorted((p["channel"], p["call_id"]) for p in doc["participants"]) == [
        ("agent", outputs.agent_call), ("customer", outputs.customer_call)]
    assert {c["call_id"] for c in doc["calls"]} == {outputs.agent_call, outputs.customer_call}
    assert all(c["answered"] for c in doc["calls"]) and doc["asr_complete"]
    finals = outputs.of("transcript.final")
    assert [t["text"] for t in doc["turns"]] == [
        f["text"] for f in sorted(finals, key=lambda f: (f["start_s"], f["end_s"]))]
    starts = [t["start_s"] for t in doc["turns"]]
    assert starts == sorted(starts)
    for channel in ("agent", "customer"):
        said = " ".join(t for c, t in TURNS if c == channel)
        heard = " ".join(t["text"] for t in doc["turns"] if t["speaker"] == channel)
        assert word_error_rate(said, heard) <= 0.25, (channel, heard)
    assert all(t["confidence"] is None or 0 <= t["confidence"] <= 1 for t in doc["turns"])


def test_the_document_has_the_outcomes_and_a_signal_per_turn(outputs: Outputs) -> None:
    doc = outputs.summary()["summary"]
    assert [c["rule"] for c in doc["categories"]] == ["greeting", "cancellation_intent"]
    disclosure = [c for c in doc["compliance"] if c["rule"] == "recording_disclosure"]
    assert [(c["passed"], c["reason"]) for c in disclosure] == [(False, "deadline")]
    assert [(h["rule"], h["hint"]) for h in doc["hints"]] == [("retention_offer", HINT)]
    assert len(doc["signals"]) == len(doc["turns"]) == len(outputs.of("sentiment.scored"))
    assert {s["type"] for s in doc["signals"]} == {"sentiment.scored"}


def test_statistics_match_the_audio_played(outputs: Outputs,
                                           conversation: Conversation) -> None:
    doc = outputs.summary()["summary"]
    stats = doc["statistics"]
    (event,) = outputs.of("conversation.statistics")
    assert stats == event["statistics"]
    per_channel = {c["channel"]: c for c in stats["channels"]}
    for channel, expected in conversation.talk_s.items():
        tolerance = TALK_TOLERANCE_S * conversation.utterances[channel]
        assert per_channel[channel]["talk_s"] == pytest.approx(expected, abs=tolerance), (
            channel, per_channel[channel], expected)
    assert stats["overtalk_s"] <= 0.2 and stats["dead_air"] == 0
    played_s = len(conversation.agent) / RATE
    assert stats["talk_s"] == pytest.approx(sum(conversation.talk_s.values()),
                                            abs=TALK_TOLERANCE_S * len(TURNS))
    assert stats["talk_s"] + stats["non_talk_s"] == pytest.approx(stats["duration_s"], abs=0.05)
    assert played_s - 1.0 <= stats["duration_s"] <= played_s + 3.0


# ------------------------------------------------------------------ the files

def _files(outputs: Outputs) -> tuple[Path, Path, Path]:
    last = max(outputs.of("call.ended"), key=lambda e: e["seq"])
    recording = Path(last["recording"])
    assert recording.exists() and recording.suffix == ".wav"
    stem = recording.with_suffix("")
    return (stem.with_name(stem.name + ".summary.json"), stem.with_suffix(".txt"),
            stem.with_suffix(".vtt"))


def test_the_files_lie_beside_the_recording(outputs: Outputs) -> None:
    paths = _files(outputs)
    for path in paths:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert json.loads(paths[0].read_text()) == outputs.summary()["summary"]
    written = [e for e in outputs.log if e.get("event") == "conversation.summary_written"]
    assert [e["path"] for e in written] == [str(paths[0])]


def test_the_text_and_webvtt_transcripts_have_every_turn_labelled(outputs: Outputs) -> None:
    turns = outputs.summary()["summary"]["turns"]
    _json, txt, vtt = _files(outputs)
    lines = txt.read_text().splitlines()
    assert lines[2:] == [f"[{timestamp(t['start_s'])}] {speaker_label(t['speaker'])}: "
                         f"{' '.join(t['text'].split())}" for t in turns]
    cues = parse_webvtt(vtt.read_text())
    assert [(round(s, 3), text.split(":")[0]) for s, _e, text in cues] == [
        (round(t["start_s"], 3), speaker_label(t["speaker"])) for t in turns]
    assert any(re.search(r"\bcancel", text, re.IGNORECASE) for _s, _e, text in cues)
