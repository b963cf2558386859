"""The event bus: producers' events -> processing stage -> every consumer.

Layer: shell (asyncio tasks, the wall clock, logging, metrics).

:meth:`EventBus.emit` takes one typed event, runs it through the
:class:`~gateway.events.processing.ProcessingStage` once, stamps each event that comes out
(``ts`` from the wall clock, ``seq`` increasing) and hands the envelopes to the in-process
subscribers (WebSocket clients, the bot), synchronously, and to every sink through a
bounded queue per sink, so a slow webhook never blocks the media path. On shutdown
:meth:`EventBus.close` flushes what is queued. Nothing reaches a consumer any other way.

The bus also owns the stage's one timer: after each event (and each firing) it asks the
stage for its earliest deadline and keeps one ``loop.call_later`` handle for it; when it
fires, :meth:`ProcessingStage.tick` runs and what comes out is stamped and delivered like
any event. :meth:`EventBus.replace_processors` swaps the whole stage between two events
(SIGHUP), which is atomic: ``emit`` and the timer run synchronously on the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence

from gateway.events.processing import (
    ProcessingStage,
    Processor,
    ProcessorFailure,
    StageResult,
)
from gateway.events.sinks import Sink
from gateway.events.types import Envelope, GatewayEvent, RedactionApplied
from gateway.logs import get_logger
from gateway.metrics import Metrics

QUEUE_LIMIT = 10_000
Listener = Callable[[Envelope], object]


class _SinkWorker:
    def __init__(self, sink: Sink, metrics: Metrics) -> None:
        self.sink = sink
        self.queue: asyncio.Queue[Envelope | None] = asyncio.Queue()  # bounded in offer()
        self._metrics = metrics
        self._log = get_logger("events")
        self.task = asyncio.create_task(self._run(), name=f"sink {sink.name}")

    def offer(self, event: Envelope) -> None:
        if self.queue.qsize() < QUEUE_LIMIT:
            self.queue.put_nowait(event)
        else:
            self._metrics.event_sink_errors.labels(sink=self.sink.name).inc()
            self._log.error("events.sink_overflow", sink=self.sink.name, dropped=event.type)

    async def _run(self) -> None:
        while (event := await self.queue.get()) is not None:
            try:
                await self.sink.write(event)
            except Exception as exc:  # a sink failure must never stop the others
                self._metrics.event_sink_errors.labels(sink=self.sink.name).inc()
                self._log.error("events.sink_failed", sink=self.sink.name, error=repr(exc),
                                event_type=event.type)
        await self.sink.close()


class EventBus:
    def __init__(self, metrics: Metrics, processors: Sequence[Processor] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self._metrics = metrics
        self._stage = ProcessingStage(processors)
        self._clock = clock
        self._seq = itertools.count(1)
        self._workers: list[_SinkWorker] = []
        self._listeners: list[Listener] = []
        self._log = get_logger("events")
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False

    @property
    def processors(self) -> tuple[Processor, ...]:
        return self._stage.processors

    def start(self, sinks: Sequence[Sink]) -> None:
        self._workers = [_SinkWorker(s, self._metrics) for s in sinks]

    def subscribe(self, listener: Listener) -> None:
        """In-process listeners (WebSocket clients, the bot) get every envelope synchronously;
        one that raises is logged and counted, and the others still get the event."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def replace_processors(self, processors: Sequence[Processor]) -> None:
        """A new stage from the next event on (SIGHUP); the old processors' timers stop."""
        self._stage = ProcessingStage(processors)
        self._rearm()

    def emit(self, event: GatewayEvent) -> list[Envelope]:
        """Process, stamp and deliver one event; the envelopes delivered (none if dropped)."""
        now = self._clock()
        delivered = self._publish(self._stage.run(event, now), now)
        if self._stage.processors:
            self._rearm()
        return delivered

    def _publish(self, result: StageResult, now: float) -> list[Envelope]:
        for failure in result.failures:
            self._processor_failed(failure)
        raws = result.raw or (None,) * len(result.events)
        delivered = [Envelope(e, now, next(self._seq), raw=r)
                     for e, r in zip(result.events, raws, strict=True)]
        for envelope in delivered:
            self._deliver(envelope)
        return delivered

    def _rearm(self) -> None:
        """Keep the one timer on the stage's earliest deadline."""
        deadline = None if self._closed else self._stage.next_deadline()
        if deadline == self._timer_at and (deadline is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        now = self._clock()
        self._publish(self._stage.tick(now), now)
        self._rearm()

    def _deliver(self, envelope: Envelope) -> None:
        self._metrics.events.labels(type=envelope.type).inc()
        if isinstance(envelope.event, RedactionApplied):
            for span in envelope.event.spans:
                self._metrics.redactions.labels(entity=span.entity).inc()
        for listener in list(self._listeners):
            try:
                listener(envelope)
            except Exception as exc:  # a subscriber's bug must not reach the producer
                self._metrics.event_sink_errors.labels(sink="subscriber").inc()
                self._log.error("events.subscriber_failed", error=repr(exc),
                                event_type=envelope.type)
        for w in self._workers:
            w.offer(envelope)

    def _processor_failed(self, failure: ProcessorFailure) -> None:
        self._metrics.event_processor_errors.labels(processor=failure.processor).inc()
        self._log.error("events.processor_failed", processor=failure.processor,
                        event_type=failure.event_type, error=failure.error,
                        dropped=failure.dropped)

    async def replace_sinks(self, sinks: Sequence[Sink], timeout_s: float = 10.0) -> None:
        old, self._workers = self._workers, [_SinkWorker(s, self._metrics) for s in sinks]
        await self._drain(old, timeout_s)

    async def close(self, timeout_s: float = 10.0) -> None:
        if not self._closed and self._stage.processors:
            now = self._clock()
            self._publish(self._stage.flush(now), now)  # what processors still hold
        self._closed = True
        self._rearm()                                  # cancels the stage's timer
        old, self._workers = self._workers, []
        await self._drain(old, timeout_s)

    async def _drain(self, workers: list[_SinkWorker], timeout_s: float) -> None:
        for w in workers:
            w.queue.put_nowait(None)
        if workers:
            done, pending = await asyncio.wait([w.task for w in workers], timeout=timeout_s)
            for t in pending:
                t.cancel()
