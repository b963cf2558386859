"""Spoken numbers folded to digits for a second WER figure (pure): ``forty five`` and ``45``,
``nineteen eighty`` and ``1980``, ``two hundred and fifty`` and ``250`` become the same digit
words, so a recogniser that writes numbers as digits (Whisper) and one that writes words (the
small NeMo model) are compared on what they heard, not on how they spell it.

Input is already normalised by ``tests.speech.normalise`` (lower case, digit runs and the
words zero..nine as single digits). A number word run is read as one number while the words
combine (tens then a unit, a value then ``hundred``/``thousand``, ``and`` after those); a word
that does not combine starts the next number, so ``four two seven`` stays three digits.

Layer: pure core.
"""

from __future__ import annotations

from collections.abc import Sequence

_TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
          "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}
_AFTER_SCALE = frozenset({"hundred", "thousand", "and"})


class _Number:
    """The number being read: thousands part, the part below, what its last word was."""

    def __init__(self) -> None:
        self.total = 0
        self.current = 0
        self.last: str | None = None      # unit | teen | tens | hundred | thousand | and

    @property
    def active(self) -> bool:
        return self.last is not None

    def flush(self, out: list[str]) -> None:
        if self.last is None:
            return
        out.extend(str(self.total + self.current))
        if self.last == "and":
            out.append("and")
        self.total, self.current, self.last = 0, 0, None

    def add(self, value: int, kind: str, out: list[str]) -> None:
        joins = self.last in _AFTER_SCALE or (kind == "unit" and self.last == "tens")
        if not joins:
            self.flush(out)
        self.current += value
        self.last = kind

    def scale(self, word: str, out: list[str]) -> bool:
        """``hundred`` / ``thousand`` / ``and`` applied to the number; False: not a part of it."""
        if word == "hundred" and self.last in ("unit", "teen", "tens") and self.current < 100:
            self.current *= 100
        elif word == "thousand" and self.last not in (None, "thousand", "and") \
                and 0 < self.current < 1000:
            self.total, self.current = self.total + self.current * 1000, 0
        elif word == "and" and self.last in ("hundred", "thousand"):
            pass
        else:
            return False
        self.last = word
        return True


def fold_numbers(words: Sequence[str]) -> list[str]:
    """``words`` with every spoken number as its digits, one word per digit."""
    out: list[str] = []
    number = _Number()
    for word in words:
        if len(word) == 1 and word.isdigit():
            number.add(int(word), "unit", out)
        elif word in _TEENS:
            number.add(_TEENS[word], "teen", out)
        elif word in _TENS:
            number.add(_TENS[word], "tens", out)
        elif word in _AFTER_SCALE and number.scale(word, out):
            continue
        else:
            number.flush(out)
            out.append(word)
    number.flush(out)
    return out
