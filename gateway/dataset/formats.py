"""The manifests of an export, per split, for three toolkits.

The audio of split ``S`` lies in ``<out>/S/<segment_id>.flac`` (or ``.wav``); every format
points at those files, none copies them.

- **NeMo** (``nemo``): ``<out>/S_manifest.json``, JSON lines: ``audio_filepath`` relative to
  the manifest's directory (``train/<id>.flac``: NeMo resolves a relative path against the
  manifest's directory, so the dataset can be moved whole), ``duration`` (seconds, of the
  file written), ``text`` (normalised), ``text_raw`` (redacted, unnormalised), ``speaker``,
  ``channel``, ``call_id`` (the hashed conversation id), ``confidence``, ``segment_id``,
  ``tags``, ``verified``, ``source_start_s``/``source_end_s`` (where the segment lies in
  its conversation's recording; not ``offset``, which NeMo reads as a seek into the file).
- **Lhotse** (``lhotse``): ``<out>/lhotse/recordings_S.jsonl.gz`` and
  ``supervisions_S.jsonl.gz``, the dicts ``Recording.to_dict()`` and
  ``SupervisionSegment.to_dict()`` give (one recording and one supervision per segment,
  the same id); a recording's ``source`` is the file's absolute path (Lhotse reads a
  relative one from the working directory, not the manifest's).
- **Hugging Face** (``hf``): the ``audiofolder`` layout: ``<out>/S/metadata.jsonl`` with
  ``file_name`` (relative to it) and the columns above; ``load_dataset("audiofolder",
  data_dir=out)`` finds the splits by the folder names.

Layer: shell.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.dataset.audio import RATE_HZ
from gateway.dataset.model import Segment

FORMATS: Final = ("nemo", "lhotse", "hf")
SPLITS: Final = ("train", "dev", "test")
LANGUAGE: Final = "en"


@dataclass(frozen=True, slots=True)
class Item:
    """One segment as written: its split, its audio (relative to the output directory)
    and the audio's length in frames at 16 kHz."""

    segment: Segment
    split: str
    audio: str
    frames: int

    @property
    def duration_s(self) -> float:
        return round(self.frames / RATE_HZ, 4)


def parse_formats(text: str) -> tuple[str, ...]:
    """``nemo,lhotse,hf`` (any order, any subset; ``all``) in the canonical order."""
    asked = {f.strip().lower() for f in text.split(",") if f.strip()}
    if "all" in asked:
        asked = set(FORMATS)
    unknown = sorted(asked - set(FORMATS))
    if unknown or not asked:
        raise ValueError(f"--formats takes {', '.join(FORMATS)} (comma-separated), "
                         f"not {text!r}")
    return tuple(f for f in FORMATS if f in asked)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _columns(item: Item) -> dict[str, Any]:
    s = item.segment
    return {"duration": item.duration_s, "text": s.text_normalized, "text_raw": s.text,
            "speaker": s.speaker, "channel": s.channel, "call_id": s.conversation,
            "confidence": _rounded(s.confidence), "segment_id": s.segment_id,
            "tags": list(s.tags), "verified": s.verified,
            "source_start_s": s.start_s, "source_end_s": s.end_s}


def nemo_line(item: Item) -> dict[str, Any]:
    return {"audio_filepath": item.audio, **_columns(item)}


def hf_line(item: Item) -> dict[str, Any]:
    return {"file_name": Path(item.audio).name, **_columns(item)}


def lhotse_recording(item: Item, out: Path) -> dict[str, Any]:
    return {"id": item.segment.segment_id,
            "sources": [{"type": "file", "channels": [0],
                         "source": str((out / item.audio).resolve())}],
            "sampling_rate": RATE_HZ, "num_samples": item.frames,
            "duration": item.frames / RATE_HZ, "channel_ids": [0]}


def lhotse_supervision(item: Item) -> dict[str, Any]:
    s = item.segment
    return {"id": s.segment_id, "recording_id": s.segment_id, "start": 0.0,
            "duration": item.frames / RATE_HZ, "channel": 0, "text": s.text_normalized,
            "language": LANGUAGE, "speaker": s.speaker,
            "custom": {"text_raw": s.text, "channel_name": s.channel,
                       "call_id": s.conversation, "confidence": _rounded(s.confidence),
                       "tags": list(s.tags), "verified": s.verified,
                       "source_start_s": s.start_s, "source_end_s": s.end_s}}


def _dumps(line: Mapping[str, Any]) -> str:
    return json.dumps(line, ensure_ascii=False, sort_keys=False) + "\n"


def _write_lines(path: Path, lines: Iterable[Mapping[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(_dumps(line) for line in lines), encoding="utf-8")
    tmp.replace(path)


def _write_gzip(path: Path, lines: Iterable[Mapping[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".part")
    data = "".join(_dumps(line) for line in lines).encode("utf-8")
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                               filename="") as f:
        f.write(data)            # mtime 0, no name: the same items give the same bytes
    tmp.replace(path)


def write_manifests(out: Path, items: Sequence[Item], formats: Sequence[str]
                    ) -> list[Path]:
    """Every manifest of ``formats`` for every split (an empty split gets empty ones, so a
    recipe's paths always exist); the paths written."""
    written: list[Path] = []
    for split in SPLITS:
        mine = [i for i in items if i.split == split]
        if "nemo" in formats:
            written.append(out / f"{split}_manifest.json")
            _write_lines(written[-1], (nemo_line(i) for i in mine))
        if "hf" in formats and mine:        # audiofolder: a split is a folder with audio
            (out / split).mkdir(parents=True, exist_ok=True)
            written.append(out / split / "metadata.jsonl")
            _write_lines(written[-1], (hf_line(i) for i in mine))
        if "lhotse" in formats:
            (out / "lhotse").mkdir(parents=True, exist_ok=True)
            written.append(out / "lhotse" / f"recordings_{split}.jsonl.gz")
            _write_gzip(written[-1], (lhotse_recording(i, out) for i in mine))
            written.append(out / "lhotse" / f"supervisions_{split}.jsonl.gz")
            _write_gzip(written[-1], (lhotse_supervision(i) for i in mine))
    return written
