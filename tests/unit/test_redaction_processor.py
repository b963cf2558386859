"""The redacting processor over typed events: finals, holds across finals, context, partials,
keypad secure mode, replies, raw pairing through the stage, and state handover."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import pytest

from gateway.config import GatewayConfig, RedactionConfig, RedactionEntities, parse_config
from gateway.events.processing import ProcessingStage
from gateway.events.types import (
    CallEnded,
    CallSecureChanged,
    DtmfReceived,
    GatewayEvent,
    RedactionApplied,
    ReplyStarted,
    TranscriptFinal,
    TranscriptPartial,
    TranscriptWord,
)
from gateway.processors import build_processors
from gateway.redaction.processor import PARTIAL_MASK, Redactor

CALL = "call-1"
VISA = "4111 1111 1111 1111"


def _words(text: str, start: float) -> tuple[TranscriptWord, ...]:
    return tuple(TranscriptWord(word=w, start_s=start + 0.3 * i, end_s=start + 0.3 * i + 0.25,
                                confidence=0.9) for i, w in enumerate(text.split()))


def final(text: str, channel: str = "customer", segment: int = 0, start: float = 1.0
          ) -> TranscriptFinal:
    words = _words(text, start)
    return TranscriptFinal(call_id=CALL, channel=channel, participant=None,
                           conversation_id="conv-1", text=text, segment=segment,
                           start_s=start, end_s=words[-1].end_s if words else start,
                           words=words, latency_s=0.2)


def partial(text: str, channel: str = "customer") -> TranscriptPartial:
    f = final(text, channel)
    return TranscriptPartial(**{k.name: getattr(f, k.name) for k in dataclasses.fields(f)})


def ended() -> CallEnded:
    return CallEnded(call_id=CALL, reason="bye", by="remote", answered=True, duration_s=9.0,
                     sip_call_id="s", conversation_id="conv-1", channels=("customer",),
                     legs=(), asr_finals_flushed=True, recording=None)


def dtmf(digit: str) -> DtmfReceived:
    return DtmfReceived(call_id=CALL, channel="customer", digit=digit, duration_ms=100,
                        end_seen=True)


def redactor(**changes: object) -> Redactor:
    return Redactor(dataclasses.replace(RedactionConfig(), **changes))  # type: ignore[arg-type]


def all_text(events: Sequence[GatewayEvent]) -> str:
    parts = []
    for e in events:
        if isinstance(e, TranscriptFinal | TranscriptPartial):
            parts += [e.text, *(w.word for w in e.words)]
    return " ".join(parts)


def digits_of(text: str) -> str:
    return re.sub(r"\D", "", text)


# ------------------------------------------------------------------ one final

def test_a_card_in_one_final_becomes_its_tag_with_timing_and_spans() -> None:
    r = redactor()
    out = r.process(final(f"my card number is {VISA} thanks", start=2.0), 10.0)
    redacted, applied = out
    assert isinstance(redacted, TranscriptFinal) and isinstance(applied, RedactionApplied)
    assert redacted.text == "my card number is [CARD] thanks"
    tag = next(w for w in redacted.words if w.word == "[CARD]")
    assert (tag.start_s, tag.end_s) == (pytest.approx(2.0 + 0.3 * 4),
                                        pytest.approx(2.0 + 0.3 * 7 + 0.25))
    assert redacted.redaction is not None and redacted.redaction.entities == ("card",)
    assert applied.spans == redacted.redaction.spans
    assert (applied.channel, applied.segment, applied.source) == ("customer", 0,
                                                                  "transcript.final")
    assert "1111" not in all_text(out)


def test_a_final_without_personal_data_passes_as_the_same_object() -> None:
    r = redactor()
    event = final("i would like to change my delivery address please")
    assert r.process(event, 1.0) == (event,) or list(r.process(event, 1.0)) == [event]


def test_last4_keeps_the_last_four_digits_only() -> None:
    r = Redactor(dataclasses.replace(RedactionConfig(),
                                     entities=RedactionEntities(card="last4")))
    redacted = r.process(final(f"it is {VISA}"), 1.0)[0]
    assert isinstance(redacted, TranscriptFinal)
    assert redacted.text == "it is [CARD ****1111]"
    assert digits_of(redacted.text) == "1111"


def test_an_entity_turned_off_stays_in_the_text() -> None:
    r = Redactor(dataclasses.replace(RedactionConfig(), entities=RedactionEntities(email="off")))
    event = final("write to john.smith@example.com please")
    out = r.process(event, 1.0)
    assert [e for e in out if isinstance(e, TranscriptFinal)][0].text == event.text


# ------------------------------------------------------------------ across finals

def test_a_card_read_in_four_finals_after_the_agent_asks_never_shows_a_digit() -> None:
    r = redactor()
    out: list[GatewayEvent] = []
    out += r.process(final("can i have the long card number please", "agent", 0, 0.0), 1.0)
    for i, group in enumerate(VISA.split()):
        out += r.process(final(group, segment=i, start=3.0 + 2 * i), 3.0 + 2 * i)
    out += r.process(final("is that right", segment=4, start=12.0), 12.0)
    finals = [e for e in out if isinstance(e, TranscriptFinal) and e.channel == "customer"]
    assert [f.segment for f in finals] == [0, 1, 2, 3, 4]
    assert digits_of(all_text(out)) == ""
    applied = [e for e in out if isinstance(e, RedactionApplied)]
    assert [a.segment for a in applied] == [0, 1, 2, 3]
    assert all(a.spans[0].entity == "card" for a in applied)


def test_a_held_final_goes_out_when_the_hold_passes() -> None:
    r = redactor(hold_s=2.0)
    event = final("my order number is 5 5 3 2 1")
    assert list(r.process(event, 10.0)) == []
    assert r.next_deadline() == pytest.approx(12.0)
    assert list(r.on_timer(11.0)) == []
    released = list(r.on_timer(12.0))
    assert released == [event]           # order numbers are not personal data
    assert r.next_deadline() is None


def test_held_finals_go_out_before_call_ended() -> None:
    r = redactor()
    assert list(r.process(final("it is 4111 1111"), 1.0)) == []
    out = list(r.process(ended(), 2.0))
    assert isinstance(out[-1], CallEnded)
    assert any(isinstance(e, TranscriptFinal) for e in out[:-1])


def test_no_hold_when_hold_is_zero() -> None:
    r = redactor(hold_s=0.0)
    out = r.process(final("it is 1234"), 1.0)
    assert len(out) == 1


# ------------------------------------------------------------------ partials

def test_partials_mask_digit_runs_a_final_could_redact() -> None:
    r = redactor()
    (p,) = r.process(partial("my card is 4111 1111 11"), 1.0)
    assert isinstance(p, TranscriptPartial)
    assert digits_of(p.text) == "" and digits_of(" ".join(w.word for w in p.words)) == ""
    assert PARTIAL_MASK in p.text or "[CARD]" in p.text


def test_partials_keep_short_numbers_outside_a_context() -> None:
    r = redactor()
    event = partial("i need 2 boxes")
    assert list(r.process(event, 1.0)) == [event]


def test_partials_mask_any_digits_once_the_agent_asked_for_a_card() -> None:
    r = redactor()
    r.process(final("what is your card number", "agent", 0, 0.0), 1.0)
    (p,) = r.process(partial("41"), 2.0)
    assert isinstance(p, TranscriptPartial) and digits_of(p.text) == ""


# ------------------------------------------------------------------ keypad

def test_secure_mode_masks_dtmf_until_it_is_turned_off() -> None:
    r = redactor(secure_dtmf="never")
    assert list(r.process(dtmf("4"), 1.0)) == [dtmf("4")]
    r.process(CallSecureChanged(call_id=CALL, secure=True, by="api"), 2.0)
    (masked, *_rest) = r.process(dtmf("4"), 3.0)
    assert isinstance(masked, DtmfReceived) and masked.digit == "[DTMF]"
    r.process(CallSecureChanged(call_id=CALL, secure=False, by="api"), 4.0)
    assert list(r.process(dtmf("5"), 5.0)) == [dtmf("5")]


def test_the_rule_masks_dtmf_after_the_agent_asks_for_a_card() -> None:
    r = redactor(secure_dtmf="after_card_request", context_window_s=30.0)
    r.process(final("please key in your card number now", "agent", 0, 0.0), 1.0)
    masked = r.process(dtmf("4"), 5.0)[0]
    assert isinstance(masked, DtmfReceived) and masked.digit == "[DTMF]"
    assert r.process(dtmf("4"), 40.0)[0] == dtmf("4")        # the window closed


# ------------------------------------------------------------------ replies

def test_a_spoken_reply_reading_a_card_back_is_redacted() -> None:
    r = redactor()
    reply = ReplyStarted(call_id=CALL, reply_id="r1", source="bot",
                         text=f"I have {VISA}, is that right?", barge_in=True, latency_s=0.1)
    (out,) = r.process(reply, 1.0)
    assert isinstance(out, ReplyStarted) and "1111" not in out.text and "[CARD]" in out.text


# ------------------------------------------------------------------ the stage

def test_the_stage_gives_raw_sinks_each_final_s_own_original() -> None:
    processor = build_processors(GatewayConfig())[0]        # the redactor comes first
    stage = ProcessingStage([processor])
    first = final("the number is 4111 1111", segment=0)
    second = final("1111 1111", segment=1, start=5.0)
    assert stage.run(first, 1.0).events == ()
    result = stage.run(second, 2.0)
    finals = [(e, r) for e, r in zip(result.events, result.raw, strict=True)
              if isinstance(e, TranscriptFinal)]
    assert [(e.segment, r) for e, r in finals] == [(0, first), (1, second)]
    assert digits_of(all_text(result.events)) == ""


def test_a_processor_bug_drops_the_event_rather_than_leak_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    processor = build_processors(GatewayConfig())[0]        # the redactor comes first

    def broken(*_a: object, **_k: object) -> object:
        raise RuntimeError("bug")

    monkeypatch.setattr("gateway.redaction.processor.detect", broken)
    result = ProcessingStage([processor]).run(final(f"card {VISA}", start=1.0), 1.0)
    assert result.events == () and result.failures[0].dropped


def test_a_reload_hands_held_finals_to_the_new_redactor() -> None:
    old = build_processors(GatewayConfig())
    assert list(old[0].process(final("card 4111 1111"), 1.0)) == []
    new_config = parse_config({"redaction": {"hold_s": 5.0}}, {}, __import__("pathlib").Path("."))
    new = build_processors(new_config, old)[0]
    out = new.process(final("1111 1111", segment=1), 2.0)
    assert digits_of(all_text(out)) == "" and len([e for e in out
                                                   if isinstance(e, TranscriptFinal)]) == 2


def test_redaction_off_builds_no_processor() -> None:
    config = parse_config({"redaction": {"enabled": False}}, {}, __import__("pathlib").Path("."))
    assert not any(isinstance(p, Redactor) for p in build_processors(config))


def test_forget_call_frees_the_call() -> None:
    r = redactor()
    r.process(final("card 4111 1111"), 1.0)
    r.forget_call(CALL)
    assert r.next_deadline() is None


def test_the_stage_flush_at_close_releases_what_calls_that_never_ended_held() -> None:
    stage = ProcessingStage(build_processors(GatewayConfig()))
    assert stage.run(final("my card number is 4111 1111"), 1.0).events == ()
    result = stage.flush(2.0)
    finals = [e for e in result.events if isinstance(e, TranscriptFinal)]
    assert len(finals) == 1 and digits_of(all_text(finals)) == ""
    assert stage.next_deadline() is None


def test_an_agent_turn_releases_the_customer_s_digits_under_the_question_they_answered(
        ) -> None:
    r = redactor()
    r.process(final("what is the card number", "agent", 0, 0.0), 1.0)
    assert list(r.process(final("4111 1111", segment=0, start=2.0), 2.0)) == []
    out = r.process(final("and the three digits on the back", "agent", 1, 6.0), 6.0)
    released = [e for e in out if isinstance(e, TranscriptFinal) and e.channel == "customer"]
    assert [e.text for e in released] == ["[CARD]"]
    assert isinstance(out[-1], TranscriptFinal) and out[-1].channel == "agent"


def test_a_final_held_until_its_deadline_still_reaches_raw_sinks_as_it_was() -> None:
    stage = ProcessingStage(build_processors(GatewayConfig()))
    held = final("my social security number is 536 22 8714")
    assert stage.run(held, 1.0).events == ()
    for result in (stage.tick(10.0),):
        finals = [(e, r) for e, r in zip(result.events, result.raw, strict=True)
                  if isinstance(e, TranscriptFinal)]
        assert [r for _e, r in finals] == [held] and "[SSN]" in finals[0][0].text
    stage2 = ProcessingStage(build_processors(GatewayConfig()))
    stage2.run(held, 1.0)
    flushed = stage2.flush(2.0)
    assert [r for e, r in zip(flushed.events, flushed.raw, strict=True)
            if isinstance(e, TranscriptFinal)] == [held]


def test_whisper_word_pieces_are_redacted_when_only_the_text_shows_the_entity() -> None:
    r = redactor()
    pieces = ["Sure,", "it", "is", "4539,", "1488", "-0343", "-6467."]
    event = final("Sure, it is 4539, 1488-0343-6467.")
    event = dataclasses.replace(event, words=tuple(
        TranscriptWord(word=w, start_s=1.0 + 0.3 * i, end_s=1.2 + 0.3 * i, confidence=0.9)
        for i, w in enumerate(pieces)))
    out = r.process(event, 1.0)
    redacted = next(e for e in out if isinstance(e, TranscriptFinal))
    assert digits_of(all_text([redacted])) == ""
    tag = next(w for w in redacted.words if w.word == "[CARD]")
    assert (tag.start_s, tag.end_s) == (pytest.approx(1.9), pytest.approx(3.0))
    assert [w.word for w in redacted.words[:3]] == ["Sure,", "it", "is"]


def test_words_that_do_not_spell_the_text_are_all_replaced_when_the_text_had_an_entity(
        ) -> None:
    r = redactor()
    event = dataclasses.replace(final(f"card {VISA}"), words=_words("something else said", 1))
    redacted = next(e for e in r.process(event, 1.0) if isinstance(e, TranscriptFinal))
    assert [w.word for w in redacted.words] == ["[CARD]"]


@pytest.mark.parametrize("text", [
    "my email is john dot smith", "my email is john dot smith at",
    "my email was John Dot Smith at Exact.", "it's john.smith@exa",
])
def test_partials_never_show_an_address_before_it_is_complete(text: str) -> None:
    (p,) = redactor().process(partial(text), 1.0)
    assert isinstance(p, TranscriptPartial)
    shown = all_text([p]).lower()
    assert "smith" not in shown and "john" not in shown
    assert "[PENDING]" in p.text


def test_partials_after_the_agent_asks_for_the_email_show_nothing_of_it() -> None:
    r = redactor()
    r.process(final("and what is your email address", "agent", 0, 0.0), 1.0)
    (p,) = r.process(partial("john dot smith"), 2.0)
    assert isinstance(p, TranscriptPartial) and p.text == "[PENDING]"


def test_the_agent_leg_s_question_opens_the_context_for_the_customer_leg() -> None:
    """Two calls joined into one conversation: the agent's call asks, the customer's answers
    with a short group that only the context makes a card."""
    r = redactor()
    agent = dataclasses.replace(final("can i take the long card number", "agent", 0, 0.0),
                                call_id="call-agent")
    r.process(agent, 1.0)
    customer = final("4539", segment=0, start=3.0)
    out = list(r.process(customer, 2.0)) + list(r.process(ended(), 3.0))
    assert digits_of(all_text(out)) == ""
    r.forget_call("call-agent")
    r.forget_call(CALL)
    assert r.next_deadline() is None and not r._calls


def _entities_of(events: Sequence[GatewayEvent]) -> list[tuple[str, ...] | None]:
    return [e.redaction.entities if e.redaction else None for e in events
            if isinstance(e, TranscriptFinal)]


def test_a_final_that_ends_announcing_a_number_is_the_context_of_the_next() -> None:
    """The ASR cut "my social security number is | 536-22-8714" in two; the agent asked for a
    card (misheard SSN question): the customer's own cue, the newest, makes it an SSN."""
    r = redactor()
    r.process(final("can i have your card number please", "agent", 0, 0.0), 1.0)
    first = r.process(final("my social security number is", segment=1, start=2.0), 4.0)
    second = [*r.process(final("536-22-8714", segment=2, start=4.2), 6.0),
              *r.process(ended(), 7.0)]
    assert _entities_of(first) == [None] and _entities_of(second) == [("ssn",)]
    assert [e.text for e in second if isinstance(e, TranscriptFinal)] == ["[SSN]"]


@pytest.mark.parametrize(("text", "later_s"), [
    ("my social security number is", 6.0),      # only for OWN_CUE_S
    ("my social security number is 536 22 8714 thanks", 0.5),   # said with its digits
    ("my order number is", 0.5),                 # a PII-free number's cue
])
def test_an_own_cue_counts_only_right_after_and_when_nothing_follows(
        text: str, later_s: float) -> None:
    r = redactor()
    r.process(final("can i have your card number please", "agent", 0, 0.0), 1.0)
    r.process(final(text, segment=1, start=2.0), 4.0)
    out = [*r.process(final("4539 1488", segment=2, start=4.2), 4.0 + later_s),
           *r.process(ended(), 20.0)]
    assert _entities_of(out) == [("card",)], out


def test_partials_mask_digits_inside_a_word_being_spelled() -> None:
    (p,) = redactor().process(partial("it is GB82WEST1234 5698"), 1.0)
    assert isinstance(p, TranscriptPartial) and digits_of(p.text) == ""
