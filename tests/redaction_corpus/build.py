"""Build the labelled redaction corpus: ``python -m tests.redaction_corpus.build``.

Writes ``utterances.jsonl`` (one item a line, see README.md) and ``custom_patterns.json``
next to this file. Deterministic: one seeded ``random.Random``; the same code gives the
same file byte for byte (``--check`` compares instead of writing).

Generated items draw values (Luhn-valid PANs of each brand, SSNs, ABA routing numbers with
their checksum, IBANs with their mod-97 check digits, fictional phone numbers, e-mail
addresses, dates) and write them in the surface forms ASR produces; hand-written items
(``handwritten.py``) are whole dialogues. Every label carries the exact ``surface`` it was
written as, and the build checks each against the shared leak check: the value leaks from
its turn as written, and no longer leaks once that surface is replaced by a tag (so the
check can neither miss a label nor blame a value on the text around it).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.redaction_corpus import handwritten
from tests.redaction_corpus.clean import clean_items
from tests.redaction_corpus.forms import (
    CUSTOM_PATTERNS,
    Pii,
    Seg,
    aba_valid,
    iban_valid,
    luhn_valid,
)
from tests.redaction_corpus.generators import GENERATORS

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "utterances.jsonl"
PATTERNS = HERE / "custom_patterns.json"
SEED = 16


@dataclass(slots=True)
class Item:
    id: str
    kind: str                           # "pii" or "clean"
    turns: list[tuple[str, list[Seg]]]  # (channel, segments)
    tags: list[str] = field(default_factory=list)
    source: str = "generated"
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        turns, labels = [], []
        for index, (channel, segs) in enumerate(self.turns):
            turns.append({"channel": channel, "text": "".join(_text(s) for s in segs)})
            labels += [{"entity": s.entity, "turn": index, "value": s.value,
                        "surface": s.surface, "form": s.form}
                       for s in segs if isinstance(s, Pii)]
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "source": self.source,
                               "tags": sorted(set(self.tags)), "turns": turns,
                               "labels": labels}
        if self.note:
            out["note"] = self.note
        return out


def _text(seg: Seg) -> str:
    return seg.surface if isinstance(seg, Pii) else seg


def _check_label(item: dict[str, Any], label: dict[str, Any]) -> list[str]:
    from tests.redaction_corpus.leaks import leaks
    text = item["turns"][label["turn"]]["text"]
    where = f"{item['id']} turn {label['turn']} {label['entity']} {label['value']!r}"
    problems = []
    if label["surface"] not in text:
        problems.append(f"{where}: surface {label['surface']!r} not in {text!r}")
    if not leaks(label["value"], text):
        problems.append(f"{where}: does not leak from its own text {text!r}")
    if leaks(label["value"], text.replace(label["surface"], " [X] ")):
        problems.append(f"{where}: still leaks once {label['surface']!r} is tagged")
    problems += _check_value(where, label)
    return problems


def _check_value(where: str, label: dict[str, Any]) -> list[str]:
    entity, value, form = label["entity"], label["value"], label["form"]
    checks: dict[str, Callable[[str], bool]] = {
        "card": luhn_valid, "routing": aba_valid, "iban": iban_valid}
    check = checks.get(entity)
    if check is None or form.startswith(("garbled", "group")):
        return []
    return [] if check(value) else [f"{where}: {entity} checksum fails"]


def check(items: Sequence[dict[str, Any]]) -> list[str]:
    """Every problem of the corpus (an empty list: it is consistent)."""
    problems: list[str] = []
    ids = [i["id"] for i in items]
    if len(ids) != len(set(ids)):
        problems.append("duplicate ids")
    for item in items:
        if item["kind"] == "clean" and item["labels"]:
            problems.append(f"{item['id']}: clean item with labels")
        if item["kind"] == "pii" and not item["labels"]:
            problems.append(f"{item['id']}: pii item without labels")
        for label in item["labels"]:
            problems += _check_label(item, label)
    return problems


def build(seed: int = SEED) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    items: list[Item] = []
    for generate in (*GENERATORS, clean_items):
        items += [Item(i, kind, turns, tags) for i, kind, turns, tags in generate(rng)]
    for i, kind, turns, tags, note in handwritten.items():
        items.append(Item(i, kind, turns, tags, source="handwritten", note=note))
    return [item.to_json() for item in items]


def render(items: Sequence[dict[str, Any]]) -> str:
    return "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)


def patterns_json() -> str:
    return json.dumps([{"name": n, "pattern": p, "tag": t} for n, p, t in CUSTOM_PATTERNS],
                      indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true",
                   help="compare with the committed files instead of writing them")
    p.add_argument("--seed", type=int, default=SEED,
                   help="another seed: a held-out variant of the generated items (new "
                        "values and choices, same forms), written to --out")
    p.add_argument("--out", type=Path, default=None,
                   help="write the items here instead (not the committed corpus)")
    args = p.parse_args(argv)
    items = build(args.seed)
    problems = check(items)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    text, patterns = render(items), patterns_json()
    if args.out is not None:
        args.out.write_text(text)
        print(f"{len(items)} items written to {args.out}")
        return 0
    if args.seed != SEED:
        print("a held-out seed needs --out (the committed corpus is seed 16)", file=sys.stderr)
        return 2
    if args.check:
        same = CORPUS.read_text() == text and PATTERNS.read_text() == patterns
        print("up to date" if same else "utterances.jsonl differs from build.py's output")
        return 0 if same else 1
    CORPUS.write_text(text)
    PATTERNS.write_text(patterns)
    print(f"{len(items)} items written to {CORPUS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
