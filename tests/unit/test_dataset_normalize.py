"""gateway.dataset.normalize: text the way NeMo recipes expect it (table driven)."""

from __future__ import annotations

import pytest

from gateway.dataset.normalize import normalize, tag_token

CASES = [
    # plain text
    ("Hello, World!", "hello world"),
    ("  lots   of\tspace\n", "lots of space"),
    ("Don't stop; it's 'quoted'.", "don't stop it's quoted"),
    ("state-of-the-art / A&B_c", "state of the art a and b c"),
    ("“smart” quotes — and ‘apostrophes’ can’t", "smart quotes and apostrophes can't"),
    # cardinals
    ("42", "forty two"),
    ("I have 3 cats", "i have three cats"),
    ("1,250 people", "one thousand two hundred fifty people"),
    ("1,000,000", "one million"),
    ("101", "one hundred one"),
    ("0", "zero"),
    ("order 00123", "order zero zero one two three"),
    ("ticket 12345678", "ticket one two three four five six seven eight"),
    # decimals, percent
    ("3.5 stars", "three point five stars"),
    ("pi is 3.14", "pi is three point one four"),
    ("15% off", "fifteen percent off"),
    ("2.5 % up", "two point five percent up"),
    # money
    ("$12.50", "twelve dollars fifty cents"),
    ("$1", "one dollar"),
    ("$0.99", "ninety nine cents"),
    ("$2.05 and $1,200", "two dollars five cents and one thousand two hundred dollars"),
    ("£5.01", "five pounds one penny"),
    ("€3", "three euros"),
    # ordinals
    ("the 1st and 22nd", "the first and twenty second"),
    ("on the 3rd", "on the third"),
    # times
    ("at 3:30", "at three thirty"),
    ("9:05 P.M.", "nine oh five p m"),
    ("10:00", "ten o'clock"),
    ("10:00 am", "ten a m"),
    # years in context, elsewhere cardinals
    ("in 2024", "in twenty twenty four"),
    ("born March 5, 1990", "born march five nineteen ninety"),
    ("since 1905", "since nineteen oh five"),
    ("2024 widgets", "two thousand twenty four widgets"),
    ("the 1990s and the 80's", "the nineteen nineties and the eighties"),
    ("2000s, 2010s, 1900s", "two thousands twenty tens nineteen hundreds"),
    ("24/7 support", "twenty four seven support"),
    # redaction tags: one token each
    ("my card is [CARD].", "my card is [card]"),
    ("[CARD ****1111] thanks", "[card] thanks"),
    ("[BANK_ACCOUNT] and [DTMF]", "[bank_account] and [dtmf]"),
    ("[] nothing", "nothing"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(("text", "_expected"), CASES)
def test_normalized_text_is_lowercase_words_without_digits_or_punctuation(
        text: str, _expected: str) -> None:
    out = normalize(text)
    assert out == out.lower() and out == " ".join(out.split())
    tokens = [t for t in out.split() if not (t.startswith("[") and t.endswith("]"))]
    assert all(ch.isalpha() or ch in "'_" for t in tokens for ch in t)
    assert normalize(out) == out          # idempotent


def test_tag_token() -> None:
    assert tag_token("[CARD]") == "[card]"
    assert tag_token("[CARD ****1111]") == "[card]"
