"""The conversation summary: the builder's fold, the text and WebVTT renderings, and the
processor on the event stage (after redaction, two calls of one conversation, state freed)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.analytics.files import SummaryFilesSink, write_summary
from gateway.analytics.summary import (
    Summarizer,
    SummaryBuilder,
    build_summary,
    timestamp,
    to_text,
    to_webvtt,
)
from gateway.config import RedactionConfig
from gateway.events.processing import ProcessingStage
from gateway.events.schema import build_schema
from gateway.events.types import (
    AssistHint,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallRejected,
    CategoryMatched,
    ComplianceMissed,
    CompliancePassed,
    ConversationStatistics,
    ConversationStats,
    ConversationSummary,
    Envelope,
    Evidence,
    GatewayEvent,
    Party,
    Redaction,
    RedactionApplied,
    RedactionSpan,
    SentimentScored,
    SiprecMetadataUpdated,
    SummaryDocument,
    TranscriptFinal,
    TranscriptWord,
    payload,
    to_wire,
)
from gateway.redaction.processor import Redactor
from tests.json_schema import Validator

CONV = "conv-1"


def offered(call_id: str, channel: str, display: str | None = None) -> CallOffered:
    return CallOffered(
        call_id=call_id, conversation_id=CONV, channel=channel, channels=(channel,),
        siprec=False, participants=(), session_id=None, sip_call_id=f"sip-{call_id}",
        from_uri=f"sip:{channel}@example.com", from_display=display,
        to_uri="sip:asr@gateway", request_uri="sip:asr@gateway", remote="127.0.0.1:5060",
        transport="udp", headers={"X-Conversation-Id": CONV})


def answered(call_id: str, channel: str) -> CallAnswered:
    return CallAnswered(call_id=call_id, sip_call_id=f"sip-{call_id}", conversation_id=CONV,
                        channels=(channel,), ports=(40000,))


def ended(call_id: str, channel: str, *, recording: str | None = None, answered: bool = True,
          flushed: bool = True) -> CallEnded:
    return CallEnded(call_id=call_id, reason="bye", by="remote", answered=answered,
                     duration_s=12.5, sip_call_id=f"sip-{call_id}", conversation_id=CONV,
                     channels=(channel,), legs=(), asr_finals_flushed=flushed,
                     recording=recording)


def final(call_id: str, channel: str, text: str, start: float, segment: int = 0,
          confidence: float = 0.9) -> TranscriptFinal:
    words = tuple(TranscriptWord(word=w, start_s=round(start + 0.3 * i, 3),
                                 end_s=round(start + 0.3 * i + 0.25, 3), confidence=confidence)
                  for i, w in enumerate(text.split()))
    return TranscriptFinal(call_id=call_id, channel=channel, participant=None,
                           conversation_id=CONV, text=text, segment=segment, start_s=start,
                           end_s=words[-1].end_s if words else start, words=words,
                           latency_s=0.2)


def two_leg_events() -> list[GatewayEvent]:
    return [
        offered("a", "agent", "Alice"), answered("a", "agent"),
        offered("c", "customer"), answered("c", "customer"),
        final("a", "agent", "thank you for calling how can I help", 0.5),
        final("c", "customer", "I want to cancel my subscription", 3.0, confidence=0.7),
        final("a", "agent", "I am sorry to hear that", 6.25, segment=1),
        ended("a", "agent"),
        ended("c", "customer", recording="/rec/20250101-120000-conv-1.wav"),
    ]


# ------------------------------------------------------------------ the builder

def test_two_legs_fold_into_participants_channels_and_turns_in_time_order() -> None:
    doc = build_summary(CONV, two_leg_events(), started_at=1000.0, ended_at=1012.75)
    assert doc.conversation_id == CONV and doc.duration_s == 12.75
    assert doc.channels == ("agent", "customer")
    assert [(p.channel, p.call_id, p.name, p.uri) for p in doc.participants] == [
        ("agent", "a", "Alice", "sip:agent@example.com"),
        ("customer", "c", None, "sip:customer@example.com")]
    assert [(c.call_id, c.answered, c.reason, c.from_uri) for c in doc.calls] == [
        ("a", True, "bye", "sip:agent@example.com"), ("c", True, "bye", "sip:customer@example.com")]
    assert [(t.speaker, t.start_s, t.text) for t in doc.turns] == [
        ("agent", 0.5, "thank you for calling how can I help"),
        ("customer", 3.0, "I want to cancel my subscription"),
        ("agent", 6.25, "I am sorry to hear that")]
    assert doc.turns[1].confidence == 0.7 and doc.turns[1].end_s == pytest.approx(4.75)
    assert doc.recording == "/rec/20250101-120000-conv-1.wav" and doc.asr_complete


def test_turns_sorted_by_start_whatever_order_the_finals_came_in() -> None:
    events = [offered("a", "agent"), answered("a", "agent"),
              final("a", "agent", "second", 5.0), final("a", "customer", "first", 1.0),
              final("a", "agent", "third", 9.0)]
    doc = build_summary(CONV, events, 0.0, 10.0)
    assert [t.text for t in doc.turns] == ["first", "second", "third"]
    assert doc.channels == ("agent", "customer")


def test_a_final_without_words_has_no_confidence() -> None:
    doc = build_summary(CONV, [final("a", "agent", "", 1.0)], 0.0, 1.0)
    assert doc.turns[0].confidence is None


def test_redacted_entities_of_finals_and_keypad_collected_once() -> None:
    card = dataclasses.replace(final("c", "customer", "my card is [CARD]", 2.0),
                               redaction=Redaction(entities=("card",), spans=()))
    keys = RedactionApplied(call_id="c", conversation_id=CONV, channel="customer",
                            source="dtmf", segment=None,
                            spans=(RedactionSpan(entity="dtmf", start_s=4, end_s=4.1),
                                   RedactionSpan(entity="card", start_s=2, end_s=3)))
    doc = build_summary(CONV, [card, keys], 0.0, 5.0)
    assert doc.redacted == ("card", "dtmf")
    assert doc.turns[0].redacted == ("card",)


def test_asr_incomplete_when_one_call_lost_its_last_final() -> None:
    events = [*two_leg_events()[:-1], ended("c", "customer", flushed=False)]
    assert not build_summary(CONV, events, 0.0, 1.0).asr_complete


def test_siprec_participants_per_stream_and_metadata_updates() -> None:
    rec = CallOffered(
        call_id="r", conversation_id=CONV, channel=None, channels=("agent", "customer"),
        siprec=True, participants=(Party(id="p1", aor="sip:1001@pbx", name="Agent Smith"), None),
        session_id="s", sip_call_id="sip-r", from_uri="sip:src@pbx", from_display=None,
        to_uri="sip:rec@gw", request_uri="sip:rec@gw", remote="10.0.0.1:5060",
        transport="udp", headers={})
    builder = SummaryBuilder(CONV, 0.0)
    builder.add(rec)
    assert [(p.channel, p.name, p.participant_id) for p in builder.build(1.0).participants] == [
        ("agent", "Agent Smith", "p1"), ("customer", None, None)]
    builder.add(SiprecMetadataUpdated(
        call_id="r", channels=("agent", "customer"),
        participants=(Party(id="p1", aor="sip:1001@pbx", name="Agent Smith"),
                      Party(id="p2", aor="sip:+4420@pstn", name="Bob"))))
    assert [p.uri for p in builder.build(1.0).participants] == ["sip:1001@pbx", "sip:+4420@pstn"]


def evidence(text: str, start: float, channel: str = "customer") -> Evidence:
    return Evidence(call_id="c", channel=channel, segment=0, text=text, phrase=text,
                    matched=text, score=1.0, start_s=start, end_s=start + 1,
                    match_start_s=start, match_end_s=start + 1)


def test_rule_outcomes_grouped_by_category_and_in_order() -> None:
    cancel = evidence("cancel", 3.0)
    events = [
        CategoryMatched(call_id="c", conversation_id=CONV, rule="cancellation", evidence=cancel),
        AssistHint(call_id="a", conversation_id=CONV, rule="retention", hint="Offer 20% off",
                   evidence=cancel),
        CategoryMatched(call_id="a", conversation_id=CONV, rule="greeting",
                        evidence=evidence("thank you for calling", 0.5, "agent")),
        CategoryMatched(call_id="c", conversation_id=CONV, rule="cancellation",
                        evidence=evidence("close my account", 8.0)),
        ComplianceMissed(call_id="a", conversation_id=CONV, rule="disclosure", check="required",
                         reason="deadline", evidence=None, trigger=None, deadline_s=10.0),
        CompliancePassed(call_id="a", conversation_id=CONV, rule="verify", check="required",
                         evidence=evidence("date of birth", 4.0, "agent"), trigger=None,
                         deadline_s=None),
    ]
    doc = build_summary(CONV, events, 0.0, 20.0)
    assert [(c.rule, [m.text for m in c.matches]) for c in doc.categories] == [
        ("cancellation", ["cancel", "close my account"]), ("greeting", ["thank you for calling"])]
    assert [(c.rule, c.passed, c.reason, c.deadline_s) for c in doc.compliance] == [
        ("disclosure", False, "deadline", 10.0), ("verify", True, None, None)]
    assert doc.compliance[1].evidence is not None
    assert [(h.rule, h.hint, h.evidence.start_s) for h in doc.hints] == [
        ("retention", "Offer 20% off", 3.0)]


def statistics(final: bool, talk_s: float) -> ConversationStatistics:
    stats = ConversationStats(
        conversation_id=CONV, final=final, duration_s=20.0, talk_s=talk_s,
        non_talk_s=20.0 - talk_s, longest_silence_s=2.0, overtalk_s=0.0, dead_air=0,
        dead_air_s=0.0, first_speaker="agent", first_agent_response_s=None, interruptions=(),
        channels=())
    return ConversationStatistics(call_id="c", conversation_id=CONV, statistics=stats)


def test_the_last_statistics_are_the_documents() -> None:
    assert build_summary(CONV, two_leg_events(), 0.0, 1.0).statistics is None
    events = [statistics(False, 3.0), statistics(True, 12.0)]
    doc = build_summary(CONV, [*two_leg_events()[:-1], *events, two_leg_events()[-1]], 0.0, 1.0)
    assert doc.statistics == events[-1].statistics


def test_model_signals_are_collected_with_their_type() -> None:
    signal = SentimentScored(call_id="c", conversation_id=CONV, channel="customer", segment=0,
                             start_s=3.0, end_s=4.7, label="negative", score=-0.6,
                             model="lexicon")
    doc = build_summary(CONV, [signal], 0.0, 5.0)
    assert [(s.type, s.label, s.score) for s in doc.signals] == [
        ("sentiment.scored", "negative", -0.6)]


def test_the_document_matches_the_event_schema() -> None:
    doc = build_summary(CONV, two_leg_events(), 1000.0, 1012.0)
    event = ConversationSummary(call_id="c", conversation_id=CONV, summary=doc)
    wire = {"v": 1, "type": event.TYPE, "ts": 1.0, "seq": 1, "call_id": "c", **payload(event)}
    assert Validator(build_schema()).errors(json.loads(json.dumps(wire))) == []
    assert to_wire(doc)["calls"][0]["from"] == "sip:agent@example.com"


# ------------------------------------------------------------------ renderings

def test_timestamp_is_webvtt_cue_timing() -> None:
    assert timestamp(0) == "00:00:00.000"
    assert timestamp(3.0004) == "00:00:03.000" and timestamp(3.0006) == "00:00:03.001"
    assert timestamp(3723.456) == "01:02:03.456"
    assert timestamp(59.9996) == "00:01:00.000"
    assert timestamp(-1) == "00:00:00.000"


def test_text_is_one_labelled_line_per_turn() -> None:
    doc = build_summary(CONV, two_leg_events(), 0.0, 10.0)
    assert to_text(doc).splitlines() == [
        "Conversation conv-1", "",
        "[00:00:00.500] Agent: thank you for calling how can I help",
        "[00:00:03.000] Customer: I want to cancel my subscription",
        "[00:00:06.250] Agent: I am sorry to hear that"]


_CUE_TIMING = re.compile(r"^(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3}) --> "
                         r"(\d{2,}):([0-5]\d):([0-5]\d)\.(\d{3})$")


def _seconds(parts: Sequence[str]) -> float:
    h, m, s, ms = (int(p) for p in parts)
    return h * 3600 + m * 60 + s + ms / 1000


def parse_webvtt(text: str) -> list[tuple[float, float, str]]:
    """The rules of WebVTT a player enforces: the header, blank-line separated cues, each
    with an optional id, a timing line (end after start, starts in order), text with no
    ``-->`` and no raw ``<`` outside the voice span, nor a bare ``&``."""
    assert text.startswith("WEBVTT\n\n") or text == "WEBVTT\n"
    cues: list[tuple[float, float, str]] = []
    for block in text.split("\n\n")[1:]:
        lines = block.strip("\n").split("\n")
        if not _CUE_TIMING.match(lines[0]):
            lines = lines[1:]                       # the cue identifier
        timing = _CUE_TIMING.match(lines[0])
        assert timing, block
        start, end = _seconds(timing.groups()[:4]), _seconds(timing.groups()[4:])
        assert end > start, block
        assert not cues or start >= cues[-1][0], "cues out of order"
        body = "\n".join(lines[1:])
        assert body and "-->" not in body
        voice = re.fullmatch(r"<v ([^>&]+)>(.*)", body, re.DOTALL)
        assert voice, body
        assert "<" not in voice.group(2) and not re.search(r"&(?!amp;|lt;|gt;)", body), body
        cues.append((start, end, voice.group(1) + ": " + voice.group(2)))
    return cues


def test_webvtt_has_a_voice_cue_per_turn() -> None:
    doc = build_summary(CONV, two_leg_events(), 0.0, 10.0)
    cues = parse_webvtt(to_webvtt(doc))
    assert [(s, text) for s, _e, text in cues] == [
        (0.5, "Agent: thank you for calling how can I help"),
        (3.0, "Customer: I want to cancel my subscription"),
        (6.25, "Agent: I am sorry to hear that")]
    assert cues[1][1] == pytest.approx(4.75)
    assert to_webvtt(doc).splitlines()[2:5] == [
        "1", "00:00:00.500 --> 00:00:02.850", "<v Agent>thank you for calling how can I help"]


def test_webvtt_escapes_markup_and_arrows_and_keeps_zero_length_cues_valid() -> None:
    events = [final("a", "customer", "a <b> & c --> d", 1.0),
              final("a", "agent", "", 2.0), final("a", "agent", "one\nline", 3.0)]
    vtt = to_webvtt(build_summary(CONV, events, 0.0, 4.0))
    cues = parse_webvtt(vtt)
    assert cues[0][2] == "Customer: a &lt;b&gt; &amp; c --&gt; d"
    assert cues[1][1] > cues[1][0]
    assert cues[2][2] == "Agent: one line"


def test_an_empty_conversation_renders_headers_only() -> None:
    doc = build_summary(CONV, [], 0.0, 0.0)
    assert to_webvtt(doc) == "WEBVTT\n" and parse_webvtt(to_webvtt(doc)) == []
    assert to_text(doc) == "Conversation conv-1\n\n"


# ------------------------------------------------------------------ the processor

def run(stage: ProcessingStage, events: Sequence[GatewayEvent], start: float = 1000.0
        ) -> list[GatewayEvent]:
    out: list[GatewayEvent] = []
    for i, event in enumerate(events):
        out.extend(stage.run(event, start + i).events)
    return out


def test_summary_comes_once_just_before_the_last_calls_end() -> None:
    summarizer = Summarizer()
    out = run(ProcessingStage([summarizer]), two_leg_events())
    types = [e.TYPE for e in out]
    assert types.count("conversation.summary") == 1
    assert types[-2:] == ["conversation.summary", "call.ended"]
    summary = out[-2]
    assert isinstance(summary, ConversationSummary) and summary.call_id == "c"
    assert summary.summary.started_at == 1000.0 and summary.summary.ended_at == 1008.0
    assert len(summary.summary.turns) == 3 and len(summary.summary.calls) == 2
    assert summarizer.conversations() == 0


def test_a_call_that_ends_first_does_not_summarise_the_conversation() -> None:
    summarizer = Summarizer()
    stage = ProcessingStage([summarizer])
    out = run(stage, two_leg_events()[:-1])
    assert "conversation.summary" not in [e.TYPE for e in out]
    assert summarizer.conversations() == 1


def test_summary_has_the_redacted_text_never_the_raw() -> None:
    card = "4111 1111 1111 1111"
    events = [offered("c", "customer"), answered("c", "customer"),
              final("c", "customer", f"my card number is {card} thanks", 1.0),
              ended("c", "customer")]
    stage = ProcessingStage([Redactor(RedactionConfig()), Summarizer()])
    result = [stage.run(e, 1000.0 + i) for i, e in enumerate(events)]
    summaries = [(e, raw) for r in result for e, raw in zip(r.events, r.raw or (None,) * 9,
                                                           strict=False)
                 if isinstance(e, ConversationSummary)]
    assert len(summaries) == 1
    doc: SummaryDocument = summaries[0][0].summary
    blob = json.dumps(to_wire(doc)) + to_text(doc) + to_webvtt(doc)
    assert "1111" not in blob and "[CARD]" in doc.turns[0].text
    assert doc.redacted == ("card",)
    assert summaries[0][1] is None               # an added event: raw sinks get it as is


def test_no_summary_when_no_call_was_answered() -> None:
    events = [offered("a", "agent"), ended("a", "agent", answered=False)]
    summarizer = Summarizer()
    assert [e.TYPE for e in run(ProcessingStage([summarizer]), events)] == [
        "call.offered", "call.ended"]
    assert summarizer.conversations() == 0


def test_a_conversation_id_used_again_later_starts_a_new_summary() -> None:
    summarizer = Summarizer()
    stage = ProcessingStage([summarizer])
    first = run(stage, two_leg_events())
    second = run(stage, [offered("x", "customer"), answered("x", "customer"),
                         final("x", "customer", "hello again", 0.2), ended("x", "customer")],
                 start=2000.0)
    docs = [e.summary for e in (*first, *second) if isinstance(e, ConversationSummary)]
    assert [len(d.turns) for d in docs] == [3, 1] and docs[1].started_at == 2000.0


def test_state_handed_over_on_rebuild() -> None:
    old = Summarizer()
    run(ProcessingStage([old]), two_leg_events()[:-1])
    new = Summarizer(old)
    out = run(ProcessingStage([new]), two_leg_events()[-1:])
    assert isinstance(out[0], ConversationSummary) and len(out[0].summary.turns) == 3
    assert new.conversations() == 0


def test_events_of_unknown_calls_without_conversation_pass_unchanged() -> None:
    summarizer = Summarizer()
    event = CallAnswered(call_id="z", sip_call_id="s", conversation_id=CONV, channels=(),
                         ports=())
    assert summarizer.process(event, 0.0) == (event,)
    rejected = CallRejected(status=403, reason="forbidden", source="1.2.3.4:5060")
    assert summarizer.process(rejected, 0.0) == (rejected,)


# ------------------------------------------------------------------ the files sink

def _envelope(event: GatewayEvent) -> Envelope:
    return Envelope(event, 1.0, 1)


def _summary_event(doc: SummaryDocument) -> ConversationSummary:
    return ConversationSummary(call_id="c", conversation_id=CONV, summary=doc)


def test_files_go_beside_the_recording_with_its_stem(tmp_path: Path) -> None:
    recording = tmp_path / "rec" / "20250101-120000-conv-1.wav"
    events = [*two_leg_events()[:-1], ended("c", "customer", recording=str(recording))]
    doc = build_summary(CONV, events, 1000.0, 1012.0)
    sink = SummaryFilesSink(tmp_path / "conversations")
    asyncio.run(sink.write(_envelope(_summary_event(doc))))
    written = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert written == ["20250101-120000-conv-1.summary.json", "20250101-120000-conv-1.txt",
                       "20250101-120000-conv-1.vtt"]
    stem = tmp_path / "rec" / "20250101-120000-conv-1"
    assert json.loads(Path(f"{stem}.summary.json").read_text()) == to_wire(doc)
    assert Path(f"{stem}.txt").read_text() == to_text(doc)
    assert Path(f"{stem}.vtt").read_text() == to_webvtt(doc)
    assert not (tmp_path / "conversations").exists()


def test_without_recording_files_go_to_the_directory_stamped_with_the_start(
        tmp_path: Path) -> None:
    doc = build_summary(CONV, two_leg_events()[:-1], 1_700_000_000.0, 1_700_000_030.0)
    old = os.umask(0o000)
    try:
        paths = write_summary(doc, tmp_path / "conversations")
    finally:
        os.umask(old)
    assert [p.name for p in paths] == ["20231114-221320-conv-1.summary.json",
                                       "20231114-221320-conv-1.txt",
                                       "20231114-221320-conv-1.vtt"]
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths} == {0o640}
    assert stat.S_IMODE((tmp_path / "conversations").stat().st_mode) == 0o750


def test_existing_files_are_never_replaced(tmp_path: Path) -> None:
    doc = build_summary(CONV, two_leg_events()[:-1], 1_700_000_000.0, 1_700_000_030.0)
    first = write_summary(doc, tmp_path)
    first[1].write_text("kept")
    second = write_summary(doc, tmp_path)
    assert [p.name for p in second] == ["20231114-221320-conv-1-2.summary.json",
                                        "20231114-221320-conv-1-2.txt",
                                        "20231114-221320-conv-1-2.vtt"]
    assert first[1].read_text() == "kept"


def test_the_sink_ignores_every_other_event(tmp_path: Path) -> None:
    sink = SummaryFilesSink(tmp_path / "conversations")
    for event in two_leg_events():
        asyncio.run(sink.write(_envelope(event)))
    asyncio.run(sink.close())
    assert not (tmp_path / "conversations").exists()


def test_at_close_an_unended_conversation_still_gets_its_summary() -> None:
    summarizer = Summarizer()
    stage = ProcessingStage([summarizer])
    run(stage, two_leg_events()[:-2])              # neither call ended
    assert summarizer.next_deadline() is None
    assert stage.tick(5000.0).events == ()          # no timer: nothing before the close
    out = stage.flush(5000.0).events
    assert len(out) == 1 and isinstance(out[0], ConversationSummary)
    doc = out[0].summary
    assert out[0].call_id == "c" and len(doc.turns) == 3
    assert doc.ended_at == 1006.0 and not doc.asr_complete     # as of its last event
    assert summarizer.conversations() == 0


def test_at_close_nothing_for_conversations_nobody_answered() -> None:
    summarizer = Summarizer()
    stage = ProcessingStage([summarizer])
    run(stage, [offered("a", "agent")])
    assert stage.flush(5000.0).events == () and summarizer.conversations() == 0
