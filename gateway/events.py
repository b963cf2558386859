"""Call events (``call.answered``, ``transcript.final``, ``dtmf`` ...) and their sinks.

An :class:`Event` is a frozen record with a dotted type, a wall-clock timestamp,
the call it belongs to and a JSON-safe payload. The :class:`EventBus` hands each
event to every sink through a bounded queue per sink, so a slow webhook never
blocks the media path; on shutdown :meth:`EventBus.close` flushes what is queued.
Later features (PII redaction, keyword triggers, training-data export) are sinks
or filters over this same stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from gateway.config import EventSink as EventSinkConfig
from gateway.logs import get_logger
from gateway.metrics import Metrics

_seq = itertools.count(1)
QUEUE_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    call_id: str | None
    data: Mapping[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    seq: int = field(default_factory=lambda: next(_seq))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "ts": round(self.ts, 6), "seq": self.seq,
                "call_id": self.call_id, **self.data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), default=str)


class Sink(Protocol):
    name: str

    async def write(self, event: Event) -> None: ...

    async def close(self) -> None: ...


class LogSink:
    def __init__(self) -> None:
        self.name = "log"
        self._log = get_logger("events")

    async def write(self, event: Event) -> None:
        d = event.to_dict()
        self._log.info(d.pop("type"), **d)

    async def close(self) -> None:
        return None


class JsonlSink:
    """Appends one JSON object per line; flushed per event so a crash loses nothing."""

    def __init__(self, path: Path) -> None:
        self.name = f"jsonl:{path}"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    async def write(self, event: Event) -> None:
        self._file.write(event.to_json() + "\n")
        self._file.flush()

    async def close(self) -> None:
        self._file.close()


def sign_body(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSink:
    """POSTs each event as JSON with an HMAC-SHA256 signature, retrying with backoff."""

    def __init__(self, url: str, timeout_s: float, retries: int, secret: str | None) -> None:
        self.name = f"webhook:{url}"
        self._url, self._retries, self._secret = url, retries, secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def write(self, event: Event) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        body = event.to_json().encode()
        headers = {"Content-Type": "application/json"}
        if self._secret:
            headers["X-Gateway-Signature"] = sign_body(self._secret, body)
        for attempt in range(self._retries + 1):
            try:
                async with self._session.post(self._url, data=body, headers=headers) as resp:
                    if resp.status < 500:
                        resp.raise_for_status()
                        return
            except aiohttp.ClientResponseError:
                raise
            except (aiohttp.ClientError, TimeoutError):
                if attempt == self._retries:
                    raise
            await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
        raise RuntimeError(f"webhook gave 5xx {self._retries + 1} times")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class CallFilesSink:
    """Every event of a call appended to ``<dir>/<call_id>.jsonl``; closed at call.ended."""

    def __init__(self, directory: Path) -> None:
        self.name = f"call_files:{directory}"
        self._dir = directory
        self._files: dict[str, Any] = {}

    async def write(self, event: Event) -> None:
        if event.call_id is None:
            return
        f = self._files.get(event.call_id)
        if f is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            f = self._files[event.call_id] = (self._dir / f"{event.call_id}.jsonl").open(
                "a", encoding="utf-8")
        f.write(event.to_json() + "\n")
        f.flush()
        if event.type == "call.ended":
            self._files.pop(event.call_id).close()

    async def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def build_sinks(configs: Sequence[EventSinkConfig], calls_dir: Path | None = None) -> list[Sink]:
    sinks: list[Sink] = [CallFilesSink(calls_dir)] if calls_dir is not None else []
    for c in configs:
        if c.type == "log":
            sinks.append(LogSink())
        elif c.type == "jsonl":
            assert c.path is not None
            sinks.append(JsonlSink(Path(c.path)))
        else:
            assert c.url is not None
            secret = c.secret.reveal() if c.secret is not None else None
            sinks.append(WebhookSink(c.url, c.timeout_s, c.retries, secret))
    return sinks


class _SinkWorker:
    def __init__(self, sink: Sink, metrics: Metrics) -> None:
        self.sink = sink
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()  # bounded in offer()
        self._metrics = metrics
        self._log = get_logger("events")
        self.task = asyncio.create_task(self._run(), name=f"sink {sink.name}")

    def offer(self, event: Event) -> None:
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
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._workers: list[_SinkWorker] = []
        self._listeners: list[Any] = []

    def start(self, sinks: Sequence[Sink]) -> None:
        self._workers = [_SinkWorker(s, self._metrics) for s in sinks]

    def subscribe(self, listener: Any) -> None:
        """In-process listeners (WebSocket clients, bot logic) get every event synchronously."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Any) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, type_: str, call_id: str | None = None, /, **data: Any) -> Event:
        event = Event(type_, call_id, data)
        self._metrics.events.labels(type=type_).inc()
        for listener in self._listeners:
            listener(event)
        for w in self._workers:
            w.offer(event)
        return event

    async def replace_sinks(self, sinks: Sequence[Sink], timeout_s: float = 10.0) -> None:
        old, self._workers = self._workers, [_SinkWorker(s, self._metrics) for s in sinks]
        await self._drain(old, timeout_s)

    async def close(self, timeout_s: float = 10.0) -> None:
        old, self._workers = self._workers, []
        await self._drain(old, timeout_s)

    async def _drain(self, workers: list[_SinkWorker], timeout_s: float) -> None:
        for w in workers:
            w.queue.put_nowait(None)
        if workers:
            done, pending = await asyncio.wait([w.task for w in workers], timeout=timeout_s)
            for t in pending:
                t.cancel()
