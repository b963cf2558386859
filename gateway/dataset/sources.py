"""Where an export's material comes from: the stored conversation documents, their
recordings, and the consent store's decisions.

:func:`find_conversations` walks ``storage.recordings_dir`` (``*.summary.json``, the live
conversations) and any extra source trees (``--source DIR``: also the ``<file>.json``
documents that batch transcription writes) for documents whose conversation started in
``[since, until)``; each is paired with its recording (the document's ``recording``, else a
WAV/FLAC of the same stem beside it) and its channel layout (:func:`channel_columns`).
:func:`consented` asks the consent store which channels may be exported for a purpose.
:func:`utterances_of` turns a document's turns (with their word times) into the core's
:class:`~gateway.dataset.model.Utterance` values, speakers pseudonymised
(:func:`speaker_identities`).

Nothing here raises for a bad file: a document that does not parse, has no recording or
no word times is returned as a :class:`Problem` (path and reason) and the others go on.

Layer: shell.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from gateway.dataset.model import CHANNELS, Utterance, Word
from gateway.dataset.speakers import hashed_id, pseudonym

SUMMARY_SUFFIX: Final = ".summary.json"
AUDIO_SUFFIXES: Final = (".wav", ".flac")
LIVE_COLUMNS: Final = {"agent": 0, "customer": 1}   # the recorder's stereo layout
BATCH_FROM: Final = "file:"


@dataclass(frozen=True, slots=True)
class Problem:
    """An input that could not be used, and why (a warning, never a crash)."""

    path: Path
    reason: str


@dataclass(frozen=True, slots=True)
class Source:
    """One stored conversation: its document and its recording."""

    document_path: Path
    document: Mapping[str, Any]
    conversation_id: str
    started_at: float
    recording: Path

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels that have turns, in the core's order."""
        spoken = {t.get("speaker") for t in self.document.get("turns", ())}
        return tuple(c for c in CHANNELS if c in spoken)


@dataclass(frozen=True, slots=True)
class Consent:
    """What the consent store allows for one conversation."""

    channels: frozenset[str]
    withdrawn: bool
    policy_versions: frozenset[str] = frozenset()
    """The policy versions of the grants in force (for the dataset card)."""


# ------------------------------------------------------------------ times
def parse_time(text: str) -> datetime:
    """An ISO 8601 date or date and time; without a zone it is UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or time: {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ------------------------------------------------------------------ finding documents
def _documents(root: Path, *, batch: bool) -> Iterator[Path]:
    """Summary documents under ``root`` (sorted); with ``batch`` also ``<audio>.json``."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            lower = name.lower()
            if lower.endswith(SUMMARY_SUFFIX) or (
                    batch and lower.endswith(tuple(s + ".json" for s in AUDIO_SUFFIXES))):
                yield Path(dirpath) / name


def _load(path: Path) -> Mapping[str, Any] | str:
    """The document, or why it cannot be used."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read: {exc}"
    except json.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(doc, dict) or not isinstance(doc.get("conversation_id"), str):
        return "not a conversation document (no conversation_id)"
    if not isinstance(doc.get("started_at"), int | float) or not isinstance(
            doc.get("turns"), list):
        return "not a conversation document (no started_at or turns)"
    return doc


def _recording(path: Path, doc: Mapping[str, Any]) -> Path | None:
    """The document's recording: its ``recording`` path (relative to the document when not
    absolute), else an audio file of the same stem beside the document."""
    named = doc.get("recording")
    candidates: list[Path] = []
    if isinstance(named, str) and named:
        p = Path(named)
        candidates += [p] if p.is_absolute() else [path.parent / p, p]
        candidates.append(path.parent / p.name)
    stem = path.name[: -len(SUMMARY_SUFFIX)] if path.name.endswith(SUMMARY_SUFFIX) else ""
    candidates += [path.parent / (stem + s) for s in AUDIO_SUFFIXES if stem]
    return next((c for c in candidates if c.is_file()), None)


def find_conversations(roots: Sequence[tuple[Path, bool]], since: datetime, until: datetime
                       ) -> tuple[list[Source], list[Problem]]:
    """The conversations that started in ``[since, until)`` under ``roots`` (each a
    directory and whether batch documents count there), oldest first; a conversation
    found twice (a document copied into a source tree) is taken once."""
    lo, hi = since.timestamp(), until.timestamp()
    found: dict[str, Source] = {}
    problems: list[Problem] = []
    for root, batch in roots:
        if not root.is_dir():
            problems.append(Problem(root, "not a directory"))
            continue
        for path in _documents(root, batch=batch):
            doc = _load(path)
            if isinstance(doc, str):
                problems.append(Problem(path, doc))
                continue
            started = float(doc["started_at"])
            if not lo <= started < hi or doc["conversation_id"] in found:
                continue
            recording = _recording(path, doc)
            if recording is None:
                problems.append(Problem(path, "its recording is missing "
                                        f"({doc.get('recording') or 'none named'})"))
                continue
            found[doc["conversation_id"]] = Source(path, doc, doc["conversation_id"],
                                                   started, recording)
    return sorted(found.values(), key=lambda s: (s.started_at, s.conversation_id)), problems


# ------------------------------------------------------------------ layout and consent
def channel_columns(source: Source, file_channels: int) -> dict[str, int]:
    """Which column of the recording each channel is: the recorder's stereo layout (agent
    left, customer right); a batch document's call lists its channels in the file's column
    order (``--left``, ``--mono-channel``); a mono file is its one channel."""
    calls = source.document.get("calls") or []
    batch = [c for c in calls if str(c.get("from") or "").startswith(BATCH_FROM)]
    if batch and batch[0].get("channels"):
        names = [str(n) for n in batch[0]["channels"]]
        return {n: i for i, n in enumerate(names) if i < file_channels}
    if file_channels == 1:
        spoken = source.channels
        return {spoken[0]: 0} if len(spoken) == 1 else {}
    return dict(LIVE_COLUMNS)


class ConsentReader:
    """The consent store of a state directory, read-only in effect (a store that does not
    exist yet grants nothing)."""

    def __init__(self, state_dir: Path, purpose: str) -> None:
        from gateway.consent.store import FILE_NAME, ConsentStore

        self.purpose = purpose
        self._store = (ConsentStore.for_state_dir(state_dir)
                       if (state_dir / FILE_NAME).exists() else None)

    def consent(self, conversation_id: str) -> Consent:
        if self._store is None:
            return Consent(frozenset(), False)
        if self._store.withdrawals(conversation_id):
            return Consent(frozenset(), True)
        channels = self._store.exportable_channels(conversation_id, purpose=self.purpose)
        versions = {r.policy_version for r in self._store.status(conversation_id)
                    if r.granted and r.purpose == self.purpose and r.channel in channels}
        return Consent(channels, False, frozenset(versions))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


# ------------------------------------------------------------------ utterances
def speaker_identities(doc: Mapping[str, Any]) -> dict[str, str]:
    """What identifies the person on each channel, for the pseudonym: the agent's
    ``X-Agent-Id`` (``calls[].agent_id``) or SIPREC participant id when the document has
    one, so one agent has one pseudonym across conversations; otherwise (and always for
    the customer) the conversation itself."""
    conversation = str(doc["conversation_id"])
    ids = {c: f"conversation:{conversation}:{c}" for c in CHANNELS}
    for call in doc.get("calls") or []:
        if call.get("agent_id") and "agent" in (call.get("channels") or ()):
            ids["agent"] = f"agent_id:{call['agent_id']}"
            return ids
    for party in doc.get("participants") or []:
        if party.get("channel") == "agent" and party.get("participant_id"):
            ids["agent"] = f"siprec:{party['participant_id']}"
    return ids


def _word(raw: Mapping[str, Any]) -> Word:
    conf = raw.get("confidence")
    tag = raw.get("tag")
    return Word(text=str(raw["word"]), start_s=float(raw["start_s"]),
                end_s=float(raw["end_s"]),
                confidence=float(conf) if isinstance(conf, int | float) else None,
                tag=str(tag) if tag else None)


def utterances_of(source: Source, channels: frozenset[str], salt: bytes
                  ) -> tuple[list[Utterance], int]:
    """The document's turns of ``channels`` as utterances (the conversation named by its
    hashed id), and how many turns were left out for having no word times (a document
    older than the ``words`` field)."""
    identities = speaker_identities(source.document)
    out: list[Utterance] = []
    no_words = 0
    for turn in source.document.get("turns") or []:
        channel = turn.get("speaker")
        if channel not in channels:
            continue
        raw_words = turn.get("words")
        if not raw_words:
            no_words += bool(str(turn.get("text") or "").strip())
            continue
        conf = turn.get("confidence")
        out.append(Utterance(
            conversation_id=hashed_id(salt, source.conversation_id), channel=channel,
            speaker=pseudonym(salt, channel, identities[channel]),
            start_s=float(turn["start_s"]), end_s=float(turn["end_s"]),
            words=tuple(_word(w) for w in raw_words), text=str(turn.get("text") or ""),
            confidence=float(conf) if isinstance(conf, int | float) else None))
    return out, no_words


# ------------------------------------------------------------------ the salt
SALT_BYTES: Final = 32


def load_salt(path: Path) -> bytes:
    """The dataset salt in ``path``, made (32 random bytes, mode 0600) when missing."""
    try:
        salt = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        salt = os.urandom(SALT_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:            # another export made it first
            return path.read_bytes()
        with os.fdopen(fd, "wb") as f:
            f.write(salt)
    return salt
