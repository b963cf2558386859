"""The training-dataset export's value types (issue 19): words, utterances, segments, rules.

Times are seconds on the recording's timeline (the conversation's, as the summary document's
``turns``). Everything is frozen: the exporter builds :class:`Utterance` values from the
summary documents / final transcripts, :func:`gateway.dataset.segment.cut_segments` turns
them into :class:`Segment` values, and the writers (manifests, card, review list) read them.

Layer: pure core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CHANNELS: tuple[str, ...] = ("agent", "customer")
RedactedPolicy = Literal["drop", "tone"]


@dataclass(frozen=True, slots=True)
class Word:
    """One ASR word; ``tag`` is the entity name ("card") when the word is a redaction tag
    such as ``[CARD]`` (one word spanning the entity's words), else None."""

    text: str
    start_s: float
    end_s: float
    confidence: float | None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Utterance:
    """One final of one channel: ``text`` is the redacted, unnormalised final text and
    ``speaker`` the participant's pseudonym (:func:`gateway.dataset.speakers.pseudonym`)."""

    conversation_id: str
    channel: str
    speaker: str
    start_s: float
    end_s: float
    words: tuple[Word, ...]
    text: str
    confidence: float | None


@dataclass(frozen=True, slots=True)
class SegmentRules:
    """How utterances become segments (see :mod:`gateway.dataset.segment`).

    ``min_s``/``max_s``: the wanted duration; ``pad_s``: silence kept before the first and
    after the last word; ``max_gap_s``: the longest silence merged inside a segment;
    ``floor_s``: segments shorter than this are dropped (``too_short``) even when they
    cannot be merged; ``redacted``: a segment holding a redaction tag is dropped, or kept
    (its audio is the recorder's tone) with the tag in its text and in ``tags``."""

    min_s: float = 10.0
    max_s: float = 30.0
    pad_s: float = 0.2
    max_gap_s: float = 2.0
    floor_s: float = 1.0
    redacted: RedactedPolicy = "drop"

    def __post_init__(self) -> None:
        if not 0 <= self.floor_s <= self.min_s <= self.max_s or self.max_s <= 0:
            raise ValueError("segment rules need 0 <= floor_s <= min_s <= max_s, max_s > 0")
        if self.pad_s < 0 or self.max_gap_s < 0:
            raise ValueError("pad_s and max_gap_s must not be negative")
        if self.redacted not in ("drop", "tone"):
            raise ValueError(f"redacted must be 'drop' or 'tone', not {self.redacted!r}")


@dataclass(frozen=True, slots=True)
class Segment:
    """One training example: a span of one channel, one speaker.

    ``segment_id`` is stable (the same conversation, channel and word times give the same
    id in every export: :func:`gateway.dataset.segment.segment_id`); ``conversation`` is
    the hashed conversation id (:func:`gateway.dataset.speakers.hashed_id`), never the real
    one. ``text`` is exactly the words inside ``start_s``..``end_s`` (a person's text after
    a "fix"), redacted and unnormalised; ``text_normalized`` is
    :func:`gateway.dataset.normalize.normalize` of it; ``confidence`` the mean word
    confidence (None when no word has one); ``tags`` the entity names of the redaction tags
    in it (policy "tone"), in order; ``verified``: a person checked or corrected the text
    (:mod:`gateway.dataset.review`)."""

    segment_id: str
    conversation: str
    channel: str
    speaker: str
    start_s: float
    end_s: float
    words: tuple[Word, ...]
    text: str
    text_normalized: str
    confidence: float | None
    tags: tuple[str, ...] = ()
    verified: bool = False

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s
