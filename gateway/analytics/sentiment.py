"""Lexicon-based sentiment of each final: the worked example of a signal processor.

**The extension point.** A model-based signal (sentiment, intent, a summary line) is a
processor of the event stage (:class:`gateway.events.processing.Processor`): it gets every
event once, in order, after redaction (it only ever sees redacted text), and returns the
event followed by the events it caused. Its signal is an event class that subclasses
:class:`gateway.events.types.ModelSignal` (``channel``, ``segment``, times, ``label``,
``score``, ``model``) with a ``TYPE`` of its own, listed in ``EVENT_CLASSES``; the
conversation summary collects every such event into its ``signals`` without knowing the
class. :func:`gateway.processors.build_processors` adds the processor from the config.
A processor must be cheap and synchronous (it runs on the event loop, never on the media
path, but every event waits for it): a lexicon or a rule is; a network call is not. A
model served by Triton is a shell instead: a bus subscriber that sends finals to the model
and emits its ``ModelSignal`` events with ``EventBus.emit``; they pass the stage like any
event, and the summary has those that arrive before the conversation's last ``call.ended``.

**This example.** :func:`score` tokenises a final's text, looks each word up in a small
lexicon (weights -2 .. +2), scales a word after an intensifier (``very``: x1.5), flips and
damps one after a negation (``not good``: x-0.75, for the next three words, up to a clause
end), weighs the clause after ``but`` up and the one before it down, and squashes the sum
into -1 .. 1 (``s / sqrt(s^2 + 15)``, as VADER does). ``label`` is ``positive`` at 0.1 or
above, ``negative`` at -0.1 or below, else ``neutral`` (one weak word scores 0.25, a
negated one 0.19). :class:`SentimentScorer` emits a
``sentiment.scored`` after every final with words in it.

Layer: pure core.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.events.processing import ProcessorBase
from gateway.events.types import GatewayEvent, SentimentScored, TranscriptFinal

MODEL = "lexicon"
THRESHOLD = 0.1
_ALPHA = 15.0
_NEGATION_REACH = 3
_NEGATED = -0.75
_BOOST = 1.5

LEXICON: dict[str, float] = {
    **dict.fromkeys((
        "excellent", "fantastic", "wonderful", "amazing", "brilliant", "perfect", "love",
        "awesome", "outstanding", "delighted"), 2.0),
    **dict.fromkeys((
        "good", "great", "nice", "happy", "glad", "pleased", "helpful", "thanks", "thank",
        "appreciate", "appreciated", "easy", "resolved", "fixed", "quick", "kind", "satisfied",
        "better", "best", "fine", "lovely", "welcome"), 1.0),
    **dict.fromkeys((
        "terrible", "awful", "horrible", "worst", "hate", "unacceptable", "ridiculous",
        "furious", "disgusting", "useless"), -2.0),
    **dict.fromkeys((
        "bad", "poor", "angry", "annoyed", "annoying", "frustrated", "frustrating", "upset",
        "disappointed", "disappointing", "unhappy", "problem", "problems", "wrong", "broken",
        "slow", "rude", "waste", "complaint", "complain", "confused", "confusing", "difficult",
        "expensive", "worse", "fault", "mistake", "cancel", "overcharged", "late"), -1.0),
}
NEGATIONS = frozenset((
    "not", "no", "never", "nothing", "nobody", "neither", "nor", "hardly", "without",
    "cannot", "dont", "doesnt", "didnt", "isnt", "wasnt", "arent", "werent", "wont",
    "wouldnt", "cant", "couldnt", "shouldnt", "havent", "hasnt", "hadnt", "aint"))
INTENSIFIERS = frozenset((
    "very", "really", "so", "extremely", "absolutely", "totally", "incredibly", "truly",
    "completely", "super"))
_CLAUSE_END = frozenset(".,;:!?")
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*|[.,;:!?]")


@dataclass(frozen=True, slots=True)
class Sentiment:
    score: float
    label: str


def tokens(text: str) -> list[str]:
    """Lower-case words (apostrophes dropped: ``don't`` -> ``dont``) and clause marks;
    redaction tags (``[CARD]``) are words like any other, and score nothing."""
    return [t.replace("'", "") for t in _TOKEN.findall(text.lower())]


def _clause_weights(words: Sequence[str]) -> list[float]:
    """1 per token, 0.5 before the last ``but`` and 1.5 after it."""
    if "but" not in words:
        return [1.0] * len(words)
    cut = len(words) - 1 - list(reversed(words)).index("but")
    return [0.5 if i < cut else 1.5 for i in range(len(words))]


def raw_score(text: str) -> float:
    """The lexicon sum, before squashing."""
    words = tokens(text)
    weights = _clause_weights(words)
    total, negated_for, boost = 0.0, 0, 1.0
    for word, weight in zip(words, weights, strict=True):
        if word in _CLAUSE_END:
            negated_for, boost = 0, 1.0
        elif word in NEGATIONS:
            negated_for = _NEGATION_REACH
        elif word in INTENSIFIERS:
            boost = _BOOST
        elif word in LEXICON:
            value = LEXICON[word] * boost * weight
            total += value * _NEGATED if negated_for else value
            negated_for, boost = 0, 1.0
        else:
            negated_for, boost = max(0, negated_for - 1), 1.0
    return total


def score(text: str) -> Sentiment:
    """-1 (negative) .. 1 (positive), and its label."""
    s = raw_score(text)
    value = round(s / math.sqrt(s * s + _ALPHA), 3)
    label = ("positive" if value >= THRESHOLD else
             "negative" if value <= -THRESHOLD else "neutral")
    return Sentiment(value, label)


def _has_words(text: str) -> bool:
    return any(t not in _CLAUSE_END for t in tokens(text))


class SentimentScorer(ProcessorBase):
    """``sentiment.scored`` after each final that has words (``[analytics] sentiment``)."""

    name = "sentiment"

    def process(self, event: GatewayEvent, now: float) -> Sequence[GatewayEvent]:
        if not isinstance(event, TranscriptFinal) or not _has_words(event.text):
            return (event,)
        found = score(event.text)
        return (event, SentimentScored(
            call_id=event.call_id, conversation_id=event.conversation_id,
            channel=event.channel, segment=event.segment, start_s=event.start_s,
            end_s=event.end_s, label=found.label, score=found.score, model=MODEL))
