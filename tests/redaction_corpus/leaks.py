"""Does a labelled PII value survive in a text, in any surface form?

``leaks(value, text)`` is the check the redaction corpus, its bench and the integration
test share. The value is canonical (see README.md): digits for numbers (``4111111111111111``),
``MM/YY`` for an expiry, ``YYYY-MM-DD`` for a date of birth, the address for an e-mail,
upper-case letters and digits for an IBAN or a custom pattern. The text is read the way
ASR writes numbers: numerals with any separators (``4,111, 111``, ``4111-1111``,
``(415) 555-0132``), words (``four one one one``, ``oh``, ``double one``, ``triple five``,
``forty one eleven``, ``nineteen eighty five``, ``two thousand and five``, ordinals) and
mixtures; consecutive number tokens, whatever separates them (spaces, ``, - / . ( ) + :``,
"and", "slash", "dash", "plus"), make one digit run (for the parts of a date, the runs
split at those separators count too).

What counts as a leak (deliberately strict):

- digits (card, SSN, account, routing, phone, CVV): any 4 consecutive digits of the value
  (the whole value when it is shorter) inside one digit run of the text;
- IBAN / custom (letters and digits): the whole value in the text with everything but
  letters and digits removed, or any 4 consecutive digits of one of its digit groups in a run;
- expiry ``MM/YY``: ``MMYY``, ``MYY`` or ``MM20YY`` inside a run, or the year (``YY`` or
  ``20YY``) as a run of its own (the month alone is not a leak);
- date of birth: the year inside a run, the month and day together (``MMDD``, ``DDMM``,
  ``MDD`` inside a run, or the month's name with the day as a run or an ordinal);
- e-mail: the local part (or the whole address) in the text with the spoken words mapped
  (``dot`` ``at`` ``underscore`` ``dash``, number words to digits) and spaces and commas
  removed, so ``john dot smith at example dot com`` and ``j o h n`` both leak ``john``.

Plain Python, no project imports: usable from the unit tests, the bench and the
integration tests alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Final

UNITS: Final = {"zero": 0, "oh": 0, "o": 0, "one": 1, "two": 2, "three": 3, "four": 4,
                "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
TEENS: Final = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
                "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS: Final = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
               "seventy": 70, "eighty": 80, "ninety": 90}
ORDINAL_UNITS: Final = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5,
                        "sixth": 6, "seventh": 7, "eighth": 8, "ninth": 9}
ORDINAL_TEENS: Final = {"tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
                        "fourteenth": 14, "fifteenth": 15, "sixteenth": 16,
                        "seventeenth": 17, "eighteenth": 18, "nineteenth": 19}
ORDINAL_TENS: Final = {"twentieth": 20, "thirtieth": 30}
MONTHS: Final = ("january", "february", "march", "april", "may", "june", "july", "august",
                 "september", "october", "november", "december")
MONTH_ABBREVIATIONS: Final = tuple(m[:3] for m in MONTHS) + ("sept",)
REPEATS: Final = {"double": 2, "triple": 3}
SEPARATOR_WORDS: Final = frozenset({"and", "slash", "dash", "hyphen", "plus"})
SEPARATOR_CHARS: Final = frozenset(",-/.()+:")
NUMBER_WORDS: Final = frozenset({*UNITS, *TEENS, *TENS, *ORDINAL_UNITS, *ORDINAL_TEENS,
                                 *ORDINAL_TENS, "hundred", "thousand", *REPEATS})
_TOKEN: Final = re.compile(r"\d+(?:st|nd|rd|th)?|[a-z]+|[^\sa-z\d]")
_HYPHENATED: Final = re.compile(
    r"\b(twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)-"
    r"(one|two|three|four|five|six|seven|eight|nine|first|second|third|fourth|fifth|sixth|"
    r"seventh|eighth|ninth)\b")
_ORDINAL_NUMERAL: Final = re.compile(r"(\d+)(?:st|nd|rd|th)")
WINDOW: Final = 4


def tokens(text: str) -> list[str]:
    """Lower-case tokens: digit strings (``14th`` keeps its suffix), words, single symbols;
    ``twenty-seven`` is two words."""
    return _TOKEN.findall(_HYPHENATED.sub(r"\1 \2", text.lower().replace("\u2019", "'")))


# --------------------------------------------------------------------------- number words
def _small(words: Sequence[str], i: int) -> tuple[int, int] | None:
    """A number below 100 spoken as one unit: ``forty one``, ``eleven``, ``seven``,
    ``twenty first``; (value, next index) or None."""
    w = words[i]
    if w in TENS or w in ORDINAL_TENS:
        value = TENS.get(w, ORDINAL_TENS.get(w, 0))
        nxt = words[i + 1] if i + 1 < len(words) else ""
        unit = UNITS.get(nxt, ORDINAL_UNITS.get(nxt))
        if w in TENS and unit is not None and nxt not in ("oh", "o", "zero"):
            return value + unit, i + 2
        return value, i + 1
    for table in (TEENS, ORDINAL_TEENS, UNITS, ORDINAL_UNITS):
        if w in table:
            return table[w], i + 1
    return None


def _below_thousand(words: Sequence[str], i: int) -> tuple[int, int, bool] | None:
    """``four hundred and twenty``; (value, next index, used hundred) or None."""
    first = _small(words, i)
    if first is None:
        return None
    value, j = first
    if j < len(words) and words[j] == "hundred":
        value, j = value * 100, j + 1
        j_rest = j + 1 if j < len(words) and words[j] == "and" else j
        rest = _small(words, j_rest) if j_rest < len(words) else None
        if rest is not None:
            value, j = value + rest[0], rest[1]
        return value, j, True
    return value, j, False


def _number_at(words: Sequence[str], i: int) -> tuple[str, int] | None:
    """One spoken number from ``words[i]``: its digits and the next index."""
    if words[i] in REPEATS and i + 1 < len(words) and words[i + 1] in UNITS:
        return str(UNITS[words[i + 1]]) * REPEATS[words[i]], i + 2
    part = _below_thousand(words, i)
    if part is None:
        return None
    value, j, _hundred = part
    if j < len(words) and words[j] == "thousand":
        value, j = value * 1000, j + 1
        j_rest = j + 1 if j < len(words) and words[j] == "and" else j
        rest = _below_thousand(words, j_rest) if j_rest < len(words) else None
        if rest is not None:
            return str(value + rest[0]), rest[1]
        return str(value), j
    if words[i] in ("oh", "o", "zero"):
        return "0", i + 1
    return str(value), j


def _is_number_token(tok: str) -> bool:
    return tok[0].isdigit() or tok in NUMBER_WORDS


def _joins(toks: Sequence[str], i: int) -> bool:
    """Whether the separator at ``i`` sits between two number tokens (same run)."""
    j = i
    while j < len(toks) and (toks[j] in SEPARATOR_CHARS or toks[j] in SEPARATOR_WORDS):
        j += 1
    return j < len(toks) and _is_number_token(toks[j])


def _runs_of(toks: Sequence[str], join: bool = True) -> Iterator[str]:
    run: list[str] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if tok[0].isdigit():
            m = _ORDINAL_NUMERAL.fullmatch(tok)
            run.append(m.group(1) if m else tok)
            i += 1
            continue
        spoken = _number_at(toks, i) if tok in NUMBER_WORDS else None
        if spoken is not None:
            run.append(spoken[0])
            i = spoken[1]
            continue
        if join and run and (tok in SEPARATOR_CHARS or tok in SEPARATOR_WORDS) and _joins(toks, i):
            i += 1
            continue
        if run:
            yield "".join(run)
            run = []
        i += 1
    if run:
        yield "".join(run)


def digit_runs(text: str, join: bool = True) -> list[str]:
    """Every maximal run of number tokens in ``text`` as one digit string (with ``join``
    false, separators end a run: ``October twenty four, fifty four`` is ``24``, ``54``)."""
    return list(_runs_of(tokens(text), join))


# --------------------------------------------------------------------------- the checks
def _windows(digits: str, width: int = WINDOW) -> set[str]:
    if len(digits) <= width:
        return {digits}
    return {digits[k:k + width] for k in range(len(digits) - width + 1)}


def _digits_leak(digits: str, runs: Sequence[str]) -> bool:
    return any(w in run for w in _windows(digits) for run in runs)


def _compact_alnum(text: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", text.upper())


def _alnum_leak(value: str, text: str, runs: Sequence[str]) -> bool:
    if value in _compact_alnum(text) or value in _compact_alnum(_spoken_compact(text)):
        return True
    return any(_digits_leak(g, runs) for g in re.findall(r"\d{4,}", value))


def _expiry_leak(value: str, runs: Sequence[str]) -> bool:
    month, year = value.split("/")
    joined = {month + year, str(int(month)) + year, month + "20" + year}
    if any(j in run for j in joined for run in runs):
        return True
    return any(run in (year, "20" + year) for run in runs)


def _month_named(toks: Sequence[str], month: int) -> bool:
    return MONTHS[month - 1] in toks or MONTHS[month - 1][:3] in toks or (
        month == 9 and "sept" in toks)


def _dob_leak(value: str, text: str, runs: Sequence[str]) -> bool:
    year, month, day = value.split("-")
    m, d = int(month), int(day)
    yy = year[2:]
    joined = {year, month + day, day + month, str(m) + day, day + str(m)}
    joined |= {a + b + yy for ms in (month, str(m)) for ds in (day, str(d))
               for a, b in ((ms, ds), (ds, ms))}
    if any(j in run for j in joined for run in runs):
        return True
    return _month_named(tokens(text), m) and any(run.lstrip("0") == str(d) for run in runs)


_EMAIL_WORDS: Final = {"dot": ".", "at": "@", "underscore": "_", "dash": "-", "hyphen": "-",
                       "period": "."}


_EMAIL_SYMBOLS: Final = frozenset(".@_-+")


def _spoken_compact(text: str) -> str:
    """The text with e-mail words and number words mapped, and spaces and punctuation
    other than ``. @ _ - +`` removed."""
    toks = tokens(text)
    out: list[str] = []
    i = 0
    while i < len(toks):
        spoken = _number_at(toks, i) if toks[i] in NUMBER_WORDS else None
        if spoken is not None and toks[i] not in ("o",):
            out.append(spoken[0])
            i = spoken[1]
            continue
        tok = _EMAIL_WORDS.get(toks[i], toks[i])
        if tok.isalnum() or tok in _EMAIL_SYMBOLS:
            out.append(tok)
        i += 1
    return "".join(out)


def _email_leak(value: str, text: str) -> bool:
    local = value.lower().split("@", 1)[0]
    lowered = text.lower()
    if value.lower() in lowered or local in re.sub(r"\s+", "", lowered):
        return True
    return local in _spoken_compact(text)


def leaks(value: str, text: str) -> bool:
    """Whether ``value`` (canonical, see the module docstring) survives in ``text``."""
    runs = digit_runs(text)
    if "@" in value:
        return _email_leak(value, text)
    both = runs + digit_runs(text, join=False)   # a date's parts next to other numbers
    if re.fullmatch(r"\d\d/\d\d", value):
        return _expiry_leak(value, both)
    if re.fullmatch(r"\d{4}-\d\d-\d\d", value):
        return _dob_leak(value, text, both)
    if value.isdigit():
        return _digits_leak(value, runs)
    return _alnum_leak(value.upper(), text, runs)
