"""The batch job store on a real SQLite file in tmp_path: create, list, progress, cancel,
delete, restart recovery, the schema version, and stores it must refuse."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.batch.jobspec import FileOutcome, FileStatus, JobStatus, WebhookState
from gateway.batch.store import SCHEMA_VERSION, JobStore, StoreError


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[JobStore]:
    s = await JobStore.open(tmp_path / "batch.sqlite3")
    yield s
    await s.close()


async def test_create_reads_back(store: JobStore) -> None:
    job = await store.create("j1", ["a.wav", "d/b.wav"], {"formats": ["vtt"]},
                             "http://127.0.0.1:9/hook", now=100.0)
    assert (job.id, job.status, job.created, job.updated) == ("j1", JobStatus.QUEUED, 100.0, 100.0)
    assert job.options == {"formats": ["vtt"]}
    assert (job.webhook_url, job.webhook) == ("http://127.0.0.1:9/hook", WebhookState.PENDING)
    assert (job.files_total, job.files_finished, job.audio_s) == (2, 0, 0.0)
    files = await store.files("j1")
    assert [(f.index, f.path, f.status) for f in files] == [
        (0, "a.wav", FileStatus.PENDING), (1, "d/b.wav", FileStatus.PENDING)]
    assert await store.get("nope") is None
    no_hook = await store.create("j2", ["c.wav"], {}, "", now=101.0)
    assert no_hook.webhook is WebhookState.NONE


async def test_file_results_update_the_counts(store: JobStore) -> None:
    await store.create("j", ["a.wav", "b.wav", "c.wav", "d.wav"], {}, "", now=1.0)
    await store.set_status("j", JobStatus.RUNNING, now=2.0)
    await store.start_file("j", 0, now=3.0)
    assert (await store.files("j"))[0].status is FileStatus.RUNNING
    await store.finish_file("j", 0, FileOutcome(FileStatus.DONE, audio_s=12.5, wall_s=0.5,
                                                outputs={"json": "out/a.json"}), now=4.0)
    await store.finish_file("j", 1, FileOutcome(FileStatus.FAILED, error="not a WAV"), now=5.0)
    await store.finish_file("j", 2, FileOutcome(FileStatus.SKIPPED, audio_s=3.0), now=6.0)
    job = await store.get("j")
    assert job is not None
    assert (job.files_done, job.files_failed, job.files_skipped, job.files_finished) == (1, 1, 1, 3)
    assert (job.audio_s, job.updated) == (15.5, 6.0)
    first, second, *_ = await store.files("j")
    assert (first.outputs, first.audio_s, first.wall_s) == ({"json": "out/a.json"}, 12.5, 0.5)
    assert (second.status, second.error) == (FileStatus.FAILED, "not a WAV")
    pending = await store.files("j", FileStatus.PENDING)
    assert [f.path for f in pending] == ["d.wav"]


async def test_queue_order_and_listing(store: JobStore) -> None:
    for n, job_id in enumerate(("first", "second", "third")):
        await store.create(job_id, ["x.wav"], {}, "", now=float(n))
    assert [j.id for j in await store.jobs()] == ["third", "second", "first"]
    next_job = await store.next_queued()
    assert next_job is not None and next_job.id == "first"
    await store.set_status("first", JobStatus.SUCCEEDED, now=5.0)
    next_job = await store.next_queued()
    assert next_job is not None and next_job.id == "second"
    assert [j.id for j in await store.jobs(JobStatus.SUCCEEDED)] == ["first"]
    assert [j.id for j in await store.jobs(JobStatus.QUEUED, limit=1)] == ["third"]


async def test_cancel_queued_and_running(store: JobStore) -> None:
    await store.create("q", ["x.wav"], {}, "", now=1.0)
    await store.create("r", ["x.wav"], {}, "", now=1.0)
    await store.create("s", ["x.wav"], {}, "", now=1.0)
    await store.set_status("r", JobStatus.RUNNING, now=2.0)
    await store.set_status("s", JobStatus.SUCCEEDED, now=2.0)
    queued = await store.request_cancel("q", now=3.0)
    running = await store.request_cancel("r", now=3.0)
    done = await store.request_cancel("s", now=3.0)
    assert queued is not None and queued.status is JobStatus.CANCELLED
    assert running is not None and (running.status, running.cancel_requested) == (
        JobStatus.RUNNING, True)
    assert done is not None and (done.status, done.cancel_requested) == (
        JobStatus.SUCCEEDED, False)
    assert await store.request_cancel("unknown", now=3.0) is None


async def test_delete_takes_the_files_rows(store: JobStore, tmp_path: Path) -> None:
    await store.create("j", ["a.wav", "b.wav"], {}, "", now=1.0)
    assert await store.delete("j") is True
    assert await store.get("j") is None and await store.files("j") == []
    assert await store.delete("j") is False
    with sqlite3.connect(tmp_path / "batch.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM job_files").fetchone()[0] == 0


async def test_restart_recovery_keeps_finished_files(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    store = await JobStore.open(path)
    await store.create("half", ["a.wav", "b.wav", "c.wav"], {"formats": ["txt"]},
                       "http://h/x", now=1.0)
    await store.create("cancelling", ["a.wav"], {}, "", now=2.0)
    await store.create("waiting", ["a.wav"], {}, "", now=3.0)
    await store.set_status("half", JobStatus.RUNNING, now=4.0)
    await store.finish_file("half", 0, FileOutcome(FileStatus.DONE, audio_s=2.0), now=5.0)
    await store.start_file("half", 1, now=5.0)
    await store.set_status("cancelling", JobStatus.RUNNING, now=4.0)
    await store.request_cancel("cancelling", now=6.0)
    await store.close()              # the process stops here (or dies: WAL keeps the commits)

    again = await JobStore.open(path)
    try:
        assert await again.recover(now=10.0) == ["half"]
        half = await again.get("half")
        assert half is not None and (half.status, half.files_done, half.audio_s) == (
            JobStatus.QUEUED, 1, 2.0)
        assert half.options == {"formats": ["txt"]} and half.webhook is WebhookState.PENDING
        statuses = [f.status for f in await again.files("half")]
        assert statuses == [FileStatus.DONE, FileStatus.PENDING, FileStatus.PENDING]
        cancelled = await again.get("cancelling")
        assert cancelled is not None and cancelled.status is JobStatus.CANCELLED
        queued = await again.next_queued()
        assert queued is not None and queued.id == "half"     # still first in line
        assert await again.recover(now=11.0) == []
    finally:
        await again.close()


async def test_undelivered_webhooks(store: JobStore) -> None:
    await store.create("a", ["x.wav"], {}, "http://h/a", now=1.0)
    await store.create("b", ["x.wav"], {}, "http://h/b", now=2.0)
    await store.create("c", ["x.wav"], {}, "", now=3.0)
    for job_id in ("a", "b", "c"):
        await store.set_status(job_id, JobStatus.SUCCEEDED, now=4.0)
    await store.set_webhook("b", WebhookState.DELIVERED)
    assert [j.id for j in await store.undelivered()] == ["a"]


async def test_schema_version_and_wal(store: JobStore, tmp_path: Path) -> None:
    assert await store.schema_version() == SCHEMA_VERSION
    with sqlite3.connect(tmp_path / "batch.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "job_files"} <= tables


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    await (await JobStore.open(path)).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this gateway"):
        await JobStore.open(path)


async def test_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "batch.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable batch store"):
        await JobStore.open(path)


async def test_claim_takes_only_a_queued_job(store: JobStore) -> None:
    await store.create("a", ["x.wav"], {}, "", now=1.0)
    await store.create("b", ["x.wav"], {}, "", now=1.0)
    await store.request_cancel("b", now=2.0)
    assert await store.claim("a", now=3.0) is True
    job = await store.get("a")
    assert job is not None and (job.status, job.updated) == (JobStatus.RUNNING, 3.0)
    assert await store.claim("a", now=4.0) is False       # already running
    assert await store.claim("b", now=4.0) is False       # cancelled before the runner came
