"""bench.numwords: spoken numbers and digits fold to the same digit words (pure)."""

from __future__ import annotations

import pytest

from bench.accuracy import corpus_wer
from bench.numwords import fold_numbers
from tests.speech import normalise


@pytest.mark.parametrize(("words", "digits"), [
    ("forty five pounds", "45 pounds"),
    ("nineteen eighty", "1980"),
    ("two hundred and fifty pounds", "250 pounds"),
    ("one thousand two hundred and twenty two dollars", "1,222 dollars"),
    ("twenty seven station street", "27 station street"),
    ("two thousand and five", "2005"),
    ("two thousand five hundred", "2500"),
    ("number twelve", "number 12"),
])
def test_words_and_digits_fold_alike(words: str, digits: str) -> None:
    assert fold_numbers(normalise(words)) == fold_numbers(normalise(digits))


def test_digit_by_digit_readings_stay_digits() -> None:
    assert fold_numbers(normalise("four two seven")) == ["4", "2", "7"]
    assert fold_numbers(normalise("427")) == ["4", "2", "7"]


def test_words_that_are_not_parts_of_a_number_are_kept() -> None:
    assert fold_numbers(["and", "the", "hundred"]) == ["and", "the", "hundred"]
    assert fold_numbers(normalise("five hundred and then")) == ["5", "0", "0", "and", "then"]
    assert fold_numbers(normalise("a hundred")) == ["a", "hundred"]
    assert fold_numbers(normalise("ten percent off")) == ["1", "0", "percent", "off"]


def test_different_numbers_stay_different() -> None:
    assert fold_numbers(normalise("forty five")) != fold_numbers(normalise("fifty four"))
    assert fold_numbers(normalise("sixty")) != fold_numbers(normalise("16"))


def test_corpus_wer_folded_counts_only_real_errors() -> None:
    pairs = [("I paid forty five pounds in nineteen eighty", "I paid 45 pounds in 1980")]
    assert corpus_wer(pairs) > 0.3            # the plain figure counts the spelling
    assert corpus_wer(pairs, fold=True) == 0.0
    wrong = [("I paid forty five pounds", "I paid 55 pounds")]
    assert corpus_wer(wrong, fold=True) == pytest.approx(1 / 5)   # i paid 4 5 pounds
