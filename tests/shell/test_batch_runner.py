"""BatchJobs in-process: the runner, cancel, restart recovery and the completion webhook,
with a stand-in for transcribe_file (it holds each file until the test lets it go) so the
order of things is the test's; the store is real SQLite, the webhook receiver a real aiohttp
server on loopback. The real transcription over real HTTP is tests/integration/
test_batch_jobs.py."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from gateway.asr.stream import AsrHub
from gateway.batch.jobs import BatchJobs
from gateway.batch.jobspec import BatchRefused
from gateway.batch.task import BatchOptions, FileResult
from gateway.config import BatchConfig, GatewayConfig, Secret, StorageConfig

SECRET = "batch-hook-secret"
WAIT_S = 10.0


class StandIn:
    """transcribe_file's stand-in: a file whose bytes are ``bad`` fails, any other is done
    (its JSON written where the real one goes); with ``held``, each file waits for a
    release of ``gate`` before it ends."""

    def __init__(self, held: bool = False) -> None:
        self.gate = asyncio.Semaphore(0) if held else None
        self.calls: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, path: Path, out_dir: Path, *, hub: AsrHub, config: GatewayConfig,
                       options: BatchOptions) -> FileResult:
        assert options.root is not None
        relative = path.relative_to(options.root)
        self.calls.append(relative.as_posix())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.acquire()
            else:
                await asyncio.sleep(0.05)
        finally:
            self.in_flight -= 1
        if path.read_bytes() == b"bad":
            return FileResult(path, "failed", "not audio", 0.0, 0.05, ())
        out = out_dir / f"{relative}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")
        return FileResult(path, "done", None, 1.5, 0.05, (out,))


class Hook:
    """The webhook receiver: answers each POST with the next of ``statuses`` (then 200)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook((500,))
    app = web.Application()
    app.router.add_post("/done", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/done"
    yield receiver
    await runner.cleanup()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "recordings"
    for n in range(5):
        (base / "day1" / f"call{n}.wav").parent.mkdir(parents=True, exist_ok=True)
        (base / "day1" / f"call{n}.wav").write_bytes(b"bad" if n == 3 else b"good")
    return base


def _config(tmp_path: Path, root: Path, concurrency: int = 2) -> GatewayConfig:
    return dataclasses.replace(
        GatewayConfig(), storage=StorageConfig(state_dir=tmp_path / "state"),
        batch=BatchConfig(root=root, concurrency=concurrency, webhook_secret=Secret(SECRET),
                          webhook_timeout_s=2.0, retries=2))


async def _started(config: GatewayConfig, standin: StandIn) -> BatchJobs:
    jobs = BatchJobs(config, cast(AsrHub, None), transcribe=standin)
    await jobs.start()
    return jobs


async def _until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await check():
        assert time.monotonic() < deadline, f"not within {WAIT_S} s: {what}"
        await asyncio.sleep(0.02)


async def _status(jobs: BatchJobs, job_id: str) -> dict[str, Any]:
    view = await jobs.job(job_id)
    assert view is not None
    return view


async def _finished(jobs: BatchJobs, job_id: str) -> dict[str, Any]:
    async def done() -> bool:
        return (await _status(jobs, job_id))["status"] in ("succeeded", "failed", "cancelled")
    await _until(done, f"job {job_id} finished")
    return await _status(jobs, job_id)


def _valid(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Gateway-Signature", ""), expected)


async def test_a_job_runs_its_files_and_posts_a_signed_webhook(tmp_path: Path, root: Path,
                                                               hook: Hook) -> None:
    standin = StandIn()
    jobs = await _started(_config(tmp_path, root), standin)
    try:
        view = await jobs.create({"files": ["day1"], "options": {"formats": ["vtt"]},
                                  "webhook_url": hook.url})
        assert view["status"] == "queued" and view["progress"]["files_total"] == 5
        job = await _finished(jobs, view["id"])
        await _until(lambda: _delivered(jobs, view["id"]), "webhook delivered")
    finally:
        await jobs.stop()
    assert job["status"] == "succeeded"                 # one bad file does not fail the job
    assert job["progress"] == {"files_total": 5, "files_finished": 5, "files_done": 4,
                               "files_skipped": 0, "files_failed": 1, "audio_s": 6.0}
    results = {f["path"]: f for f in job["files"]}
    assert results["day1/call3.wav"]["status"] == "failed"
    assert results["day1/call3.wav"]["error"] == "not audio"
    out = tmp_path / "state" / "transcriptions" / view["id"] / "day1" / "call0.wav.json"
    assert results["day1/call0.wav"]["outputs"] == [str(out)] and out.exists()
    assert standin.max_in_flight == 2                   # [batch] concurrency
    assert sorted(standin.calls) == [f"day1/call{n}.wav" for n in range(5)]
    assert len(hook.received) == 2                      # a 500, then retried
    for headers, body in hook.received:
        assert _valid(headers, body)
    sent = json.loads(hook.received[-1][1])
    assert sent["type"] == "transcription.completed"
    assert sent["transcription"]["id"] == view["id"]
    assert sent["transcription"]["status"] == "succeeded"


async def _delivered(jobs: BatchJobs, job_id: str) -> bool:
    return bool((await _status(jobs, job_id))["webhook"] == "delivered")


async def test_jobs_run_in_order_and_a_cancel_stops_after_the_files_in_flight(
        tmp_path: Path, root: Path) -> None:
    standin = StandIn(held=True)
    jobs = await _started(_config(tmp_path, root, concurrency=1), standin)
    try:
        first = await jobs.create({"files": ["day1"]})
        second = await jobs.create({"files": ["day1/call0.wav"]})
        third = await jobs.create({"files": ["day1/call1.wav"]})
        await _until(lambda: _running(jobs, first["id"]), "first job running")
        assert (await _status(jobs, second["id"]))["status"] == "queued"
        code, body = await jobs.delete(third["id"]) or (0, {})
        assert (code, body["status"]) == (200, "cancelled")      # queued: cancelled at once
        assert (await _status(jobs, third["id"]))["status"] == "cancelled"
        code, body = await jobs.delete(first["id"]) or (0, {})
        assert (code, body["status"], body["cancel_requested"]) == (202, "running", True)
        assert standin.gate is not None
        standin.gate.release()                          # the file in flight ends
        cancelled = await _finished(jobs, first["id"])
        standin.gate.release()
        done = await _finished(jobs, second["id"])
        out_dir = tmp_path / "state" / "transcriptions" / first["id"]
        assert out_dir.is_dir()
        assert await jobs.delete(first["id"]) == (204, {})   # finished: deleted, outputs too
        assert await jobs.job(first["id"]) is None and not out_dir.exists()
        assert await jobs.delete(first["id"]) is None
        listed = [j["id"] for j in await jobs.jobs()]
        assert listed == [third["id"], second["id"]]   # newest first
        assert [j["id"] for j in await jobs.jobs("succeeded")] == [second["id"]]
        with pytest.raises(BatchRefused):
            await jobs.jobs("finished")
    finally:
        await jobs.stop()
    assert cancelled["status"] == "cancelled"
    assert cancelled["progress"]["files_finished"] == 1
    assert [f["status"] for f in cancelled["files"]] == ["done"] + ["pending"] * 4
    assert done["status"] == "succeeded"
    assert standin.calls == ["day1/call0.wav", "day1/call0.wav"]   # never call1: cancelled


async def _running(jobs: BatchJobs, job_id: str) -> bool:
    return bool((await _status(jobs, job_id))["status"] == "running")


async def test_a_restart_requeues_a_half_done_job_without_redoing_finished_files(
        tmp_path: Path, root: Path, hook: Hook) -> None:
    config = _config(tmp_path, root, concurrency=1)
    before = StandIn(held=True)
    jobs = await _started(config, before)
    job_id = (await jobs.create({"files": ["day1"], "webhook_url": hook.url}))["id"]
    assert before.gate is not None
    before.gate.release()
    before.gate.release()                               # two files end, the third is held

    async def two_done() -> bool:
        return bool((await _status(jobs, job_id))["progress"]["files_finished"] == 2)
    await _until(two_done, "two files finished")
    await _until(lambda: _awaits(before, 3), "the third file in flight")
    await jobs.stop()                                    # the gateway stops mid-job
    assert hook.received == []

    after = StandIn()
    jobs = await _started(config, after)                 # same state_dir: same store
    try:
        job = await _finished(jobs, job_id)
        await _until(lambda: _delivered(jobs, job_id), "webhook delivered")
    finally:
        await jobs.stop()
    assert before.calls == ["day1/call0.wav", "day1/call1.wav", "day1/call2.wav"]
    assert after.calls == ["day1/call2.wav", "day1/call3.wav", "day1/call4.wav"]
    assert job["status"] == "succeeded" and job["progress"]["files_finished"] == 5
    assert len(hook.received) == 2 and all(_valid(h, b) for h, b in hook.received)


async def _awaits(standin: StandIn, calls: int) -> bool:
    return len(standin.calls) == calls and standin.in_flight == 1


async def test_bad_requests_are_refused_and_nothing_is_stored(tmp_path: Path,
                                                              root: Path) -> None:
    (tmp_path / "outside.wav").write_bytes(b"good")
    jobs = await _started(_config(tmp_path, root), StandIn())
    try:
        bodies: tuple[dict[str, Any], ...] = (
            {"files": ["../outside.wav"]}, {"files": ["nope.wav"]}, {"files": []},
            {"files": ["day1"], "options": {"formats": ["doc"]}})
        for body in bodies:
            with pytest.raises(BatchRefused) as info:
                await jobs.create(body)
            assert info.value.status == 400
        assert await jobs.jobs() == []
    finally:
        await jobs.stop()


async def test_a_root_that_is_not_a_directory_fails_the_start(tmp_path: Path) -> None:
    jobs = BatchJobs(_config(tmp_path, tmp_path / "missing"), cast(AsrHub, None),
                     transcribe=StandIn())
    with pytest.raises(NotADirectoryError, match="batch.root"):
        await jobs.start()


async def test_live_calls_hold_the_job_to_concurrency_with_calls(tmp_path: Path,
                                                                 root: Path) -> None:
    """While calls are up at most ``concurrency_with_calls`` files run (0: none); when they
    end the job goes back to ``concurrency``."""
    live = [1]
    config = dataclasses.replace(
        _config(tmp_path, root, concurrency=3),
        batch=dataclasses.replace(_config(tmp_path, root, concurrency=3).batch,
                                  concurrency_with_calls=0))
    standin = StandIn(held=True)
    assert standin.gate is not None
    gate = standin.gate
    jobs = BatchJobs(config, cast(AsrHub, None), transcribe=standin,
                     live_calls=lambda: live[0])
    await jobs.start()
    try:
        view = await jobs.create({"files": ["day1"]})
        await asyncio.sleep(0.6)
        assert standin.calls == []                       # a call is up: batch waits
        config_one = dataclasses.replace(config.batch, concurrency_with_calls=1)
        jobs._batch = config_one
        await _until(lambda: _async(standin.in_flight == 1), "one file with a call up")
        await asyncio.sleep(0.4)
        assert standin.max_in_flight == 1
        live[0] = 0                                      # the call ended
        await _until(lambda: _async(standin.in_flight == 3), "back to concurrency 3")
        for _ in range(5):
            gate.release()
        await _finished(jobs, view["id"])
    finally:
        await jobs.stop()
    assert standin.max_in_flight == 3


async def _async(value: bool) -> bool:
    return value
