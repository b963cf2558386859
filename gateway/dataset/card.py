"""The dataset card (issue 19): a Markdown README for an exported training set.

:func:`dataset_card` writes what a user of the data must know: where it came from (the
gateway's version, the time range), the consent basis (purposes, policy versions, how many
conversations were exported, excluded for want of consent, withdrawn), hours and counts per
split and channel, the segment rules, the redaction policy and its counts per entity, how
the labels were made (ASR, human-verified share, corrections), known gaps and biases (some
found from the numbers: channel imbalance, few speakers, empty splits, unverified labels,
telephone-band audio; the exporter adds its own, e.g. synthetic voices) and a licence
placeholder. The exporter fills :class:`CardInfo`; time is a parameter.

Layer: pure core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.dataset.model import CHANNELS, Segment, SegmentRules
from gateway.dataset.review import CorrectionStats
from gateway.dataset.segment import SegmentStats
from gateway.dataset.split import SPLITS

LICENCE_PLACEHOLDER = ("TODO: choose a licence and the terms of use before sharing this "
                       "dataset; the consent purposes above limit what it may be used for.")
IMBALANCE = 1.5     # one channel with 1.5x the hours of another is reported
FEW_SPEAKERS = 10


@dataclass(frozen=True, slots=True)
class ConsentInfo:
    """The consent basis: conversations counted once each."""

    purposes: tuple[str, ...]
    policy_versions: tuple[str, ...]
    consented: int                  # exported (consent for the purpose, not withdrawn)
    excluded: int                   # no consent or refused: nothing exported
    withdrawn: int                  # consent withdrawn: removed from this export
    partial: int = 0                # of the consented: only some channels allowed


@dataclass(frozen=True, slots=True)
class CardInfo:
    """Everything the card says; ``splits`` maps ``Segment.conversation`` (the hashed id)
    to its split, ``segments`` are the exported ones (after corrections)."""

    gateway_version: str
    created_at: str                 # ISO 8601, from the exporter's clock
    since: str | None
    until: str | None
    segments: Sequence[Segment]
    splits: Mapping[str, str]
    consent: ConsentInfo
    rules: SegmentRules
    stats: SegmentStats
    name: str = "Call-centre speech (asr-gateway export)"
    audio_format: str = "16 kHz mono FLAC"
    formats: tuple[str, ...] = ("NeMo manifest (JSONL)", "Lhotse (recordings, supervisions)",
                                "Hugging Face audiofolder")
    source_rate_hz: int | None = None   # the recordings' rate (8000: telephone band)
    split_warnings: tuple[str, ...] = ()
    corrections: CorrectionStats | None = None
    known_gaps: tuple[str, ...] = ()
    licence: str = LICENCE_PLACEHOLDER


def dataset_card(info: CardInfo) -> str:
    """The card as Markdown (ends with a newline)."""
    sections = (_head(info), _consent(info.consent), _contents(info), _rules(info.rules),
                _redaction(info), _labels(info), _gaps(info),
                ["## Licence", "", info.licence])
    return "\n".join("\n".join(lines) for lines in sections).rstrip("\n") + "\n"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def _head(info: CardInfo) -> list[str]:
    span = f"from {info.since or 'the first stored call'} to {info.until or 'now'}"
    return [f"# {info.name}", "",
            f"Exported {info.created_at} by asr-gateway {info.gateway_version} from the "
            f"stored recordings and final transcripts of consented calls, {span}.",
            f"Audio: {info.audio_format}. Formats: {', '.join(info.formats)}.", ""]


def _consent(c: ConsentInfo) -> list[str]:
    return ["## Consent basis", "",
            f"- Purposes: {', '.join(c.purposes) or 'none recorded'}",
            f"- Policy versions: {', '.join(c.policy_versions) or 'none recorded'}",
            f"- Conversations exported (consented): {c.consented}"
            + (f", {c.partial} of them with some channels only" if c.partial else ""),
            f"- Excluded (no consent): {c.excluded}",
            f"- Withdrawn (removed): {c.withdrawn}",
            "- Calls without consent contribute nothing; a withdrawal removes a call from "
            "every later export.", ""]


def _cell(segs: Sequence[Segment]) -> str:
    convs, speakers = {s.conversation for s in segs}, {s.speaker for s in segs}
    return (f"{len(segs)} | {_hours(sum(s.duration_s for s in segs))} | {len(convs)} | "
            f"{len(speakers)}")


def _contents(info: CardInfo) -> list[str]:
    lines = ["## Contents", "",
             "| split | channel | segments | hours | conversations | speakers |",
             "|---|---|---|---|---|---|"]
    for split in SPLITS:
        of_split = [s for s in info.segments if info.splits.get(s.conversation) == split]
        for channel in _channels(info.segments):
            lines.append(f"| {split} | {channel} | "
                         f"{_cell([s for s in of_split if s.channel == channel])} |")
        lines.append(f"| {split} | all | {_cell(of_split)} |")
    lines += [f"| all | all | {_cell(info.segments)} |", ""]
    return lines


def _channels(segments: Sequence[Segment]) -> list[str]:
    seen = {s.channel for s in segments}
    return [c for c in CHANNELS if c in seen] + sorted(seen - set(CHANNELS))


def _rules(r: SegmentRules) -> list[str]:
    return ["## Segments", "",
            f"Cut per channel at utterance boundaries, one speaker each, never inside a "
            f"word; {r.min_s:g}-{r.max_s:g} s wanted (same-speaker utterances merged across "
            f"silences of at most {r.max_gap_s:g} s), {r.pad_s:g} s of padding kept around "
            f"the words; shorter ones kept when they could not be merged, under "
            f"{r.floor_s:g} s dropped. A segment's text is exactly the words inside it.", ""]


def _redaction(info: CardInfo) -> list[str]:
    policy = ("segments with redacted personal data are dropped"
              if info.rules.redacted == "drop" else
              "segments with redacted personal data are kept: the audio of the span is a "
              "1 kHz tone and the text holds the tag (e.g. `[card]` normalised)")
    stats = info.stats
    entities = sorted(set(stats.redacted_dropped) | set(stats.redacted_kept))
    lines = ["## Redaction", "",
             f"Text and audio were redacted by the gateway before storage; {policy}.", ""]
    if entities:
        lines += ["| entity | segments dropped | tags kept |", "|---|---|---|"]
        lines += [f"| {e} | {stats.redacted_dropped.get(e, 0)} | "
                  f"{stats.redacted_kept.get(e, 0)} |" for e in entities]
    else:
        lines.append("No redacted spans were found in the exported material.")
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(stats.dropped.items())) or "none"
    return [*lines, "", f"Segments kept: {stats.kept} ({stats.kept_short} shorter than "
            f"{info.rules.min_s:g} s); dropped by reason: {dropped}.", ""]


def _labels(info: CardInfo) -> list[str]:
    verified = sum(1 for s in info.segments if s.verified)
    lines = ["## Labels", "",
             f"Transcripts are the gateway's ASR output (final results), normalised for "
             f"NeMo (lowercase, no punctuation, numbers as words); {verified} of "
             f"{len(info.segments)} segments were checked by a person."]
    c = info.corrections
    if c is not None:
        lines.append(f"Corrections applied: {c.fixed} fixed, {c.ok} confirmed, "
                     f"{c.rejected} rejected, {c.unknown} for segments not in this export.")
    return [*lines, ""]


def _gaps(info: CardInfo) -> list[str]:
    found = [*_label_gaps(info), *_balance_gaps(info), *info.split_warnings, *info.known_gaps]
    return ["## Known gaps and biases", "", *(f"- {g}" for g in found or ["none found"]), ""]


def _label_gaps(info: CardInfo) -> list[str]:
    out = []
    unverified = sum(1 for s in info.segments if not s.verified)
    if unverified:
        out.append(f"{unverified} segments have ASR-generated labels not verified by a "
                   "person: they carry the recogniser's errors.")
    if info.source_rate_hz is not None and info.source_rate_hz <= 8000:
        out.append(f"Telephone-band audio (recorded at {info.source_rate_hz} Hz, resampled): "
                   "nothing above 4 kHz.")
    if info.rules.redacted == "drop" and info.stats.redacted_dropped:
        out.append("Utterances with personal data (card numbers, phone numbers ...) were "
                   "dropped, so such speech is under-represented.")
    return out


def _balance_gaps(info: CardInfo) -> list[str]:
    out = []
    hours = {c: sum(s.duration_s for s in info.segments if s.channel == c)
             for c in _channels(info.segments)}
    if len(hours) > 1 and min(hours.values()) * IMBALANCE < max(hours.values()):
        out.append("Channel imbalance: " + ", ".join(
            f"{c} {_hours(v)} h" for c, v in hours.items()) + ".")
    if len(hours) == 1:
        out.append(f"Only the {next(iter(hours))} channel is present.")
    speakers = len({s.speaker for s in info.segments})
    if info.segments and speakers < FEW_SPEAKERS:
        out.append(f"Only {speakers} distinct speakers: a model may learn their voices.")
    return out
