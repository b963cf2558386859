"""Phrase rules compiled from ``[analytics]``, and the index that finds their phrases.

:func:`compile_rules` turns the validated :class:`~gateway.config.AnalyticsRule` list into
:class:`Rule` objects in *evaluation order*: a rule comes after the rule it follows
(``after``), so within one final a trigger is decided before the rules that depend on it.
Each phrase is normalised once (:func:`gateway.analytics.text.phrase_words`).

:class:`PhraseIndex` finds every phrase of every rule in a final's normalised words in one
pass: phrases are filed under their first word; each distinct word of a final is looked
up once (exactly, then fuzzily among the first words; the answer is cached, ASR
vocabularies repeat), and only the phrases whose first word matched are tried at that
position. A word matches a phrase's word when the stems are equal, or when the similarity
of the stems or of the surface forms reaches the rule's threshold. The cost per final grows
with its words and the phrases that start like them, not with the number of rules.

Layer: pure core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.analytics.text import (
    WILDCARD,
    fuzzy_word,
    lengths_near,
    phrase_words,
    pieces,
    similarity,
    word_similarity,
)
from gateway.config import AnalyticsConfig, AnalyticsRule

CATEGORY, COMPLIANCE, HINT = "category", "compliance", "hint"
AGENT, CUSTOMER, EITHER = "agent", "customer", "either"
CACHE_LIMIT = 50_000
"""Distinct final words whose candidate first words are remembered (then forgotten)."""


@dataclass(frozen=True, slots=True)
class Phrase:
    rule: int                  # index of the rule in evaluation order
    text: str                  # as configured
    words: tuple[str, ...]     # normalised stems, WILDCARD for any one word
    surfaces: tuple[str, ...]  # the same words before stemming
    threshold: float

    def score(self, i: int, stem: str, surface: str) -> float:
        """How well a final's word matches this phrase's word ``i`` (0: not at all)."""
        if stem == self.words[i]:
            return 1.0
        return max(similarity(stem, self.words[i], self.threshold),
                   similarity(surface, self.surfaces[i], self.threshold))


@dataclass(frozen=True, slots=True)
class Rule:
    index: int
    name: str
    kind: str
    channel: str
    first_s: float | None
    last_s: float | None
    after: str
    within_s: float | None
    forbidden: bool
    hint: str
    once: bool
    threshold: float
    phrases: tuple[Phrase, ...]

    @property
    def required(self) -> bool:
        """A compliance rule whose phrase must be said (not a forbidden one)."""
        return self.kind == COMPLIANCE and not self.forbidden

    def hears(self, channel: str) -> bool:
        return self.channel == EITHER or self.channel == channel


@dataclass(frozen=True, slots=True)
class Hit:
    """A phrase found in a final: normalised words ``start`` to ``end`` (exclusive)."""

    phrase: Phrase
    start: int
    end: int
    score: float


def evaluation_order(rules: Sequence[AnalyticsRule]) -> list[AnalyticsRule]:
    """The rules with each one after the rule it follows (stable otherwise); the config
    has checked that every ``after`` exists and that there is no cycle."""
    by_name = {r.name: r for r in rules}
    placed: dict[str, AnalyticsRule] = {}

    def place(rule: AnalyticsRule) -> None:
        if rule.name in placed:
            return
        if rule.after and rule.after in by_name:
            place(by_name[rule.after])
        placed[rule.name] = rule

    for rule in rules:
        place(rule)
    return list(placed.values())


def compile_rules(config: AnalyticsConfig) -> tuple[Rule, ...]:
    out: list[Rule] = []
    for index, r in enumerate(evaluation_order(config.rules)):
        threshold = config.fuzzy if r.fuzzy is None else r.fuzzy
        phrases = tuple(Phrase(index, text, stems, surfaces, threshold)
                        for text in r.phrases
                        for stems, surfaces in [phrase_words(text)] if stems)
        out.append(Rule(index=index, name=r.name, kind=r.kind, channel=r.channel,
                        first_s=r.first_s, last_s=r.last_s, after=r.after,
                        within_s=r.within_s, forbidden=r.forbidden, hint=r.hint,
                        once=r.once, threshold=threshold, phrases=phrases))
    return tuple(out)


class PhraseIndex:
    """Every phrase of a rule set, filed by its first word (see the module docstring)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._by_stem: dict[str, list[Phrase]] = {}
        self._by_surface: dict[str, list[Phrase]] = {}
        for rule in rules:
            for phrase in rule.phrases:
                self._by_stem.setdefault(phrase.words[0], []).append(phrase)
                self._by_surface.setdefault(phrase.surfaces[0], []).append(phrase)
        self._loosest = {first: min(p.threshold for p in phrases)
                         for index in (self._by_stem, self._by_surface)
                         for first, phrases in index.items()}
        self._threshold = min(self._loosest.values(), default=1.0)
        self._lengths: tuple[dict[int, list[str]], dict[int, list[str]]] = ({}, {})
        for index, lengths in zip((self._by_stem, self._by_surface), self._lengths,
                                  strict=True):
            for first in index:
                if fuzzy_word(first):
                    lengths.setdefault(len(first), []).append(first)
        self._cache: dict[tuple[str, str], tuple[tuple[Phrase, float], ...]] = {}

    def find(self, stems: Sequence[str], surfaces: Sequence[str]) -> list[Hit]:
        """Every phrase occurrence in a final's words (their stems and surface forms), by
        start position, then rule order."""
        hits: list[Hit] = []
        for start, word in enumerate(stems):
            for phrase, first_score in self._starting(word, surfaces[start]):
                hit = _match_rest(phrase, stems, surfaces, start, first_score)
                if hit is not None:
                    hits.append(hit)
        return hits

    def _starting(self, stem: str, surface: str) -> tuple[tuple[Phrase, float], ...]:
        """The phrases whose first word this word matches, with its score."""
        key = (stem, surface)
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            found = self._cache[key] = self._lookup(stem, surface)
        return found

    def _lookup(self, stem: str, surface: str) -> tuple[tuple[Phrase, float], ...]:
        candidates: dict[int, Phrase] = {}
        for word, index, lengths in ((stem, self._by_stem, self._lengths[0]),
                                     (surface, self._by_surface, self._lengths[1])):
            candidates.update((id(p), p) for p in index.get(word, ()))
            for first in self._similar_firsts(word, lengths):
                candidates.update((id(p), p) for p in index[first])
        out = [(p, score) for p in candidates.values()
               if (score := p.score(0, stem, surface)) > 0.0]
        out.sort(key=lambda item: (item[0].rule, item[0].text))
        return tuple(out)


    def _similar_firsts(self, word: str, lengths: dict[int, list[str]]) -> list[str]:
        """First words of phrases (other than ``word``) similar to it at their loosest
        threshold: by length, then the piece filter, then the edit distance."""
        if self._threshold >= 1.0 or not fuzzy_word(word):
            return []
        parts = pieces(word, self._threshold)
        return [first for length in lengths_near(len(word), self._threshold)
                for first in lengths.get(length, ())
                if first != word and any(part in first for part in parts)
                and word_similarity(word, first, self._loosest[first]) > 0.0]


def _match_rest(phrase: Phrase, stems: Sequence[str], surfaces: Sequence[str], start: int,
                score: float) -> Hit | None:
    end = start + len(phrase.words)
    if end > len(stems):
        return None
    for offset in range(1, len(phrase.words)):
        if phrase.words[offset] == WILDCARD:
            continue
        s = phrase.score(offset, stems[start + offset], surfaces[start + offset])
        if s == 0.0:
            return None
        score = min(score, s)
    return Hit(phrase, start, end, score)
