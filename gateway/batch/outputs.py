"""The outputs of one transcribed file: which, where, and their contents.

Each file gives ``<out>/<relative path>.<format>`` (the input's name with the format added:
``calls/a.wav`` -> ``calls/a.wav.json``, so ``a.wav`` and ``a.flac`` never clash) for each
format asked, and always the JSON:

- ``json``: the conversation document (``SummaryDocument`` via ``to_wire``, the schema of
  ``gateway/events/events.schema.json``), the same shape as a live call's
  ``.summary.json``;
- ``vtt``: WebVTT (:func:`gateway.analytics.summary.to_webvtt`);
- ``srt``: SubRip (:func:`to_srt`: a numbered cue per turn, ``HH:MM:SS,mmm`` times, the
  speaker before the text);
- ``txt``: the speaker-labelled transcript (:func:`gateway.analytics.summary.to_text`).

Layer: pure core.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from gateway.analytics.summary import speaker_label, timestamp, to_text, to_webvtt
from gateway.events.types import SummaryDocument, to_wire

FORMATS: Final = ("json", "vtt", "srt", "txt")


def output_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The formats to write, in :data:`FORMATS` order, JSON always among them; ValueError
    for one not known."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown output format(s) {', '.join(unknown)}: "
                         f"{', '.join(FORMATS)} are written")
    wanted = {"json", *formats}
    return tuple(f for f in FORMATS if f in wanted)


def parse_formats(text: str) -> tuple[str, ...]:
    """``"json,vtt"`` (the command line's ``--format``) -> ``("json", "vtt")``."""
    return output_formats([part.strip().lower() for part in text.split(",") if part.strip()])


def output_paths(out_dir: Path, relative: Path, formats: Sequence[str]) -> dict[str, Path]:
    """Where each format of the file at ``relative`` (to its root) goes."""
    return {fmt: out_dir / relative.parent / f"{relative.name}.{fmt}"
            for fmt in output_formats(formats)}


def srt_timestamp(seconds: float) -> str:
    """``HH:MM:SS,mmm`` (SubRip)."""
    return timestamp(seconds).replace(".", ",")


def to_srt(doc: SummaryDocument) -> str:
    """SubRip: a numbered cue per turn, in start order, ``Agent: text``."""
    blocks = []
    for number, turn in enumerate(doc.turns, 1):
        end_s = max(turn.end_s, turn.start_s + 0.001)    # a cue must end after it starts
        text = " ".join(turn.text.split())
        blocks.append(f"{number}\n{srt_timestamp(turn.start_s)} --> {srt_timestamp(end_s)}\n"
                      f"{speaker_label(turn.speaker)}: {text}\n")
    return "\n".join(blocks)


def to_json(doc: SummaryDocument) -> str:
    return json.dumps(to_wire(doc), indent=2, ensure_ascii=False) + "\n"


def render(doc: SummaryDocument, fmt: str) -> str:
    """One output's contents."""
    if fmt == "json":
        return to_json(doc)
    if fmt == "vtt":
        return to_webvtt(doc)
    if fmt == "srt":
        return to_srt(doc)
    if fmt == "txt":
        return to_text(doc)
    raise ValueError(f"unknown output format {fmt!r}")
