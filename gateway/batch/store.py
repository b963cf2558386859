"""The batch job store: SQLite (the stdlib ``sqlite3``) in ``<state_dir>/batch.sqlite3``.

Two tables: ``jobs`` (one row per job: status, options as JSON, webhook URL and delivery
state, file counts and audio seconds) and ``job_files`` (one row per file of a job: its path
relative to the batch root, status, error, audio seconds, wall seconds, outputs as JSON).
The schema is versioned with ``PRAGMA user_version``: a new store is created at
:data:`SCHEMA_VERSION`, an older one is migrated step by step, a newer one is refused.

The database runs in WAL mode (readers never wait for the writer; ``synchronous=NORMAL``:
a process crash loses nothing committed, a power cut may lose the last commits). One
connection, used by one thread at a time under a lock: every public method is a coroutine
that runs its SQL in :func:`asyncio.to_thread`, so the event loop never waits on the disk.

:meth:`JobStore.recover` is for start-up: a job left ``running`` by a crash or a stop goes
back to ``queued`` (``cancelled`` if a cancel was asked for), its files left ``running`` go
back to ``pending``; files that finished keep their result and are not done again.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from gateway.batch.jobspec import FileOutcome, FileStatus, Job, JobFile, JobStatus, WebhookState
from gateway.sqlite_store import open_versioned

SCHEMA_VERSION = 1
T = TypeVar("T")


class StoreError(OSError):
    """The store cannot be opened (not a database, made by a newer gateway, unreadable)."""


_MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        status TEXT NOT NULL,
        options TEXT NOT NULL,
        webhook_url TEXT NOT NULL DEFAULT '',
        webhook TEXT NOT NULL DEFAULT '',
        files_total INTEGER NOT NULL DEFAULT 0,
        files_done INTEGER NOT NULL DEFAULT 0,
        files_skipped INTEGER NOT NULL DEFAULT 0,
        files_failed INTEGER NOT NULL DEFAULT 0,
        audio_s REAL NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX jobs_status ON jobs (status, seq);
    CREATE TABLE job_files (
        job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        path TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        error TEXT NOT NULL DEFAULT '',
        audio_s REAL NOT NULL DEFAULT 0,
        wall_s REAL NOT NULL DEFAULT 0,
        outputs TEXT NOT NULL DEFAULT 'null',
        PRIMARY KEY (job_id, idx)
    );
    """,
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_JOB_COLUMNS = ("id, created, updated, status, options, webhook_url, webhook, files_total, "
                "files_done, files_skipped, files_failed, audio_s, cancel_requested, error")
_FILE_COLUMNS = "idx, path, status, error, audio_s, wall_s, outputs"
_RECOUNT = """
    UPDATE jobs SET updated = ?,
        files_done = (SELECT COUNT(*) FROM job_files WHERE job_id = jobs.id AND status = 'done'),
        files_skipped = (SELECT COUNT(*) FROM job_files
                         WHERE job_id = jobs.id AND status = 'skipped'),
        files_failed = (SELECT COUNT(*) FROM job_files
                        WHERE job_id = jobs.id AND status = 'failed'),
        audio_s = (SELECT COALESCE(SUM(audio_s), 0) FROM job_files WHERE job_id = jobs.id)
    WHERE id = ?
"""


def _job(row: Sequence[Any]) -> Job:
    return Job(id=row[0], created=row[1], updated=row[2], status=JobStatus(row[3]),
               options=json.loads(row[4]), webhook_url=row[5], webhook=WebhookState(row[6]),
               files_total=row[7], files_done=row[8], files_skipped=row[9],
               files_failed=row[10], audio_s=row[11], cancel_requested=bool(row[12]),
               error=row[13])


def _file(row: Sequence[Any]) -> JobFile:
    return JobFile(index=row[0], path=row[1], status=FileStatus(row[2]), error=row[3],
                   audio_s=row[4], wall_s=row[5], outputs=json.loads(row[6]))


def _connect(path: Path) -> sqlite3.Connection:
    """Open (creating or migrating) the database; blocking, run in a thread."""
    return open_versioned(path, _MIGRATIONS, what="batch store", error=StoreError,
                          pragmas=("foreign_keys = ON",))


class JobStore:
    """The jobs and their files; every method runs its SQL off the event loop."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    async def open(cls, path: Path) -> JobStore:
        return cls(await asyncio.to_thread(_connect, path), path)

    async def close(self) -> None:
        await self._run(self._db.close)

    async def _run(self, fn: Callable[[], T]) -> T:
        def locked() -> T:
            with self._lock:
                return fn()
        return await asyncio.to_thread(locked)

    def _transaction(self, body: Callable[[sqlite3.Connection], T]) -> Callable[[], T]:
        def run() -> T:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = body(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result
        return run

    # ----------------------------------------------------------------- reading
    async def schema_version(self) -> int:
        return await self._run(lambda: int(
            self._db.execute("PRAGMA user_version").fetchone()[0]))

    async def get(self, job_id: str) -> Job | None:
        def read() -> Job | None:
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?",
                                   (job_id,)).fetchone()
            return None if row is None else _job(row)
        return await self._run(read)

    async def jobs(self, status: JobStatus | None = None, limit: int = 1000) -> list[Job]:
        """Newest first."""
        where, args = ("WHERE status = ?", (status.value, limit)) if status else ("", (limit,))
        def read() -> list[Job]:
            rows = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs {where} "
                                    "ORDER BY seq DESC LIMIT ?", args).fetchall()
            return [_job(r) for r in rows]
        return await self._run(read)

    async def files(self, job_id: str, status: FileStatus | None = None) -> list[JobFile]:
        where, args = ("AND status = ?", (job_id, status.value)) if status else ("", (job_id,))
        def read() -> list[JobFile]:
            rows = self._db.execute(f"SELECT {_FILE_COLUMNS} FROM job_files WHERE job_id = ? "
                                    f"{where} ORDER BY idx", args).fetchall()
            return [_file(r) for r in rows]
        return await self._run(read)

    async def next_queued(self) -> Job | None:
        """The oldest queued job."""
        def read() -> Job | None:
            row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'queued' "
                                   "ORDER BY seq LIMIT 1").fetchone()
            return None if row is None else _job(row)
        return await self._run(read)

    async def undelivered(self) -> list[Job]:
        """Finished jobs whose webhook is still to be sent, oldest first."""
        def read() -> list[Job]:
            rows = self._db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE webhook = 'pending' "
                "AND status IN ('succeeded', 'failed', 'cancelled') ORDER BY seq").fetchall()
            return [_job(r) for r in rows]
        return await self._run(read)

    # ----------------------------------------------------------------- writing
    async def create(self, job_id: str, files: Sequence[str], options: dict[str, Any],
                     webhook_url: str, now: float) -> Job:
        """A queued job of ``files`` (paths relative to the root), every file pending."""
        webhook = WebhookState.PENDING if webhook_url else WebhookState.NONE
        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO jobs (id, created, updated, status, options, webhook_url, "
                       "webhook, files_total) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                       (job_id, now, now, json.dumps(options), webhook_url, webhook.value,
                        len(files)))
            db.executemany("INSERT INTO job_files (job_id, idx, path) VALUES (?, ?, ?)",
                           [(job_id, i, p) for i, p in enumerate(files)])
        await self._run(self._transaction(write))
        job = await self.get(job_id)
        assert job is not None
        return job

    async def set_status(self, job_id: str, status: JobStatus, now: float,
                         error: str = "") -> None:
        await self._run(lambda: self._db.execute(
            "UPDATE jobs SET status = ?, updated = ?, error = ? WHERE id = ?",
            (status.value, now, error, job_id)))

    async def claim(self, job_id: str, now: float) -> bool:
        """queued -> running; False when the job is no longer queued (cancelled)."""
        def write(db: sqlite3.Connection) -> bool:
            return db.execute("UPDATE jobs SET status = 'running', updated = ? "
                              "WHERE id = ? AND status = 'queued'", (now, job_id)).rowcount > 0
        return await self._run(self._transaction(write))

    async def start_file(self, job_id: str, index: int, now: float) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("UPDATE job_files SET status = 'running' WHERE job_id = ? AND idx = ?",
                       (job_id, index))
            db.execute("UPDATE jobs SET updated = ? WHERE id = ?", (now, job_id))
        await self._run(self._transaction(write))

    async def finish_file(self, job_id: str, index: int, outcome: FileOutcome,
                          now: float) -> None:
        """The file's result and the job's counts, in one transaction."""
        def write(db: sqlite3.Connection) -> None:
            db.execute("UPDATE job_files SET status = ?, error = ?, audio_s = ?, wall_s = ?, "
                       "outputs = ? WHERE job_id = ? AND idx = ?",
                       (outcome.status.value, outcome.error, outcome.audio_s, outcome.wall_s,
                        json.dumps(outcome.outputs), job_id, index))
            db.execute(_RECOUNT, (now, job_id))
        await self._run(self._transaction(write))

    async def request_cancel(self, job_id: str, now: float) -> Job | None:
        """A queued job is cancelled at once; a running one is marked, for its runner to
        stop after the files in flight. The job as it is now (None: unknown)."""
        def write(db: sqlite3.Connection) -> None:
            db.execute("UPDATE jobs SET status = 'cancelled', cancel_requested = 1, "
                       "updated = ? WHERE id = ? AND status = 'queued'", (now, job_id))
            db.execute("UPDATE jobs SET cancel_requested = 1, updated = ? "
                       "WHERE id = ? AND status = 'running'", (now, job_id))
        await self._run(self._transaction(write))
        return await self.get(job_id)

    async def set_webhook(self, job_id: str, state: WebhookState) -> None:
        await self._run(lambda: self._db.execute(
            "UPDATE jobs SET webhook = ? WHERE id = ?", (state.value, job_id)))

    async def delete(self, job_id: str) -> bool:
        """The job and its files' rows (not the output files: the caller owns those)."""
        def write(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount > 0
        return await self._run(self._transaction(write))

    async def recover(self, now: float) -> list[str]:
        """Start-up: jobs left running go back to queued (cancelled when a cancel was asked
        for), their files left running back to pending. The ids of the jobs requeued."""
        def write(db: sqlite3.Connection) -> list[str]:
            rows = db.execute("SELECT id, cancel_requested FROM jobs WHERE status = 'running' "
                              "ORDER BY seq").fetchall()
            db.execute("UPDATE job_files SET status = 'pending' WHERE status = 'running'")
            for job_id, cancelled in rows:
                db.execute("UPDATE jobs SET status = ?, updated = ? WHERE id = ?",
                           ("cancelled" if cancelled else "queued", now, job_id))
            return [job_id for job_id, cancelled in rows if not cancelled]
        return await self._run(self._transaction(write))
