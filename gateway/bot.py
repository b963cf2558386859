"""Bot webhook: customer transcripts out, spoken replies back.

Layer: shell (HTTP client, asyncio tasks). The bot is a subscriber of the event bus, so it
sees transcripts only as they come out of the processing stage (redacted, once redaction
is configured). Each ``transcript.final`` of the configured channel is POSTed as JSON with
an ``X-Gateway-Signature: sha256=<hex HMAC-SHA256 of the body>`` header. A 2xx answer
``{"say": "...", "hangup": false}`` is acted on. Slow or failing webhooks run in their
own task per call (one at a time per call, in order) and never block media or other calls.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.config import BotConfig
from gateway.events.sinks import sign_body
from gateway.events.types import CallEnded, CallOffered, Envelope, TranscriptFinal
from gateway.logs import get_logger

SIGNATURE_HEADER = "X-Gateway-Signature"


@dataclass(frozen=True, slots=True)
class BotAction:
    say: str | None
    hangup: bool


def parse_action(raw: bytes) -> BotAction:
    """The webhook's answer; ValueError with the reason when it is not the documented shape."""
    if not raw.strip():
        return BotAction(None, False)
    obj = json.loads(raw)
    if not isinstance(obj, dict):
        raise ValueError("bot reply must be a JSON object")
    say, hangup = obj.get("say"), obj.get("hangup", False)
    if say is not None and not isinstance(say, str):
        raise ValueError("bot reply 'say' must be a string")
    if not isinstance(hangup, bool):
        raise ValueError("bot reply 'hangup' must be a boolean")
    return BotAction(say or None, hangup)


class BotClient:
    def __init__(self, config: BotConfig,
                 act: Callable[[str, BotAction], Awaitable[None]]) -> None:
        self.config = config
        self._act = act
        self._log = get_logger("bot")
        self._session: aiohttp.ClientSession | None = None
        self._chains: dict[str, asyncio.Task[None]] = {}
        self._parties: dict[str, tuple[str, str]] = {}   # call_id -> (from, to)

    @property
    def enabled(self) -> bool:
        return bool(self.config.webhook_url)

    def on_event(self, envelope: Envelope) -> None:
        """Bus subscriber: remembers each call's From/To, posts its channel's finals."""
        event = envelope.event
        if isinstance(event, CallOffered):
            self._parties[event.call_id] = (event.from_uri, event.to_uri)
        elif isinstance(event, CallEnded):
            self._parties.pop(event.call_id, None)
        elif (isinstance(event, TranscriptFinal) and self.enabled
              and event.channel == self.config.channel):
            self.transcript(event.call_id, self.body(event))

    def body(self, event: TranscriptFinal) -> dict[str, Any]:
        """The webhook's JSON body (README, "Bot webhook")."""
        from_uri, to_uri = self._parties.get(event.call_id, (None, None))
        return {"type": event.TYPE, "call_id": event.call_id, "channel": event.channel,
                "conversation_id": event.conversation_id, "text": event.text,
                "start_s": event.start_s, "end_s": event.end_s, "from": from_uri, "to": to_uri}

    def transcript(self, call_id: str, payload: dict[str, Any]) -> None:
        """Queue one transcript for the webhook, after the call's previous one."""
        previous = self._chains.get(call_id)
        task = asyncio.create_task(self._after(previous, call_id, payload))
        self._chains[call_id] = task
        task.add_done_callback(lambda t: self._chains.pop(call_id, None)
                               if self._chains.get(call_id) is t else None)

    async def _after(self, previous: asyncio.Task[None] | None, call_id: str,
                     payload: dict[str, Any]) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        action = await self._post(payload)
        if action is not None and (action.say or action.hangup):
            await self._act(call_id, action)

    async def _post(self, payload: dict[str, Any]) -> BotAction | None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.config.secret is not None:
            headers[SIGNATURE_HEADER] = sign_body(self.config.secret.reveal(), body)
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        for attempt in range(self.config.retries + 1):
            try:
                async with self._session.post(self.config.webhook_url, data=body,
                                              headers=headers) as resp:
                    raw = await resp.read()
                    if resp.status < 300:
                        return parse_action(raw)
                    if resp.status < 500:
                        self._log.error("bot.rejected", status=resp.status)
                        return None
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._log.warning("bot.unreachable", attempt=attempt + 1, error=str(exc))
            except ValueError as exc:
                self._log.error("bot.bad_reply", error=str(exc))
                return None
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        self._log.error("bot.gave_up", attempts=self.config.retries + 1)
        return None

    async def close(self) -> None:
        for task in list(self._chains.values()):
            task.cancel()
        if self._session is not None:
            await self._session.close()
