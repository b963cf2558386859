"""POST /v1/calls/{id}/say in-process: the route maps a typed refusal to its status code.

The real aiohttp app of gateway/http_api.py over loopback (aiohttp's TestServer) in front
of a small :class:`~gateway.http_api.GatewayControl` whose ``say`` refuses with the reason
a test names, as the call side does (``SayRefused``), or queues the reply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.calls.commands import SayRefusal, SayRefused
from gateway.config import HttpConfig, Secret
from gateway.events.types import Envelope
from gateway.http_api import build_app
from gateway.tts.playout import Reply
from tests.batch_off import NoBatchJobs

TOKEN = "say-test-token"


class SayingControl(NoBatchJobs):
    """A GatewayControl whose ``say`` refuses with ``refusal`` (None: queues the reply)."""

    max_text_chars = 100

    def __init__(self, refusal: SayRefusal | None) -> None:
        self.refusal = refusal
        self.said: list[tuple[str, str, bool, str]] = []

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return True, {}

    def metrics_text(self) -> bytes:
        return b""

    def calls_summary(self) -> list[dict[str, Any]]:
        return []

    def call_summary(self, call_id: str) -> dict[str, Any] | None:
        return None

    async def hangup_call(self, call_id: str, reason: str) -> bool:
        return False

    def say(self, call_id: str, text: str, *, barge_in: bool, source: str) -> Reply:
        if self.refusal is not None:
            raise SayRefused(self.refusal)
        self.said.append((call_id, text, barge_in, source))
        return Reply(text, barge_in, 0.0, source, reply_id="r-77")

    def set_secure(self, call_id: str, secure: bool, *, by: str) -> bool:
        return False

    def subscribe(self, listener: Callable[[Envelope], object]) -> None:
        return None

    def unsubscribe(self, listener: Callable[[Envelope], object]) -> None:
        return None


async def _post_say(control: SayingControl) -> tuple[int, Any]:
    app = build_app(control, HttpConfig(token=Secret(TOKEN)))
    client: TestClient[aiohttp.web.Request, aiohttp.web.Application]
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/v1/calls/c-1/say", json={"text": " Hello. "},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        return resp.status, await resp.json()


@pytest.mark.parametrize(("refusal", "status", "message"), [
    (SayRefusal.UNKNOWN_CALL, 404, "unknown call"),
    (SayRefusal.TTS_DISABLED, 503, "tts disabled"),
    (SayRefusal.CANNOT_PLAY, 409, "call cannot play audio (not answered, or receive-only)"),
])
async def test_a_refused_reply_gets_the_status_of_its_reason(
        refusal: SayRefusal, status: int, message: str) -> None:
    assert await _post_say(SayingControl(refusal)) == (status, {"error": message})


async def test_a_queued_reply_gets_202_with_its_id() -> None:
    control = SayingControl(None)
    assert await _post_say(control) == (202, {"reply_id": "r-77", "status": "queued"})
    assert control.said == [("c-1", "Hello.", True, "api")]
