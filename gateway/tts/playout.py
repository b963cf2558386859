"""Paced playout of spoken replies into one call leg, with barge-in.

Text -> Triton TTS chunks -> resample to 8 kHz -> G.711 packets (Packetizer) sent on
absolute deadlines of the loop's monotonic clock (Pacer). Replies queue up and play in
order; :meth:`Playout.interrupt` (barge-in, hangup) empties the queue at once.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.events.types import (
    GatewayEvent,
    ReplyFailed,
    ReplyFinished,
    ReplyInterrupted,
    ReplyStarted,
)
from gateway.media.endpoint import RtpEndpoint
from gateway.media.packetizer import Pacer, Packetizer
from gateway.media.resample import StreamResampler, to_int16
from gateway.tts.client import TtsClient, TtsError

RATE_HZ = 8000
_reply_ids = itertools.count(1)
Emit = Callable[[GatewayEvent], object]


@dataclass(slots=True)
class Reply:
    text: str
    barge_in: bool
    received_at: float
    source: str
    reply_id: str = field(default_factory=lambda: f"r-{next(_reply_ids)}")
    sent_packets: int = 0
    first_packet_at: float | None = None


CLOSE_WAIT_S = 1.0           # close(): how long the run loop may take to leave by itself


class Playout:
    def __init__(self, call_id: str, endpoint: RtpEndpoint, *, encoding: str, payload_type: int,
                 ptime_ms: int, tts: TtsClient, emit: Emit, voice: str = "",
                 rate: float = 1.0) -> None:
        self.call_id = call_id
        self._endpoint = endpoint
        self._ptime_ms = ptime_ms
        self._tts, self._emit = tts, emit
        self.voice, self.rate = voice, rate
        self._packetizer = Packetizer(encoding=encoding, payload_type=payload_type,
                                      ptime_ms=ptime_ms, ssrc=secrets.randbits(32),
                                      seq=secrets.randbits(16), timestamp=secrets.randbits(32))
        self._queue: deque[Reply] = deque()
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.current: Reply | None = None
        self._cut = asyncio.Event()
        self._closed = False
        self._task = asyncio.create_task(self._run(), name=f"playout {call_id}")
        self.octets_sent = 0
        self._packets_sent = 0

    @property
    def ssrc(self) -> int:
        return self._packetizer.ssrc

    @property
    def rtp_timestamp(self) -> int:
        return self._packetizer.timestamp

    @property
    def packets_sent(self) -> int:
        return self._packets_sent

    @property
    def speaking(self) -> bool:
        return self.current is not None

    def say(self, text: str, *, barge_in: bool, source: str) -> Reply:
        reply = Reply(text, barge_in, self._loop.time(), source)
        self._queue.append(reply)
        self._wake.set()
        return reply

    def interrupt(self, reason: str, *, force: bool = False) -> bool:
        """Stop the current reply (if it allows barge-in, or ``force``) and drop queued ones."""
        current = self.current
        if current is None or not (current.barge_in or force):
            return False
        self._queue.clear()
        self._cut.set()
        self.current = None        # cut now: no packet follows, even while a chunk is due
        self._emit(ReplyInterrupted(call_id=self.call_id, reply_id=current.reply_id,
                                    reason=reason, text=current.text,
                                    played_ms=current.sent_packets * self._ptime_ms))
        return True

    async def close(self) -> None:
        # the run loop ends on the flag, not only on the cancel: grpc may swallow a
        # cancellation that arrives while a TTS chunk is awaited (the stream just ends),
        # and the loop then waited for the next reply forever
        self._closed = True
        self._queue.clear()
        self._cut.set()
        self._wake.set()
        # let the cut reply leave at its next chunk (its TTS stream is then read to its end,
        # not cancelled: see tts.client); cancel only a loop that does not end by itself
        await asyncio.wait({self._task}, timeout=CLOSE_WAIT_S)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._closed:
            while not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
            reply = self._queue.popleft()
            self.current, self._cut = reply, asyncio.Event()
            try:
                await self._play(reply)
            finally:
                self.current = None

    async def _play(self, reply: Reply) -> None:
        resampler: StreamResampler | None = None
        pacer: Pacer | None = None
        try:
            async with contextlib.aclosing(self._tts.synthesize(reply.text, self.voice,
                                                                self.rate)) as chunks:
                async for chunk in chunks:     # aclosing: a break closes the stream here,
                    if self._cut.is_set():     # not in a garbage-collector task later
                        break
                    if resampler is None:
                        resampler = StreamResampler(chunk.sample_rate_hz, RATE_HZ)
                    self._packetizer.push(to_int16(resampler.process(chunk.audio)))
                    pacer = await self._send_ready(reply, pacer)
            if resampler is not None and not self._cut.is_set():
                self._packetizer.push(to_int16(resampler.flush()))
                pacer = await self._send_ready(reply, pacer, final=True)
        except TtsError as exc:
            self._emit(ReplyFailed(call_id=self.call_id, reply_id=reply.reply_id,
                                   error=str(exc)[:300]))
            return
        if self._cut.is_set():
            self._packetizer.interrupt()
            return
        self._emit(ReplyFinished(call_id=self.call_id, reply_id=reply.reply_id,
                                 played_ms=reply.sent_packets * self._ptime_ms))

    async def _send_ready(self, reply: Reply, pacer: Pacer | None, final: bool = False
                          ) -> Pacer:
        if pacer is None:
            pacer = Pacer(self._loop.time(), self._ptime_ms)
        while not self._cut.is_set():
            packet = self._packetizer.pop() if not final or self._packetizer.buffered_samples \
                >= self._packetizer.frame_samples else self._packetizer.finish()
            if packet is None:
                return pacer
            await self._wait_due(pacer)
            if self._cut.is_set():
                return pacer
            self._endpoint.send(packet.data)
            self.octets_sent += len(packet.data) - 12
            self._packets_sent += 1
            pacer.sent()
            reply.sent_packets += 1
            if reply.first_packet_at is None:
                self._first_packet(reply)
        return pacer

    async def _wait_due(self, pacer: Pacer) -> None:
        while pacer.due(self._loop.time()) == 0:
            delay = pacer.next_deadline() - self._loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._cut.wait(), delay)
                    return
                except TimeoutError:
                    pass

    def _first_packet(self, reply: Reply) -> None:
        reply.first_packet_at = self._loop.time()
        self._emit(ReplyStarted(call_id=self.call_id, reply_id=reply.reply_id,
                                source=reply.source, text=reply.text, barge_in=reply.barge_in,
                                latency_s=round(reply.first_packet_at - reply.received_at, 3)))


