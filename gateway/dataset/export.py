"""``export-dataset``'s run: stored, consented conversations -> a training set on disk.

1. **Find** the conversation documents started in ``[since, until)`` and their recordings
   (:mod:`gateway.dataset.sources`); a bad document or recording is a warning and a count,
   the others go on.
2. **Consent**: a withdrawn conversation, and one without a grant for ``purpose``,
   contributes nothing; of the others, only the channels with a grant.
3. **Segments**: each turn's redacted words (speakers pseudonymised under the dataset salt)
   through the core's segmenter (:func:`gateway.dataset.segment.cut_segments`), then the
   reviewers' corrections (``--corrections``, default ``<out>/corrections.jsonl``).
4. **Splits** by conversation, no speaker in two splits
   (:func:`gateway.dataset.split.assign_splits`).
5. **Write**: the audio of each segment (16 kHz mono, :mod:`gateway.dataset.audio`), the
   manifests (:mod:`gateway.dataset.formats`), ``README.md`` (the dataset card),
   ``review.jsonl`` (lowest confidence first) and ``export.json`` (the counts).

Everything an export writes is a function of its inputs and the salt: the same inputs give
the same segment ids, files and manifests.

Layer: shell.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from gateway import __version__
from gateway.batch.audio import probe_audio
from gateway.batch.formats import BadAudio
from gateway.config import GatewayConfig
from gateway.dataset import audio as audio_io
from gateway.dataset.card import CardInfo, ConsentInfo, dataset_card
from gateway.dataset.formats import SPLITS, Item, write_manifests
from gateway.dataset.model import RedactedPolicy, Segment, SegmentRules
from gateway.dataset.review import (
    Correction,
    CorrectionStats,
    apply_corrections,
    parse_corrections,
    review_line,
    review_list,
)
from gateway.dataset.segment import SegmentStats, cut_segments
from gateway.dataset.sources import (
    ConsentReader,
    Problem,
    Source,
    channel_columns,
    find_conversations,
    load_salt,
    utterances_of,
)
from gateway.dataset.speakers import hashed_id
from gateway.dataset.split import assign_splits, split_summary
from gateway.redaction.detect import detect

CORRECTIONS: Final = "corrections.jsonl"
REVIEW: Final = "review.jsonl"
SUMMARY: Final = "export.json"
CARD: Final = "README.md"
OUTPUTS: Final = (*SPLITS, "lhotse", CARD, REVIEW, SUMMARY,
                  *(f"{s}_manifest.json" for s in SPLITS))
"""What an export writes in its directory (``--force`` removes these, nothing else)."""
RATIOS: Final = (0.8, 0.1, 0.1)
"""train, dev, test: shares of the audio (by conversation, speakers kept apart)."""


class UsageError(ValueError):
    """Bad options or an output directory that is not empty (exit 2)."""


@dataclass(frozen=True, slots=True)
class ExportOptions:
    since: datetime
    until: datetime
    out: Path
    sources: tuple[Path, ...] = ()
    purpose: str = "asr_training"
    formats: tuple[str, ...] = ("nemo", "lhotse", "hf")
    audio_format: str = "flac"
    redacted: RedactedPolicy = "drop"
    min_s: float = 10.0
    max_s: float = 30.0
    force: bool = False
    corrections: Path | None = None
    review_n: int = 50


@dataclass(slots=True)
class Report:
    """What ``export.json`` says."""

    conversations_found: int = 0
    conversations_exported: int = 0
    excluded_no_consent: int = 0
    excluded_withdrawn: int = 0
    channels_without_consent: int = 0
    failed: list[Problem] = field(default_factory=list)
    turns_without_word_times: int = 0
    corrections: CorrectionStats | None = None
    policy_versions: set[str] = field(default_factory=set)
    channels_partial: int = 0
    source_rate_hz: int | None = None
    stats: SegmentStats = field(default_factory=SegmentStats)
    items: list[Item] = field(default_factory=list)
    split_warnings: list[str] = field(default_factory=list)
    corrections_refused_pii: list[int] = field(default_factory=list)

    def to_dict(self, options: ExportOptions) -> dict[str, Any]:
        return {
            "since": options.since.isoformat(), "until": options.until.isoformat(),
            "purpose": options.purpose, "formats": list(options.formats),
            "audio_format": options.audio_format, "redacted_policy": options.redacted,
            "min_s": options.min_s, "max_s": options.max_s,
            "conversations": {"found": self.conversations_found,
                              "exported": self.conversations_exported,
                              "excluded_no_consent": self.excluded_no_consent,
                              "excluded_withdrawn": self.excluded_withdrawn,
                              "failed": len(self.failed)},
            "channels_without_consent": self.channels_without_consent,
            "turns_without_word_times": self.turns_without_word_times,
            "corrections_refused_pii": self.corrections_refused_pii,
            "corrections": asdict(self.corrections) if self.corrections else None,
            "segments": {split: _split_counts([i for i in self.items if i.split == split])
                         for split in SPLITS},
            "split_warnings": self.split_warnings,
            "segmenter": asdict(self.stats)}


def _split_counts(items: Sequence[Item]) -> dict[str, Any]:
    by_channel: dict[str, dict[str, float]] = {}
    for i in items:
        c = by_channel.setdefault(i.segment.channel, {"segments": 0, "hours": 0.0})
        c["segments"] += 1
        c["hours"] += i.duration_s / 3600
    return {"segments": len(items), "hours": round(sum(i.duration_s for i in items) / 3600, 4),
            "conversations": len({i.segment.conversation for i in items}),
            "speakers": len({i.segment.speaker for i in items}),
            "channels": {k: {"segments": int(v["segments"]), "hours": round(v["hours"], 4)}
                         for k, v in sorted(by_channel.items())}}


# ------------------------------------------------------------------ the output directory
def prepare_out(options: ExportOptions) -> None:
    """An empty (or new) directory; one holding only the corrections file counts as empty.
    With ``force`` an earlier export's outputs are removed first (nothing else)."""
    out = options.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: not a directory")
    present = sorted(p.name for p in out.iterdir()) if out.exists() else []
    others = [n for n in present if n != CORRECTIONS]
    if others and not options.force:
        raise UsageError(f"--out {out} is not empty ({', '.join(others[:5])}"
                         f"{' ...' if len(others) > 5 else ''}); --force replaces an "
                         "earlier export's files there")
    for name in OUTPUTS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)


# ------------------------------------------------------------------ one conversation
@dataclass(slots=True)
class _Planned:
    source: Source
    key: str                          # hashed conversation id
    columns: dict[str, int]
    segments: list[Segment]


def _plan(source: Source, channels: frozenset[str], salt: bytes, rules: SegmentRules,
          report: Report) -> _Planned | None:
    """The conversation's segments of the consented ``channels`` (None: its recording
    cannot be read; the reason is in ``report.failed``)."""
    try:
        info = probe_audio(source.recording)
    except (BadAudio, OSError) as exc:
        report.failed.append(Problem(source.recording, f"bad recording: {exc}"))
        return None
    report.source_rate_hz = (info.rate_hz if report.source_rate_hz is None
                             else max(report.source_rate_hz, info.rate_hz))
    columns = channel_columns(source, info.channels)
    usable = frozenset(channels & set(columns))
    if not usable:
        wanted = ", ".join(sorted(channels))
        report.failed.append(Problem(source.recording, f"no column for {wanted} in a "
                                     f"{info.channels}-channel file"))
        return None
    utterances, no_words = utterances_of(source, usable, salt)
    report.turns_without_word_times += no_words
    key = hashed_id(salt, source.conversation_id)
    segments, stats = cut_segments(utterances, rules, conversation_key=key,
                                   recording_end_s=info.duration_s)
    report.stats = report.stats + stats
    return _Planned(source, key, columns, segments)


def _write_audio(plan: _Planned, splits: Mapping[str, str], options: ExportOptions,
                 report: Report) -> list[Item]:
    """The segments' audio files; nothing (and a failure) when the recording is bad."""
    try:
        recording = audio_io.read_recording(plan.source.recording)
    except (BadAudio, OSError) as exc:
        report.failed.append(Problem(plan.source.recording, f"bad recording: {exc}"))
        return []
    split = splits[plan.key]
    items = []
    for seg in plan.segments:
        rel = f"{split}/{seg.segment_id}.{options.audio_format}"
        samples = recording.cut(plan.columns[seg.channel], seg.start_s, seg.end_s)
        frames = audio_io.write_segment(options.out / rel, samples, options.audio_format)
        items.append(Item(seg, split, rel, frames))
    return items


# ------------------------------------------------------------------ the run
def _consented(sources: Sequence[Source], reader: ConsentReader, report: Report
               ) -> list[tuple[Source, frozenset[str]]]:
    out = []
    for source in sources:
        consent = reader.consent(source.conversation_id)
        if consent.withdrawn:
            report.excluded_withdrawn += 1
        elif not consent.channels & set(source.channels):
            report.excluded_no_consent += 1
        else:
            left_out = len(set(source.channels) - consent.channels)
            report.channels_without_consent += left_out
            report.channels_partial += bool(left_out)
            report.policy_versions |= consent.policy_versions
            out.append((source, consent.channels & frozenset(source.channels)))
    return out


def _roots(config: GatewayConfig, options: ExportOptions) -> list[tuple[Path, bool]]:
    """recordings_dir (when it exists: a gateway that never recorded has none) and each
    ``--source`` (which must be a directory)."""
    for path in options.sources:
        if not path.is_dir():
            raise UsageError(f"--source {path}: not a directory")
    recordings = config.storage.recordings_dir
    return ([(recordings, False)] if recordings.is_dir() else []) + [
        (p, True) for p in options.sources]


def run_export(config: GatewayConfig, options: ExportOptions, *, now: datetime,
               progress: Callable[[str], None] = lambda _line: None) -> Report:
    """The whole export (see the module docstring); raises :class:`UsageError` for bad
    options or an output directory in the way, nothing for a bad input. ``now`` dates the
    card."""
    rules = _rules(options)
    roots = _roots(config, options)
    prepare_out(options)
    salt = load_salt(config.dataset.salt_in(config.storage.state_dir))
    report = Report()
    sources, problems = find_conversations(roots, options.since, options.until)
    report.failed += problems
    report.conversations_found = len(sources)
    reader = ConsentReader(config.storage.state_dir, options.purpose)
    try:
        chosen = _consented(sources, reader, report)
    finally:
        reader.close()
    plans = [p for s, ch in chosen if (p := _plan(s, ch, salt, rules, report)) is not None]
    _apply_corrections(plans, options, report)
    splits = _splits(plans, salt, report)
    for n, plan in enumerate(plans, 1):
        items = _write_audio(plan, splits, options, report)
        report.items += items
        report.conversations_exported += bool(items)
        progress(f"conversations {n}/{len(plans)} | segments {len(report.items)} | audio "
                 f"{sum(i.duration_s for i in report.items) / 3600:.3f} h")
    _write_outputs(options, report, rules, now)
    return report


def _rules(options: ExportOptions) -> SegmentRules:
    if options.audio_format not in audio_io.FORMATS:
        raise UsageError(f"--audio-format must be flac or wav, not {options.audio_format!r}")
    if options.until <= options.since:
        raise UsageError("--until must be after --since")
    if options.review_n < 0:
        raise UsageError("--review-n must not be negative")
    try:
        return SegmentRules(min_s=options.min_s, max_s=options.max_s,
                            floor_s=min(SegmentRules().floor_s, options.min_s),
                            redacted=options.redacted)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


# ------------------------------------------------------------------ core steps
def _corrections_path(options: ExportOptions) -> Path | None:
    if options.corrections is not None:
        if not options.corrections.is_file():
            raise UsageError(f"--corrections {options.corrections}: no such file")
        return options.corrections
    default = options.out / CORRECTIONS
    return default if default.is_file() else None


def _apply_corrections(plans: Sequence[_Planned], options: ExportOptions,
                       report: Report) -> None:
    """The reviewers' corrections (a bad file is a usage error: exit 2, nothing written
    but the cleared directory)."""
    path = _corrections_path(options)
    if path is None:
        return
    try:
        corrections = parse_corrections(path.read_text(encoding="utf-8").splitlines())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"corrections {path}: {exc}") from None
    corrections, report.corrections_refused_pii = _without_pii(corrections)
    segments, report.corrections = apply_corrections(
        [s for p in plans for s in p.segments], corrections)
    for plan in plans:
        plan.segments = [s for s in segments if s.conversation == plan.key]


def _without_pii(corrections: dict[str, Correction]
                 ) -> tuple[dict[str, Correction], list[int]]:
    """A reviewer's text goes into the dataset as typed, so a fix whose text holds personal
    data (the redaction detectors, no context) is not applied: the segment keeps its
    redacted ASR text and the correction's line number is reported."""
    kept: dict[str, Correction] = {}
    refused: list[int] = []
    for key, c in corrections.items():
        if c.text is not None and detect(c.text.split()):
            refused.append(c.line)
        else:
            kept[key] = c
    return kept, sorted(refused)


def _splits(plans: Sequence[_Planned], salt: bytes, report: Report) -> dict[str, str]:
    speakers = {p.key: frozenset(s.speaker for s in p.segments) for p in plans}
    weights = {p.key: sum(s.duration_s for s in p.segments) for p in plans}
    splits = assign_splits(speakers, ratios=RATIOS, salt=salt, weights=weights)
    report.split_warnings = list(split_summary(speakers, splits, ratios=RATIOS).warnings)
    return splits


def _write_outputs(options: ExportOptions, report: Report, rules: SegmentRules,
                   now: datetime) -> None:
    out = options.out
    write_manifests(out, report.items, options.formats)
    audio = {i.segment.segment_id: i.audio for i in report.items}
    review = review_list([i.segment for i in report.items], n=options.review_n)
    (out / REVIEW).write_text("".join(review_line(r, audio=audio[r.segment_id]) + "\n"
                                      for r in review), encoding="utf-8")
    (out / CARD).write_text(_card(options, report, rules, now), encoding="utf-8")
    (out / SUMMARY).write_text(json.dumps(report.to_dict(options), indent=2) + "\n",
                               encoding="utf-8")


FORMAT_NAMES: Final = {"nemo": "NeMo manifest (JSONL)",
                       "lhotse": "Lhotse (recordings, supervisions)",
                       "hf": "Hugging Face audiofolder"}


def _card(options: ExportOptions, report: Report, rules: SegmentRules, now: datetime) -> str:
    consent = ConsentInfo(
        purposes=(options.purpose,), policy_versions=tuple(sorted(report.policy_versions)),
        consented=report.conversations_exported, excluded=report.excluded_no_consent,
        withdrawn=report.excluded_withdrawn, partial=report.channels_partial)
    return dataset_card(CardInfo(
        gateway_version=__version__, created_at=now.isoformat(timespec="seconds"),
        since=options.since.isoformat(), until=options.until.isoformat(),
        segments=[i.segment for i in report.items],
        splits={i.segment.conversation: i.split for i in report.items}, consent=consent,
        rules=rules, stats=report.stats,
        audio_format=f"16 kHz mono {options.audio_format.upper()}",
        formats=tuple(FORMAT_NAMES[f] for f in options.formats),
        source_rate_hz=report.source_rate_hz, split_warnings=tuple(report.split_warnings),
        corrections=report.corrections))
