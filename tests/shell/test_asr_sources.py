"""The ASR channel's source policies in-process against a real asr_ack Triton.

A file source (a stored recording) is fed faster than real time with back-pressure: every
sample reaches the model, also through Triton outages (a loopback TCP proxy in front of
Triton cuts the gRPC connection; the hub reconnects and replays). A live source never waits:
beyond the buffer its oldest audio is dropped, counted and logged. asr_ack's END final is the
number of samples its sequence received, and it confirms nothing before END, so after a replay
the final counts the whole file again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from gateway.asr.audioqueue import SourcePolicy
from gateway.asr.stream import AsrChannel, AsrHub
from gateway.config import TritonConfig
from gateway.metrics import Metrics
from gateway.triton_launcher import TritonProcess
from tests.peers.cuttable_proxy import CuttableProxy
from tests.shell.test_asr_stream import CLOSE_S, RATE, Heard, _metric, until
from tests.triton.fixtures import private_triton

FILE_S = 60
PIECE = 1600                      # 100 ms per feed() call
BUFFER_S = 2.0


@pytest.fixture
def outage_triton(tmp_path: Path) -> Iterator[TritonProcess]:
    """A Triton of the test's own (asr_ack only) behind the proxy: connections cut with
    sequences open can make the bundled Triton 2.51 crash a little later (its gRPC
    cancellation races), which must not take the tier's shared Triton down with it."""
    with private_triton(tmp_path, ["asr_ack"]) as server:
        yield server


@pytest.fixture
async def proxy(outage_triton: TritonProcess) -> AsyncIterator[CuttableProxy]:
    p = CuttableProxy(outage_triton.grpc_url)
    await p.start()
    try:
        yield p
    finally:
        await p.close()


async def _hub(url: str, buffer_s: float) -> tuple[AsrHub, Metrics]:
    metrics = Metrics()
    hub = AsrHub(TritonConfig(url=url, asr_model="asr_ack", connect_timeout_s=5.0), metrics,
                 max_buffer_s=buffer_s)
    hub.start()
    await until(lambda: hub.connected, 30)
    return hub, metrics


def _file_audio(seconds: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (0.1 * rng.standard_normal(seconds * RATE)).astype(np.float32)


async def _feed_file(ch: AsrChannel, audio: np.ndarray, pending: list[int],
                     at_s: dict[float, asyncio.Event] | None = None) -> int:
    """Feed the whole file in 100 ms pieces as fast as feed() lets; the pending samples
    seen after each piece into ``pending``; ``at_s``: events set when that much was fed."""
    fed = 0
    for start in range(0, len(audio), PIECE):
        assert await ch.feed(audio[start:start + PIECE]) is True
        fed += len(audio[start:start + PIECE])
        pending.append(ch.queue.pending_samples)
        for mark, event in (at_s or {}).items():
            if fed >= mark * RATE:
                event.set()
    return fed


async def test_a_file_fed_faster_than_real_time_reaches_the_model_whole(
        shell_triton: TritonProcess) -> None:
    asr, metrics = await _hub(shell_triton.grpc_url, BUFFER_S)
    heard = Heard()
    try:
        with capture_logs() as logs:
            ch = asr.open("file/customer", heard, source=SourcePolicy.FILE)
            audio, pending = _file_audio(FILE_S), list[int]()
            started = time.monotonic()
            fed = await asyncio.wait_for(_feed_file(ch, audio, pending), 120)
            assert await ch.close(CLOSE_S) is True
            elapsed = time.monotonic() - started
    finally:
        await asr.close()
    assert fed == FILE_S * RATE
    assert [h.text for h in heard.finals] == [str(FILE_S * RATE)]   # every sample, once
    assert heard.finals[0].audio_s == pytest.approx(FILE_S)
    assert elapsed < FILE_S                                           # faster than real time
    # back-pressure: the producer was held at the buffer, never let past it
    assert max(pending) == BUFFER_S * RATE
    assert _metric(metrics, "gateway_asr_dropped_seconds_total") == 0
    assert not [e for e in logs if e["event"] == "asr.audio_dropped"]


async def test_a_file_loses_nothing_through_triton_outages(proxy: CuttableProxy) -> None:
    asr, metrics = await _hub(proxy.url, BUFFER_S)
    heard = Heard()
    marks = {20.0: asyncio.Event(), 40.0: asyncio.Event()}

    async def outages() -> None:
        for mark in marks.values():
            await mark.wait()
            proxy.cut()                                   # Triton unreachable for a while
            await until(lambda: not asr.connected, 10)
            await asyncio.sleep(0.5)
            proxy.up = True
            await until(lambda: asr.connected, 30)

    try:
        ch = asr.open("file-outage/agent", heard, source=SourcePolicy.FILE)
        audio, pending = _file_audio(FILE_S), list[int]()
        cutter = asyncio.create_task(outages())
        fed = await asyncio.wait_for(_feed_file(ch, audio, pending, marks), 120)
        await asyncio.wait_for(cutter, 60)
        assert await ch.close(CLOSE_S) is True
    finally:
        await asr.close()
    assert fed == FILE_S * RATE
    assert _metric(metrics, "gateway_triton_errors_total", kind="reconnect") == 2
    # asr_ack confirms nothing before END: the last sequence was replayed the whole file
    assert [h.text for h in heard.finals] == [str(FILE_S * RATE)]
    assert _metric(metrics, "gateway_asr_dropped_seconds_total") == 0


async def test_a_live_source_in_an_outage_drops_its_oldest_audio_with_a_count(
        proxy: CuttableProxy) -> None:
    asr, metrics = await _hub(proxy.url, 1.0)
    heard = Heard()
    try:
        with capture_logs() as logs:
            ch = asr.open("live/customer", heard)
            proxy.cut()
            await until(lambda: not asr.connected, 10)
            loop = asyncio.get_running_loop()
            for _ in range(150):                          # 3 s at once, into a 1 s buffer
                ch.push(np.full(320, 0.05, np.float32), loop.time())
            assert _metric(metrics, "gateway_asr_dropped_seconds_total") == pytest.approx(2.0)
            proxy.up = True
            await until(lambda: asr.connected, 30)
            assert await ch.close(CLOSE_S) is True
    finally:
        await asr.close()
    assert [h.text for h in heard.finals] == [str(RATE)]   # what the buffer kept: 1 s
    drops = [e for e in logs if e["event"] == "asr.audio_dropped"]
    assert [(d["from_s"], d["to_s"], d["dropped_s"]) for d in drops] == [(0.0, 2.0, 2.0)]
