"""Batch transcription jobs of the daemon (``/v1/transcriptions``), kept in SQLite.

:class:`BatchJobs` owns the :class:`~gateway.batch.store.JobStore`, one runner task and the
webhook deliveries. A job names files and directories under ``[batch] root``: each is
resolved (symlinks too) and must stay below the root, directories are walked for the
audio files :mod:`gateway.batch.audio` reads, at most ``max_files_per_job`` in all; the job
is stored with its file list before ``POST`` answers 201.

The runner takes queued jobs oldest first, one job at a time, and runs its pending files
``[batch] concurrency`` at once through :func:`~gateway.batch.task.transcribe_file` on the
daemon's own :class:`~gateway.asr.stream.AsrHub` (file sources: back-pressure, nothing
dropped; the hub serves live calls' turns first), writing each file's result to the store
as it finishes. A cancel (``DELETE``) of a running job stops it after the files in flight.
At the end the job's view is POSTed to its ``webhook_url`` (HMAC-SHA256 of the body with
``[batch] webhook_secret`` in ``X-Gateway-Signature: sha256=<hex>``, as the event and bot
webhooks), retried ``[batch] retries`` times with backoff on errors, timeouts and 5xx.

Stopping cancels the files in flight; the store keeps them ``running``, and the next start
(:meth:`JobStore.recover`) queues the job again with only its unfinished files pending.
A webhook not yet delivered is sent again after a restart.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from gateway.asr.stream import AsrHub
from gateway.batch.audio import AUDIO_SUFFIXES
from gateway.batch.jobspec import (
    BatchRefused,
    FileOutcome,
    FileStatus,
    Job,
    JobFile,
    JobStatus,
    WebhookState,
    final_status,
    job_view,
    parse_request,
    parse_status,
)
from gateway.batch.store import JobStore
from gateway.batch.task import BatchOptions, FileResult, transcribe_file
from gateway.config import GatewayConfig
from gateway.events.sinks import sign_body
from gateway.logs import get_logger

Transcribe = Callable[..., Awaitable[FileResult]]
SIGNATURE_HEADER = "X-Gateway-Signature"
WEBHOOK_EVENT = "transcription.completed"
BACKOFF_MAX_S = 30.0
LIVE_POLL_S = 0.25
"""How often a worker held back by live calls looks again."""


def expand_files(root: Path, names: Sequence[str], limit: int) -> list[str]:
    """The files a job names, relative to ``root``, in order and once each; directories
    walked (sorted) for audio files. :class:`BatchRefused` (400) for a path that is
    absolute, has ``..``, leads out of the root (symlinks resolved) or does not exist, for
    no files at all and for more than ``limit``. Blocking: run it in a thread."""
    base = root.resolve()
    found: dict[str, None] = {}
    for name in names:
        for path in _named(base, name):
            found[path] = None
            if len(found) > limit:
                raise BatchRefused(400, f"more than [batch] max_files_per_job ({limit}) files")
    if not found:
        raise BatchRefused(400, "no audio files in the paths named (audio files are "
                                f"{', '.join(AUDIO_SUFFIXES)})")
    return list(found)


def _named(base: Path, name: str) -> Iterator[str]:
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise BatchRefused(400, f"{name!r}: paths are relative to the batch root, without '..'")
    target = _inside(base, base / relative, name)
    if target.is_dir():
        yield from _walk(base, target)
    elif target.is_file():
        yield target.relative_to(base).as_posix()
    else:
        raise BatchRefused(400, f"{name!r}: no such file or directory under the batch root")


def _inside(base: Path, path: Path, name: str) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(base):
        raise BatchRefused(400, f"{name!r}: outside the batch root")
    return resolved


def _walk(base: Path, top: Path) -> Iterator[str]:
    for directory, dirs, files in os.walk(top):
        dirs.sort()
        for file in sorted(files):
            path = Path(directory) / file
            if path.suffix.lower() in AUDIO_SUFFIXES:
                shown = path.relative_to(base).as_posix()
                yield _inside(base, path, shown).relative_to(base).as_posix()


def batch_options(options: dict[str, Any], root: Path) -> BatchOptions:
    """A stored job's options as the task's."""
    return BatchOptions(formats=tuple(options.get("formats", ("json",))),
                        force=bool(options.get("force", False)),
                        left=str(options.get("left", "agent")),
                        mono_channel=str(options.get("mono_channel", "customer")),
                        raw_rate=options.get("raw_rate"), root=root)


def outcome_of(result: FileResult) -> FileOutcome:
    return FileOutcome(status=FileStatus(result.status), error=result.error or "",
                       audio_s=result.audio_s, wall_s=result.wall_s,
                       outputs=[str(p) for p in result.outputs])


class BatchJobs:
    """The jobs API behind ``/v1/transcriptions``: create, list, read, cancel or delete;
    and the runner that transcribes them."""

    def __init__(self, config: GatewayConfig, hub: AsrHub, *,
                 transcribe: Transcribe = transcribe_file,
                 live_calls: Callable[[], int] = lambda: 0) -> None:
        self._config = config
        self._live_calls = live_calls
        self._batch = config.batch
        self._hub = hub
        self._transcribe = transcribe
        self.root = self._batch.root
        self.out_dir = self._batch.outputs_in(config.storage.state_dir)
        self.db_path = config.storage.state_dir / "batch.sqlite3"
        self._store: JobStore | None = None
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._cancelling: set[str] = set()
        self._running: str | None = None
        self._log = get_logger("batch")

    @property
    def store(self) -> JobStore:
        if self._store is None:
            raise BatchRefused(503, "batch jobs are starting or stopped")
        return self._store

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open the store, queue again what a stop or crash left running, run."""
        if not await asyncio.to_thread(self.root.is_dir):
            raise NotADirectoryError(f"batch.root {self.root}: not a directory")
        await asyncio.to_thread(self.out_dir.mkdir, parents=True, exist_ok=True)
        store = await JobStore.open(self.db_path)
        requeued = await store.recover(time.time())
        self._store = store
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._batch.webhook_timeout_s))
        for job in await store.undelivered():
            self._deliver_later(job.id)
        self._runner = asyncio.create_task(self._run(), name="batch runner")
        self._log.info("batch.started", root=str(self.root), out_dir=str(self.out_dir),
                       store=str(self.db_path), requeued=requeued,
                       queued=len(await store.jobs(JobStatus.QUEUED)))

    async def stop(self) -> None:
        """Cancel the runner (the files in flight stay ``running`` for the next start's
        recovery) and the webhooks in flight (``pending``: sent after the restart)."""
        tasks = [t for t in (self._runner, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        store, self._store = self._store, None
        if store is not None:
            await store.close()

    # ----------------------------------------------------------------- the API
    async def create(self, body: Any) -> dict[str, Any]:
        """POST: the stored job's view; :class:`BatchRefused` (400) for a bad request."""
        store = self.store
        request = parse_request(body)
        files = await asyncio.to_thread(expand_files, self.root, request.files,
                                        self._batch.max_files_per_job)
        job = await store.create(str(uuid.uuid4()), files, request.options,
                                 request.webhook_url, time.time())
        self._log.info("batch.job_queued", job_id=job.id, files=len(files))
        self._wake.set()
        return job_view(job)

    async def jobs(self, status: str | None = None) -> list[dict[str, Any]]:
        return [job_view(j) for j in await self.store.jobs(parse_status(status))]

    async def job(self, job_id: str) -> dict[str, Any] | None:
        store = self.store
        job = await store.get(job_id)
        return None if job is None else job_view(job, await store.files(job_id))

    async def delete(self, job_id: str) -> tuple[int, dict[str, Any]] | None:
        """DELETE: a queued job is cancelled (200), a running one stops after its files in
        flight (202), a finished one is deleted with its outputs (204). None: unknown."""
        store = self.store
        job = await store.get(job_id)
        if job is None:
            return None
        if job.status.finished:
            await store.delete(job_id)
            await asyncio.to_thread(shutil.rmtree, self.out_dir / job_id, ignore_errors=True)
            self._log.info("batch.job_deleted", job_id=job_id)
            return 204, {}
        now = await store.request_cancel(job_id, time.time())
        if now is None:
            return None
        if now.status is JobStatus.RUNNING:
            self._cancelling.add(job_id)
            self._log.info("batch.job_cancelling", job_id=job_id)
            return 202, job_view(now)
        if now.status is JobStatus.CANCELLED and job.status is JobStatus.QUEUED:
            self._log.info("batch.job_cancelled", job_id=job_id, files_finished=0)
            self._deliver_later(job_id)
        return 200, job_view(now)

    # ----------------------------------------------------------------- the runner
    async def _run(self) -> None:
        while True:
            job = await self.store.next_queued()
            if job is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._run_job(job)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:   # a bug or the store failing: the job fails, next
                self._log.error("batch.job_error", job_id=job.id, error=repr(exc))
                await self._finish(job.id, JobStatus.FAILED, repr(exc)[:500])
            finally:
                self._running = None

    async def _run_job(self, job: Job) -> None:
        store = self.store
        if not await store.claim(job.id, time.time()):
            return                       # cancelled between the look and the claim
        self._running = job.id
        pending = await store.files(job.id, FileStatus.PENDING)
        self._log.info("batch.job_started", job_id=job.id, files=job.files_total,
                       pending=len(pending))
        try:
            options = batch_options(job.options, self.root)
        except ValueError as exc:
            await self._finish(job.id, JobStatus.FAILED, f"bad options: {exc}")
            return
        todo = iter(pending)
        workers = max(1, min(self._batch.concurrency, len(pending)))
        await asyncio.gather(*(self._worker(job.id, todo, options, slot)
                               for slot in range(workers)))
        self._cancelling.discard(job.id)
        ended = await store.get(job.id)
        if ended is not None:                # (None: deleted meanwhile)
            await self._finish(job.id, final_status(ended))

    async def _worker(self, job_id: str, todo: Iterator[JobFile],
                      options: BatchOptions, slot: int) -> None:
        while True:
            await self._turn(job_id, slot)
            file = next(todo, None)
            if file is None or job_id in self._cancelling:
                return
            await self._one_file(job_id, file, options)

    def _allowed(self) -> int:
        """Files at once now: ``concurrency``, or ``concurrency_with_calls`` while live calls
        run (the model's compute is shared: a CPU Triton gives live finals 2-4x their latency
        beside 4 batch files, bench batch)."""
        if self._live_calls() > 0:
            return min(self._batch.concurrency_with_calls, self._batch.concurrency)
        return self._batch.concurrency

    async def _turn(self, job_id: str, slot: int) -> None:
        """Wait until this worker's slot is allowed (a file in flight always finishes)."""
        while slot >= self._allowed() and job_id not in self._cancelling:
            await asyncio.sleep(LIVE_POLL_S)

    async def _one_file(self, job_id: str, file: JobFile, options: BatchOptions) -> None:
        store = self.store
        await store.start_file(job_id, file.index, time.time())
        path = self.root / file.path
        try:
            result = await self._transcribe(path, self.out_dir / job_id, hub=self._hub,
                                            config=self._config, options=options)
            outcome = outcome_of(result)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:   # transcribe_file reports bad files itself: this is a bug
            self._log.error("batch.file_error", job_id=job_id, path=file.path, error=repr(exc))
            outcome = FileOutcome(FileStatus.FAILED, error=f"internal error: {exc!r}"[:500])
        await store.finish_file(job_id, file.index, outcome, time.time())
        if outcome.status is FileStatus.FAILED:
            self._log.warning("batch.file_failed", job_id=job_id, path=file.path,
                              error=outcome.error)

    async def _finish(self, job_id: str, status: JobStatus, error: str = "") -> None:
        store = self.store
        await store.set_status(job_id, status, time.time(), error)
        job = await store.get(job_id)
        if job is None:
            return
        self._log.info("batch.job_finished", job_id=job_id, status=status.value,
                       files=job.files_total, done=job.files_done, skipped=job.files_skipped,
                       failed=job.files_failed, audio_s=round(job.audio_s, 3),
                       error=error or None)
        self._deliver_later(job_id)

    # ----------------------------------------------------------------- the webhook
    def _deliver_later(self, job_id: str) -> None:
        task = asyncio.create_task(self._deliver(job_id), name=f"batch webhook {job_id}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, job_id: str) -> None:
        store = self.store
        job = await store.get(job_id)
        if job is None or job.webhook is not WebhookState.PENDING:
            return
        body = json.dumps({"type": WEBHOOK_EVENT, "transcription": job_view(job)}).encode()
        headers = {"Content-Type": "application/json"}
        if self._batch.webhook_secret is not None:
            headers[SIGNATURE_HEADER] = sign_body(self._batch.webhook_secret.reveal(), body)
        error = await self._post(job.webhook_url, body, headers)
        state = WebhookState.DELIVERED if error is None else WebhookState.FAILED
        await store.set_webhook(job_id, state)
        if error is None:
            self._log.info("batch.webhook_delivered", job_id=job_id)
        else:
            self._log.warning("batch.webhook_failed", job_id=job_id, error=error,
                              attempts=self._batch.retries + 1)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> str | None:
        """None when delivered; else the last error. A 4xx other than 408/429 is final."""
        assert self._session is not None
        error = "not sent"
        for attempt in range(self._batch.retries + 1):
            if attempt:
                await asyncio.sleep(min(0.5 * 2 ** (attempt - 1), BACKOFF_MAX_S))
            try:
                async with self._session.post(url, data=body, headers=headers) as resp:
                    if resp.status < 300:
                        return None
                    error = f"HTTP {resp.status}"
                    if resp.status < 500 and resp.status not in (408, 429):
                        return error
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
        return error

