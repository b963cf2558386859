"""Values and surface forms of the redaction corpus: checksums, value generators, and the
ways ASR writes a number (numerals with separators, Whisper's thousands commas, digit
words, "oh", "double", pairs like "forty one eleven", mixtures)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEEN_WORDS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
              "seventeen", "eighteen", "nineteen")
TENS_WORDS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty",
              "ninety")
ORDINALS = ("", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
            "ninth", "tenth", "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth",
            "sixteenth", "seventeenth", "eighteenth", "nineteenth", "twentieth")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")

CUSTOM_PATTERNS: tuple[tuple[str, str, str], ...] = (
    ("ni_number", r"\b[A-CEGHJ-PR-TW-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", "[NI]"),
    ("policy_number", r"\bPOL[- ]?\d{6}\b", ""),
)
"""(name, regex, tag): the ``[[redaction.custom]]`` patterns the corpus is run with (a UK
National Insurance number, an insurer's policy number)."""


@dataclass(frozen=True, slots=True)
class Pii:
    """A labelled value written as ``surface`` in a turn."""

    entity: str
    value: str
    surface: str
    form: str


Seg = str | Pii


# --------------------------------------------------------------------------- checksums
def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def luhn_complete(body: str) -> str:
    """``body`` plus the check digit that makes it Luhn-valid."""
    return body + next(str(c) for c in range(10) if luhn_valid(body + str(c)))


def aba_valid(digits: str) -> bool:
    if len(digits) != 9 or not digits.isdigit():
        return False
    weights = (3, 7, 1) * 3
    return sum(int(d) * w for d, w in zip(digits, weights, strict=True)) % 10 == 0


def _iban_number(text: str) -> int:
    return int("".join(str(int(ch, 36)) for ch in text))


def iban_valid(iban: str) -> bool:
    return _iban_number(iban[4:] + iban[:4]) % 97 == 1


def iban_make(country: str, bban: str) -> str:
    check = 98 - _iban_number(bban + country + "00") % 97
    return f"{country}{check:02d}{bban}"


# --------------------------------------------------------------------------- value generators
def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


CARD_PREFIXES: dict[str, tuple[tuple[str, ...], int]] = {
    "visa": (("4",), 16),
    "visa13": (("4",), 13),
    "mastercard": (("51", "52", "53", "54", "55", "2221", "2300", "2720"), 16),
    "amex": (("34", "37"), 15),
    "discover": (("6011", "644", "645", "649", "65"), 16),
}
TEST_PANS: dict[str, tuple[str, ...]] = {
    "visa": ("4111111111111111", "4012888888881881", "4242424242424242",
             "4000056655665556"),
    "mastercard": ("5555555555554444", "5105105105105100", "2223003122003222"),
    "amex": ("378282246310005", "371449635398431", "378734493671000"),
    "discover": ("6011111111111117", "6011000990139424", "6445644564456445"),
}


def card(rng: random.Random, brand: str) -> str:
    prefixes, length = CARD_PREFIXES[brand]
    prefix = rng.choice(prefixes)
    return luhn_complete(prefix + digits(rng, length - len(prefix) - 1))


def garble(rng: random.Random, pan: str) -> str:
    """A PAN as ASR might mangle it: one digit changed (Luhn fails) or one dropped."""
    if rng.random() < 0.6:
        while True:
            k = rng.randrange(len(pan))
            out = pan[:k] + rng.choice("0123456789".replace(pan[k], "")) + pan[k + 1:]
            if not luhn_valid(out):
                return out
    k = rng.randrange(len(pan))
    out = pan[:k] + pan[k + 1:]
    return out if not luhn_valid(out) else out[:-1] + str((int(out[-1]) + 1) % 10)


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"


def routing(rng: random.Random) -> str:
    while True:
        body = rng.choice(("01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11",
                           "12", "21", "22", "26", "31", "32")) + digits(rng, 6)
        for c in "0123456789":
            if aba_valid(body + c):
                return body + c


def iban(rng: random.Random, country: str) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    bank = "".join(rng.choice(letters) for _ in range(4))
    bbans = {"GB": bank + digits(rng, 14), "DE": digits(rng, 18), "NL": bank + digits(rng, 10),
             "FR": digits(rng, 23), "ES": digits(rng, 20), "IE": bank + digits(rng, 14)}
    return iban_make(country, bbans[country])


def us_phone(rng: random.Random) -> str:
    """A fictional US number (555-0100..0199) in a real-looking area code."""
    area = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
    return f"{area}555{rng.randint(100, 199):04d}"


def uk_phone(rng: random.Random) -> str:
    """Ofcom's drama numbers: London 020 7946 0xxx or mobile 07700 900xxx (national form)."""
    if rng.random() < 0.5:
        return f"0207946{rng.randint(0, 999):04d}"
    return f"07700900{rng.randint(0, 999):03d}"


# --------------------------------------------------------------------------- number words
def say_digit(d: str, zero: str = "oh") -> str:
    return zero if d == "0" else DIGIT_WORDS[int(d)]


def say_below_100(n: int) -> str:
    if n < 10:
        return DIGIT_WORDS[n]
    if n < 20:
        return TEEN_WORDS[n - 10]
    tens, unit = divmod(n, 10)
    return TENS_WORDS[tens] + ("" if unit == 0 else " " + DIGIT_WORDS[unit])


def say_year(year: int) -> str:
    hi, lo = divmod(year, 100)
    if 2000 <= year < 2010:
        return "two thousand" + ("" if lo == 0 else " and " + DIGIT_WORDS[lo])
    if lo == 0:
        return say_below_100(hi) + " hundred"
    return say_below_100(hi) + " " + (say_below_100(lo) if lo >= 10 else "oh " + DIGIT_WORDS[lo])


def say_ordinal(n: int) -> str:
    if n <= 20:
        return ORDINALS[n]
    tens, unit = divmod(n, 10)
    if unit == 0:
        return TENS_WORDS[tens][:-1] + "ieth"
    return TENS_WORDS[tens] + " " + ORDINALS[unit]


def numeral_ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def words_digits(ds: str, zero: str = "oh") -> str:
    """``four one one one`` (``zero`` for 0: "oh" or "zero")."""
    return " ".join(say_digit(d, zero) for d in ds)


def words_repeats(ds: str, rng: random.Random) -> str:
    """Digit words with "double"/"triple" for repeated digits (as callers read them)."""
    out, i = [], 0
    while i < len(ds):
        j = i
        while j < len(ds) and ds[j] == ds[i] and j - i < 3:
            j += 1
        n = j - i
        word = say_digit(ds[i], rng.choice(("oh", "oh", "zero")))
        if n >= 2 and rng.random() < 0.85:
            out.append(("double " if n == 2 else "triple ") + word)
        else:
            out.extend([word] * n)
        i = j
    return " ".join(out)


def say_pair(pair: str) -> str:
    if pair[0] == "0":
        return "oh " + say_digit(pair[1])
    return say_below_100(int(pair))


def pairs_group(group: str, whole: bool = True) -> str:
    """A group read in pairs: ``4111`` -> ``forty one eleven``; ``4100`` -> ``forty one
    hundred``; ``4000`` -> ``four thousand``; ``0042`` -> ``double oh forty two``; odd
    lengths lead with one digit."""
    if len(group) % 2:
        rest = " " + pairs_group(group[1:], whole=False) if len(group) > 1 else ""
        return say_digit(group[0]) + rest
    if whole and len(group) == 4 and group[0] != "0" and group[1:] == "000":
        return say_digit(group[0]) + " thousand"
    if whole and len(group) == 4 and group[2:] == "00" and group[0] != "0" and group[1] != "0":
        return say_below_100(int(group[:2])) + " hundred"
    chunks = [group[k:k + 2] for k in range(0, len(group), 2)]
    return " ".join("double oh" if c == "00" else say_pair(c) for c in chunks)


def split_groups(ds: str, sizes: Sequence[int]) -> list[str]:
    out, k = [], 0
    for size in sizes:
        out.append(ds[k:k + size])
        k += size
    if k < len(ds):
        out.append(ds[k:])
    return out


def card_groups(pan: str) -> list[str]:
    if len(pan) == 15:
        return split_groups(pan, (4, 6, 5))
    if len(pan) == 13:
        return split_groups(pan, (4, 3, 3, 3))
    return split_groups(pan, (4,) * (len(pan) // 4))


def whisper_commas(ds: str, spaced: bool) -> str:
    """Whisper writing a digit stream as one big number: ``4,111,111,111,111,111`` or,
    with ``spaced``, ``4,111, 111, 111, 111, 111`` (issue 16's example)."""
    head = len(ds) % 3 or 3
    parts = [ds[:head]] + [ds[k:k + 3] for k in range(head, len(ds), 3)]
    if not spaced:
        return ",".join(parts)
    return ",".join(parts[:2]) + "".join(", " + p for p in parts[2:])


def spelled(text: str, rng: random.Random) -> str:
    """Letters one by one and digits as words: ``GB82`` -> ``G B eight two``."""
    return " ".join(say_digit(ch, rng.choice(("oh", "zero"))) if ch.isdigit() else ch.upper()
                    for ch in text)


def mixed_groups(groups: Sequence[str], rng: random.Random) -> str:
    """Some groups as numerals, others as digit words or pairs (never all numerals)."""
    styles = [rng.choice(("num", "words", "pairs")) for _ in groups]
    if all(s == "num" for s in styles):
        styles[rng.randrange(len(groups))] = "words"
    if all(s != "num" for s in styles):
        styles[rng.randrange(len(groups))] = "num"
    out = []
    for g, style in zip(groups, styles, strict=True):
        out.append(g if style == "num" else words_digits(g) if style == "words"
                   else pairs_group(g))
    return ", ".join(out) if rng.random() < 0.5 else " ".join(out)


def digit_surface(groups: Sequence[str], form: str, rng: random.Random) -> str:
    """One digit string (given in its natural groups) written in ``form``."""
    ds = "".join(groups)
    writers = {
        "spaced": lambda: " ".join(groups),
        "hyphens": lambda: "-".join(groups),
        "plain": lambda: ds,
        "commas": lambda: ", ".join(groups),
        "whisper_commas": lambda: whisper_commas(ds, spaced=False),
        "whisper_commas_spaced": lambda: whisper_commas(ds, spaced=True),
        "digits_spaced": lambda: " ".join(ds),
        "words": lambda: ", ".join(words_digits(g, rng.choice(("oh", "zero")))
                                   for g in groups),
        "words_flat": lambda: words_digits(ds, rng.choice(("oh", "zero"))),
        "repeats": lambda: ", ".join(words_repeats(g, rng) for g in groups),
        "pairs": lambda: ", ".join(pairs_group(g) for g in groups),
        "mixed": lambda: mixed_groups(groups, rng),
        "periods": lambda: ". ".join(groups),
    }
    return writers[form]()


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]
