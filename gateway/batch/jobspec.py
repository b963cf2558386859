"""What a batch job is over HTTP: the request, the statuses, the stored records, the views.

``POST /v1/transcriptions`` takes ``{"files": [...], "options": {...}, "webhook_url": "..."}``:
:func:`parse_request` checks the shape (the paths themselves are checked against the batch
root by the shell, :mod:`gateway.batch.jobs`) and raises :class:`BatchRefused` with the
HTTP status and a message naming the field. :func:`job_view` is what ``GET`` answers and
the completion webhook carries.

A job is ``queued``, ``running``, then ``succeeded`` (it ran to its end: each file ``done``,
``skipped`` or ``failed`` with its error), ``failed`` (every file failed, or the job itself
could not run) or ``cancelled``.

Layer: pure core.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

from gateway.batch.outputs import output_formats

ROUTE: Final = "/v1/transcriptions"
CHANNELS: Final = ("agent", "customer")
OPTION_KEYS: Final = ("formats", "left", "mono_channel", "raw_rate", "force")


class BatchRefused(Exception):
    """The request cannot be taken: ``status`` (400, 404, 503 ...) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class FileStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class WebhookState(StrEnum):
    NONE = ""               # the job has no webhook URL
    PENDING = "pending"     # to be sent once the job is finished
    DELIVERED = "delivered"
    FAILED = "failed"       # every attempt failed


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    created: float          # wall-clock seconds (epoch)
    updated: float
    status: JobStatus
    options: dict[str, Any]
    webhook_url: str
    webhook: WebhookState
    files_total: int
    files_done: int
    files_skipped: int
    files_failed: int
    audio_s: float
    cancel_requested: bool
    error: str

    @property
    def files_finished(self) -> int:
        return self.files_done + self.files_skipped + self.files_failed


@dataclass(frozen=True, slots=True)
class JobFile:
    index: int
    path: str               # relative to the batch root
    status: FileStatus
    error: str
    audio_s: float
    wall_s: float
    outputs: Any            # JSON: what the transcription wrote


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """A finished file, as the store keeps it."""

    status: FileStatus
    error: str = ""
    audio_s: float = 0.0
    wall_s: float = 0.0
    outputs: Any = None


@dataclass(frozen=True, slots=True)
class JobRequest:
    files: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    webhook_url: str = ""


def _bad(message: str) -> BatchRefused:
    return BatchRefused(400, message)


def parse_request(body: Any) -> JobRequest:
    """The POST body, checked; :class:`BatchRefused` (400) names what is wrong."""
    if not isinstance(body, Mapping):
        raise _bad("body must be a JSON object")
    unknown = sorted(set(body) - {"files", "options", "webhook_url"})
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(unknown)} (files, options, webhook_url)")
    files = body.get("files")
    if (not isinstance(files, list) or not files
            or not all(isinstance(f, str) and f.strip() for f in files)):
        raise _bad("'files' must be a non-empty array of paths (strings) relative to the "
                   "batch root")
    webhook = body.get("webhook_url", "")
    if not isinstance(webhook, str) or (webhook and not _is_http_url(webhook)):
        raise _bad("'webhook_url' must be an http(s) URL")
    return JobRequest(files=tuple(files), options=parse_options(body.get("options", {})),
                      webhook_url=webhook)


def parse_options(raw: Any) -> dict[str, Any]:
    """``options``: ``formats`` (json always; vtt, srt, txt), ``left`` / ``mono_channel`` (the
    channel a stereo file's left channel / a mono file is), ``raw_rate`` (Hz, for ``.ul`` /
    ``.al``), ``force`` (redo files whose outputs are complete)."""
    if not isinstance(raw, Mapping):
        raise _bad("'options' must be a JSON object")
    unknown = sorted(set(raw) - set(OPTION_KEYS))
    if unknown:
        raise _bad(f"unknown option(s): {', '.join(unknown)} ({', '.join(OPTION_KEYS)})")
    out: dict[str, Any] = {}
    if "formats" in raw:
        out["formats"] = list(_formats(raw["formats"]))
    for key in ("left", "mono_channel"):
        if key in raw:
            if raw[key] not in CHANNELS:
                raise _bad(f"'options.{key}' must be \"agent\" or \"customer\"")
            out[key] = raw[key]
    if "raw_rate" in raw:
        rate = raw["raw_rate"]
        if isinstance(rate, bool) or not isinstance(rate, int) or not 4000 <= rate <= 192000:
            raise _bad("'options.raw_rate' must be a sample rate in Hz (4000..192000)")
        out["raw_rate"] = rate
    if "force" in raw:
        if not isinstance(raw["force"], bool):
            raise _bad("'options.force' must be true or false")
        out["force"] = raw["force"]
    return out


def _formats(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
        raise _bad("'options.formats' must be an array of strings")
    try:
        return output_formats([f.lower() for f in value])
    except ValueError as exc:
        raise _bad(f"'options.formats': {exc}") from None


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def parse_status(text: str | None) -> JobStatus | None:
    """``?status=``: None for all; :class:`BatchRefused` (400) for one that is not a status."""
    if not text:
        return None
    try:
        return JobStatus(text)
    except ValueError:
        listed = ", ".join(s.value for s in JobStatus)
        raise _bad(f"'status' must be one of {listed}") from None


def final_status(job: Job) -> JobStatus:
    """How a job that ran to its end ended: failed when every file failed."""
    if job.cancel_requested:
        return JobStatus.CANCELLED
    if job.files_total and job.files_failed == job.files_total:
        return JobStatus.FAILED
    return JobStatus.SUCCEEDED


def iso_time(epoch_s: float) -> str:
    """``2026-12-03T09:38:13.250Z``."""
    stamp = datetime.fromtimestamp(epoch_s, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def job_view(job: Job, files: Sequence[JobFile] | None = None) -> dict[str, Any]:
    """The JSON of a job; with ``files``, each file's result too."""
    view: dict[str, Any] = {
        "id": job.id,
        "self": f"{ROUTE}/{job.id}",
        "status": job.status.value,
        "created": iso_time(job.created),
        "updated": iso_time(job.updated),
        "options": job.options,
        "webhook_url": job.webhook_url or None,
        "webhook": job.webhook.value or None,
        "cancel_requested": job.cancel_requested,
        "error": job.error or None,
        "progress": {
            "files_total": job.files_total,
            "files_finished": job.files_finished,
            "files_done": job.files_done,
            "files_skipped": job.files_skipped,
            "files_failed": job.files_failed,
            "audio_s": round(job.audio_s, 3),
        },
    }
    if files is not None:
        view["files"] = [file_view(f) for f in files]
    return view


def file_view(f: JobFile) -> dict[str, Any]:
    return {"path": f.path, "status": f.status.value, "error": f.error or None,
            "audio_s": round(f.audio_s, 3), "wall_s": round(f.wall_s, 3), "outputs": f.outputs}
