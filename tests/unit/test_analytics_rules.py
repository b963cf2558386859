"""The rules engine (issue 17): normalisation, fuzzy matching, windows, compliance deadlines
on the stage's timer, conversation end, evidence, forget_call and the reload handover."""

from __future__ import annotations

import math
import random
import string
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.analytics.engine import RulesProcessor
from gateway.analytics.rules import PhraseIndex, compile_rules, evaluation_order
from gateway.analytics.text import levenshtein, normalise, phrase_words, similarity, stem
from gateway.config import AnalyticsConfig, parse_config
from gateway.events.processing import ProcessingStage
from gateway.events.types import (
    AssistHint,
    CallAnswered,
    CallEnded,
    CallOffered,
    CategoryMatched,
    ComplianceMissed,
    CompliancePassed,
    GatewayEvent,
    TranscriptFinal,
    TranscriptWord,
)
from gateway.processors import build_processors, reconfigures_processors

T0 = 1_000.0          # the bus clock at the conversation's answer
CONV = "conv-1"


# ------------------------------------------------------------------ helpers

def analytics(*rules: dict[str, Any], **section: Any) -> AnalyticsConfig:
    return parse_config({"analytics": {"rules": list(rules), **section}}, {},
                        Path(".")).analytics


def rule(name: str, kind: str = "category", **keys: Any) -> dict[str, Any]:
    return {"name": name, "kind": kind, **keys}


def final(text: str, start: float, channel: str = "agent", call: str = "c-1",
          segment: int = 0, word_s: float | None = 0.3,
          conversation: str | None = CONV) -> TranscriptFinal:
    """A final whose words are ``word_s`` apart from ``start`` (None: no word times)."""
    tokens = text.split()
    step = word_s or 0.0
    words = () if word_s is None else tuple(
        TranscriptWord(word=w, start_s=round(start + i * step, 3),
                       end_s=round(start + i * step + step * 0.9, 3), confidence=0.9)
        for i, w in enumerate(tokens))
    end = start + max(len(tokens), 1) * (step or 0.3)
    return TranscriptFinal(call_id=call, channel=channel, participant=None,
                           conversation_id=conversation, text=text, segment=segment,
                           start_s=start, end_s=round(end, 3), words=words, latency_s=0.5)


def answered(call: str = "c-1", channels: tuple[str, ...] = ("agent",),
             conversation: str = CONV) -> CallAnswered:
    return CallAnswered(call_id=call, sip_call_id=f"sip-{call}", conversation_id=conversation,
                        channels=channels, ports=(20000,))


def offered(call: str, channel: str, conversation: str = CONV) -> CallOffered:
    return CallOffered(call_id=call, conversation_id=conversation, channel=channel,
                       channels=(channel,), siprec=False, participants=(None,),
                       session_id=None, sip_call_id=f"sip-{call}", from_uri="sip:a@x",
                       from_display=None, to_uri="sip:b@x", request_uri="sip:b@x",
                       remote="10.0.0.1:5060", transport="udp", headers={})


def ended(call: str = "c-1", duration: float = 60.0, channels: tuple[str, ...] = ("agent",),
          conversation: str = CONV) -> CallEnded:
    return CallEnded(call_id=call, reason="bye", by="remote", answered=True,
                     duration_s=duration, sip_call_id=f"sip-{call}",
                     conversation_id=conversation, channels=channels, legs=(),
                     asr_finals_flushed=True, recording=None)


def added(out: Sequence[GatewayEvent], given: GatewayEvent | None = None
          ) -> list[GatewayEvent]:
    """What a processor added to an event it passed on."""
    return [e for e in out if e is not given]


def started(*rules: dict[str, Any], **section: Any) -> RulesProcessor:
    """A processor whose conversation was answered at T0 on the bus clock."""
    p = RulesProcessor(analytics(*rules, **section))
    p.process(answered(), T0)
    return p


DISCLOSURE = rule("disclosure", "compliance", channel="agent", first_s=30.0,
                  phrases=["this call * be recorded", "calls are recorded"])


# ------------------------------------------------------------------ text

@pytest.mark.parametrize(("a", "b"), [
    ("press one", "press 1"),
    ("twenty four seven support", "24/7 support"),
    ("my account number is four one one one", "my account number is 4111"),
    ("Recorded, for TRAINING.", "recording for trainings"),
    ("I want to cancel", "i wanted to cancelling"),
    ("the cancellation", "the cancelled"),
    ("don't worry", "dont worry"),
    ("this call uh may um be recorded", "this call may be recorded"),
    ("card [CARD ****1111] ok", "card [CARD] ok"),
])
def test_normalised_forms_meet(a: str, b: str) -> None:
    assert [w.stem for w in normalise(a.split())] == [w.stem for w in normalise(b.split())]


def test_normalise_keeps_where_each_word_came_from() -> None:
    words = normalise("Please press four one one one, then hash".split())
    assert [tuple(w) for w in words] == [
        ("pleas", "please", 0, 1), ("pres", "press", 1, 2), ("4111", "4111", 2, 6),
        ("then", "then", 6, 7), ("hash", "hash", 7, 8)]


def test_stemmer_conflates_inflections_only() -> None:
    assert {stem(w) for w in ("record", "records", "recorded", "recording")} == {"record"}
    assert {stem(w) for w in ("verify", "verified", "verification")} == {"verify"}
    assert stem("address") == stem("addresses") and stem("this") == "this"
    assert stem("being") == "being" and stem("yes") == "yes"
    assert stem("record") != stem("recorder") or stem("cancel") != stem("cancer")


def test_similarity_is_bounded_levenshtein() -> None:
    assert levenshtein("kitten", "sitting", 5) == 3
    assert levenshtein("kitten", "sitting", 1) == 2       # stops once past the limit
    assert similarity("monitor", "monitur", 0.8) == pytest.approx(1 - 1 / 7)
    assert similarity("monitor", "monitur", 0.9) == 0.0
    assert similarity("cat", "cut", 0.5) == 0.0            # short words: exact only
    assert similarity("1234", "1235", 0.5) == 0.0          # digits: exact only
    assert similarity("[card]", "[cart]", 0.5) == 0.0


def test_index_finds_phrases_by_first_word_exact_and_fuzzy() -> None:
    rules = compile_rules(analytics(rule("a", phrases=["recorded line"]),
                                    rule("b", phrases=["the line", "recorded * quality"]),
                                    fuzzy=0.8))
    index = PhraseIndex(rules)
    # "recordid" is two edits from the stem "record", one from the surface "recorded".
    hits = [(h.phrase.text, h.start, h.end, round(h.score, 3))
            for h in index.find(*phrase_words("this is a recordid line for quality"))]
    assert hits == [("recorded line", 3, 5, 0.875)]
    starts = [(h.phrase.text, h.start)
              for h in index.find(*phrase_words("recording for quality on the line"))]
    assert starts == [("recorded * quality", 0), ("the line", 4)]
    assert index.find(*phrase_words("recorded quality line")) == []   # * is one word


def _edited(word: str, rng: random.Random) -> str:
    i = rng.randrange(len(word))
    op = rng.choice("sdi")
    letter = rng.choice(string.ascii_lowercase)
    if op == "s":
        return word[:i] + letter + word[i + 1:]
    if op == "d":
        return word[:i] + word[i + 1:]
    return word[:i] + letter + word[i:]


@pytest.mark.parametrize("threshold", [0.5, 0.7, 0.8, 0.9])
def test_index_filters_lose_nothing_a_plain_scan_finds(threshold: float) -> None:
    """The index's shortcuts (lengths, pieces, cache) find, for every word, exactly the
    phrases a comparison with every phrase's first word finds (seeded random words, and
    one to three edits of them)."""
    rng = random.Random(int(threshold * 100))
    vocabulary = ["".join(rng.choice("abcdeilmnorst") for _ in range(rng.randint(2, 11)))
                  for _ in range(100)]
    rules = compile_rules(analytics(*(rule(f"r{i}", phrases=[f"{w} end"])
                                      for i, w in enumerate(vocabulary)), fuzzy=threshold))
    index = PhraseIndex(rules)
    phrases = [p for r in rules for p in r.phrases]
    probes = vocabulary + [_edited(_edited(w, rng), rng) if rng.random() < 0.5 else
                           _edited(w, rng) for w in vocabulary for _ in range(2)]
    found_any = 0
    for probe in probes:
        (stems, surfaces) = phrase_words(f"{probe} end")
        if not stems or stems[-1] != "end":
            continue
        plain = sorted(p.rule for p in phrases if p.score(0, stems[0], surfaces[0]) > 0)
        hits = sorted(h.phrase.rule for h in index.find(stems, surfaces) if h.start == 0)
        assert hits == plain, probe
        found_any += bool(plain)
    assert found_any > len(vocabulary)          # the edits did match, fuzzily


def test_evaluation_order_puts_a_rule_after_the_one_it_follows() -> None:
    config = analytics(rule("hint", "hint", after="cancel", hint="x"),
                       rule("check", "compliance", after="hint", phrases=["sorry"]),
                       rule("cancel", phrases=["cancel"]))
    assert [r.name for r in evaluation_order(config.rules)] == ["cancel", "hint", "check"]


# ------------------------------------------------------------------ matching

def test_category_matches_with_evidence() -> None:
    p = started(rule("cancel", channel="customer", phrases=["cancel my contract"]))
    event = final("hi I would like to cancel my contract please", 10.0, channel="customer",
                  segment=4)
    out = p.process(event, T0 + 14)
    assert out[0] is event
    (matched,) = added(out, event)
    assert isinstance(matched, CategoryMatched)
    assert (matched.call_id, matched.conversation_id, matched.rule) == ("c-1", CONV, "cancel")
    e = matched.evidence
    assert (e.channel, e.segment, e.text, e.phrase, e.matched, e.score) == (
        "customer", 4, event.text, "cancel my contract", "cancel my contract", 1.0)
    assert (e.start_s, e.end_s) == (10.0, event.end_s)
    assert (e.match_start_s, e.match_end_s) == (11.5, 12.37)   # words 5..7, 0.3 s apart


def test_channel_filter() -> None:
    p = started(rule("agent_only", channel="agent", phrases=["refund"]),
                rule("anyone", phrases=["refund"]))
    out = added(p.process(final("a refund", 1.0, channel="customer"), T0 + 2))
    assert [e.rule for e in out if isinstance(e, CategoryMatched)] == ["anyone"]
    out = added(p.process(final("a refund", 3.0, channel="agent"), T0 + 4))
    assert [e.rule for e in out if isinstance(e, CategoryMatched)] == ["agent_only"]


def test_fuzzy_threshold_numbers_and_stems() -> None:
    p = started(rule("loose", phrases=["this call may be recorded"], fuzzy=0.8),
                rule("exact", phrases=["this call may be recorded"], fuzzy=1.0),
                rule("option", phrases=["press 1 for billing"]))
    out = added(p.process(final("this call may be recordid", 1.0), T0 + 2))
    assert [(e.rule, e.evidence.score) for e in out if isinstance(e, CategoryMatched)] == [
        ("loose", 0.875)]
    out = added(p.process(final("Press one for billing.", 3.0), T0 + 4))
    assert [e.rule for e in out if isinstance(e, CategoryMatched)] == ["option"]
    p2 = started(rule("exact", phrases=["this call may be recorded"], fuzzy=1.0))
    out = added(p2.process(final("This call may be RECORDING", 1.0), T0 + 2))
    assert [e.rule for e in out if isinstance(e, CategoryMatched)] == ["exact"]


def test_once_per_conversation_unless_once_false() -> None:
    p = started(rule("once", phrases=["sorry"]), rule("every", phrases=["sorry"], once=False))
    names = []
    for i in range(3):
        out = added(p.process(final("sorry sorry about that", 5.0 * i, segment=i), T0 + 5 * i))
        names.append(sorted(e.rule for e in out if isinstance(e, CategoryMatched)))
    assert names == [["every", "once"], ["every"], ["every"]]


def test_first_s_window_uses_the_matched_words_times() -> None:
    p = started(rule("greeting", phrases=["how can i help"], first_s=20.0))
    # The final starts in the window but the phrase's words begin at 18.5 + 6 * 0.3 = 20.3 s.
    out = p.process(final("thanks for calling my name is sam how can i help", 18.5), T0 + 22)
    assert added(out) == [out[0]]
    p = started(rule("greeting", phrases=["how can i help"], first_s=20.0))
    out = added(p.process(final("hello how can i help", 19.0), T0 + 21))
    assert [e.rule for e in out if isinstance(e, CategoryMatched)] == ["greeting"]


def test_a_phrase_can_name_a_redaction_tag() -> None:
    p = started(rule("card_given", channel="customer", phrases=["[card]"]))
    out = added(p.process(final("it is [CARD ****1111] thanks", 5.0, channel="customer",
                                word_s=None), T0 + 7))
    (matched,) = [e for e in out if isinstance(e, CategoryMatched)]
    assert matched.evidence.matched == "[CARD"
    assert (matched.evidence.match_start_s, matched.evidence.match_end_s) == (5.0, 6.5)


# ------------------------------------------------------------------ required compliance

def test_disclosure_said_in_time_passes_at_once() -> None:
    p = started(DISCLOSURE)
    assert p.next_deadline() == T0 + 30 + 5          # first_s + late_s after the answer
    out = added(p.process(final("hello this call will be recorded", 4.0), T0 + 6))
    (passed,) = out[1:]
    assert isinstance(passed, CompliancePassed)
    assert (passed.rule, passed.check, passed.deadline_s, passed.trigger) == (
        "disclosure", "required", 30.0, None)
    assert passed.evidence is not None and passed.evidence.matched == "this call will be recorded"
    assert p.next_deadline() is None
    assert p.on_timer(T0 + 100) == []


def test_disclosure_not_said_is_missed_at_the_deadline() -> None:
    p = started(DISCLOSURE)
    p.process(final("hello how can i help", 2.0), T0 + 3)
    p.process(final("this call is recorded", 3.0, channel="customer"), T0 + 5)  # not the agent
    assert p.on_timer(T0 + 34.9) == []
    (missed,) = p.on_timer(T0 + 35.0)
    assert isinstance(missed, ComplianceMissed)
    assert (missed.rule, missed.check, missed.reason, missed.deadline_s, missed.evidence) == (
        "disclosure", "required", "deadline", 30.0, None)
    assert missed.call_id == "c-1"
    assert p.next_deadline() is None
    later = added(p.process(final("this call is recorded", 40.0), T0 + 41))
    assert later == [later[0]]                       # judged once


def test_a_late_final_said_in_time_still_passes_one_said_after_does_not() -> None:
    p = started(DISCLOSURE)
    # Said at 29 s, arrives 3 s after the deadline (within late_s): passes.
    (_, passed) = p.process(final("calls are recorded", 29.0), T0 + 33)
    assert isinstance(passed, CompliancePassed)
    p = started(DISCLOSURE)
    out = p.process(final("calls are recorded", 30.5), T0 + 32)
    assert len(out) == 1
    (missed,) = p.on_timer(T0 + 35)
    assert isinstance(missed, ComplianceMissed) and missed.reason == "deadline"


def test_deadline_anchors_at_the_first_answer() -> None:
    p = RulesProcessor(analytics(DISCLOSURE))
    p.process(offered("c-1", "agent"), T0 - 4)
    assert p.next_deadline() == T0 - 4 + 35          # before an answer: the first event
    p.process(answered(), T0)
    assert p.next_deadline() == T0 + 35
    p.process(answered("c-2", ("customer",)), T0 + 10)   # the second leg: no change
    assert p.next_deadline() == T0 + 35


def test_without_an_answer_the_first_final_anchors_less_its_end() -> None:
    p = RulesProcessor(analytics(DISCLOSURE, late_s=2.0))
    p.process(final("good morning", 1.0), T0 + 2.5)   # ends at 1.6 s
    assert p.next_deadline() == pytest.approx(T0 + 2.5 - 1.6 + 30 + 2)


def test_required_by_the_end_is_missed_before_call_ended() -> None:
    p = started(rule("goodbye", "compliance", channel="agent", phrases=["thank you for calling"]))
    assert p.next_deadline() is None
    p.process(final("bye", 50.0), T0 + 51)
    end = ended(duration=55.0)
    out = p.process(end, T0 + 56)
    assert out[-1] is end
    (missed,) = out[:-1]
    assert isinstance(missed, ComplianceMissed)
    assert (missed.reason, missed.deadline_s, missed.call_id) == ("ended", None, "c-1")


def test_a_call_shorter_than_the_deadline_misses_with_reason_ended() -> None:
    p = started(DISCLOSURE)
    (missed, _end) = p.process(ended(duration=12.0), T0 + 12)
    assert isinstance(missed, ComplianceMissed) and missed.reason == "ended"
    p.forget_call("c-1")
    assert p.next_deadline() is None and p.on_timer(math.inf) == []


# ------------------------------------------------------------------ after / within_s

IDENTITY = (rule("account", channel="customer", phrases=["my account"]),
            rule("identity", "compliance", channel="agent", after="account", within_s=20.0,
                 phrases=["date of birth", "security question"]))


def test_check_after_a_trigger_passes_within_its_window() -> None:
    p = started(*IDENTITY)
    assert p.next_deadline() is None                  # nothing until the trigger
    out = added(p.process(final("a question about my account", 10.0, channel="customer"),
                          T0 + 12))
    (category,) = out[1:]
    assert isinstance(category, CategoryMatched)
    trigger_end = category.evidence.match_end_s
    assert p.next_deadline() == pytest.approx(T0 + trigger_end + 20 + 5)
    (_, passed) = p.process(final("can i have your date of birth", 15.0), T0 + 17)
    assert isinstance(passed, CompliancePassed)
    assert passed.trigger == category.evidence
    assert passed.deadline_s == pytest.approx(trigger_end + 20)


def test_check_after_a_trigger_missed_then_opened_again_only_with_once_false() -> None:
    for once, expected in ((True, 1), (False, 2)):
        rules = (IDENTITY[0] | {"once": False}, IDENTITY[1] | {"once": once})
        p = started(*rules)
        misses = 0
        for start in (10.0, 100.0):
            p.process(final("about my account", start, channel="customer"), T0 + start + 1)
            misses += len(p.on_timer(T0 + start + 60))
        assert misses == expected


def test_required_phrase_before_its_trigger_does_not_count() -> None:
    p = started(*IDENTITY)
    p.process(final("what is your date of birth", 5.0), T0 + 6)
    p.process(final("my account", 8.0, channel="customer"), T0 + 9)
    (missed,) = p.on_timer(T0 + 40)
    assert isinstance(missed, ComplianceMissed) and missed.trigger is not None


def test_trigger_and_phrase_in_the_same_final() -> None:
    p = started(rule("cancel", phrases=["cancel"]),
                rule("offer", "compliance", after="cancel", within_s=10.0,
                     phrases=["discount"]))
    out = added(p.process(final("before you cancel let me offer a discount", 3.0), T0 + 5))
    assert [type(e).__name__ for e in out[1:]] == ["CategoryMatched", "CompliancePassed"]
    p = started(rule("cancel", phrases=["cancel"]),
                rule("offer", "compliance", after="cancel", within_s=10.0,
                     phrases=["discount"]))
    out = added(p.process(final("a discount or i cancel", 3.0), T0 + 5))
    assert [type(e).__name__ for e in out[1:]] == ["CategoryMatched"]


def test_category_within_s_after_another() -> None:
    p = started(rule("price", phrases=["too expensive"]),
                rule("competitor", after="price", within_s=30.0, phrases=["other provider"],
                     once=False))
    assert len(p.process(final("the other provider", 1.0), T0 + 2)) == 1   # no trigger yet
    p.process(final("it is too expensive", 10.0), T0 + 11)
    assert len(p.process(final("the other provider", 20.0), T0 + 21)) == 2
    assert len(p.process(final("the other provider", 50.0), T0 + 51)) == 1  # window over


def test_hint_without_phrases_follows_its_category_to_the_agent_call() -> None:
    p = RulesProcessor(analytics(
        rule("cancel", channel="customer", phrases=["cancel"], once=False),
        rule("retention", "hint", after="cancel", hint="Offer 20% off.")))
    p.process(offered("c-agent", "agent"), T0)
    p.process(answered("c-agent"), T0)
    p.process(offered("c-cust", "customer"), T0 + 1)
    p.process(answered("c-cust", ("customer",)), T0 + 1)
    event = final("I want to cancel", 5.0, channel="customer", call="c-cust")
    (_, category, hint) = p.process(event, T0 + 7)
    assert isinstance(category, CategoryMatched) and category.call_id == "c-cust"
    assert isinstance(hint, AssistHint)
    assert (hint.call_id, hint.rule, hint.hint) == ("c-agent", "retention", "Offer 20% off.")
    assert hint.evidence == category.evidence
    out = p.process(final("cancel it", 9.0, channel="customer", call="c-cust"), T0 + 10)
    assert [type(e).__name__ for e in out[1:]] == ["CategoryMatched"]   # the hint: once


# ------------------------------------------------------------------ forbidden, last_s

def test_forbidden_phrase_said_is_missed_with_evidence_else_passed_at_the_end() -> None:
    rules = (rule("no_promises", "compliance", forbidden=True, channel="agent",
                  phrases=["i promise", "guaranteed"]),)
    p = started(*rules)
    (_, missed) = p.process(final("it is guaranteed to work", 20.0), T0 + 21)
    assert isinstance(missed, ComplianceMissed)
    assert (missed.check, missed.reason, missed.deadline_s) == ("forbidden", "said", None)
    assert missed.evidence is not None and missed.evidence.matched == "guaranteed"
    assert p.process(ended(), T0 + 60)[:-1] == []
    p = started(*rules)
    p.process(final("customers say i promise", 20.0, channel="customer"), T0 + 21)
    (passed, _end) = p.process(ended(), T0 + 60)
    assert isinstance(passed, CompliancePassed)
    assert (passed.check, passed.evidence) == ("forbidden", None)


def test_last_s_is_decided_at_the_end_from_the_call_duration() -> None:
    rules = (rule("closing", "compliance", channel="agent", last_s=30.0,
                  phrases=["anything else"]),
             rule("thanks", last_s=30.0, phrases=["thank you"]))
    p = started(*rules)
    assert len(p.process(final("anything else thank you", 50.0), T0 + 51)) == 1  # not yet
    # The call lasted 90 s: 50 s is not in the last 30 s, although it is the last final.
    out = p.process(ended(duration=90.0), T0 + 90)
    assert [(type(e).__name__, getattr(e, "reason", None)) for e in out[:-1]] == [
        ("ComplianceMissed", "ended")]
    p = started(*rules)
    p.process(final("thank you", 20.0), T0 + 21)               # not in the last 30 s
    p.process(final("anything else i can do", 55.0), T0 + 56)
    p.process(final("thank you bye", 65.0), T0 + 66)
    out = p.process(ended(duration=80.0), T0 + 80)
    assert [type(e).__name__ for e in out[:-1]] == ["CompliancePassed", "CategoryMatched"]
    passed, category = out[:2]
    assert isinstance(passed, CompliancePassed) and passed.evidence is not None
    assert passed.evidence.start_s == 55.0 and passed.deadline_s is None
    assert isinstance(category, CategoryMatched) and category.evidence.start_s == 65.0


# ------------------------------------------------------------------ conversations

def test_a_conversation_of_two_calls_ends_with_its_last_call() -> None:
    p = RulesProcessor(analytics(rule("goodbye", "compliance", channel="agent",
                                      phrases=["goodbye"])))
    p.process(answered("c-agent"), T0)
    p.process(answered("c-cust", ("customer",)), T0 + 1)
    assert p.process(ended("c-cust", 30.0, ("customer",)), T0 + 31)[:-1] == []
    p.forget_call("c-cust")
    out = p.process(ended("c-agent", 40.0), T0 + 40)
    (missed,) = out[:-1]
    assert isinstance(missed, ComplianceMissed) and missed.call_id == "c-agent"


def test_conversations_are_apart_and_forget_call_drops_the_state() -> None:
    p = RulesProcessor(analytics(DISCLOSURE))
    p.process(answered("a", conversation="conv-a"), T0)
    p.process(answered("b", conversation="conv-b"), T0 + 10)
    assert p.next_deadline() == T0 + 35
    p.forget_call("a")
    assert p.next_deadline() == T0 + 45
    (missed,) = p.on_timer(T0 + 45)
    assert isinstance(missed, ComplianceMissed) and missed.conversation_id == "conv-b"
    p.forget_call("b")
    assert p.next_deadline() is None
    p.process(final("hello again", 1.0, call="a", conversation="conv-a"), T0 + 100)
    assert p.next_deadline() == pytest.approx(T0 + 100 - 1.6 + 35)   # a new conversation


def test_a_final_without_a_conversation_id_is_its_calls_own() -> None:
    p = RulesProcessor(analytics(rule("x", phrases=["hello"])))
    out = p.process(final("hello", 1.0, call="solo", conversation=None), T0)
    (matched,) = out[1:]
    assert isinstance(matched, CategoryMatched) and matched.conversation_id is None


# ------------------------------------------------------------------ reload

def test_reload_hands_over_conversations_and_checks() -> None:
    old = started(DISCLOSURE, rule("goodbye", "compliance", phrases=["goodbye"]))
    old.process(final("hello", 1.0), T0 + 2)
    new = RulesProcessor(analytics(DISCLOSURE | {"phrases": ["recorded line"]},
                                   rule("added", "compliance", phrases=["anything"]),
                                   late_s=1.0), old)
    assert new.next_deadline() == T0 + 31            # same deadline, the new late_s
    (_, passed) = new.process(final("you are on a recorded line", 10.0), T0 + 11)
    assert isinstance(passed, CompliancePassed) and passed.rule == "disclosure"
    out = new.process(ended(), T0 + 60)
    assert out[:-1] == []         # goodbye was removed; added applies from the next one on
    new.forget_call("c-1")
    new.process(answered("c-2", conversation="conv-2"), T0 + 100)
    out = new.process(ended("c-2", 10.0, conversation="conv-2"), T0 + 110)
    assert sorted((e.rule, e.reason) for e in out if isinstance(e, ComplianceMissed)) == [
        ("added", "ended"), ("disclosure", "ended")]


def test_build_processors_puts_the_rules_after_redaction_and_hands_over() -> None:
    config = parse_config({"analytics": {"rules": [DISCLOSURE]}}, {}, Path("."))
    processors = build_processors(config)
    names = [p.name for p in processors]
    assert names.index("redaction") < names.index("analytics")
    rules = next(p for p in processors if isinstance(p, RulesProcessor))
    rules.process(answered(), T0)
    again = build_processors(config, processors)
    moved = next(p for p in again if isinstance(p, RulesProcessor))
    assert moved is not rules and moved.next_deadline() == T0 + 35
    assert reconfigures_processors(("analytics.rules",))      # a SIGHUP rebuilds them
    off = parse_config({"analytics": {"enabled": False, "rules": [DISCLOSURE]}}, {}, Path("."))
    assert not any(isinstance(p, RulesProcessor) for p in build_processors(off))
    assert not any(isinstance(p, RulesProcessor)
                   for p in build_processors(parse_config({}, {}, Path("."))))


# ------------------------------------------------------------------ in the stage

def test_in_the_stage_rules_see_redacted_text_and_fire_on_the_timer() -> None:
    config = parse_config({"analytics": {"rules": [
        DISCLOSURE, rule("card_read", channel="customer", phrases=["[card]"], once=False)]}},
        {}, Path("."))
    stage = ProcessingStage(build_processors(config))
    stage.run(answered("c-1", ("agent", "customer")), T0)
    result = stage.run(final("my card is 4111 1111 1111 1111", 5.0, channel="customer",
                             segment=2), T0 + 8)
    (matched,) = [e for e in result.events if isinstance(e, CategoryMatched)]
    assert "4111" not in matched.evidence.text and "[CARD]" in matched.evidence.text
    # A final the redactor holds (it ends in digits) reaches the rules when released.
    result = stage.run(final("the card number is 4111 1111", 10.0, channel="customer",
                             segment=3), T0 + 12)
    assert not any(isinstance(e, CategoryMatched) for e in result.events)
    assert stage.next_deadline() == T0 + 12 + config.redaction.hold_s
    result = stage.tick(T0 + 12 + config.redaction.hold_s)
    (matched,) = [e for e in result.events if isinstance(e, CategoryMatched)]
    assert matched.evidence.segment == 3 and "4111" not in matched.evidence.text
    assert stage.next_deadline() == T0 + 35
    missed = [e for e in stage.tick(T0 + 35).events if isinstance(e, ComplianceMissed)]
    assert [m.rule for m in missed] == ["disclosure"]


# ------------------------------------------------------------------ the README's rules

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_rules() -> AnalyticsConfig:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Phrase rules"):]
    block = section[section.index("```toml\n") + 8:section.index("```\n", section.index("```toml"))]
    return parse_config(tomllib.loads(block), {}, Path(".")).analytics


def test_the_readme_rules_do_what_the_readme_says() -> None:
    """The README's example rule set, on a conversation of two legs: no disclosure in 30 s,
    an account question answered by a security question, a cancellation with its hint, a
    forbidden phrase, and a closing in the last minute."""
    p = RulesProcessor(_readme_rules())
    p.process(answered("c-agent"), T0)
    p.process(answered("c-cust", ("customer",)), T0)
    turns = [("agent", "good morning how can i help", 1.0),
             ("customer", "I have a question about my bill", 5.0),
             ("agent", "sure can you give me your date of birth", 9.0),
             ("customer", "I want to cancel my contract", 40.0),
             ("agent", "please calm down", 45.0),
             ("agent", "is there anything else", 70.0)]
    out: list[GatewayEvent] = []
    for channel, text, start in turns:
        call = "c-agent" if channel == "agent" else "c-cust"
        out += p.on_timer(T0 + start)
        out += added(p.process(final(text, start, channel=channel, call=call), T0 + start + 2))
    out += p.process(ended("c-cust", 80.0, ("customer",)), T0 + 80)
    p.forget_call("c-cust")
    out += p.process(ended("c-agent", 80.0), T0 + 80)
    seen = [(e.TYPE, e.rule, getattr(e, "reason", None)) for e in out
            if isinstance(e, CategoryMatched | CompliancePassed | ComplianceMissed | AssistHint)]
    assert seen == [
        ("category.matched", "account_enquiry", None),
        ("compliance.passed", "identity_verification", None),
        ("compliance.missed", "recording_disclosure", "deadline"),
        ("category.matched", "cancellation_intent", None),
        ("assist.hint", "retention_offer", None),
        ("compliance.missed", "forbidden_phrases", "said"),
        ("compliance.passed", "closing", None),
    ]
