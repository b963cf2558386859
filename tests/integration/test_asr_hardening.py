"""The ASR path against a real Triton (asr_ack, whose END final's text is the number of samples
its sequence received): sequences that outlive an RTP pause, Triton stopped and restarted
mid-call, the outage's dropped audio, the flush after a reconnect, and shutdown ending every
sequence before the stream closes."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from gateway.asr.contract import Hypothesis
from gateway.asr.stream import AsrChannel, AsrHub
from gateway.config import TritonConfig
from gateway.metrics import Metrics
from gateway.triton_launcher import TritonProcess
from tests.conftest import GatewayFactory
from tests.media_tools import packets
from tests.peers.cuttable_proxy import CuttableProxy
from tests.rawsip import UdpPeer, request, response_to, sdp_offer
from tests.triton.fixtures import MODEL_REPOSITORY, private_triton

pytestmark = pytest.mark.slow
RATE = 16000
FRAME = 320
IDLE_S = 1.5                      # this Triton's max_sequence_idle for asr_ack


@pytest.fixture(scope="module")
def ack_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """asr_ack with a 1.5 s sequence idle timeout (the repository's is 60 s)."""
    root = tmp_path_factory.mktemp("ack_repo")
    model = root / "asr_ack"
    model.mkdir()
    (model / "1").symlink_to(MODEL_REPOSITORY / "asr_ack" / "1", target_is_directory=True)
    config = (MODEL_REPOSITORY / "asr_ack" / "config.pbtxt").read_text()
    assert "max_sequence_idle_microseconds: 60000000" in config
    (model / "config.pbtxt").write_text(config.replace(
        "max_sequence_idle_microseconds: 60000000",
        f"max_sequence_idle_microseconds: {int(IDLE_S * 1e6)}"))
    with private_triton(tmp_path_factory.mktemp("ack_work"), ["asr_ack"],
                        repository=root) as server:
        yield server


class Heard:
    def __init__(self) -> None:
        self.hyps: list[Hypothesis] = []

    def __call__(self, _ch: AsrChannel, hyp: Hypothesis, _latency: float | None) -> None:
        self.hyps.append(hyp)

    @property
    def finals(self) -> list[Hypothesis]:
        return [h for h in self.hyps if h.is_final]


async def _hub(url: str, **config: Any) -> tuple[AsrHub, Metrics]:
    metrics = Metrics()
    buffer_s = config.pop("buffer_s", 10.0)
    hub = AsrHub(TritonConfig(url=url, asr_model="asr_ack", connect_timeout_s=2.0, **config),
                 metrics, max_buffer_s=buffer_s)
    hub.start()
    await _until(lambda: hub.connected, 20)
    return hub, metrics


async def _until(condition: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _talk(ch: AsrChannel, seconds: float, *, real_time: bool = False) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(round(seconds * RATE / FRAME)):
        ch.push(np.full(FRAME, 0.05, np.float32), loop.time())
        await asyncio.sleep(FRAME / RATE if real_time else 0)


def _metric(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_pause_longer_than_the_sequence_idle_timeout_keeps_the_sequence(
        ack_triton: TritonProcess) -> None:
    hub, metrics = await _hub(ack_triton.grpc_url, sequence_keepalive_s=0.4)
    heard = Heard()
    ch = hub.open("pause/customer", heard)
    try:
        await _talk(ch, 1.0)
        await asyncio.sleep(2 * IDLE_S + 0.5)               # RTP paused: nothing pushed
        await _talk(ch, 0.5)
        assert await ch.close(5.0) is True
    finally:
        await hub.close()
    assert _metric(metrics, "gateway_triton_errors_total", kind="sequence") == 0
    assert _metric(metrics, "gateway_triton_errors_total", kind="stream") == 0
    assert _metric(metrics, "gateway_asr_keepalives_total") >= 3
    # one sequence heard all the audio: asr_ack's END final counts its samples
    assert [h.text for h in heard.finals] == [str(round(1.5 * RATE))]
    assert heard.finals[0].audio_s == 1.5


async def test_a_sequence_triton_ended_is_replayed_without_losing_audio(
        ack_triton: TritonProcess) -> None:
    """Keep-alives off (longer than the idle timeout): Triton ends the sequence, refuses the
    next chunk, and that channel alone starts a fresh sequence with its unconfirmed audio."""
    hub, metrics = await _hub(ack_triton.grpc_url, sequence_keepalive_s=600.0)
    heard, other = Heard(), Heard()
    ch = hub.open("pause/customer", heard)
    busy = hub.open("busy/agent", other)
    try:
        await _talk(ch, 1.0)
        for _ in range(8):                                  # the other channel keeps talking
            await _talk(busy, 0.5, real_time=True)
        await _talk(ch, 0.5)
        assert await ch.close(5.0) is True
        assert await busy.close(5.0) is True
    finally:
        await hub.close()
    assert _metric(metrics, "gateway_triton_errors_total", kind="sequence") >= 1
    assert _metric(metrics, "gateway_triton_errors_total", kind="stream") == 0
    assert [h.text for h in heard.finals] == [str(round(1.5 * RATE))]
    assert heard.finals[0].audio_s == 1.5
    assert [h.text for h in other.finals] == [str(4 * RATE)]   # never restarted


async def test_after_an_outage_the_flush_ends_on_the_last_final_and_drops_are_reported(
        ack_triton: TritonProcess) -> None:
    """The caller talks on through a Triton restart (20 ms frames in real time), and more
    audio than the buffer holds arrives right after Triton is back, while the hub still
    waits for its next reconnect attempt: dropped after the hub's last failed attempt.
    The hub reaches Triton through a proxy that refuses it until the burst is in: the hub's
    retries would otherwise find Triton ready before the test does, and the burst, arriving
    with the stream up, would be a second loss of its own (a second asr.audio_dropped)."""
    proxy = CuttableProxy(ack_triton.grpc_url)
    await proxy.start()
    with capture_logs() as logs:
        hub, metrics = await _hub(proxy.url, buffer_s=1.0)
        heard = Heard()
        ch = hub.open("outage/customer", heard)
        try:
            await _talk(ch, 0.48)
            await _until(lambda: ch.queue.next_start == round(0.48 * RATE), 5)
            talker = asyncio.create_task(_talk(ch, 30.0, real_time=True))
            proxy.up = False                                  # no reconnect until the burst
            await asyncio.to_thread(ack_triton.stop)          # Triton gone mid-call
            await _until(lambda: not hub.connected, 10)
            await asyncio.to_thread(ack_triton.start, 180)
            talker.cancel()
            await asyncio.gather(talker, return_exceptions=True)
            await _talk(ch, 3.0)                              # a burst, before the reconnect
            assert not hub.connected
            proxy.up = True
            await _until(lambda: hub.connected, 30)
            await _talk(ch, 0.5)
            started = time.monotonic()
            assert await ch.close(8.0) is True
            flush_s = time.monotonic() - started
        finally:
            await hub.close()
            await proxy.close()
    assert flush_s < 3.0, flush_s                             # not the whole final_timeout
    total_s = ch.queue.next_start / RATE                      # everything the channel got
    dropped_s = _metric(metrics, "gateway_asr_dropped_seconds_total")
    assert dropped_s > 0.5, "the outage was longer than the 1 s buffer"
    drops = [e for e in logs if e["event"] == "asr.audio_dropped"]
    assert len(drops) == 1, drops                             # one line for the outage
    assert drops[0]["channel"] == "outage/customer"
    assert drops[0]["dropped_s"] == pytest.approx(dropped_s, abs=0.001)
    assert drops[0]["to_s"] - drops[0]["from_s"] >= dropped_s - 0.001
    final = heard.finals[-1]
    # every sample was either heard by the last sequence or counted as dropped
    assert int(final.text) + round(dropped_s * RATE) == round(total_s * RATE)
    assert final.audio_s == pytest.approx(total_s)            # channel time, gap included


# ------------------------------------------------------------------ the daemon on SIGTERM

def _call(gw_port: int, call_id: str) -> tuple[UdpPeer, socket.socket, int, str]:
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    sip = UdpPeer()
    sip.send(request("INVITE", gw_port, local_port=sip.port, call_id=call_id,
                     headers="Content-Type: application/sdp",
                     body=sdp_offer(rtp.getsockname()[1], "0")), gw_port)
    final = sip.replies(timeout_s=20)[-1]                     # a busy CI machine is slow
    assert final.status == 200, final.status
    to_tag = (final.header("To") or "").split("tag=")[1]
    port = int(final.body.split(b"m=audio ")[1].split(b" ")[0])
    sip.send(request("ACK", gw_port, local_port=sip.port, call_id=call_id, to_tag=to_tag),
             gw_port)
    return sip, rtp, port, to_tag


def _answer_byes(peer: UdpPeer, gw_port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        data = peer.recv(timeout_s=0.2)
        if data is not None and data.startswith(b"BYE "):
            peer.send(response_to(data), gw_port)


@pytest.fixture
def own_ack_triton(tmp_path: Path) -> Iterator[TritonProcess]:
    with private_triton(tmp_path, ["asr_ack"]) as server:
        yield server


def test_sigterm_with_live_calls_ends_every_sequence_and_triton_stays_up(
        own_ack_triton: TritonProcess, gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory({"triton": {"url": own_ack_triton.grpc_url, "asr_model": "asr_ack",
                                     "final_timeout_s": 1.0},
                          "sip": {"drain_grace_s": 0.5}, "tts": {"enabled": False}})
    gw.wait_log("triton.ready", 20)
    calls = [_call(gw.sip_port, f"live-{i}") for i in range(4)]
    stop = threading.Event()
    answering = [threading.Thread(target=_answer_byes, args=(sip, gw.sip_port, stop),
                                  daemon=True)
                 for sip, _rtp, _port, _tag in calls[:2]]     # two peers answer the BYE
    for t in answering:
        t.start()
    audio = np.full(8000, 1000, np.int16)                      # 1 s per call
    for _sip, rtp, port, _tag in calls:
        for data in packets(audio, "PCMU", seq0=1, ts0=160):
            rtp.sendto(data, ("127.0.0.1", port))
    time.sleep(1.5)
    gw.stop(40)
    stop.set()
    finals = gw.events("transcript.final")
    # asr_ack answers END only: one final per call means every sequence was ended
    assert sorted(f["call_id"] for f in finals if f["text"]) == sorted(
        c["call_id"] for c in gw.events("call.answered")), finals
    closed = gw.wait_log("asr.closed", 1)
    # the two calls whose BYE went unanswered were still open: the hub ended them
    assert closed["sequences"] == 2 and closed["ended"] == 2, closed
    assert closed["abandoned"] == 0 and closed["half_closed"] is True, closed
    time.sleep(1.0)                                            # a crash came 0.4 s after exit
    assert own_ack_triton.alive(), own_ack_triton.log_tail()
    # Triton then stops the way `make run` stops it: a sequence left open counts as an
    # in-flight inference, Triton waits out its exit timeout and crashes (Signal 11)
    rc = own_ack_triton.stop()
    log = own_ack_triton.log_tail(200_000)
    assert not re.search(r"has \d+ in-flight inferences", log), log[-3000:]
    assert "Signal (11)" not in log and "Exit timeout expired" not in log, log[-3000:]
    assert rc == 0, log[-3000:]
    for sip, rtp, _port, _tag in calls:
        sip.close()
        rtp.close()
    shutil.rmtree(gw.tmp / "state", ignore_errors=True)


# ------------------------------------------------------------------ metrics of a real call

def _samples(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        head, _sep, value = line.rpartition(" ")
        metric, _brace, rest = head.partition("{")
        if metric == name and ",".join(sorted(rest.rstrip("}").split(","))) == want:
            return float(value)
    return 0.0


def test_asr_histograms_of_a_call_count_its_transcripts_and_requests(
        tmp_path: Path, gateway_factory: GatewayFactory) -> None:
    """A quiet call through asr_cpu_default (Whisper): the END final of a stream with
    nothing said is empty, no transcript event, so no latency observation either."""
    with private_triton(tmp_path, ["asr_cpu_default"]) as triton:
        gw = gateway_factory({"triton": {"url": triton.grpc_url, "asr_model": "asr_cpu_default"},
                              "tts": {"enabled": False}})
        gw.wait_log("triton.ready", 20)
        sip, rtp, port, to_tag = _call(gw.sip_port, "quiet")
        call_id = gw.wait_log("call.answered", 5)["call_id"]
        started = time.monotonic()
        noise = (np.random.default_rng(1).standard_normal(8000 * 2) * 20).astype(np.int16)
        for i, data in enumerate(packets(noise, "PCMU", seq0=1, ts0=160)):
            time.sleep(max(0.0, started + i * 0.02 - time.monotonic()))
            rtp.sendto(data, ("127.0.0.1", port))
        sip.send(request("BYE", gw.sip_port, local_port=sip.port, call_id="quiet",
                         to_tag=to_tag, cseq=2), gw.sip_port)
        ended = gw.wait_log("call.ended", 30)
        elapsed = time.monotonic() - started
        status, body = gw.http("/metrics")
        assert status == 200
        text = body.decode()
    assert ended["asr_finals_flushed"] is True
    for kind in ("final", "partial"):
        events = [e for e in gw.events(f"transcript.{kind}") if e["call_id"] == call_id]
        count = _samples(text, "gateway_asr_latency_seconds_count", kind=kind)
        assert count == len(events), (kind, count, events)
    sends = _samples(text, "gateway_asr_send_delay_seconds_count")
    # 2 s of audio in 160 ms chunks: about 13 requests with new audio (+1 for END's rest)
    assert 5 <= sends <= 14, sends
    assert _samples(text, "gateway_asr_send_delay_seconds_sum") < min(elapsed, sends * 0.5)
    assert _samples(text, "gateway_asr_dropped_seconds_total") == 0
    sip.close()
    rtp.close()
