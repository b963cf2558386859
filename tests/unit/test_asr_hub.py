"""AsrHub against a small in-process fake of the Triton stream: the requests it writes are
decoded like Triton would, the replies are the contract's JSON. No sockets: what the hub
counts, observes and completes is checked against a scripted call."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from gateway.asr.audioqueue import SourcePolicy
from gateway.asr.contract import RequestId, StreamReply
from gateway.asr.stream import AsrChannel, AsrHub
from gateway.config import TritonConfig
from gateway.metrics import Metrics

RATE = 16000
FRAME = 320


class FakeStream:
    """Stands in for the gRPC call: takes the hub's requests, answers as a model would."""

    def __init__(self, hub: AsrHub) -> None:
        self.hub = hub
        hub.connected = True
        self.sent: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        """Run the writer's turns until the outbox is empty; the requests written."""
        out = []
        while self.hub._outbox:
            ch = self.hub._outbox.popleft()
            assert ch is not None
            request = self.hub._next_request(ch)
            if request is not None:
                params = request.parameters
                out.append({"corrid": params["sequence_id"].int64_param,
                            "start": params["sequence_start"].bool_param,
                            "end": params["sequence_end"].bool_param,
                            "samples": request.inputs[0].shape[1], "id": request.id,
                            "empty_final": "triton_enable_empty_final_response" in params
                            and params["triton_enable_empty_final_response"].bool_param})
            self.hub.pump(ch)
        self.sent += out
        return out

    def push(self, ch: AsrChannel, seconds: float) -> list[dict[str, Any]]:
        """Audio in 20 ms frames, the writer keeping up with each (real-time pace)."""
        out = []
        for _ in range(round(seconds * RATE / FRAME)):
            _push(ch, FRAME / RATE)
            out += self.drain()
        return out

    def answer(self, request: dict[str, Any], *results: dict[str, Any],
               complete: bool | None = None) -> None:
        """Triton marks the last response complete only for a request that asked for it."""
        raw = tuple(json.dumps(r).encode() for r in results)
        final = request["empty_final"] if complete is None else complete
        self.hub._on_response(StreamReply(RequestId.parse(request["id"]), raw, None, final))


def _result(kind: str, text: str, start_s: float, end_s: float, audio_s: float,
            segment: int = 0) -> dict[str, Any]:
    return {"type": kind, "segment": segment, "text": text, "start_s": start_s,
            "end_s": end_s, "audio_s": audio_s, "words": []}


def _push(ch: AsrChannel, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(round(seconds * RATE / FRAME)):
        ch.push(np.full(FRAME, 0.1, np.float32), loop.time())


def _count(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _hub(**config: Any) -> tuple[AsrHub, Metrics]:
    metrics = Metrics()
    return AsrHub(TritonConfig(asr_model="fake", **config), metrics, max_buffer_s=2.0), metrics


async def test_latency_and_send_delay_observe_each_event_once() -> None:
    hub, metrics = _hub()
    stream = FakeStream(hub)
    heard: list[Any] = []
    ch = hub.open("call/customer", lambda _c, hyp, lat: heard.append((hyp, lat)))
    requests = stream.push(ch, 1.0)
    assert [r["samples"] for r in requests] == [2560] * 6
    assert not any(r["empty_final"] for r in requests), "only END asks for the empty final"
    for r in requests:
        stream.answer(r, _result("partial", "", 0, 0, 0))            # nothing heard yet
    stream.answer(requests[3], _result("partial", "hello", 0.1, 0.6, 0.64))
    stream.answer(requests[5], _result("final", "hello", 0.1, 0.9, 0.96))
    closing = asyncio.create_task(ch.close(2.0))
    await asyncio.sleep(0)
    end = stream.drain()
    assert len(end) == 1 and end[0]["end"] and end[0]["samples"] == 640
    assert end[0]["empty_final"], "the hub must see the END request complete"
    # the END final of a model with nothing pending has empty text: it is no transcript
    stream.answer(end[0], _result("final", "", 1.0, 1.0, 1.0, segment=1))
    assert await closing is True
    assert _count(metrics, "gateway_asr_latency_seconds_count", kind="final") == 1
    assert _count(metrics, "gateway_asr_latency_seconds_count", kind="partial") == 1
    assert _count(metrics, "gateway_asr_send_delay_seconds_count") == 7
    assert _count(metrics, "gateway_asr_send_delay_seconds_sum") < 1.0
    assert [h.text for h, _lat in heard if h.is_final] == ["hello", ""]


async def test_replayed_audio_is_not_observed_again_after_a_reconnect() -> None:
    hub, metrics = _hub()
    stream = FakeStream(hub)
    ch = hub.open("call/customer", lambda _c, _h, _l: None)
    assert len(stream.push(ch, 0.96)) == 6
    hub._disconnected()                                   # the stream broke
    await asyncio.sleep(0.3)                              # the outage
    _push(ch, 0.32)
    hub.connected = True
    for c in list(hub._channels.values()):
        hub.pump(c)
    replay = stream.drain()
    assert replay[0]["start"] and sum(r["samples"] for r in replay) == round(1.28 * RATE)
    assert _count(metrics, "gateway_asr_send_delay_seconds_count") == 7   # 6 + the new audio
    # the replayed audio waited through the outage, but it is not observed again: the one
    # new observation is the audio pushed just before the reconnect
    assert _count(metrics, "gateway_asr_send_delay_seconds_sum") < 0.25


async def test_the_end_request_completing_ends_the_wait_even_after_drops() -> None:
    """After an outage that dropped audio, the last final's audio_s is less than the
    channel's audio: the wait ends on the END request's completion, not on audio_s."""
    hub, metrics = _hub()
    stream = FakeStream(hub)
    heard: list[Any] = []
    ch = hub.open("call/customer", lambda _c, hyp, lat: heard.append(hyp))
    _push(ch, 0.32)
    stream.drain()
    hub._disconnected()
    _push(ch, 3.0)                                        # 1.32 s over the 2 s buffer
    assert _count(metrics, "gateway_asr_dropped_seconds_total") == pytest.approx(1.32)
    hub.connected = True
    hub.pump(ch)
    closing = asyncio.create_task(ch.close(2.0))
    await asyncio.sleep(0)
    sent = stream.drain()
    assert sent[0]["start"] and sent[-1]["end"]
    assert sum(r["samples"] for r in sent) == 2 * RATE
    stream.answer(sent[-1], _result("final", "words", 0.5, 1.5, 2.0))
    assert await closing is True
    final = heard[-1]
    # sequence time 0 is channel time 1.32 s (the dropped audio came first)
    assert (final.start_s, final.end_s, final.audio_s) == (1.82, 2.82, 3.32)


async def test_a_refused_sequence_is_replayed_alone(caplog: pytest.LogCaptureFixture) -> None:
    hub, metrics = _hub()
    stream = FakeStream(hub)
    a = hub.open("a", lambda _c, _h, _l: None)
    b = hub.open("b", lambda _c, _h, _l: None)
    _push(a, 0.32)
    _push(b, 0.32)
    sent = stream.drain()
    old_a, old_b = a.corrid, b.corrid
    refused = next(r for r in sent if r["corrid"] == old_a)
    error = (f"inference request for sequence {old_a} to model 'fake' must specify the "
             "START flag on the first request of the sequence")
    hub._on_response(StreamReply(RequestId.parse(refused["id"]), (), error, True))
    assert a.corrid != old_a and b.corrid == old_b        # only a's sequence starts again
    replay = stream.drain()
    assert [(r["corrid"], r["start"], r["samples"]) for r in replay] == [(a.corrid, True, 5120)]
    # late answers for the old sequence are ignored, not a broken stream
    hub._on_response(StreamReply(RequestId(old_a, False), (), error, True))
    assert _count(metrics, "gateway_triton_errors_total", kind="sequence") == 1
    with pytest.raises(ConnectionError):                  # an error naming nothing of ours
        hub._on_response(StreamReply(None, (), "server is shutting down", True))


async def test_a_file_source_waits_for_room_and_loses_nothing_through_an_outage() -> None:
    hub, metrics = _hub()                                 # 2 s buffer
    stream = FakeStream(hub)
    ch = hub.open("file/agent", lambda _c, _h, _l: None, source=SourcePolicy.FILE)
    with pytest.raises(TypeError):
        ch.push(np.zeros(FRAME, np.float32), 0.0)         # a file source is fed, not pushed
    hub._disconnected()                                   # Triton down from the start
    fed = 0

    async def producer() -> None:
        nonlocal fed
        for i in range(50):                               # 5 s of file, as fast as it goes
            assert await ch.feed(np.full(1600, i, np.float32))
            fed += 1600

    task = asyncio.create_task(producer())
    await asyncio.sleep(0.05)
    assert not task.done() and fed == 2 * RATE            # waits at the buffer, drops nothing
    hub.connected = True                                  # back: every turn frees room
    for turn in range(400):
        hub.pump(ch)
        stream.drain()
        if turn == 1:
            assert not task.done()
            hub._disconnected()                           # lost again mid-file: a replay
            hub.connected = True
        await asyncio.sleep(0)
        if task.done():
            break
    await task
    closing = asyncio.create_task(ch.close(2.0))
    await asyncio.sleep(0)
    end = stream.drain()
    assert end[-1]["end"]
    stream.answer(end[-1], _result("final", "", 0, 0, 5.0))
    assert await closing is True
    last = [r for r in stream.sent if r["corrid"] == ch.corrid]
    assert last[0]["start"] and sum(r["samples"] for r in last) == 5 * RATE   # every sample
    assert len({r["corrid"] for r in stream.sent}) == 2  # the replay went to a new sequence
    assert _count(metrics, "gateway_asr_dropped_seconds_total") == 0
    # the waiting is the design, not a live latency: no send-delay observations
    assert _count(metrics, "gateway_asr_send_delay_seconds_count") == 0
    assert await ch.feed(np.zeros(FRAME, np.float32)) is False   # closed: not taken


async def test_a_feed_waiting_on_a_channel_that_closes_returns_false() -> None:
    hub, _metrics = _hub()
    hub.connected = False
    ch = hub.open("file/customer", lambda _c, _h, _l: None, source=SourcePolicy.FILE)
    assert await ch.feed(np.zeros(2 * RATE, np.float32))
    waiting = asyncio.create_task(ch.feed(np.zeros(FRAME, np.float32)))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    assert await ch.close(0.05) is False                  # nobody there to end it
    assert await asyncio.wait_for(waiting, 1.0) is False


def test_the_wire_codec_round_trips_results_errors_and_the_final_flag() -> None:
    from tritonclient.grpc import service_pb2

    from gateway.asr.contract import bytes_tensor
    from gateway.asr.stream import decode_reply, encode_request

    request = encode_request(model="m", version="", corrid=7, audio=np.zeros(4, np.float32),
                             start=True, end=True, phrases=["Acme"])
    assert request.id == "7:1" and [i.name for i in request.inputs] == ["AUDIO", "PHRASES"]
    assert request.raw_input_contents[1] == b"\x04\x00\x00\x00Acme"
    message = service_pb2.ModelStreamInferResponse()
    response = message.infer_response
    response.id = "7:1"
    response.outputs.add(name="RESULT", datatype="BYTES", shape=[1, 2])
    response.raw_output_contents.append(bytes_tensor([b'{"a": 1}', b"{}"]))
    response.parameters["triton_final_response"].bool_param = True
    reply = decode_reply(message)
    assert reply == StreamReply(RequestId(7, True), (b'{"a": 1}', b"{}"), None, True)
    error = service_pb2.ModelStreamInferResponse(error_message="boom")
    error.infer_response.id = "7:0"
    assert decode_reply(error) == StreamReply(RequestId(7, False), (), "boom", True)


async def test_a_channel_whose_every_sequence_is_refused_gives_up_instead_of_looping() -> None:
    hub, metrics = _hub()
    stream = FakeStream(hub)
    ch = hub.open("bad", lambda _c, _h, _l: None, phrases=["x"])
    stream.push(ch, 0.32)
    for _ in range(10):                                   # a model that refuses every START
        sent = stream.drain() or stream.sent[-1:]
        hub._on_response(StreamReply(RequestId.parse(sent[-1]["id"]), (), "bad PHRASES", True))
        if ch.done.is_set():
            break
    assert ch.done.is_set() and ch.refusals == 4
    assert _count(metrics, "gateway_triton_errors_total", kind="sequence") == 4
    assert await ch.close(0.1) is True                    # hangup is not held up
    ch.push(np.zeros(FRAME, np.float32), 0.0)             # later audio is ignored
    assert not hub._outbox
