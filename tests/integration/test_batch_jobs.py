"""The batch jobs API over real HTTP: the daemon (``python -m gateway run``) with ``[batch]
root`` set, a real Triton serving asr_ack (fast: its final is the count of samples heard),
generated WAVs, a corrupt one, paths out of the root; the completion webhook received by an
aiohttp server here and its signature checked; the daemon killed mid-job and started again
on the same state_dir: every job still listed, the half-done one completes without redoing
the files it had finished; DELETE. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from gateway.triton_launcher import TritonProcess
from tests.conftest import _next_rtp_range
from tests.gateway_proc import GatewayProcess, base_config, merge
from tests.triton.fixtures import private_triton

pytestmark = pytest.mark.slow

TOKEN = "batch-jobs-token"
SECRET = "batch-webhook-secret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JOB_S = 90.0                 # a job of a few short files against asr_ack
START_S = 30.0


class Hook:
    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.get("X-Gateway-Signature", ""),
                              await request.read()))
        return web.Response(status=204)

    def valid(self, signature: str, body: bytes) -> bool:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature, expected)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    receiver = Hook()
    app = web.Application()
    app.router.add_post("/batch-done", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/batch-done"
    yield receiver
    await runner.cleanup()


def _wav(path: Path, seconds: float, channels: int, rate: int = 8000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    samples = (3000 * rng.standard_normal((round(seconds * rate), channels))).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    base = tmp_path / "recordings"
    _wav(base / "day1" / "stereo.wav", 6.0, 2, seed=1)
    _wav(base / "day1" / "mono.wav", 4.0, 1, rate=16000, seed=2)
    _wav(base / "day1" / "short.wav", 1.5, 2, seed=3)
    (base / "day1" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    for n in range(10):
        _wav(base / "long" / f"call{n:02}.wav", 60.0, 2, seed=10 + n)
    (tmp_path / "outside.wav").write_bytes((base / "day1" / "short.wav").read_bytes())
    os.symlink(tmp_path / "outside.wav", base / "escape.wav")
    return base


def _daemon(tmp_path: Path, triton: TritonProcess, root: Path) -> GatewayProcess:
    work = tmp_path / "gw"
    work.mkdir(exist_ok=True)
    config = merge(base_config(work, _next_rtp_range()), {
        "http": {"token": TOKEN},
        "triton": {"url": triton.grpc_url, "asr_model": "asr_ack", "connect_timeout_s": 5.0},
        "batch": {"root": str(root), "concurrency": 2, "webhook_secret": SECRET,
                  "webhook_timeout_s": 5.0, "retries": 2},
    })
    return GatewayProcess(work, config)


class Api:
    def __init__(self, session: aiohttp.ClientSession, gw: GatewayProcess) -> None:
        self.session, self.base = session, f"http://127.0.0.1:{gw.http_port}/v1/transcriptions"

    async def call(self, method: str, path: str = "", body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        async with self.session.request(method, self.base + path, json=body,
                                        headers=AUTH if headers is None else headers) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None, resp.headers

    async def job(self, job_id: str) -> dict[str, Any]:
        status, body, _ = await self.call("GET", f"/{job_id}")
        assert status == 200, body
        return dict(body)

    async def until(self, job_id: str, done: Any, what: str, timeout_s: float = JOB_S
                    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = await self.job(job_id)
            if done(job):
                return job
            assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}: {job}"
            await asyncio.sleep(0.05)


def _finished(job: dict[str, Any]) -> bool:
    return job["status"] in ("succeeded", "failed", "cancelled")


async def _start(gw: GatewayProcess) -> GatewayProcess:
    return await asyncio.to_thread(gw.start, START_S)


@contextlib.contextmanager
def _ack_triton(tmp_path: Path, name: str) -> Iterator[TritonProcess]:
    work = tmp_path / name
    work.mkdir()
    with private_triton(work, ["asr_ack"]) as server:
        yield server


async def test_batch_jobs_over_http_with_the_webhook_and_a_restart(
        tmp_path: Path, root: Path, hook: Hook) -> None:
    """A Triton of each daemon's own: a daemon killed with sequences open can make Triton
    2.51 crash a little later (its gRPC cancellation races; tests/shell/test_asr_sources),
    which is not what this test is about, so the second daemon gets a fresh one."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        with _ack_triton(tmp_path, "triton1") as triton:
            gw = await _start(_daemon(tmp_path, triton, root))
            try:
                api = Api(session, gw)
                first = await _refusals_then_a_job(api, hook)
                long_id, finished_before = await _kill_mid_job(api, gw)
            finally:
                gw.kill()
        with _ack_triton(tmp_path, "triton2") as triton:
            gw = await _start(_daemon(tmp_path, triton, root))     # the same state_dir
            try:
                api = Api(session, gw)
                await _after_restart(api, gw, first, long_id, finished_before, hook)
                assert await asyncio.to_thread(gw.stop) == 0        # SIGTERM: a clean stop
            finally:
                gw.kill()


async def _refusals_then_a_job(api: Api, hook: Hook) -> dict[str, Any]:
    """400s for bad bodies and paths, 401 without the token; then a job of day1 to its end,
    its per-file results and outputs, and the signed webhook."""
    assert (await api.call("POST", body={"files": ["day1"]}, headers={}))[0] == 401
    for body, message in (
            ({"files": ["../outside.wav"]}, "without '..'"),
            ({"files": ["escape.wav"]}, "outside the batch root"),
            ({"files": ["/etc/hostname"]}, "paths are relative"),
            ({"files": ["day1/missing.wav"]}, "no such file"),
            ({"files": []}, "'files' must be a non-empty array"),
            ({"files": ["day1"], "options": {"formats": ["doc"]}}, "unknown output format"),
            ({"files": ["day1"], "webhook_url": "nope"}, "'webhook_url'")):
        status, answer, _ = await api.call("POST", body=body)
        assert status == 400 and message in answer["error"], (body, answer)
    async with api.session.post(api.base, data=b"{not json", headers=AUTH) as resp:
        assert resp.status == 400
    status, created, headers = await api.call("POST", body={
        "files": ["day1"], "options": {"formats": ["vtt", "txt"]}, "webhook_url": hook.url})
    assert status == 201 and created["status"] == "queued", created
    assert headers["Location"] == f"/v1/transcriptions/{created['id']}"
    assert created["progress"]["files_total"] == 4
    job = await api.until(created["id"], _finished, "the day1 job")
    assert job["status"] == "succeeded", job
    results = {f["path"]: f for f in job["files"]}
    assert results["day1/corrupt.wav"]["status"] == "failed"
    assert results["day1/corrupt.wav"]["error"]
    for name, seconds in (("stereo", 6.0), ("mono", 4.0), ("short", 1.5)):
        result = results[f"day1/{name}.wav"]
        assert result["status"] == "done" and result["error"] is None, result
        assert result["audio_s"] == pytest.approx(seconds, abs=0.01)
        outputs = sorted(Path(p).name for p in result["outputs"])
        assert outputs == [f"{name}.wav.{ext}" for ext in ("json", "txt", "vtt")]
        assert all(Path(p).stat().st_size > 0 for p in result["outputs"])
        doc = next(Path(p) for p in result["outputs"] if p.endswith(".json"))
        json.loads(doc.read_text())
    assert job["progress"]["audio_s"] == pytest.approx(11.5, abs=0.03)
    await _webhook(hook, created["id"], "succeeded")
    return job


async def _webhook(hook: Hook, job_id: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while not any(json.loads(b)["transcription"]["id"] == job_id for _s, b in hook.received):
        assert time.monotonic() < deadline, "no completion webhook"
        await asyncio.sleep(0.05)
    signature, body = next((s, b) for s, b in hook.received
                           if json.loads(b)["transcription"]["id"] == job_id)
    assert hook.valid(signature, body), signature
    sent = json.loads(body)
    assert sent["type"] == "transcription.completed"
    assert sent["transcription"]["status"] == status


async def _kill_mid_job(api: Api, gw: GatewayProcess) -> tuple[str, dict[str, Any]]:
    """A job of ten 60 s stereo files; SIGKILL once some (not all) have finished."""
    status, created, _ = await api.call("POST", body={"files": ["long"]})
    assert status == 201 and created["progress"]["files_total"] == 10

    def some(job: dict[str, Any]) -> bool:
        return bool(job["progress"]["files_finished"] >= 2)
    await api.until(created["id"], some, "two long files finished")
    gw.signal(signal.SIGKILL)                           # a crash: nothing is flushed
    await asyncio.to_thread(gw.wait, 10)
    with_sqlite = await asyncio.to_thread(_read_store, gw, created["id"])
    finished = {p: r for p, r in with_sqlite.items() if r["status"] == "done"}
    assert 2 <= len(finished) < 10, with_sqlite          # mid-job
    for row in finished.values():
        row["mtime"] = {o: Path(o).stat().st_mtime_ns for o in row["outputs"]}
    return created["id"], finished


def _read_store(gw: GatewayProcess, job_id: str) -> dict[str, dict[str, Any]]:
    """The file rows of a job as the dead daemon left them (read with sqlite3 directly)."""
    import sqlite3

    db = sqlite3.connect(Path(gw.config["storage"]["state_dir"]) / "batch.sqlite3")
    try:
        rows = db.execute("SELECT path, status, wall_s, outputs FROM job_files "
                          "WHERE job_id = ?", (job_id,)).fetchall()
    finally:
        db.close()
    return {p: {"status": s, "wall_s": w, "outputs": json.loads(o)} for p, s, w, o in rows}


async def _after_restart(api: Api, gw: GatewayProcess, first: dict[str, Any], long_id: str,
                         finished_before: dict[str, Any], hook: Hook) -> None:
    status, listed, _ = await api.call("GET")
    assert status == 200
    assert [j["id"] for j in listed["transcriptions"]] == [long_id, first["id"]]  # newest first
    assert (await api.job(first["id"]))["files"] == first["files"]                  # persisted
    started = gw.wait_log("batch.job_started", 10, lambda line: line["job_id"] == long_id)
    assert started["pending"] == 10 - len(finished_before)   # only the unfinished files
    queued_status, queued, _ = await api.call("POST", body={"files": ["day1/short.wav"]})
    assert queued_status == 201
    status, cancelled, _ = await api.call("DELETE", f"/{queued['id']}")
    assert (status, cancelled["status"]) == (200, "cancelled")
    job = await api.until(long_id, _finished, "the long job after the restart")
    assert job["status"] == "succeeded" and job["progress"]["files_done"] == 10, job
    for f in job["files"]:
        if f["path"] in finished_before:                    # not done again
            before = finished_before[f["path"]]
            assert f["wall_s"] == pytest.approx(before["wall_s"], abs=1e-3)
            assert {o: Path(o).stat().st_mtime_ns for o in f["outputs"]} == before["mtime"]
    status, succeeded, _ = await api.call("GET", "?status=succeeded")
    assert [j["id"] for j in succeeded["transcriptions"]] == [long_id, first["id"]]
    assert (await api.call("GET", "?status=bogus"))[0] == 400
    out_dir = Path(next(f for f in first["files"] if f["outputs"])["outputs"][0]).parents[1]
    assert out_dir.name == first["id"] and out_dir.is_dir()
    assert (await api.call("DELETE", f"/{first['id']}"))[0] == 204
    assert (await api.call("GET", f"/{first['id']}"))[0] == 404
    assert not out_dir.exists()
    assert (await api.call("DELETE", "/no-such-job"))[0] == 404
    assert len([b for _s, b in hook.received]) == 1         # the long job had no webhook
