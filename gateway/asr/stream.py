"""Streaming ASR over one Triton gRPC bidirectional stream shared by every channel.

Each channel is one Triton sequence (an integer CORRID, random 63-bit so several
gateways can share one Triton). Audio is chunked and buffered per channel by
:class:`ChannelAudioQueue`; if Triton is slow or gone the buffer holds up to
``max_buffer_s`` and is replayed into a fresh sequence once the stream is back.
The call is never dropped because of ASR.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc import aio as grpcclient

from gateway.asr.audioqueue import ChannelAudioQueue, Chunk
from gateway.asr.contract import ContractError, Hypothesis, parse_result
from gateway.config import TritonConfig
from gateway.logs import get_logger
from gateway.metrics import Metrics

MAX_REQUEST_CHUNKS = 12        # a channel behind by more sends it in requests this big
RECONNECT_MAX_S = 5.0
MAX_BUFFER_S = 10.0
Listener = Callable[["AsrChannel", Hypothesis, float | None], None]


class AsrChannel:
    """One channel's stream into the ASR model."""

    def __init__(self, hub: AsrHub, key: str, listener: Listener, phrases: Sequence[str]) -> None:
        self.hub, self.key, self._listener = hub, key, listener
        self.phrases = tuple(phrases)
        cfg = hub.config
        self.queue = ChannelAudioQueue(sample_rate_hz=cfg.sample_rate_hz, chunk_ms=cfg.chunk_ms,
                                       max_buffer_s=hub.max_buffer_s)
        self.corrid = hub.new_corrid()
        self.scheduled = False       # waiting in the hub's outbox for its turn to send
        self.end_sent = False
        self.closing = False
        self.done = asyncio.Event()
        self.finals = 0

    def push(self, audio: np.ndarray[Any, Any], now: float) -> None:
        if self.closing:
            return
        self.queue.push(audio.astype(np.float32, copy=False), now)
        self.hub.pump(self)

    async def close(self, timeout_s: float) -> bool:
        """Send what is left with END and wait for the model's last final."""
        self.closing = True
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
        if hyp.is_final:
            self.finals += 1
            arrived = self.queue.arrival_of(hyp.end_s)
            latency = self.hub.loop.time() - arrived if arrived is not None else None
            self.queue.confirm(hyp.end_s)
        self._listener(self, hyp.shifted(self.queue.base / self.queue.rate), latency)
        sent_s = (self.queue.next_start - self.queue.base) / self.queue.rate
        if hyp.is_final and self.end_sent and hyp.audio_s >= sent_s - 0.001:
            self.done.set()          # the contract's last final covers all the audio sent

    def on_complete(self, chunk_end: bool) -> None:
        if chunk_end and self.end_sent:
            self.done.set()


class AsrHub:
    def __init__(self, config: TritonConfig, metrics: Metrics,
                 max_buffer_s: float = MAX_BUFFER_S) -> None:
        self.config = config
        self.max_buffer_s = max_buffer_s
        self._metrics = metrics
        self._log = get_logger("asr")
        self._channels: dict[int, AsrChannel] = {}
        self._outbox: asyncio.Queue[AsrChannel] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.loop = asyncio.get_running_loop()

    def new_corrid(self) -> int:
        while True:
            corrid = secrets.randbits(63) or 1
            if corrid not in self._channels:
                return corrid

    def open(self, key: str, listener: Listener, phrases: Sequence[str] = ()) -> AsrChannel:
        channel = AsrChannel(self, key, listener, phrases)
        self._channels[channel.corrid] = channel
        return channel

    def forget(self, channel: AsrChannel) -> None:
        self._channels.pop(channel.corrid, None)

    def buffered_s(self) -> float:
        return sum(ch.queue.buffered_s for ch in self._channels.values())

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="asr stream")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # ----------------------------------------------------------------- sending
    def pump(self, ch: AsrChannel) -> None:
        """Give a channel with audio ready a turn in the outbox (once: a turn sends all of its
        audio ready by then, so one stream serves every channel when the sender lags)."""
        if not self.connected or ch.scheduled or ch.end_sent:
            return
        if ch.queue.ready(final=ch.closing):
            ch.scheduled = True
            self._outbox.put_nowait(ch)

    def _request(self, ch: AsrChannel, chunk: Chunk) -> dict[str, Any]:
        audio = InferInput("AUDIO", [1, len(chunk.audio)], "FP32")
        audio.set_data_from_numpy(chunk.audio.reshape(1, -1))
        inputs = [audio]
        if chunk.sequence_start and ch.phrases:
            phrases = InferInput("PHRASES", [1, len(ch.phrases)], "BYTES")
            phrases.set_data_from_numpy(np.array([[p.encode() for p in ch.phrases]],
                                                 dtype=np.object_))
            inputs.append(phrases)
        return {"model_name": self.config.asr_model, "model_version": self.config.asr_model_version,
                "inputs": inputs, "outputs": [InferRequestedOutput("RESULT")],
                "request_id": f"{ch.corrid}:{int(chunk.sequence_end)}",
                "sequence_id": ch.corrid, "sequence_start": chunk.sequence_start,
                "sequence_end": chunk.sequence_end, "enable_empty_final_response": True}

    # ----------------------------------------------------------------- the stream
    async def _run(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._session()
                delay = 0.2
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # grpc errors: Triton gone, restarted, refused
                self._metrics.triton_errors.labels(kind="stream").inc()
                self._log.warning("asr.stream_lost", error=f"{type(exc).__name__}: {exc}"[:300])
            self._disconnected()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _disconnected(self) -> None:
        if self.connected:
            self._metrics.triton_errors.labels(kind="reconnect").inc()
        self.connected = False
        self._outbox = asyncio.Queue()
        for ch in list(self._channels.values()):
            ch.scheduled, ch.end_sent = False, False
            self._channels.pop(ch.corrid)
            ch.corrid = self.new_corrid()     # a fresh sequence: Triton may have lost ours
            self._channels[ch.corrid] = ch
            ch.queue.restart()

    async def _session(self) -> None:
        client = grpcclient.InferenceServerClient(url=self.config.url)
        try:
            ready = await client.is_model_ready(self.config.asr_model,
                                                self.config.asr_model_version,
                                                client_timeout=self.config.connect_timeout_s)
            if not ready:
                raise ConnectionError(f"model {self.config.asr_model} not ready")
            self.connected = True
            self._log.info("asr.stream_connected", model=self.config.asr_model)
            for ch in list(self._channels.values()):
                self.pump(ch)
            async for result, error in client.stream_infer(self._requests()):
                self._on_response(result, error)
        finally:
            await client.close()

    async def _requests(self) -> AsyncIterator[dict[str, Any]]:
        outbox = self._outbox
        while True:
            ch = await outbox.get()
            ch.scheduled = False
            chunk = ch.queue.next_chunk(final=ch.closing, max_chunks=MAX_REQUEST_CHUNKS)
            if chunk is None:
                continue
            ch.end_sent = chunk.sequence_end
            self._metrics.asr_send_delay.observe(max(0.0, self.loop.time() - chunk.pushed_at))
            yield self._request(ch, chunk)
            self.pump(ch)            # written: its next turn, if more audio is ready

    def _on_response(self, result: Any, error: Any) -> None:
        if error is not None:
            raise ConnectionError(str(error))
        response = result.get_response()
        corrid_text, _sep, end_flag = response.id.partition(":")
        ch = self._channels.get(int(corrid_text)) if corrid_text.isdigit() else None
        if ch is None:
            return
        raw = result.as_numpy("RESULT") if any(o.name == "RESULT" for o in response.outputs) \
            else None
        for item in ([] if raw is None else raw.reshape(-1)):
            try:
                ch.on_hypothesis(parse_result(item))
            except ContractError as exc:
                self._metrics.triton_errors.labels(kind="contract").inc()
                self._log.error("asr.bad_result", error=str(exc), channel=ch.key)
        params = response.parameters
        if "triton_final_response" in params and params["triton_final_response"].bool_param:
            ch.on_complete(end_flag == "1")
