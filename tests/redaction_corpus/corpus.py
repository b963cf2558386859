"""Reading the redaction corpus (``utterances.jsonl``, ``custom_patterns.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "utterances.jsonl"
PATTERNS = HERE / "custom_patterns.json"


@dataclass(frozen=True, slots=True)
class Label:
    entity: str
    turn: int
    value: str
    surface: str
    form: str


@dataclass(frozen=True, slots=True)
class Turn:
    channel: str
    text: str


@dataclass(frozen=True, slots=True)
class CorpusItem:
    id: str
    kind: str            # "pii" or "clean"
    source: str          # "generated" or "handwritten"
    tags: tuple[str, ...]
    turns: tuple[Turn, ...]
    labels: tuple[Label, ...]
    note: str = ""

    def labels_of(self, turn: int) -> tuple[Label, ...]:
        return tuple(label for label in self.labels if label.turn == turn)


def _item(raw: dict[str, Any]) -> CorpusItem:
    return CorpusItem(
        id=str(raw["id"]), kind=str(raw["kind"]), source=str(raw["source"]),
        tags=tuple(raw["tags"]), turns=tuple(Turn(t["channel"], t["text"]) for t in raw["turns"]),
        labels=tuple(Label(**label) for label in raw["labels"]), note=str(raw.get("note", "")))


def load(path: Path = CORPUS) -> list[CorpusItem]:
    return [_item(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class Pattern:
    name: str
    pattern: str
    tag: str


def custom_patterns(path: Path = PATTERNS) -> list[Pattern]:
    return [Pattern(p["name"], p["pattern"], p["tag"]) for p in json.loads(path.read_text())]
