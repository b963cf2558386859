"""Transcript text the way NeMo ASR recipes expect it (issue 19).

``normalize("I paid $12.50 on the 3rd, at 3:30 - 15% off!")`` is
``"i paid twelve dollars fifty cents on the third at three thirty fifteen percent off"``:

- **redaction tags** (``[CARD]``, ``[CARD ****1111]``, ``[DTMF]``: any ``[...]``) become one
  lowercase token of their first word, ``[card]``: the audio there is the recorder's tone,
  so the model learns one symbol for it (and no digits of a "last4" tag reach the labels);
  a tokenizer must keep ``[``/``]`` or the exporter drops tagged segments;
- **money**: ``$12.50`` -> "twelve dollars fifty cents", ``$1`` -> "one dollar", ``£5`` ->
  "five pounds", ``€0.99`` -> "ninety nine cents";
- **percent**: ``15%``, ``2.5 %`` -> "fifteen percent", "two point five percent";
- **times**: ``3:30`` -> "three thirty", ``9:05 pm`` -> "nine oh five p m", ``10:00`` ->
  "ten o'clock", ``10:00 a.m.`` -> "ten a m";
- **ordinals**: ``1st``, ``22nd`` -> "first", "twenty second";
- **years**: a 4-digit number from 1100 to 2099 after "in", "since", "by", "until", "from",
  "year" or a month name -> "twenty twenty four", "nineteen oh five" (elsewhere a cardinal);
  decades: ``1990s``, ``80's`` -> "nineteen nineties", "eighties";
- **decimals**: ``3.5`` -> "three point five" (digits after the point one by one);
- **cardinals**: ``42`` -> "forty two", ``1,250`` -> "one thousand two hundred fifty" (no
  "and", as NeMo's English text normalisation writes them); a number with a leading zero
  or of more than 6 digits (an order or reference number) is read digit by digit, "zero"
  for 0;
- then lowercase, ``&`` -> "and", hyphens, slashes and underscores -> spaces, all other
  punctuation removed except an apostrophe inside a word ("don't"), whitespace collapsed.

Number words come from ``num2words`` (English).

Layer: pure core.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from num2words import num2words  # type: ignore[import-untyped]

_TAG = re.compile(r"\[([^\[\]]*)\]")
_MONEY = re.compile(r"([$£€])\s?(\d[\d,]*)(?:\.(\d{1,2}))?(?!\d)")
_PERCENT = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?%")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b(?:\s*([ap])\.?\s?m\b\.?)?", re.IGNORECASE)
_ORDINAL = re.compile(r"\b(\d[\d,]*)(st|nd|rd|th)\b", re.IGNORECASE)
_MONTHS = ("january february march april may june july august september october november "
           "december jan feb mar apr jun jul aug sep sept oct nov dec")
_YEAR = re.compile(r"\b(in|since|by|until|from|year|" + _MONTHS.replace(" ", "|")
                   + r")(\s+(?:\d{1,2}(?:st|nd|rd|th)?,?\s+)?)(1[1-9]\d\d|20\d\d)\b",
                   re.IGNORECASE)
_DECADE = re.compile(r"\b((?:1[1-9]|20)?[1-9]0|1[1-9]00|2000)'?s\b")
_DECIMAL = re.compile(r"(?<![\d.])(\d[\d,]*)\.(\d+)\b")
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?!\d)|\d+")
_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")
_PUNCT = re.compile(r"[^\w\s']")
_SEPARATORS = re.compile(r"[-‐‑‒–—/_]")
_SPACES = re.compile(r"\s+")
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"),
             "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_MAX_CARDINAL_DIGITS = 6
_OCLOCK = " o'clock"


def _words(text: str) -> str:
    """num2words output as plain words: no "and", commas or hyphens."""
    text = _SEPARATORS.sub(" ", text.replace(",", " "))
    return " ".join(w for w in text.split() if w != "and")


def cardinal(n: int) -> str:
    return _words(num2words(n))


def _digits(text: str) -> str:
    return " ".join(_DIGITS[int(d)] for d in text if d.isdigit())


def _number(text: str) -> str:
    plain = text.replace(",", "")
    if "," not in text and (len(plain) > _MAX_CARDINAL_DIGITS
                            or (len(plain) > 1 and plain[0] == "0")):
        return _digits(plain)
    return cardinal(int(plain))


def _money(m: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCY[m.group(1)]
    whole, cents = int(m.group(2).replace(",", "")), int((m.group(3) or "0").ljust(2, "0"))
    parts = [f"{cardinal(whole)} {one if whole == 1 else many}"] if whole or not cents else []
    if cents:
        parts.append(f"{cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return f" {' '.join(parts)} "


def _decimal(m: re.Match[str]) -> str:
    return f" {_number(m.group(1))} point {_digits(m.group(2))} "


def _percent(m: re.Match[str]) -> str:
    value = m.group(1)
    spoken = _DECIMAL.sub(_decimal, value) if "." in value else _number(value)
    return f" {spoken.strip()} percent "


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 24 or minute > 59:
        return f" {cardinal(hour)} {cardinal(minute)} "
    meridiem = f" {m.group(3).lower()} m" if m.group(3) else ""
    if minute == 0:
        return f" {cardinal(hour)}{meridiem or _OCLOCK} "
    tail = f"oh {cardinal(minute)}" if minute < 10 else cardinal(minute)
    return f" {cardinal(hour)} {tail}{meridiem} "


def _ordinal(m: re.Match[str]) -> str:
    return f" {_words(num2words(int(m.group(1).replace(',', '')), to='ordinal'))} "


def _year(m: re.Match[str]) -> str:
    return f"{m.group(1)}{m.group(2)}{_words(num2words(int(m.group(3)), to='year'))}"


def _decade(m: re.Match[str]) -> str:
    n = int(m.group(1))
    words = _words(num2words(n, to="year") if n >= 1000 else num2words(n)).split()
    last = words[-1]
    words[-1] = f"{last[:-1]}ies" if last.endswith("y") else f"{last}s"
    return f" {' '.join(words)} "


_STEPS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (_MONEY, _money), (_PERCENT, _percent), (_TIME, _time), (_ORDINAL, _ordinal),
    (_YEAR, _year), (_DECADE, _decade), (_DECIMAL, _decimal),
    (_NUMBER, lambda m: f" {_number(m.group(0))} "),
)


def _plain(text: str) -> str:
    """Normalise text without tags."""
    text = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'")
    for pattern, spoken in _STEPS:
        text = pattern.sub(spoken, text)
    text = _SEPARATORS.sub(" ", text.lower().replace("&", " and "))
    text = _APOSTROPHE.sub(" ", _PUNCT.sub(" ", text))
    return _SPACES.sub(" ", text).strip()


def tag_token(tag: str) -> str:
    """``[CARD ****1111]`` -> ``[card]``; ``[]`` -> "" (nothing to say)."""
    words = tag.strip("[]").split()
    name = _PUNCT.sub("", words[0].lower()) if words else ""
    return f"[{name}]" if name else ""


def normalize(text: str) -> str:
    """The text as a NeMo manifest's ``text`` (see the module doc)."""
    pieces = _TAG.split(text)   # text, tag body, text, tag body, ...
    out = [_plain(p) if i % 2 == 0 else tag_token(f"[{p}]") for i, p in enumerate(pieces)]
    return " ".join(p for p in out if p)
