"""The conversation summary on disk: JSON, a plain-text transcript and WebVTT per conversation.

:class:`SummaryFilesSink` is an event sink (see :mod:`gateway.events.sinks`): of what the
bus delivers it takes only ``conversation.summary`` and writes, for its document,

- ``<stem>.summary.json``: the document (``to_wire``; schema: ``SummaryDocument`` in
  ``gateway/events/events.schema.json``),
- ``<stem>.txt``: :func:`gateway.analytics.summary.to_text`,
- ``<stem>.vtt``: :func:`gateway.analytics.summary.to_webvtt`,

where ``<stem>`` is the recording's path without its extension when the conversation was
recorded (``<recordings_dir>/<stamp>-<conversation_id>``), else
``<state_dir>/conversations/<stamp>-<conversation_id>`` (the stamp of its start, UTC, as
recordings are named). Files are created with mode 0640 (directories 0750), like
recordings, and never overwritten (``-2``, ``-3`` ... on a clash). The sink gets events
after the processing stage, never a raw sink's: the transcript in them is the redacted one.

Layer: shell (file I/O).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Final

from gateway.analytics.summary import to_text, to_webvtt
from gateway.events.types import ConversationSummary, Envelope, SummaryDocument, to_wire
from gateway.logs import get_logger

FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750
SUFFIXES: Final = (".summary.json", ".txt", ".vtt")


def summary_stem(doc: SummaryDocument, directory: Path) -> Path:
    """Where a document's files go, without their suffixes."""
    if doc.recording:
        recording = Path(doc.recording)
        return recording.with_name(recording.name.rsplit(".", 1)[0])
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(doc.started_at))
    return directory / f"{stamp}-{doc.conversation_id}"


def render(doc: SummaryDocument) -> tuple[str, str, str]:
    """The three files' contents, in :data:`SUFFIXES` order."""
    document = json.dumps(to_wire(doc), indent=2, ensure_ascii=False) + "\n"
    return document, to_text(doc), to_webvtt(doc)


def write_summary(doc: SummaryDocument, directory: Path) -> list[Path]:
    """Write a document's three files (a free stem: nothing existing is replaced)."""
    stem = summary_stem(doc, directory)
    stem.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for attempt in range(1, 100):
        candidate = stem if attempt == 1 else stem.with_name(f"{stem.name}-{attempt}")
        paths = [candidate.with_name(candidate.name + s) for s in SUFFIXES]
        if not any(p.exists() for p in paths):
            break
    else:
        raise FileExistsError(f"no free name for {stem}")
    for path, text in zip(paths, render(doc), strict=True):
        _write_new(path, text)
    return paths


def _write_new(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(fd, FILE_MODE)                  # whatever the umask
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


class SummaryFilesSink:
    """Each ``conversation.summary`` as files beside its recording (or in ``directory``)."""

    def __init__(self, directory: Path) -> None:
        self.name = f"summary_files:{directory}"
        self._dir = directory
        self._log = get_logger("events")

    async def write(self, event: Envelope) -> None:
        if not isinstance(event.event, ConversationSummary):
            return
        doc = event.event.summary
        paths = await asyncio.to_thread(write_summary, doc, self._dir)
        self._log.info("conversation.summary_written", call_id=event.call_id,
                       conversation_id=doc.conversation_id, path=str(paths[0]))

    async def close(self) -> None:
        return None
