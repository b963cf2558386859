"""Checks every event a test's gateway wrote (JSONL sinks and per-call files) against the
committed event schema (gateway/events/events.schema.json)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from gateway.events.schema import SCHEMA_PATH
from tests.json_schema import Validator


@cache
def _validator() -> Validator:
    return Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def event_files(config: Mapping[str, Any]) -> list[Path]:
    """The JSONL sink files and per-call files a gateway with this config writes."""
    sinks = config.get("events", {}).get("sinks", [])
    files = [Path(s["path"]) for s in sinks if s.get("type") == "jsonl" and s.get("path")]
    state_dir = config.get("storage", {}).get("state_dir")
    if state_dir:
        files += sorted((Path(state_dir) / "calls").glob("*.jsonl"))
    return [f for f in files if f.is_file()]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:
        lines.pop()               # a torn last line: the process was killed mid-write
    yield from enumerate(lines, 1)


def schema_errors(config: Mapping[str, Any], limit: int = 20) -> tuple[int, list[str]]:
    """(events checked, errors as 'file:line: message')."""
    checked, errors = 0, []
    for path in event_files(config):
        for number, line in _lines(path):
            checked += 1
            try:
                problems = _validator().errors(json.loads(line))
            except ValueError as exc:
                problems = [f"not JSON: {exc}"]
            errors += [f"{path}:{number}: {p}" for p in problems]
    return checked, errors[:limit]
