"""Utterances -> training segments (issue 19): per channel, one speaker, 10-30 s, whole words.

Per channel (utterances and their words sorted by start):

1. **Split**: an utterance is cut between two words where the silence is longer than
   ``max_gap_s`` (a segment never holds a longer silence), and, while it is longer than
   ``max_s`` (words plus padding), at its largest gap, preferring gaps that leave both sides
   at least ``min_s`` long (the one nearest the middle on a tie). Never inside a word.
2. **Merge**: consecutive pieces of the same channel are joined, greedily from the start,
   while the speaker is the same, the silence between them is at most ``max_gap_s`` and the
   result stays within ``max_s``. Under policy ``"drop"`` a piece with a redaction tag is
   never merged (so it does not take clean neighbours with it).
3. **Bounds**: first word start - ``pad_s`` .. last word end + ``pad_s``, clamped so the
   segment never reaches the previous or next word of its channel (nor within
   ``tag_margin_s`` of a tag word, the recorder's tone padding), nor below 0 or past
   ``recording_end_s``; in whole milliseconds, rounded outwards at its words and inwards at
   the neighbours. So the words whose times lie inside it are exactly its words, and its
   text is theirs: the utterance's own text (casing, punctuation) when it holds whole
   utterances whose text normalises the same as their words, else the words joined.
4. **Keep or drop** (counted in :class:`SegmentStats`): a piece with a tag under ``"drop"``
   (``redacted``, and per entity); a single word longer than ``max_s`` (``too_long``);
   shorter than ``floor_s`` (``too_short``). Shorter than ``min_s`` but at least
   ``floor_s``: kept, because it could not be merged (``kept_short``). An utterance without
   words is dropped (``no_words``): without times nothing can be aligned. A word written
   as a tag (``[CARD]``) whose ``tag`` is None counts as tagged (the name from its text),
   so a missed ``tag`` cannot let a redacted span into a "drop" export.

The greedy merge can leave a short last piece (9+9+9 s then 9 s); no rebalancing.

Layer: pure core.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.dataset.model import Segment, SegmentRules, Utterance, Word
from gateway.dataset.normalize import normalize, tag_token

TAG_MARGIN_S = 0.25   # the recorder's default audio_padding_ms around a redacted span
_TAG_WORD = re.compile(r"^\[[^\[\]]*\]$")


@dataclass(slots=True)
class SegmentStats:
    """What :func:`cut_segments` kept and dropped; add two with ``+``."""

    kept: int = 0
    kept_short: int = 0                 # kept, under min_s (could not be merged)
    kept_s: float = 0.0
    dropped: dict[str, int] = field(default_factory=dict)      # reason -> segments
    dropped_s: dict[str, float] = field(default_factory=dict)  # reason -> seconds
    redacted_dropped: dict[str, int] = field(default_factory=dict)  # entity -> segments
    redacted_kept: dict[str, int] = field(default_factory=dict)     # entity -> tags kept

    def drop(self, reason: str, seconds: float) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.dropped_s[reason] = self.dropped_s.get(reason, 0.0) + seconds

    def __add__(self, other: SegmentStats) -> SegmentStats:
        return SegmentStats(
            self.kept + other.kept, self.kept_short + other.kept_short,
            self.kept_s + other.kept_s, _sum(self.dropped, other.dropped),
            _sum(self.dropped_s, other.dropped_s),
            _sum(self.redacted_dropped, other.redacted_dropped),
            _sum(self.redacted_kept, other.redacted_kept))


_N = TypeVar("_N", int, float)


def _sum(a: dict[str, _N], b: dict[str, _N]) -> dict[str, _N]:
    out = dict(a)
    for key, value in b.items():
        out[key] = out[key] + value if key in out else value
    return out


@dataclass(frozen=True, slots=True)
class _Piece:
    speaker: str
    words: tuple[Word, ...]
    text: str | None = None     # the utterance's text, when the piece holds whole ones

    @property
    def start_s(self) -> float:
        return self.words[0].start_s

    @property
    def end_s(self) -> float:
        return self.words[-1].end_s

    @property
    def tagged(self) -> bool:
        return any(w.tag for w in self.words)


def segment_id(conversation: str, channel: str, start_s: float, end_s: float) -> str:
    """Stable id from the conversation (hashed id), the channel and the span of the
    segment's words (first word's start, last word's end, in ms): the same in every export,
    also when only the padding changes, so corrections find their segments again."""
    key = f"{conversation}/{channel}/{round(start_s * 1000)}/{round(end_s * 1000)}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def cut_segments(utterances: Sequence[Utterance], rules: SegmentRules, *,
                 conversation_key: str, recording_end_s: float | None = None,
                 tag_margin_s: float = TAG_MARGIN_S) -> tuple[list[Segment], SegmentStats]:
    """One conversation's segments (by start, then channel) and what was dropped.

    ``conversation_key``: the hashed conversation id the segments carry;
    ``recording_end_s``: the recording's length (no segment ends past it)."""
    stats = SegmentStats()
    segments: list[Segment] = []
    for channel, utts in _by_channel(utterances):
        groups = _merge([p for u in utts for p in _pieces(u, rules, stats)], rules)
        bounds = _Bounds(rules, recording_end_s, tag_margin_s)
        for i, group in enumerate(groups):
            prev = groups[i - 1].words[-1] if i else None
            nxt = groups[i + 1].words[0] if i + 1 < len(groups) else None
            start, end = bounds.of(group, prev, nxt)
            if _keep(group, start, end, rules, stats):
                segments.append(_segment(group, start, end, channel, conversation_key))
    segments.sort(key=lambda s: (s.start_s, s.channel))
    return segments, stats


def _by_channel(utterances: Sequence[Utterance]) -> Iterator[tuple[str, list[Utterance]]]:
    channels: dict[str, list[Utterance]] = {}
    for u in utterances:
        channels.setdefault(u.channel, []).append(u)
    for channel in sorted(channels):
        yield channel, sorted(channels[channel], key=lambda u: (u.start_s, u.end_s))


def _tagged(word: Word) -> Word:
    """A word written as a tag (``[CARD]``) but without ``tag`` gets it: a tag is a tag."""
    if word.tag is None and _TAG_WORD.match(word.text.strip()):
        return dataclasses.replace(word, tag=tag_token(word.text.strip())[1:-1] or "redacted")
    return word


def _pieces(u: Utterance, rules: SegmentRules, stats: SegmentStats) -> list[_Piece]:
    words = tuple(sorted((_tagged(w) for w in u.words if w.text.strip()),
                         key=lambda w: (w.start_s, w.end_s)))
    if not words:
        stats.drop("no_words", max(0.0, u.end_s - u.start_s))
        return []
    parts = _split(words, rules)
    if len(parts) == 1 and normalize(u.text) == normalize(_joined(words)):
        return [_Piece(u.speaker, words, u.text)]
    return [_Piece(u.speaker, part) for part in parts]


def _span(words: Sequence[Word], rules: SegmentRules) -> float:
    return words[-1].end_s - words[0].start_s + 2 * rules.pad_s


def _split(words: tuple[Word, ...], rules: SegmentRules) -> list[tuple[Word, ...]]:
    if len(words) < 2:
        return [words]
    gaps = [round(words[i + 1].start_s - words[i].end_s, 3) for i in range(len(words) - 1)]
    if max(gaps) > rules.max_gap_s:
        cut = max(range(len(gaps)), key=lambda i: (gaps[i], -abs(2 * i + 1 - len(gaps))))
    elif _span(words, rules) > rules.max_s:
        cut = _best_cut(words, gaps, rules)
    else:
        return [words]
    return _split(words[:cut + 1], rules) + _split(words[cut + 1:], rules)


def _best_cut(words: tuple[Word, ...], gaps: list[float], rules: SegmentRules) -> int:
    """The gap (index: after words[i]) to cut a too-long run at."""
    fair = [i for i in range(len(gaps)) if _span(words[:i + 1], rules) >= rules.min_s
            and _span(words[i + 1:], rules) >= rules.min_s]
    return max(fair or range(len(gaps)), key=lambda i: (gaps[i], -abs(2 * i + 1 - len(gaps))))


def _merge(pieces: list[_Piece], rules: SegmentRules) -> list[_Piece]:
    out: list[_Piece] = []
    for piece in pieces:
        if out and _can_merge(out[-1], piece, rules):
            a = out[-1]
            text = f"{a.text} {piece.text}" if a.text and piece.text else None
            out[-1] = _Piece(a.speaker, a.words + piece.words, text)
        else:
            out.append(piece)
    return out


def _can_merge(a: _Piece, b: _Piece, rules: SegmentRules) -> bool:
    if rules.redacted == "drop" and (a.tagged or b.tagged):
        return False
    return (a.speaker == b.speaker and b.start_s - a.end_s <= rules.max_gap_s
            and b.end_s - a.start_s + 2 * rules.pad_s <= rules.max_s)


@dataclass(frozen=True, slots=True)
class _Bounds:
    rules: SegmentRules
    recording_end_s: float | None
    tag_margin_s: float

    def of(self, group: _Piece, prev: Word | None, nxt: Word | None) -> tuple[float, float]:
        first, last = group.words[0], group.words[-1]
        room = (self.rules.max_s - (last.end_s - first.start_s)) / 2 - 0.001
        pad = min(self.rules.pad_s, max(0.0, room))     # a long single word: less padding
        lo = 0.0 if prev is None else prev.end_s + (self.tag_margin_s if prev.tag else 0.0)
        hi = math.inf if nxt is None else nxt.start_s - (self.tag_margin_s if nxt.tag else 0.0)
        if self.recording_end_s is not None:
            hi = min(hi, self.recording_end_s)
        # whole milliseconds: never cutting into the words, never reaching a neighbour
        start = min(_ms_floor(first.start_s), max(_ms_floor(first.start_s - pad), _ms_ceil(lo)))
        end = max(_ms_ceil(last.end_s), min(_ms_ceil(last.end_s + pad), _ms_floor(hi)))
        return start, end


def _ms_floor(t: float) -> float:
    return math.floor(round(t * 1000, 6)) / 1000 if math.isfinite(t) else t


def _ms_ceil(t: float) -> float:
    return math.ceil(round(t * 1000, 6)) / 1000


def _keep(group: _Piece, start: float, end: float, rules: SegmentRules,
          stats: SegmentStats) -> bool:
    tags = [w.tag for w in group.words if w.tag]
    reason = ("redacted" if tags and rules.redacted == "drop"
              else "too_long" if group.end_s - group.start_s > rules.max_s
              else "too_short" if end - start < rules.floor_s else None)
    if reason:
        stats.drop(reason, end - start)
        if reason == "redacted":
            _count(stats.redacted_dropped, set(tags))
        return False
    stats.kept += 1
    stats.kept_short += end - start < rules.min_s
    stats.kept_s += end - start
    _count(stats.redacted_kept, tags)
    return True


def _count(counts: dict[str, int], names: Sequence[str] | set[str]) -> None:
    for name in names:
        counts[name] = counts.get(name, 0) + 1


def _joined(words: Sequence[Word]) -> str:
    return " ".join(w.text.strip() for w in words)


def _segment(group: _Piece, start: float, end: float, channel: str,
             conversation: str) -> Segment:
    text = group.text if group.text is not None else _joined(group.words)
    scores = [w.confidence for w in group.words if w.confidence is not None]
    return Segment(
        segment_id=segment_id(conversation, channel, group.start_s, group.end_s),
        conversation=conversation,
        channel=channel, speaker=group.speaker, start_s=start, end_s=end, words=group.words,
        text=text, text_normalized=normalize(text),
        confidence=sum(scores) / len(scores) if scores else None,
        tags=tuple(w.tag for w in group.words if w.tag))
