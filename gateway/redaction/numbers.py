"""Spoken and written numbers to digit runs over ASR tokens.

An ASR writes a number read aloud in many ways: ``4111 1111``, ``4,111, 111,``,
``4111-1111-1111-1111``, ``(555) 123-4567``, ``four one one one``, ``double one``,
``oh nine``, ``forty one eleven``, ``nineteen eighty five``, ``one hundred and twenty``, or a
mixture. :func:`digit_runs` turns a token sequence into maximal runs of consecutive tokens
that spell a digit string.

How words become digits (the primary case is a number read digit by digit or in groups):

- a unit word is one digit (``oh``/``o``/``zero``/``nought`` are 0); a teen is two digits;
- a tens word takes a following unit word (``forty one`` -> ``41``), else it is ``40``;
- consecutive pieces concatenate: ``forty one eleven`` -> ``4111``, ``twenty twenty six``
  -> ``2026``, ``twenty four seven`` -> ``247``;
- ``double``/``triple`` repeat the next digit: ``double one`` -> ``11``;
- ``hundred`` and ``thousand`` multiply, as quantities: ``forty one hundred`` -> ``4100``,
  ``one hundred and twenty`` -> ``120``, ``two thousand and five`` -> ``2005``;
- a numeral keeps its digits and drops its separators (``,`` ``.`` ``-`` ``/``) and
  surrounding punctuation; times (``10:30``), prices (``$19.99``), ordinals (``14th``) and
  numerals glued to letters (``10am``, ``A123``) are not digit runs;
- fillers between digits (``uh``, ``um``, ``er``, a dash, ``slash``, lone punctuation) are
  absorbed; ``and`` only inside a quantity (``hundred and twenty``); any other word ends
  the run. A run made only of ``oh``/``o`` is dropped (it is an interjection or a letter).

Layer: pure core.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Final


@dataclass(frozen=True, slots=True)
class DigitRun:
    """Tokens ``start`` (inclusive) to ``end`` (exclusive) that spell ``digits``.

    ``groups`` are the lengths of the pieces the digits came in (``123-45-6789`` ->
    ``(3, 2, 4)``; ``forty one eleven`` -> ``(2, 2)``; ``one two`` -> ``(1, 1)``);
    ``spoken`` is true when a number word took part."""

    start: int
    end: int
    digits: str
    groups: tuple[int, ...] = ()
    spoken: bool = False


class _K(IntEnum):
    DIGITS = 0    # a numeral group, literal
    UNIT = 1      # 0-9 as a word
    OH = 2        # "oh"/"o": 0, but not a run on its own
    TEEN = 3      # 10-19
    TENS = 4      # 20-90
    HUNDRED = 5
    THOUSAND = 6
    REPEAT = 7    # double / triple
    FILL = 8      # uh, um, dash, punctuation
    AND = 9
    BREAK = 10    # an ordinary word: ends a run


_Atom = tuple[_K, int, str]          # kind, value, literal digits (for DIGITS)

_UNITS: Final = {"zero": 0, "nought": 0, "naught": 0, "one": 1, "two": 2, "three": 3,
                 "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
_TEENS: Final = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
                 "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
                 "nineteen": 19}
_TENS: Final = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50,
                "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_REPEATS: Final = {"double": 2, "triple": 3, "treble": 3}
_FILLERS: Final = frozenset({"uh", "um", "umm", "uhm", "er", "erm", "ah", "hmm", "mm",
                             "dash", "hyphen", "slash"})
_WORDS: Final[dict[str, _Atom]] = {
    **{w: (_K.UNIT, v, "") for w, v in _UNITS.items()},
    "oh": (_K.OH, 0, ""), "o": (_K.OH, 0, ""),
    **{w: (_K.TEEN, v, "") for w, v in _TEENS.items()},
    **{w: (_K.TENS, v, "") for w, v in _TENS.items()},
    "hundred": (_K.HUNDRED, 100, ""), "thousand": (_K.THOUSAND, 1000, ""),
    **{w: (_K.REPEAT, v, "") for w, v in _REPEATS.items()},
    **{w: (_K.FILL, 0, "") for w in _FILLERS},
    "and": (_K.AND, 0, ""),
}
_DIGIT_VALUED: Final = frozenset({_K.UNIT, _K.OH, _K.TEEN, _K.TENS, _K.HUNDRED,
                                  _K.THOUSAND})

_ORDINALS: Final = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17,
    "eighteenth": 18, "nineteenth": 19, "twentieth": 20, "thirtieth": 30}

_PUNCT_ONLY: Final = re.compile(r"^[\W_]*$")
_NUMERAL: Final = re.compile(r"^\+?\d+(?:[-.,/]\d+)*$")
_SEPARATORS: Final = re.compile(r"[-.,/]")
_ORDINAL_NUMERAL: Final = re.compile(r"^(\d{1,2})(?:st|nd|rd|th)$")
_LEAD: Final = "([{\"'"
_TRAIL: Final = ".,;:!?)]}\"'-"


def normalise(token: str) -> str:
    """Lower case, without surrounding whitespace and punctuation (``"Four,"`` -> ``four``;
    ``"(555)"`` -> ``555``). Inner punctuation stays (``4,111``, ``it's``, ``e-mail``)."""
    return token.strip().lower().lstrip(_LEAD).rstrip(_TRAIL)


@lru_cache(maxsize=4096)
def _atoms(token: str) -> tuple[_Atom, ...]:
    """What one token contributes: numeral groups, number words, fillers, or a BREAK."""
    if _PUNCT_ONLY.match(token):
        return ((_K.FILL, 0, ""),)
    t = normalise(token)
    if _NUMERAL.match(t):
        return tuple((_K.DIGITS, 0, g) for g in _SEPARATORS.split(t.lstrip("+")))
    parts = t.split("-") if "-" in t else [t]
    # "o-o-o-9": Whisper mixes letters for zero with numerals in one hyphenated token
    atoms = [_WORDS.get(p) or ((_K.DIGITS, 0, p) if p.isdigit() and len(parts) > 1 else None)
             for p in parts if p]
    if not atoms or any(a is None for a in atoms):
        return ((_K.BREAK, 0, ""),)
    return tuple(a for a in atoms if a is not None)


def has_digits(token: str) -> bool:
    """Whether ``token`` holds a digit or is a number word (``4,111``, ``14th``, ``four``,
    ``oh``, ``twenty-one``, ``hundred``)."""
    if any(c.isdigit() for c in token):
        return True
    return any(k in _DIGIT_VALUED for k, _, _ in _atoms(token))


def ordinal_value(token: str) -> int | None:
    """The value of an ordinal (``fourteenth`` -> 14, ``14th`` -> 14, ``twenty-first`` ->
    21), or None."""
    t = normalise(token)
    m = _ORDINAL_NUMERAL.match(t)
    if m:
        return int(m.group(1))
    if t in _ORDINALS:
        return _ORDINALS[t]
    tens, _, unit = t.partition("-")
    if tens in _TENS and unit in _ORDINALS and _ORDINALS[unit] < 10:
        return _TENS[tens] + _ORDINALS[unit]
    return None


# ------------------------------------------------------------------ parsing

@dataclass(slots=True)
class _Chunk:
    first: int       # token index of the first atom
    last: int        # token index of the last atom
    digits: str
    spoken: bool
    oh_only: bool


_Items = Sequence[tuple[int, _Atom]]    # (token index, atom)


def _kind(items: _Items, i: int) -> _K:
    return items[i][1][0] if i < len(items) else _K.BREAK


def _small(items: _Items, i: int) -> tuple[int, int] | None:
    """A value below 100 spoken at ``i`` (unit, teen, tens [unit]): (value, next index)."""
    kind, value, _ = items[i][1] if i < len(items) else (_K.BREAK, 0, "")
    if kind in (_K.UNIT, _K.OH, _K.TEEN):
        return value, i + 1
    if kind is _K.TENS:
        if _kind(items, i + 1) is _K.UNIT and items[i + 1][1][1] > 0:
            return value + items[i + 1][1][1], i + 2
        return value, i + 1
    return None


def _tail(items: _Items, i: int, value: int) -> tuple[int, int]:
    """``hundred [and] twenty``: add an optional non-zero value below 100 after ``i``."""
    j = i + 1 if _kind(items, i) is _K.AND else i
    small = _small(items, j)
    if small is None or small[0] == 0:
        return value, i
    return value + small[0], small[1]


def _quantity(items: _Items, i: int, value: int) -> tuple[int, int]:
    """``value`` followed by ``hundred``/``thousand`` at ``i``: (quantity, next index)."""
    if _kind(items, i) is _K.HUNDRED:
        value, i = _tail(items, i + 1, value * 100)
    if _kind(items, i) is _K.THOUSAND and value < 1000:
        value *= 1000
        i += 1
        j = i + 1 if _kind(items, i) is _K.AND else i
        small = _small(items, j)
        if small is not None and small[0] > 0:
            part, j = small
            if _kind(items, j) is _K.HUNDRED and part < 10:
                part, j = _tail(items, j + 1, part * 100)
            value, i = value + part, j
    return value, i


def _chunk_at(items: _Items, i: int) -> tuple[_Chunk | None, int]:
    """The digits spoken or written at ``i``: (chunk, next index); (None, i + 1) for a
    filler; (None, -1) when ``i`` ends the run (an ordinary word, a stray ``and``)."""
    tok, (kind, value, literal) = items[i]
    if kind is _K.DIGITS:
        return _Chunk(tok, tok, literal, False, False), i + 1
    if kind is _K.FILL:
        return None, i + 1
    if kind is _K.REPEAT:
        nxt = items[i + 1][1] if i + 1 < len(items) else (_K.BREAK, 0, "")
        if nxt[0] in (_K.UNIT, _K.OH) or (nxt[0] is _K.DIGITS and len(nxt[2]) == 1):
            digit = nxt[2] or str(nxt[1])
            return _Chunk(tok, items[i + 1][0], digit * value, True, False), i + 2
        return None, -1
    if kind in (_K.HUNDRED, _K.THOUSAND):
        q, j = _quantity(items, i, 1)
        return _Chunk(tok, items[j - 1][0], str(q), True, False), j
    small = _small(items, i)
    if small is None:
        return None, -1
    v, j = small
    if _kind(items, j) in (_K.HUNDRED, _K.THOUSAND) and v > 0:
        v, j = _quantity(items, j, v)
    return _Chunk(tok, items[j - 1][0], str(v), True, kind is _K.OH and j == i + 1), j


def _to_run(chunks: list[_Chunk]) -> DigitRun | None:
    if not chunks or all(c.oh_only for c in chunks):
        return None
    return DigitRun(chunks[0].first, chunks[-1].last + 1, "".join(c.digits for c in chunks),
                    tuple(len(c.digits) for c in chunks), any(c.spoken for c in chunks))


def _items(tokens: Sequence[str]) -> list[tuple[int, _Atom]]:
    return [(n, a) for n, tok in enumerate(tokens) for a in _atoms(tok)]


def digit_runs(tokens: Sequence[str]) -> list[DigitRun]:
    """The maximal runs of tokens that spell digits, in order, not overlapping."""
    items = _items(tokens)
    runs: list[DigitRun] = []
    chunks: list[_Chunk] = []
    i = 0
    while i < len(items):
        chunk, nxt = _chunk_at(items, i)
        if chunk is not None:
            chunks.append(chunk)
        if nxt < 0:
            _flush(runs, chunks)
            nxt = i + 1
        i = nxt
    _flush(runs, chunks)
    return runs


def _flush(runs: list[DigitRun], chunks: list[_Chunk]) -> None:
    """Close the run made of ``chunks`` (merged into the previous run if they share a
    token, as in ``one-and-two``)."""
    run = _to_run(chunks)
    chunks.clear()
    if run is None:
        return
    if runs and run.start < runs[-1].end:
        prev = runs.pop()
        run = DigitRun(prev.start, max(prev.end, run.end), prev.digits + run.digits,
                       prev.groups + run.groups, prev.spoken or run.spoken)
    runs.append(run)
