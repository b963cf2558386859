"""The lexicon sentiment example of a signal processor: scores, negation, intensifiers,
'but' clauses, the event it emits, the summary collecting it, and the config switch."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.analytics.sentiment import LEXICON, SentimentScorer, raw_score, score, tokens
from gateway.analytics.summary import Summarizer
from gateway.config import GatewayConfig, parse_config
from gateway.events.processing import ProcessingStage
from gateway.events.types import (
    CallAnswered,
    CallEnded,
    ConversationSummary,
    SentimentScored,
    TranscriptFinal,
    TranscriptWord,
)
from gateway.processors import build_processors, reconfigures_processors


def final(text: str, channel: str = "customer", segment: int = 3) -> TranscriptFinal:
    words = tuple(TranscriptWord(word=w, start_s=1.0 + i, end_s=1.5 + i, confidence=0.9)
                  for i, w in enumerate(text.split()))
    return TranscriptFinal(call_id="c", channel=channel, participant=None,
                           conversation_id="conv", text=text, segment=segment, start_s=1.0,
                           end_s=1.5 + len(words), words=words, latency_s=None)


@pytest.mark.parametrize(("text", "label"), [
    ("Thank you so much, that was really helpful.", "positive"),
    ("This is excellent service.", "positive"),
    ("This is terrible, I am really frustrated.", "negative"),
    ("I want to cancel my subscription.", "negative"),
    ("My account number is [ACCOUNT].", "neutral"),
    ("What time do you open tomorrow?", "neutral"),
    ("That is not good.", "negative"),
    ("Not bad at all.", "positive"),
    ("No problem.", "positive"),
    ("It isn't working and I'm not happy.", "negative"),
    ("The agent was nice but the wait was terrible.", "negative"),
    ("The wait was terrible but the agent was excellent.", "positive"),
])
def test_labels(text: str, label: str) -> None:
    assert score(text).label == label, (text, score(text))


def test_negation_flips_and_damps_within_its_reach_and_clause() -> None:
    assert raw_score("good") == 1.0
    assert raw_score("not good") == -0.75
    assert raw_score("didn't find them helpful") == -0.75             # within 3 words
    assert raw_score("not really very good") == pytest.approx(-1.125)   # intensified too
    assert raw_score("not that I ever thought it good") == 1.0      # beyond the reach
    assert raw_score("not now, good") == 1.0                        # a clause end stops it


def test_intensifier_scales_the_next_sentiment_word_only() -> None:
    assert raw_score("very good") == 1.5
    assert raw_score("very much good") == 1.0
    assert raw_score("really terrible") == -3.0


def test_but_weighs_the_later_clause_more() -> None:
    assert raw_score("good but bad") == pytest.approx(0.5 - 1.5)


def test_score_is_bounded_and_monotonic() -> None:
    values = [score(" ".join(["great"] * n)).score for n in range(1, 30)]
    assert all(0 < v < 1 for v in values) and values == sorted(values)
    assert -1 < score("terrible " * 40).score < -0.99
    assert score("").score == 0.0 and score("").label == "neutral"


def test_tokens_drop_apostrophes_and_keep_clause_marks() -> None:
    assert tokens("I don't know, really!") == ["i", "dont", "know", ",", "really", "!"]
    assert tokens("[CARD]") == ["card"] and "card" not in LEXICON


def test_the_processor_emits_one_signal_after_each_final() -> None:
    event = final("I am very happy with this")
    out = SentimentScorer().process(event, 0.0)
    assert out[0] is event and len(out) == 2
    signal = out[1]
    assert isinstance(signal, SentimentScored)
    assert (signal.call_id, signal.conversation_id, signal.channel, signal.segment) == (
        "c", "conv", "customer", 3)
    assert (signal.start_s, signal.end_s, signal.label, signal.model) == (
        1.0, event.end_s, "positive", "lexicon")
    assert signal.score == score("I am very happy with this").score


def test_other_events_and_empty_finals_pass_alone() -> None:
    scorer = SentimentScorer()
    answered = CallAnswered(call_id="c", sip_call_id="s", conversation_id="conv",
                            channels=("customer",), ports=(1,))
    assert scorer.process(answered, 0.0) == (answered,)
    empty = final("...")
    assert scorer.process(empty, 0.0) == (empty,)


def test_the_summary_collects_the_signals_of_a_processor_before_it() -> None:
    stage = ProcessingStage([SentimentScorer(), Summarizer()])
    events = [CallAnswered(call_id="c", sip_call_id="s", conversation_id="conv",
                           channels=("customer",), ports=(1,)),
              final("this is awful", segment=0), final("thanks, that fixed it", segment=1),
              CallEnded(call_id="c", reason="bye", by="remote", answered=True, duration_s=5,
                        sip_call_id="s", conversation_id="conv", channels=("customer",),
                        legs=(), asr_finals_flushed=True, recording=None)]
    out = [e for event in events for e in stage.run(event, 10.0).events]
    summary = next(e for e in out if isinstance(e, ConversationSummary))
    assert [(s.type, s.segment, s.label) for s in summary.summary.signals] == [
        ("sentiment.scored", 0, "negative"), ("sentiment.scored", 1, "positive")]


# ------------------------------------------------------------------ the config switches

def _built(analytics: dict[str, object]) -> list[str]:
    config = parse_config({"analytics": analytics}, {}, Path("."))
    return [p.name for p in build_processors(config)]


def test_sentiment_off_by_default_and_the_summary_last() -> None:
    assert GatewayConfig().analytics.sentiment is False
    assert GatewayConfig().analytics.summary is True
    names = _built({})
    assert "sentiment" not in names and names[-1] == "summary"
    names = _built({"sentiment": True})
    assert names.index("sentiment") < names.index("summary") == len(names) - 1
    assert "summary" not in _built({"summary": False})


def test_a_reload_keeps_the_conversations_in_progress() -> None:
    config = GatewayConfig()
    first = build_processors(config)
    summarizer = next(p for p in first if isinstance(p, Summarizer))
    summarizer.process(final("hello there"), 1.0)
    again = build_processors(parse_config({"analytics": {"sentiment": True}}, {}, Path(".")),
                             first)
    rebuilt = next(p for p in again if isinstance(p, Summarizer))
    assert rebuilt is not summarizer and rebuilt.conversations() == 1
    assert reconfigures_processors(["analytics.sentiment"])
