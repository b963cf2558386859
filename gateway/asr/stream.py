"""Streaming ASR over one Triton gRPC bidirectional stream shared by every channel.

Each channel is one Triton sequence (an integer CORRID, random 63-bit so several
gateways can share one Triton). Audio is chunked and buffered per channel by
:class:`ChannelAudioQueue`; if Triton is slow or gone the buffer holds up to
``max_buffer_s`` and is replayed into a fresh sequence once the stream is back.
The call is never dropped because of ASR.

A channel's source policy is chosen at :meth:`AsrHub.open`: a live source (a call) is
pushed with :meth:`AsrChannel.push` and never waits: beyond the buffer its oldest audio is
dropped and counted (``asr.audio_dropped``). A file source (a stored recording, faster than
real time) is fed with ``await`` :meth:`AsrChannel.feed`, which waits while the buffer
holds ``max_buffer_s`` of unsent audio (also through outages and replays): nothing is
dropped. A file source's waiting is not a live latency, so it is not observed in the ASR
latency and send-delay metrics. Live sources have priority on the stream: the writer serves
a file source's turn only when no live channel waits for one (:class:`Outbox`).

Sequences are kept alive: a started sequence that has sent nothing for
``sequence_keepalive_s`` (RTP paused, silence suppression) is sent what is pending, an
empty chunk when nothing is, so Triton's sequence idle timeout never ends it under a
pending utterance. A sequence Triton refuses anyway (it idled out, the model was
reloaded) is replayed into a fresh one, for that channel only.

Model versions: every channel is pinned to one concrete version of the ASR model, the hub's
:attr:`AsrHub.version` when its first request goes out (``""``, latest, is resolved to the
newest ready version when the stream connects), and keeps it through replays and reconnects:
Triton keeps a sequence's state in one version, and a request without a version goes to the
newest one. :meth:`AsrHub.use_version` changes the version of the channels that start from
then on. Only when Triton refuses a channel's sequence because its version is no longer
served (unloaded) does the fresh sequence move to the hub's version.

The stream is the raw gRPC ``ModelStreamInfer`` call (tritonclient's protobuf stubs):
END requests ask for Triton's empty final response, so the hub knows when a sequence's
last request is complete (the others do not: their completion is of no use, and at 6.25
requests per channel-second it doubled the responses read), and shutdown ends every
sequence, waits for the END requests to complete and half-closes the stream instead of
cancelling it with requests in flight.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from tritonclient.grpc import service_pb2, service_pb2_grpc

from gateway.asr.audioqueue import ChannelAudioQueue, Chunk, DropSpan, SourcePolicy
from gateway.asr.contract import (
    ContractError,
    Hypothesis,
    RequestId,
    StreamReply,
    bytes_tensor,
    parse_result,
    split_bytes_tensor,
)
from gateway.config import TritonConfig
from gateway.logs import get_logger
from gateway.metrics import Metrics

MAX_REQUEST_CHUNKS = 12        # a channel behind by more sends it in requests this big
RECONNECT_MAX_S = 5.0
MAX_BUFFER_S = 10.0
CLOSE_ENDS_S = 3.0             # shutdown: how long every open sequence gets for its END
CLOSE_STREAM_S = 1.0           # then how long the server gets to end the half-closed stream
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_REFUSALS = 3               # sequences refused in a row before a channel's ASR gives up
# Triton's answer to a request for a version it does not serve (any more)
_VERSION_GONE = re.compile(r"version \S+ is not (at ready state|found)|unknown model", re.I)
Listener = Callable[["AsrChannel", Hypothesis, float | None], None]


class AsrChannel:
    """One channel's stream into the ASR model."""

    def __init__(self, hub: AsrHub, key: str, listener: Listener, phrases: Sequence[str],
                 source: SourcePolicy = SourcePolicy.LIVE) -> None:
        self.hub, self.key, self._listener = hub, key, listener
        self.phrases = tuple(phrases)
        self.source = source
        self.live = source is SourcePolicy.LIVE
        cfg = hub.config
        self.queue = ChannelAudioQueue(sample_rate_hz=cfg.sample_rate_hz, chunk_ms=cfg.chunk_ms,
                                       max_buffer_s=hub.max_buffer_s, policy=source)
        self._room = asyncio.Event()  # set when a waiting feed() should look again
        self.corrid = hub.new_corrid()
        self.version: str | None = None   # the model version, pinned at the first request
        self.scheduled = False       # waiting in the hub's outbox for its turn to send
        self.keepalive = False       # its turn is a keep-alive
        self.end_sent = False
        self.closing = False
        self.done = asyncio.Event()  # the END request completed: every final is in
        self.finals = 0
        self.refusals = 0            # sequences refused in a row (reset by any good reply)
        self._dropped_counted = 0

    def push(self, audio: np.ndarray[Any, Any], now: float) -> None:
        """Live audio that arrived at ``now``; never waits (the oldest is dropped instead)."""
        if not self.live:
            raise TypeError(f"ASR channel {self.key} is a file source: await feed() instead")
        if self.closing:
            return
        self.queue.push(audio.astype(np.float32, copy=False), now)
        self.count_dropped()
        self.hub.pump(self)

    async def feed(self, audio: np.ndarray[Any, Any]) -> bool:
        """File audio: waits until the buffer has room for it, then queues it (nothing is
        dropped). False when the channel closed or gave up instead (the audio is not taken)."""
        samples = audio.astype(np.float32, copy=False)
        while not self.queue.has_room(len(samples)):
            if self.closing or self.done.is_set():
                return False
            self._room.clear()
            await self._room.wait()
        if self.closing or self.done.is_set():
            return False
        self.queue.push(samples, self.hub.loop.time())
        self.hub.pump(self)
        return True

    def room_changed(self) -> None:
        """Audio left the buffer, or the channel ended: a waiting feed() looks again."""
        self._room.set()

    def count_dropped(self) -> None:
        """Put audio the queue dropped since the last call into the metric."""
        new = self.queue.dropped_samples - self._dropped_counted
        if new:
            self._dropped_counted += new
            self.hub.count_dropped(new / self.queue.rate)

    async def close(self, timeout_s: float) -> bool:
        """Send what is left with END and wait for the model's last final."""
        self.closing = True
        self.room_changed()
        self.hub.pump(self)
        try:
            await asyncio.wait_for(self.done.wait(), timeout_s)
        except TimeoutError:
            return False
        finally:
            self.hub.forget(self)
        return True

    def on_hypothesis(self, hyp: Hypothesis) -> None:
        latency = None
        arrived = self.queue.arrival_of(hyp.end_s)
        if arrived is not None:
            latency = max(0.0, self.hub.loop.time() - arrived)
        if hyp.is_final:
            self.finals += 1
            self.queue.confirm(hyp.end_s)
        if hyp.text and latency is not None and self.live:   # one per transcript event
            self.hub.observe_latency("final" if hyp.is_final else "partial", latency)
        self._listener(self, hyp.mapped(self.queue.channel_s), latency)

    def on_complete(self, end: bool) -> None:
        if end and self.end_sent:
            self.done.set()


class Outbox:
    """The channels waiting for their turn on the stream, live sources first: the writer
    takes a file source's turn only when no live channel waits, so batch transcription on
    the same connection never delays a call's audio (file sources wait instead: their
    feed() back-pressure absorbs it). ``None`` (half-close the stream) goes first: close()
    sends it once every sequence has ended or been given up, so what still waits then is
    of sequences given up (and a file channel given up with audio left would otherwise
    keep taking turns ahead of it)."""

    __slots__ = ("_live", "_file", "_end")

    def __init__(self) -> None:
        self._live: deque[AsrChannel] = deque()
        self._file: deque[AsrChannel] = deque()
        self._end = False

    def append(self, ch: AsrChannel | None) -> None:
        if ch is None:
            self._end = True
        else:
            (self._live if ch.live else self._file).append(ch)

    def popleft(self) -> AsrChannel | None:
        if self._end:
            self._end = False
            return None
        if self._live:
            return self._live.popleft()
        if self._file:
            return self._file.popleft()
        raise IndexError("the outbox is empty")

    def clear(self) -> None:
        self._live.clear()
        self._file.clear()
        self._end = False

    def __len__(self) -> int:
        return len(self._live) + len(self._file) + self._end

    def __bool__(self) -> bool:
        return bool(self._live or self._file or self._end)


class AsrHub:
    def __init__(self, config: TritonConfig, metrics: Metrics,
                 max_buffer_s: float = MAX_BUFFER_S) -> None:
        self.config = config
        self.max_buffer_s = max_buffer_s
        self.keepalive_s = config.sequence_keepalive_s
        self._metrics = metrics
        self._log = get_logger("asr")
        self._channels: dict[int, AsrChannel] = {}
        self._retired: deque[int] = deque(maxlen=4096)  # CORRIDs given up: late replies
        self._outbox = Outbox()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = False
        self._was_connected = False  # the session that just ended had a stream up
        self.version = config.asr_model_version  # for channels that start from now on
        self._latest = not self.version     # "": the newest ready version at each connect
        self.loop = asyncio.get_running_loop()

    def new_corrid(self) -> int:
        while True:
            corrid = secrets.randbits(63) or 1
            if corrid not in self._channels:
                return corrid

    def open(self, key: str, listener: Listener, phrases: Sequence[str] = (), *,
             source: SourcePolicy = SourcePolicy.LIVE) -> AsrChannel:
        """A channel of a live source (``push``) or, with ``source=SourcePolicy.FILE``, of a
        stored file fed faster than real time with back-pressure (``await feed``)."""
        channel = AsrChannel(self, key, listener, phrases, source)
        self._channels[channel.corrid] = channel
        return channel

    def forget(self, channel: AsrChannel) -> None:
        if self._channels.pop(channel.corrid, None) is not None:
            self._retired.append(channel.corrid)
        self._report_drop(channel)
        channel.room_changed()

    def use_version(self, version: str, *, latest: bool = False) -> None:
        """New channels (and the ones that have sent nothing yet) use ``version``; the
        channels already streaming keep theirs until they end. ``latest``: ``version`` is
        what latest resolved to; a reconnect resolves it again."""
        self._latest = latest
        if version != self.version:
            self._log.info("asr.model_version", model=self.config.asr_model, version=version,
                           previous=self.version)
        self.version = version

    def versions_in_use(self) -> dict[str, int]:
        """Open channels per pinned model version (``""``: not started yet)."""
        counts: dict[str, int] = {}
        for ch in self._channels.values():
            counts[ch.version or ""] = counts.get(ch.version or "", 0) + 1
        return counts

    def buffered_s(self) -> float:
        return sum(ch.queue.buffered_s for ch in self._channels.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="asr stream")
        self._keepalive_task = asyncio.create_task(self._keepalive(), name="asr keepalive")

    async def close(self) -> None:
        """End every open sequence (bounded), half-close the stream, then stop: cancelling a
        stream with requests in flight is what Triton 2.51 has crashed on."""
        self._stopping = True
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        open_channels = [ch for ch in self._channels.values() if not ch.done.is_set()]
        ended = await self._end_all(open_channels) if self.connected else 0
        half_closed = False
        if self.connected:
            self._send(None)                       # the writer half-closes the stream
            half_closed = await self._wait_task(CLOSE_STREAM_S)
        self._log.info("asr.closed", sequences=len(open_channels), ended=ended,
                       abandoned=len(open_channels) - ended, half_closed=half_closed)
        for ch in list(self._channels.values()):
            self.forget(ch)
        if self._task is not None and not self._task.done():
            self._task.cancel()
        tasks = [t for t in (self._task, self._keepalive_task) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _end_all(self, channels: list[AsrChannel]) -> int:
        for ch in channels:
            ch.closing = True
            self.pump(ch)
        waits = [asyncio.create_task(ch.done.wait()) for ch in channels]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=CLOSE_ENDS_S)
            for task in pending:
                task.cancel()
        return sum(1 for ch in channels if ch.done.is_set())

    async def _wait_task(self, timeout_s: float) -> bool:
        if self._task is None:
            return True
        done, _pending = await asyncio.wait([self._task], timeout=timeout_s)
        return bool(done)

    # ----------------------------------------------------------------- metrics
    def count_dropped(self, seconds: float) -> None:
        self._metrics.asr_dropped.inc(seconds)

    def observe_latency(self, kind: str, seconds: float) -> None:
        self._metrics.asr_latency.labels(kind=kind).observe(seconds)

    def _report_drop(self, ch: AsrChannel) -> None:
        drop = ch.queue.take_drop()
        if drop is not None:
            self._log_drop(ch, drop)

    def _log_drop(self, ch: AsrChannel, drop: DropSpan) -> None:
        rate = ch.queue.rate
        self._log.warning("asr.audio_dropped", channel=ch.key, from_s=round(drop.start / rate, 3),
                          to_s=round(drop.end / rate, 3), dropped_s=round(drop.samples / rate, 3),
                          buffer_s=self.max_buffer_s)

    # ----------------------------------------------------------------- sending
    def pump(self, ch: AsrChannel) -> None:
        """Give a channel with audio ready a turn in the outbox (once: a turn sends all of its
        audio ready by then, so one stream serves every channel when the sender lags)."""
        if not self.connected or ch.scheduled or ch.end_sent or ch.done.is_set():
            return
        if ch.queue.ready(final=ch.closing) or ch.keepalive:
            ch.scheduled = True
            self._send(ch)

    def _send(self, ch: AsrChannel | None) -> None:
        self._outbox.append(ch)
        self._wake.set()

    async def _keepalive(self) -> None:
        """Keep idle sequences open: Triton ends a sequence idle for its
        max_sequence_idle_microseconds, and the model's pending utterance with it."""
        period = max(0.05, min(1.0, self.keepalive_s / 4))
        while True:
            await asyncio.sleep(period)
            now = self.loop.time()
            for ch in list(self._channels.values()):
                q = ch.queue
                idle_s = None if q.last_sent_at is None else now - q.last_sent_at
                if (self.connected and q.started and not q.ended and not ch.scheduled
                        and idle_s is not None and idle_s >= self.keepalive_s):
                    ch.keepalive = True
                    self.pump(ch)

    def _next_request(self, ch: AsrChannel) -> service_pb2.ModelInferRequest | None:
        now = self.loop.time()
        ch.scheduled = False
        chunk = ch.queue.next_chunk(final=ch.closing, max_chunks=MAX_REQUEST_CHUNKS, now=now)
        if chunk is None and ch.keepalive:
            chunk = ch.queue.keepalive_chunk(now)
            if chunk is not None:
                self._metrics.asr_keepalives.inc()
        ch.keepalive = False
        if chunk is None:
            return None
        ch.room_changed()
        self._report_drop(ch)                    # sending again: a drop episode is over
        ch.end_sent = chunk.sequence_end
        if chunk.fresh and len(chunk.audio) and ch.live:
            self._metrics.asr_send_delay.observe(max(0.0, now - chunk.pushed_at))
        return self._request(ch, chunk)

    def _request(self, ch: AsrChannel, chunk: Chunk) -> service_pb2.ModelInferRequest:
        if ch.version is None:                    # its first request: pin the version
            ch.version = self.version
            self._log.debug("asr.channel_started", channel=ch.key,
                            model=self.config.asr_model, version=ch.version)
        if chunk.sequence_start:
            self._metrics.asr_sequences.labels(version=ch.version).inc()
        return encode_request(model=self.config.asr_model,
                              version=ch.version, corrid=ch.corrid,
                              audio=chunk.audio, start=chunk.sequence_start,
                              end=chunk.sequence_end,
                              phrases=ch.phrases if chunk.sequence_start else ())

    async def _writer(self, call: Any) -> None:
        while True:
            while not self._outbox:
                self._wake.clear()
                await self._wake.wait()
            ch = self._outbox.popleft()
            if ch is None:
                await call.done_writing()
                return
            if self._channels.get(ch.corrid) is not ch:
                continue                          # forgotten while it waited
            request = self._next_request(ch)
            if request is not None:
                await call.write(request)
            self.pump(ch)                         # written: its next turn, if more is ready

    # ----------------------------------------------------------------- the stream
    async def _run(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                await self._session()
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # grpc errors: Triton gone, restarted, refused
                if self._stopping:
                    return
                self._metrics.triton_errors.labels(kind="stream").inc()
                self._log.warning("asr.stream_lost", error=f"{type(exc).__name__}: {exc}"[:300])
            self._disconnected()
            if self._stopping:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _disconnected(self) -> None:
        if self._was_connected and not self._stopping:   # a stream that was up is lost
            self._metrics.triton_errors.labels(kind="reconnect").inc()
        self._was_connected = False
        self.connected = False
        self._outbox.clear()
        for ch in list(self._channels.values()):
            self._new_sequence(ch)

    def _new_sequence(self, ch: AsrChannel) -> None:
        """A fresh sequence for the channel: Triton may have lost its old one."""
        ch.scheduled, ch.end_sent, ch.keepalive = False, False, False
        if self._channels.pop(ch.corrid, None) is not None:
            self._retired.append(ch.corrid)
        ch.corrid = self.new_corrid()
        self._channels[ch.corrid] = ch
        ch.queue.restart()
        ch.count_dropped()

    async def _session(self) -> None:
        options = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        async with grpc.aio.insecure_channel(self.config.url, options=options) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            await self._check_model(stub)
            call = stub.ModelStreamInfer()
            self._outbox.clear()
            self.connected = self._was_connected = True
            self._log.info("asr.stream_connected", model=self.config.asr_model,
                           version=self.version)
            for ch in list(self._channels.values()):
                self.pump(ch)
            writer = asyncio.create_task(self._writer(call), name="asr stream writer")
            try:
                async for message in call:
                    self._on_response(decode_reply(message))
                if not self._stopping:
                    raise ConnectionError("Triton ended the stream")
            finally:
                self.connected = False
                if not writer.done():
                    writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
                if not self._stopping:
                    call.cancel()

    async def _check_model(self, stub: Any) -> None:
        """The model is ready; latest (``""``) becomes the newest ready version."""
        timeout = self.config.connect_timeout_s
        name = self.config.asr_model
        version = "" if self._latest else self.version
        ready = await stub.ModelReady(
            service_pb2.ModelReadyRequest(name=name, version=version), timeout=timeout)
        if not ready.ready:
            raise ConnectionError(f"model {name} version {version or 'latest'} not ready")
        if self._latest:
            meta = await stub.ModelMetadata(
                service_pb2.ModelMetadataRequest(name=name), timeout=timeout)
            self.use_version(newest_version(meta.versions), latest=True)

    def _on_response(self, reply: StreamReply) -> None:
        request = reply.request
        ch = self._channels.get(request.corrid) if request is not None else None
        if reply.error is not None:
            self._on_error(reply, ch)
            return
        if ch is None:
            return
        ch.refusals = 0
        for item in reply.results:
            try:
                ch.on_hypothesis(parse_result(item))
            except ContractError as exc:
                self._metrics.triton_errors.labels(kind="contract").inc()
                self._log.error("asr.bad_result", error=str(exc), channel=ch.key)
        if reply.complete and request is not None:
            ch.on_complete(request.end)

    def _on_error(self, reply: StreamReply, ch: AsrChannel | None) -> None:
        """An error answers one request: its sequence is replayed into a fresh one (the
        others go on). An error that names no sequence of ours breaks the stream."""
        request = reply.request
        if ch is None:
            if request is not None and request.corrid in self._retired:
                return                            # a late answer to a sequence given up
            raise ConnectionError(str(reply.error))
        self._metrics.triton_errors.labels(kind="sequence").inc()
        ch.refusals += 1
        if ch.refusals > MAX_REFUSALS:            # the model refuses this channel's audio
            self._log.error("asr.channel_failed", channel=ch.key, refusals=ch.refusals,
                            version=ch.version, error=str(reply.error)[:300])
            ch.closing = True
            self.forget(ch)
            ch.done.set()
            return
        moved = ch.version is not None and ch.version != self.version and bool(
            _VERSION_GONE.search(str(reply.error)))
        self._log.warning("asr.sequence_lost", channel=ch.key, version=ch.version,
                          error=str(reply.error)[:300],
                          **({"moved_to": self.version} if moved else {}))
        if moved:          # its version is no longer served: the fresh sequence moves
            ch.version = None
        self._new_sequence(ch)
        self.pump(ch)


def newest_version(versions: Sequence[str]) -> str:
    """The highest of Triton's (numeric) version names; ``""`` when there is none."""
    numbered = [v for v in versions if v.isdigit()]
    return max(numbered, key=int) if numbered else ""


# ----------------------------------------------------------------- the wire (protobuf)
def encode_request(*, model: str, version: str, corrid: int, audio: npt.NDArray[np.float32],
                   start: bool, end: bool,
                   phrases: Sequence[str] = ()) -> service_pb2.ModelInferRequest:
    """One chunk as a ModelStreamInfer request; an END request asks for Triton's empty final
    response, so the hub sees the sequence's last request complete (tritonclient's asyncio
    stream_infer cannot)."""
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version,
                                            id=str(RequestId(corrid, end)))
    samples = np.ascontiguousarray(audio, dtype="<f4").reshape(-1)
    request.inputs.add(name="AUDIO", datatype="FP32", shape=[1, samples.size])
    request.raw_input_contents.append(samples.tobytes())
    if phrases:
        request.inputs.add(name="PHRASES", datatype="BYTES", shape=[1, len(phrases)])
        request.raw_input_contents.append(bytes_tensor([p.encode() for p in phrases]))
    request.outputs.add(name="RESULT")
    params = request.parameters
    params["sequence_id"].int64_param = corrid
    params["sequence_start"].bool_param = start
    params["sequence_end"].bool_param = end
    if end:
        params["triton_enable_empty_final_response"].bool_param = True
    return request


def decode_reply(message: service_pb2.ModelStreamInferResponse) -> StreamReply:
    response = message.infer_response
    request = RequestId.parse(response.id)
    if message.error_message:
        return StreamReply(request, (), message.error_message, True)
    results: tuple[bytes, ...] = ()
    for index, output in enumerate(response.outputs):
        if output.name != "RESULT":
            continue
        if output.datatype != "BYTES":
            raise ContractError(f"RESULT must be BYTES, got {output.datatype}")
        if index < len(response.raw_output_contents):
            results = split_bytes_tensor(response.raw_output_contents[index])
        else:
            results = tuple(output.contents.bytes_contents)
    final = response.parameters.get("triton_final_response")
    return StreamReply(request, results, None, bool(final is not None and final.bool_param))
