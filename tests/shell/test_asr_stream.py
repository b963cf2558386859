"""The ASR client shell (gateway/asr/stream.py) in-process against a real asr_ack Triton.

asr_ack answers every request with a partial and, on END, a final whose text is the
number of samples its sequence received: so a final says exactly which audio reached
which sequence.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest

from gateway.asr.contract import Hypothesis
from gateway.asr.stream import AsrChannel, AsrHub
from gateway.config import TritonConfig
from gateway.metrics import Metrics
from gateway.triton_launcher import TritonProcess
from tests.peers.ports import free_tcp_port

RATE = 16000
FRAME = 320                       # 20 ms at 16 kHz
CLOSE_S = 20.0                    # generous: a shared 2-core machine


class Heard:
    def __init__(self) -> None:
        self.hyps: list[Hypothesis] = []
        self.latencies: list[float | None] = []
        self.channels: set[str] = set()

    def __call__(self, ch: AsrChannel, hyp: Hypothesis, latency: float | None) -> None:
        self.hyps.append(hyp)
        self.latencies.append(latency)
        self.channels.add(ch.key)

    @property
    def finals(self) -> list[Hypothesis]:
        return [h for h in self.hyps if h.is_final]


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.02)


def _metric(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def push_seconds(ch: AsrChannel, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    frames = round(seconds * RATE / FRAME)
    for _ in range(frames):
        ch.push(np.full(FRAME, 0.05, np.float32), loop.time())
        await asyncio.sleep(0)
    return frames * FRAME


@pytest.fixture
async def hub(shell_triton: TritonProcess) -> AsyncIterator[tuple[AsrHub, Metrics]]:
    metrics = Metrics()
    hub = AsrHub(TritonConfig(url=shell_triton.grpc_url, asr_model="asr_ack",
                              connect_timeout_s=5.0), metrics)
    hub.start()
    await until(lambda: hub.connected, 30)
    try:
        yield hub, metrics
    finally:
        await hub.close()


async def test_one_channel_gets_partials_then_one_final_counting_all_its_audio(
        hub: tuple[AsrHub, Metrics]) -> None:
    asr, metrics = hub
    heard = Heard()
    ch = asr.open("call-1/customer", heard)
    sent = await push_seconds(ch, 1.0)
    assert await ch.close(CLOSE_S) is True
    assert [h.text for h in heard.finals] == [str(sent)]
    assert heard.hyps[-1].is_final and heard.finals[0].audio_s == pytest.approx(1.0)
    partial_ends = [h.audio_s for h in heard.hyps if not h.is_final]
    assert partial_ends and partial_ends == sorted(partial_ends)
    assert heard.channels == {"call-1/customer"}
    # the final's latency: from the audio's arrival to the result, measured, bounded
    final_latency = heard.latencies[-1]
    assert final_latency is not None and 0.0 <= final_latency < CLOSE_S
    assert _metric(metrics, "gateway_triton_errors_total", kind="stream") == 0


async def test_interleaved_channels_keep_their_own_sequences(
        hub: tuple[AsrHub, Metrics]) -> None:
    asr, _metrics = hub
    seconds = {"a/customer": 0.4, "b/customer": 1.2, "b/agent": 0.8}
    heard = {key: Heard() for key in seconds}
    channels = {key: asr.open(key, heard[key]) for key in seconds}
    assert len({ch.corrid for ch in channels.values()}) == 3
    loop = asyncio.get_running_loop()
    sent = dict.fromkeys(seconds, 0)
    for step in range(round(max(seconds.values()) * RATE / FRAME)):
        for key, ch in channels.items():              # one frame each, round robin
            if step * FRAME < seconds[key] * RATE:
                ch.push(np.full(FRAME, 0.05, np.float32), loop.time())
                sent[key] += FRAME
        await asyncio.sleep(0)
    closed = await asyncio.gather(*(ch.close(CLOSE_S) for ch in channels.values()))
    assert closed == [True, True, True]
    assert {key: [h.text for h in h_.finals] for key, h_ in heard.items()} == {
        key: [str(n)] for key, n in sent.items()}


async def test_hub_close_ends_an_open_channel_with_its_final(
        shell_triton: TritonProcess) -> None:
    metrics = Metrics()
    asr = AsrHub(TritonConfig(url=shell_triton.grpc_url, asr_model="asr_ack"), metrics)
    asr.start()
    await until(lambda: asr.connected, 30)
    heard = Heard()
    ch = asr.open("left-open/customer", heard)
    sent = await push_seconds(ch, 0.6)
    await until(lambda: bool(heard.hyps), CLOSE_S)    # the sequence is running
    await asr.close()                                 # shutdown without ch.close()
    assert [h.text for h in heard.finals] == [str(sent)]
    assert not asr.connected


async def test_unreachable_triton_buffers_and_closes_without_raising() -> None:
    metrics = Metrics()
    url = f"127.0.0.1:{free_tcp_port()}"               # nobody listens there
    asr = AsrHub(TritonConfig(url=url, asr_model="asr_ack", connect_timeout_s=0.5), metrics,
                 max_buffer_s=0.5)
    asr.start()
    heard = Heard()
    ch = asr.open("nowhere/customer", heard)
    try:
        await push_seconds(ch, 1.0)                   # twice the buffer
        await asyncio.sleep(0.5)
        assert not asr.connected
        assert asr.buffered_s() == pytest.approx(0.5, abs=0.05)
        assert _metric(metrics, "gateway_asr_dropped_seconds_total") == pytest.approx(
            0.5, abs=0.05)
        assert await ch.close(1.0) is False           # no final can come
    finally:
        started = time.monotonic()
        await asr.close()
        assert time.monotonic() - started < 10.0
    assert heard.hyps == []
