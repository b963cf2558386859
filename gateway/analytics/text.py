"""Text normalisation and word similarity for phrase rules, tolerant of ASR errors.

A rule's phrase and a final's words go through the same :func:`normalise`, so both sides
meet in one form:

- **numbers** as digits, however said or written: every run of tokens that spells digits
  (:func:`gateway.redaction.numbers.digit_runs`: ``one``, ``1``, ``twenty four seven``,
  ``24/7``, ``double two``) becomes one token of its digits (``press one`` and ``press 1``
  are both ``press 1``);
- **case and punctuation** go: lower case, surrounding punctuation stripped, apostrophes
  dropped (``don't`` -> ``dont``), other inner punctuation splits (``e-mail`` -> ``e mail``);
- **fillers** (``uh``, ``um``, ``er`` ...) are dropped;
- **redaction tags** stay one token, in brackets: ``[CARD ****1111]`` -> ``[card]`` (a
  phrase can name a tag: ``card number is [CARD]``);
- **a light stemmer** (:func:`stem`): one common suffix off (``-ing``, ``-ed``, ``-s``,
  ``-es``, ``-ies``, ``-ation``, ``-ification``), a doubled final consonant single, a final
  ``e`` off: ``recorded``, ``recording``, ``records`` -> ``record``; ``cancelled``,
  ``cancelling``, ``cancellation`` -> ``cancel``. It conflates, it does not parse English:
  the same word always gets the same stem, which is all matching needs.

Each word keeps its surface form (lower case, before stemming) next to its stem. Two words
match when their stems are equal, or when the :func:`similarity` (one minus the Levenshtein
distance over the longer length) of their stems or of their surfaces reaches a threshold
(``recordid`` is one edit from ``recorded`` but two from its stem ``record``); digits and
tags only match exactly, and so do words of fewer than four letters (one edit in them is
another word).

Layer: pure core.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Final, NamedTuple

from gateway.redaction.numbers import digit_runs

WILDCARD: Final = "*"
"""In a phrase: any one word."""
FILLERS: Final = frozenset({"uh", "um", "umm", "uhm", "er", "erm", "ah", "hmm", "mm", "mhm"})
MIN_FUZZY_LEN: Final = 4

_TAG: Final = re.compile(r"^\[([A-Za-z][A-Za-z0-9_]*)")
_SPLIT: Final = re.compile(r"[^\w*]+")
_APOSTROPHES: Final = str.maketrans("", "", "'\u2019")
_SUFFIXES: Final = (("ifications", "ify"), ("ification", "ify"), ("ations", ""),
                    ("ation", ""), ("ies", "y"), ("ied", "y"), ("ings", ""), ("ing", ""),
                    ("ed", ""), ("es", ""), ("s", ""))
_ES_AFTER: Final = ("s", "x", "z", "ch", "sh")
_KEEP_S: Final = ("ss", "us", "is")
_VOWELS: Final = frozenset("aeiou")


def stem(word: str) -> str:
    """The light stem of a lower-case word (see the module docstring); other tokens as
    they are."""
    if not word.isalpha():
        return word
    out = _strip_suffix(word)
    if len(out) >= 3 and out[-1] == out[-2] and out[-1] not in _VOWELS:
        out = out[:-1]
    if len(out) > 3 and out.endswith("e"):
        out = out[:-1]
    return out


def _strip_suffix(word: str) -> str:
    for suffix, replacement in _SUFFIXES:
        if not word.endswith(suffix) or len(word) - len(suffix) < 3:
            continue
        base = word[: -len(suffix)]
        if suffix == "es" and not base.endswith(_ES_AFTER):
            return word[:-1]          # "charges": only the s
        if suffix == "s" and word.endswith(_KEEP_S):
            return word
        return base + replacement
    return word


class Word(NamedTuple):
    """One normalised word: its stem, its surface form, and tokens ``first`` to ``end``
    (exclusive) of the input it came from."""

    stem: str
    surface: str
    first: int
    end: int


@lru_cache(maxsize=8192)
def _words_of(token: str) -> tuple[tuple[str, str], ...]:
    """(stem, surface) of each word of one non-number token (none for a filler or
    punctuation)."""
    tag = _TAG.match(token)
    if tag:
        name = f"[{tag.group(1).lower()}]"
        return ((name, name),)
    if token.endswith("]") and "[" not in token:
        return ()                     # the tail of a tag split by spaces ("****1111]")
    parts = _SPLIT.split(token.lower().translate(_APOSTROPHES))
    return tuple((stem(p), p) for p in parts if p and p not in FILLERS)


def normalise(tokens: Sequence[str]) -> list[Word]:
    """The normalised words of ``tokens``, each with the tokens it came from; a number is
    one word of its digits."""
    runs = {run.start: run for run in digit_runs(tokens)}
    out: list[Word] = []
    i = 0
    while i < len(tokens):
        run = runs.get(i)
        if run is not None:
            out.append(Word(run.digits, run.digits, run.start, run.end))
            i = run.end
            continue
        out.extend(Word(st, surface, i, i + 1) for st, surface in _words_of(tokens[i]))
        i += 1
    return out


def phrase_words(phrase: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A rule's phrase as normalised words: (stems, surfaces); ``*`` stays (any one word)."""
    words = normalise(phrase.split())
    return tuple(w.stem for w in words), tuple(w.surface for w in words)


def fuzzy_word(word: str) -> bool:
    """Whether ``word`` may match another word that is not equal to it."""
    return len(word) >= MIN_FUZZY_LEN and word.isalpha()


def max_edits(a: str, b: str, threshold: float) -> int:
    """How many edits between ``a`` and ``b`` a ``threshold`` similarity allows (0: they
    must be equal: a digit string, a tag, a short word, or threshold 1)."""
    if threshold >= 1.0 or not (fuzzy_word(a) and fuzzy_word(b)):
        return 0
    return int((1.0 - threshold) * max(len(a), len(b)) + 1e-9)


def lengths_near(length: int, threshold: float) -> range:
    """The word lengths a word of ``length`` letters can be similar to at ``threshold``."""
    if threshold >= 1.0 or length < MIN_FUZZY_LEN:
        return range(length, length + 1)
    return range(max(MIN_FUZZY_LEN, math.ceil(length * threshold - 1e-9)),
                 math.floor(length / threshold + 1e-9) + 1)


def pieces(word: str, threshold: float) -> tuple[str, ...]:
    """Pieces of ``word`` one of which every word similar to it at ``threshold`` contains
    as it is: ``limit + 1`` of them (``limit``: the edits allowed at the longest similar
    length), since each edit breaks at most one piece. A few substring searches rule most
    candidates out before any edit distance is computed."""
    near = lengths_near(len(word), threshold)
    return _cut(word, int((1.0 - threshold) * (near.stop - 1) + 1e-9))


def _cut(word: str, limit: int) -> tuple[str, ...]:
    """``word`` in ``limit + 1`` pieces (the last takes the rest); ``("",)`` when it is
    shorter than that (the empty piece occurs in every word)."""
    size = len(word) // (limit + 1)
    if size == 0:
        return ("",)
    cuts = [i * size for i in range(limit + 1)] + [len(word)]
    return tuple(word[lo:hi] for lo, hi in zip(cuts, cuts[1:], strict=False))


@lru_cache(maxsize=65536)
def similarity(a: str, b: str, threshold: float) -> float:
    """:func:`word_similarity`, remembered (the words of finals repeat)."""
    return word_similarity(a, b, threshold)


def word_similarity(a: str, b: str, threshold: float) -> float:
    """``1 - distance / longer length`` when it reaches ``threshold`` (and the words may
    be fuzzy at all), else 0."""
    if a == b:
        return 1.0
    limit = max_edits(a, b, threshold)
    if limit == 0 or abs(len(a) - len(b)) > limit or not _shares_a_piece(a, b, limit):
        return 0.0
    distance = levenshtein(a, b, limit)
    if distance > limit:
        return 0.0
    score = 1.0 - distance / max(len(a), len(b))
    return score if score >= threshold else 0.0


def _shares_a_piece(a: str, b: str, limit: int) -> bool:
    """Whether one of ``limit + 1`` pieces of ``b`` occurs in ``a`` as it is: ``limit``
    edits can break at most ``limit`` of them, so without one the distance is larger (a
    filter that costs a few substring searches)."""
    return any(piece in a for piece in _cut(b, limit))


def levenshtein(a: str, b: str, limit: int) -> int:
    """Edit distance of ``a`` and ``b``, or ``limit + 1`` once it must exceed ``limit``."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]
