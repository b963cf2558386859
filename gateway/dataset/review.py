"""Human-in-the-loop QA (issue 19): the review list and the corrections a person makes.

:func:`review_list` picks the ``n`` segments a person should listen to first: lowest mean
ASR confidence first; segments without a confidence (no word had one) come after all scored
ones, and segments already verified are left out; ties by segment id.

The **correction format** is JSON Lines, one segment per line, as :func:`review_line`
writes it::

    {"segment_id": "9b1f...", "action": null, "text": "my card is [CARD]",
     "asr_text": "my card is [CARD]", "confidence": 0.41, "conversation": "4c2a...",
     "channel": "customer", "speaker": "customer-3f9a1c2b", "start_s": 6.28, "end_s": 10.3,
     "audio": "audio/train/....flac"}

A person sets ``action`` to ``"ok"`` (the text is right), ``"fix"`` (after correcting
``text``) or ``"reject"`` (drop the segment: wrong speaker, noise, unredacted data); a line
left at ``null`` is not reviewed yet and ignored. Every other field is read-only context.
Blank lines are skipped. The next export reads the file with :func:`parse_corrections`
(a bad line raises :class:`CorrectionError` naming its line number) and applies it with
:func:`apply_corrections`: segment ids are stable, so a correction finds its segment in a
later export; ids not in the export are counted, not fatal. A fixed or confirmed segment is
``verified``; after a fix its ``words`` are still the ASR's.

Layer: pure core.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from gateway.dataset.model import Segment
from gateway.dataset.normalize import normalize

Action = Literal["fix", "ok", "reject"]
ACTIONS: tuple[Action, ...] = ("fix", "ok", "reject")


@dataclass(frozen=True, slots=True)
class ReviewItem:
    segment_id: str
    conversation: str
    channel: str
    speaker: str
    start_s: float
    end_s: float
    text: str
    confidence: float | None


@dataclass(frozen=True, slots=True)
class Correction:
    segment_id: str
    action: Action
    text: str | None        # the corrected text ("fix"), else None
    line: int               # where it was, for messages


@dataclass(slots=True)
class CorrectionStats:
    fixed: int = 0
    ok: int = 0
    rejected: int = 0
    unknown: int = 0        # corrections for segments not in this export


class CorrectionError(ValueError):
    """A correction line that cannot be used; the message starts with ``line N:``."""


def review_list(segments: Sequence[Segment], *, n: int) -> list[ReviewItem]:
    """The ``n`` unverified segments to review first (see the module doc)."""
    if n < 0:
        raise ValueError("n must not be negative")
    todo = sorted((s for s in segments if not s.verified),
                  key=lambda s: (s.confidence is None, s.confidence or 0.0, s.segment_id))
    return [ReviewItem(s.segment_id, s.conversation, s.channel, s.speaker, s.start_s,
                       s.end_s, s.text, s.confidence) for s in todo[:n]]


def review_line(item: ReviewItem, *, audio: str | None = None) -> str:
    """One JSON line of the correction file (no newline), ``action`` null."""
    record = {"segment_id": item.segment_id, "action": None, "text": item.text,
              "asr_text": item.text, "confidence": item.confidence,
              "conversation": item.conversation, "channel": item.channel,
              "speaker": item.speaker, "start_s": item.start_s, "end_s": item.end_s,
              "audio": audio}
    return json.dumps(record, ensure_ascii=False)


def parse_corrections(lines: Iterable[str]) -> dict[str, Correction]:
    """Segment id -> correction, for the reviewed lines (``action`` not null)."""
    out: dict[str, Correction] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        correction = _parse_line(number, line)
        if correction is None:
            continue
        if correction.segment_id in out:
            raise CorrectionError(f"line {number}: segment {correction.segment_id} is "
                                  f"already on line {out[correction.segment_id].line}")
        out[correction.segment_id] = correction
    return out


def _parse_line(number: int, line: str) -> Correction | None:
    def bad(why: str) -> CorrectionError:
        return CorrectionError(f"line {number}: {why}")

    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise bad(f"not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(record, dict):
        raise bad("not a JSON object")
    return _correction(cast(dict[str, Any], record), number, bad)


def _correction(record: Mapping[str, Any], number: int,
                bad: Any) -> Correction | None:
    segment_id, action, text = (record.get(k) for k in ("segment_id", "action", "text"))
    if not isinstance(segment_id, str) or not segment_id:
        raise bad("segment_id must be a non-empty string")
    if action is None:
        return None
    if action not in ACTIONS:
        raise bad(f"action must be 'fix', 'ok', 'reject' or null, not {action!r}")
    if action == "fix":
        if not isinstance(text, str) or not normalize(text):
            raise bad("action 'fix' needs the corrected text in 'text'")
        return Correction(segment_id, "fix", text, number)
    asr_text = record.get("asr_text")
    if action == "ok" and isinstance(asr_text, str) and text != asr_text:
        raise bad("the text was changed but the action is 'ok' (use 'fix')")
    return Correction(segment_id, cast(Action, action), None, number)


def apply_corrections(segments: Sequence[Segment], corrections: Mapping[str, Correction],
                      ) -> tuple[list[Segment], CorrectionStats]:
    """The segments with the corrections applied (rejected ones left out)."""
    stats = CorrectionStats()
    out: list[Segment] = []
    for seg in segments:
        c = corrections.get(seg.segment_id)
        if c is None:
            out.append(seg)
        elif c.action == "reject":
            stats.rejected += 1
        elif c.action == "ok":
            stats.ok += 1
            out.append(dataclasses.replace(seg, verified=True))
        else:
            stats.fixed += 1
            text = c.text or seg.text
            out.append(dataclasses.replace(seg, text=text, text_normalized=normalize(text),
                                           verified=True))
    stats.unknown = len(set(corrections) - {s.segment_id for s in segments})
    return out, stats
