"""Issue 16's correctness goals on the labelled corpus, as text (``bench redaction``'s text
mode: every item's turns as finals through the real Redactor): card numbers 100 % recall,
every entity at least 95 %, at least 95 % of the PII-free items unchanged. Speed is the
bench's business, not asserted here.

Also the corpus itself: the committed file is what ``build.py`` writes, every label's
value leaks from its turn as written and stops leaking once its surface is tagged, and the
harness finds every label when nothing is redacted (a pass-through stand-in)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.redaction import text_mode
from gateway.events.processing import ProcessorBase
from tests.redaction_corpus import build
from tests.redaction_corpus.corpus import CORPUS, PATTERNS, load
from tests.redaction_corpus.leaks import digit_runs, leaks


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return text_mode(load(), repeats=1)


def _leaks_of(result: dict[str, Any], entity: str | None = None) -> str:
    rows = [row for row in result["leaks"] if entity is None or row["entity"] == entity]
    lost = [row for row in result["lost"] if entity is None or row["entity"] == entity]
    return "\n".join([f"{r['id']} turn {r['turn']} {r['entity']}/{r['form']}: "
                      f"{r['surface']!r} -> {r['output']!r}" for r in rows]
                     + [f"{r['id']} turn {r['turn']} {r['entity']}: lost" for r in lost])


def test_card_recall_is_100pct(result: dict[str, Any]) -> None:
    (card,) = [row for row in result["entities"] if row["entity"] == "card"]
    assert card["labels"] >= 150
    assert card["recall"] == 1.0, _leaks_of(result, "card")


def test_every_entity_recall_is_at_least_95pct(result: dict[str, Any]) -> None:
    below = {row["entity"]: row["recall"] for row in result["entities"]
             if row["recall"] < 0.95}
    assert not below, f"recall below 95 %: {below}\n{_leaks_of(result)}"


def test_precision_on_pii_free_items_is_at_least_95pct(result: dict[str, Any]) -> None:
    clean = result["clean"]
    assert clean["items"] >= 120
    false = "\n".join(f"{r['id']} turn {r['turn']}: {r['text']!r} -> {r['output']!r}"
                      for r in clean["false_redactions"])
    assert clean["precision"] >= 0.95, false


HELD_OUT_SEEDS = (1016, 2016)


@pytest.mark.parametrize("seed", HELD_OUT_SEEDS)
def test_goals_hold_on_held_out_variants(seed: int, tmp_path: Path) -> None:
    """The same forms with other values and choices (``build.py --seed``): detectors tuned
    on the committed file must not owe their figures to its particular numbers."""
    path = tmp_path / "heldout.jsonl"
    path.write_text(build.render(build.build(seed)))
    held = text_mode(load(path))
    low = {r["entity"]: r["recall"] for r in held["entities"]
           if r["recall"] < (1.0 if r["entity"] == "card" else 0.95)}
    assert not low and held["clean"]["precision"] >= 0.95, (
        f"seed {seed}: {low}, precision {held['clean']['precision']}\n{_leaks_of(held)}")


def test_every_turn_comes_out_once(result: dict[str, Any]) -> None:
    assert result["lost"] == [] and result["finals_unmatched"] == 0


def test_committed_corpus_is_what_build_writes() -> None:
    items = build.build()
    assert build.check(items) == []
    assert CORPUS.read_text() == build.render(items), "run python -m tests.redaction_corpus.build"
    assert PATTERNS.read_text() == build.patterns_json()
    kinds = [i["kind"] for i in items]
    assert kinds.count("pii") >= 250 and kinds.count("clean") >= 120


def test_harness_finds_every_label_when_nothing_is_redacted() -> None:
    passthrough = text_mode(load(), processor=ProcessorBase())
    assert all(row["recall"] == 0.0 for row in passthrough["entities"])
    assert passthrough["clean"]["precision"] == 1.0


@pytest.mark.parametrize(("value", "text"), [
    ("4111111111111111", "4,111, 111, 111, 111, 111."),
    ("4111111111111111", "forty one eleven, eleven eleven, eleven eleven, eleven eleven"),
    ("4111111111111111", "four triple one, one one one one, 1111 double one one one"),
    ("4111111111111111", "it's [CARD] 1111"),              # four digits left are a leak
    ("6011000990139424", "six oh one one, double oh oh nine, nine oh one three, 9424"),
    ("4155550132", "(415) 555-0132"),
    ("442079460958", "plus four four two oh seven nine four six oh nine five eight"),
    ("09/27", "September twenty seven"),
    ("09/27", "oh nine slash two seven"),
    ("1985-03-14", "the fourteenth of March, nineteen eighty five"),
    ("1985-03-14", "the fourteenth of March, [DOB]"),      # day and month are a leak
    ("john.smith@example.com", "john dot smith at example dot com"),
    ("jsmith42@gmail.com", "j s m i t h forty two at gmail dot com"),
    ("GB82WEST12345698765432", "G B eight two W E S T one two three four, 5698 7654 32"),
    ("AB123456C", "AB 12 34 56 C"),
])
def test_leak_check_finds_the_value_in_asr_forms(value: str, text: str) -> None:
    assert leaks(value, text)


@pytest.mark.parametrize(("value", "text"), [
    ("4111111111111111", "it's [CARD], thanks"),
    ("4111111111111111", "order 4110 and 1112"),
    ("09/27", "[EXPIRY], in September"),                  # the month alone is not
    ("1985-03-14", "[DOB], I'm 39"),
    ("john.smith@example.com", "it's [EMAIL], john"),
    ("442079460958", "+44 [PHONE]"),
])
def test_leak_check_passes_redacted_text(value: str, text: str) -> None:
    assert not leaks(value, text)


def test_digit_runs_join_separators_and_number_words() -> None:
    assert digit_runs("4,111, 111 and two thousand and five, then 8:30") == [
        "41111112005", "830"]
    assert digit_runs("nineteen eighty five, the [DOB] twenty-first") == ["1985", "21"]
