"""Event sinks: the log, JSON lines, webhooks and per-call files.

Layer: shell (file and HTTP I/O). Each sink gets :class:`~gateway.events.types.Envelope`
objects from its own queue in :class:`~gateway.events.bus.EventBus`, after the processing
stage: a sink never sees an event the processors have not passed. A sink configured with
``raw = true`` is wrapped in :class:`RawSink`: it gets each event as it was before the
redacting processors (``Envelope.unredacted``), and a warning says so at start.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from gateway.config import EventSink as EventSinkConfig
from gateway.events.types import CallEnded, Envelope
from gateway.logs import get_logger


class Sink(Protocol):
    name: str

    async def write(self, event: Envelope) -> None: ...

    async def close(self) -> None: ...


class LogSink:
    def __init__(self) -> None:
        self.name = "log"
        self._log = get_logger("events")

    async def write(self, event: Envelope) -> None:
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

    async def write(self, event: Envelope) -> None:
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

    async def write(self, event: Envelope) -> None:
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

    async def write(self, event: Envelope) -> None:
        if event.call_id is None:
            return
        f = self._files.get(event.call_id)
        if f is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            f = self._files[event.call_id] = (self._dir / f"{event.call_id}.jsonl").open(
                "a", encoding="utf-8")
        f.write(event.to_json() + "\n")
        f.flush()
        if isinstance(event.event, CallEnded):
            self._files.pop(event.call_id).close()

    async def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class RawSink:
    """``raw = true``: the wrapped sink gets events before the redacting processors."""

    def __init__(self, inner: Sink) -> None:
        self.name = inner.name
        self.inner = inner

    async def write(self, event: Envelope) -> None:
        await self.inner.write(event.unredacted())

    async def close(self) -> None:
        await self.inner.close()


def build_sinks(configs: Sequence[EventSinkConfig], calls_dir: Path | None = None) -> list[Sink]:
    sinks: list[Sink] = [CallFilesSink(calls_dir)] if calls_dir is not None else []
    for c in configs:
        sink = _build_sink(c)
        if c.raw:
            get_logger("events").warning(
                "events.raw_sink", sink=sink.name,
                detail="gets events before the redacting processors (raw = true)")
            sink = RawSink(sink)
        sinks.append(sink)
    return sinks


def _build_sink(c: EventSinkConfig) -> Sink:
    if c.type == "log":
        return LogSink()
    if c.type == "jsonl":
        assert c.path is not None
        return JsonlSink(Path(c.path))
    assert c.url is not None
    secret = c.secret.reveal() if c.secret is not None else None
    return WebhookSink(c.url, c.timeout_s, c.retries, secret)
