"""ASR tokens to digit runs: numerals with separators, number words, mixtures, fillers,
quantities, and where a run ends."""

from __future__ import annotations

import random

import pytest

from gateway.redaction.numbers import DigitRun, digit_runs, has_digits, normalise, ordinal_value

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def runs_of(text: str) -> list[tuple[int, int, str]]:
    return [(r.start, r.end, r.digits) for r in digit_runs(text.split())]


@pytest.mark.parametrize(("text", "expected"), [
    # numerals as Whisper writes them
    ("4111 1111 1111 1111", [(0, 4, "4111111111111111")]),
    ("4,111, 111, 111, 111,", [(0, 4, "4111111111111")]),
    ("4111-1111-1111-1111", [(0, 1, "4111111111111111")]),
    ("1111.", [(0, 1, "1111")]),
    ("(555) 123-4567.", [(0, 2, "5551234567")]),
    ("555.123.4567", [(0, 1, "5551234567")]),
    ("+44 20 7946 0958", [(0, 4, "442079460958")]),
    ("123-45-6789", [(0, 1, "123456789")]),
    ("12/27", [(0, 1, "1227")]),
    ("1 2 3", [(0, 3, "123")]),
    # words, digit by digit
    ("four one one one", [(0, 4, "4111")]),
    ("Four, one, one, one.", [(0, 4, "4111")]),
    ("oh nine", [(0, 2, "09")]),
    ("zero zero seven", [(0, 3, "007")]),
    ("nought one", [(0, 2, "01")]),
    ("double one", [(0, 2, "11")]),
    ("triple five two", [(0, 3, "5552")]),
    ("treble oh", [(0, 2, "000")]),
    ("double 1 5", [(0, 3, "115")]),
    # tens and teens combine and concatenate
    ("forty one eleven", [(0, 3, "4111")]),
    ("forty-one eleven", [(0, 2, "4111")]),
    ("nineteen eighty five", [(0, 3, "1985")]),
    ("twenty twenty six", [(0, 3, "2026")]),
    ("twenty four seven", [(0, 3, "247")]),
    ("twenty", [(0, 1, "20")]),
    ("ten", [(0, 1, "10")]),
    ("oh nine twenty six", [(0, 4, "0926")]),
    # quantities
    ("one hundred and twenty", [(0, 4, "120")]),
    ("one hundred twenty three", [(0, 4, "123")]),
    ("forty one hundred", [(0, 3, "4100")]),
    ("nineteen hundred", [(0, 2, "1900")]),
    ("two thousand and five", [(0, 4, "2005")]),
    ("five thousand three hundred and two", [(0, 6, "5302")]),
    ("hundred", [(0, 1, "100")]),
    # mixtures
    ("4111 one one one", [(0, 4, "4111111")]),
    ("forty one 11 double one", [(0, 5, "411111")]),
    # fillers inside a run are absorbed, at its edges they are not
    ("four uh one - one um one", [(0, 7, "4111")]),
    ("zero nine slash two six", [(0, 5, "0926")]),
    ("uh four one", [(1, 3, "41")]),
    ("four one uh", [(0, 2, "41")]),
    ("4111 , 1111", [(0, 3, "41111111")]),
])
def test_surface_forms(text: str, expected: list[tuple[int, int, str]]) -> None:
    assert runs_of(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("my card is 4111 and then 1111", [(3, 4, "4111"), (6, 7, "1111")]),
    ("4111 and 1111", [(0, 1, "4111"), (2, 3, "1111")]),         # a stray "and" ends a run
    ("one hundred and change", [(0, 2, "100")]),                  # ... unless a number follows
    ("double trouble 5", [(2, 3, "5")]),                           # "double" needs a digit
    ("that one please", [(1, 2, "1")]),
    ("four one one one. call me", [(0, 4, "4111")]),
])
def test_runs_end_at_ordinary_words(text: str, expected: list[tuple[int, int, str]]) -> None:
    assert runs_of(text) == expected


@pytest.mark.parametrize("text", [
    "it is $19.99", "at 10:30", "the 14th", "around 10am", "code A123", "oh okay", "o k",
    "the first thing", "half past", "a million",
    "", "hello there",
])
def test_not_digit_runs(text: str) -> None:
    assert runs_of(text) == []


def test_groups_and_spoken() -> None:
    (ssn,) = digit_runs("123-45-6789".split())
    assert ssn.groups == (3, 2, 4) and not ssn.spoken
    (phone,) = digit_runs("(555) 123-4567".split())
    assert phone.groups == (3, 3, 4)
    (words,) = digit_runs("forty one eleven".split())
    assert words.groups == (2, 2) and words.spoken
    (mixed,) = digit_runs("4111 one".split())
    assert mixed.groups == (4, 1) and mixed.spoken


def test_digit_run_is_a_frozen_value() -> None:
    run = DigitRun(0, 1, "4")
    assert run == DigitRun(0, 1, "4", (), False)
    with pytest.raises(AttributeError):
        run.digits = "5"  # type: ignore[misc]


@pytest.mark.parametrize(("token", "expected"), [
    ("4", True), ("4,111,", True), ("14th", True), ("four", True), ("Four,", True),
    ("oh", True), ("twenty-one", True), ("hundred", True), ("card", False), ("", False),
    ("double", False), ("and", False), ("uh", False), ("-", False),
])
def test_has_digits(token: str, expected: bool) -> None:
    assert has_digits(token) is expected


@pytest.mark.parametrize(("token", "expected"), [
    ("first", 1), ("fourteenth", 14), ("14th", 14), ("3rd", 3), ("21st", 21),
    ("twenty-first", 21), ("thirtieth", 30), ("Fourteenth,", 14), ("fourteen", None),
    ("march", None), ("1985", None),
])
def test_ordinal_value(token: str, expected: int | None) -> None:
    assert ordinal_value(token) == expected


def test_normalise() -> None:
    assert normalise(" Four, ") == "four"
    assert normalise("(555)") == "555"
    assert normalise("4,111,") == "4,111"
    assert normalise("it's") == "it's"


# ------------------------------------------------------------------ properties (seeded)

def spoken_digit(rng: random.Random, d: str) -> str:
    if d == "0":
        return rng.choice(["zero", "oh", "0"])
    return rng.choice([WORDS[int(d)], d])


@pytest.mark.parametrize("seed", range(200))
def test_any_digit_string_read_digit_by_digit_is_one_run(seed: int) -> None:
    rng = random.Random(seed)
    digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 19)))
    if set(digits) == {"0"}:
        digits = "1" + digits
    spoken = [spoken_digit(rng, d) for d in digits]
    tokens = ["my", "number", "is", *spoken, "thanks"]
    assert digit_runs(tokens) == [
        DigitRun(3, 3 + len(spoken), digits, (1,) * len(digits), any(not t.isdigit()
                                                                       for t in spoken))]


@pytest.mark.parametrize("seed", range(200))
def test_any_grouped_numeral_keeps_its_digits(seed: int) -> None:
    rng = random.Random(seed)
    groups = ["".join(rng.choice("0123456789") for _ in range(rng.randint(1, 5)))
              for _ in range(rng.randint(1, 5))]
    sep = rng.choice([" ", ", ", "-", ".", " - "])
    tail = rng.choice(["", ".", ",", "?"])
    tokens = ["it's", *(sep.join(groups) + tail).split(), "ok"]
    (run,) = digit_runs(tokens)
    assert run.digits == "".join(groups)
    assert run.groups == tuple(len(g) for g in groups)
    assert (run.start, run.end) == (1, len(tokens) - 1)


@pytest.mark.parametrize("seed", range(100))
def test_runs_are_ordered_and_disjoint_on_any_token_soup(seed: int) -> None:
    rng = random.Random(seed)
    vocab = [*WORDS, "oh", "double", "and", "hundred", "thousand", "twenty", "forty",
             "eleven", "uh", "-", "card", "my", "4111", "12/27", "$5", "10:30", "14th", ","]
    tokens = [rng.choice(vocab) for _ in range(rng.randint(0, 40))]
    runs = digit_runs(tokens)
    for a, b in zip(runs, runs[1:], strict=False):
        assert a.end <= b.start
    for r in runs:
        assert 0 <= r.start < r.end <= len(tokens) and r.digits.isdigit()
        assert has_digits(tokens[r.start]) and has_digits(tokens[r.end - 1]) or (
            tokens[r.start] in ("double", "triple"))


def test_letters_for_zero_mixed_with_numerals_in_one_hyphenated_token() -> None:
    from gateway.redaction.numbers import digit_runs
    (run,) = digit_runs(["6-01-1,", "O-O-O-9,", "9-01-3,", "9-424-"])
    assert run.digits == "6011000990139424"
