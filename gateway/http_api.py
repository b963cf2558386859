"""HTTP side port: /healthz, /readyz, /metrics, and bearer-token control routes (/v1/...),
batch transcription jobs (/v1/transcriptions) among them.

The routes see the daemon only through :class:`GatewayControl` (``gateway.server.Gateway``
implements it), so this module does not import the server.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import WSCloseCode, hdrs, web

from gateway.batch.jobspec import ROUTE as TRANSCRIPTIONS_PATH
from gateway.batch.jobspec import BatchRefused
from gateway.calls.commands import SayRefusal, SayRefused, SecureRefusal, SecureRefused
from gateway.config import HttpConfig
from gateway.consent.policy import ConsentRefused
from gateway.events.types import Envelope
from gateway.http_auth import (
    BEARER_SUBPROTOCOL_PREFIX,
    EVENTS_SUBPROTOCOL,
    TicketBook,
    bearer_credentials,
    offered_subprotocols,
    subprotocol_auth,
    token_matches,
)

if TYPE_CHECKING:
    from gateway.tts.playout import Reply

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class GatewayControl(Protocol):
    """Everything the HTTP side port may read or ask of the running daemon."""

    @property
    def max_text_chars(self) -> int:
        """``tts.max_text_chars``: the longest text POST /say accepts."""

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def metrics_text(self) -> bytes:
        """The Prometheus exposition of this gateway's registry."""

    def calls_summary(self) -> list[dict[str, Any]]: ...

    def call_summary(self, call_id: str) -> dict[str, Any] | None: ...

    async def hangup_call(self, call_id: str, reason: str) -> bool: ...

    def say(self, call_id: str, text: str, *, barge_in: bool, source: str) -> Reply:
        """The queued reply, or :class:`SayRefused` with the reason."""

    def set_secure(self, call_id: str, secure: bool, *, by: str) -> bool:
        """Secure (keypad) mode on or off; False when it already was (no event), or
        :class:`SecureRefused` with the reason."""

    def subscribe(self, listener: Callable[[Envelope], object]) -> None: ...

    def unsubscribe(self, listener: Callable[[Envelope], object]) -> None: ...

    def set_consent(self, call_id: str, *, granted: bool, channels: Sequence[str],
                    purpose: str | None) -> list[dict[str, Any]]:
        """Grant or decline consent of a live call's channels (all its own when empty): the
        records kept, or :class:`ConsentRefused` with the status."""

    def withdraw_consent(self, conversation_id: str, *, reason: str) -> dict[str, Any]:
        """Withdraw a conversation's consent (live or ended), or :class:`ConsentRefused`."""

    def conversation_consent(self, conversation_id: str) -> dict[str, Any]:
        """A conversation's decisions and withdrawals, or :class:`ConsentRefused` (404)."""

    async def create_transcription(self, body: Any) -> dict[str, Any]:
        """A batch job from the POST body: its view, or :class:`BatchRefused` (400 for a
        bad body or path, 503 when batch jobs are off)."""

    async def transcriptions(self, status: str | None) -> list[dict[str, Any]]:
        """Every job, newest first (``status``: only those), or :class:`BatchRefused`."""

    async def transcription(self, job_id: str) -> dict[str, Any] | None:
        """One job with its files' results; None when unknown."""

    async def delete_transcription(self, job_id: str) -> tuple[int, dict[str, Any]] | None:
        """Cancel (200: was queued, 202: stops after the files in flight) or delete (204: was
        finished) a job: the status and the body; None when unknown."""


GATEWAY_KEY: web.AppKey[GatewayControl] = web.AppKey("gateway")
TICKETS_KEY: web.AppKey[TicketBook] = web.AppKey("ws tickets", TicketBook)
SOCKETS_KEY: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey(
    "open websockets", weakref.WeakSet)
SAY_REFUSED_STATUS: dict[SayRefusal, int] = {
    SayRefusal.UNKNOWN_CALL: 404, SayRefusal.TTS_DISABLED: 503, SayRefusal.CANNOT_PLAY: 409}
SECURE_REFUSED_STATUS: dict[SecureRefusal, int] = {
    SecureRefusal.UNKNOWN_CALL: 404, SecureRefusal.ENDING: 409}
WS_ANSWER_KEY: web.RequestKey[str | None] = web.RequestKey("ws subprotocol answer", str)
CONTROL_PREFIX = "/v1/"
EVENTS_PATH = "/v1/events"
WS_CLOSE_TIMEOUT_S = 2.0      # a WebSocket client that does not answer our close frame
SHUTDOWN_TIMEOUT_S = 3.0      # requests still running when the HTTP port stops


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _token_middleware(token: str | None) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        if token is None:
            return _error(403, "control API disabled: set http.token in the config")
        if not _authenticated(request, token):
            return _error(401, "missing or wrong bearer token (Authorization: Bearer <token>"
                               "; on /v1/events also a Sec-WebSocket-Protocol entry "
                               "asr-gateway.bearer.<token> or ?ticket= from POST /v1/ws-ticket)")
        return await handler(request)

    return check


def _authenticated(request: web.Request, token: str) -> bool:
    sent = bearer_credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
    header_ok = sent is not None and token_matches(sent, token)
    if request.path != EVENTS_PATH or request.method != "GET":
        return header_ok
    offered = offered_subprotocols(request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, ""))
    by_protocol = subprotocol_auth(offered, token)
    request[WS_ANSWER_KEY] = by_protocol.answer
    ticket = request.query.get("ticket")
    by_ticket = ticket is not None and request.app[TICKETS_KEY].redeem(
        ticket, asyncio.get_running_loop().time())
    return header_ok or by_protocol.ok or by_ticket


def choose_subprotocol(offered: list[str], auth_answer: str | None) -> str | None:
    """The one subprotocol the handshake answers with: a browser that offered some fails the
    connection unless one of them comes back."""
    if EVENTS_SUBPROTOCOL in offered:
        return EVENTS_SUBPROTOCOL
    plain = [p for p in offered if not p.startswith(BEARER_SUBPROTOCOL_PREFIX)]
    return auth_answer or next(iter(plain + offered), None)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready, checks = request.app[GATEWAY_KEY].readiness()
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[GATEWAY_KEY].metrics_text()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def list_calls(request: web.Request) -> web.Response:
    return web.json_response({"calls": request.app[GATEWAY_KEY].calls_summary()})


async def get_call(request: web.Request) -> web.Response:
    call = request.app[GATEWAY_KEY].call_summary(request.match_info["call_id"])
    if call is None:
        return _error(404, "unknown call")
    return web.json_response(call)


async def hangup_call(request: web.Request) -> web.Response:
    if not await request.app[GATEWAY_KEY].hangup_call(request.match_info["call_id"], "api"):
        return _error(404, "unknown call")
    return web.json_response({"status": "hanging up"}, status=202)


WS_QUEUE_LIMIT = 1000


async def events_ws(request: web.Request) -> web.StreamResponse:
    """Live events over a WebSocket; ``?call_id=`` and ``?types=a,b`` filter them."""
    gateway = request.app[GATEWAY_KEY]
    call_id = request.query.get("call_id")
    types = {t for t in request.query.get("types", "").split(",") if t}
    offered = offered_subprotocols(request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, ""))
    answer = choose_subprotocol(offered, request.get(WS_ANSWER_KEY))
    ws = web.WebSocketResponse(heartbeat=20, timeout=WS_CLOSE_TIMEOUT_S,
                               protocols=(answer,) if answer else ())
    await ws.prepare(request)
    request.app[SOCKETS_KEY].add(ws)
    queue: asyncio.Queue[str] = asyncio.Queue(WS_QUEUE_LIMIT)

    def listener(event: Envelope) -> None:
        if (call_id and event.call_id != call_id) or (types and event.type not in types):
            return
        if queue.full():
            queue.get_nowait()             # a slow viewer loses old lines, never the calls
        queue.put_nowait(event.to_json())

    gateway.subscribe(listener)
    reader = asyncio.create_task(_drain_incoming(ws))
    try:
        while not ws.closed and not reader.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await ws.send_str(getter.result())
            else:
                getter.cancel()
    finally:
        gateway.unsubscribe(listener)
        reader.cancel()
    return ws


async def _drain_incoming(ws: web.WebSocketResponse) -> None:
    async for _msg in ws:      # the client only listens; reading keeps pings and close working
        pass


async def ws_ticket(request: web.Request) -> web.Response:
    """POST -> 201 {"ticket": ..., "expires_in_s": ...}: one WebSocket connect as ?ticket=."""
    book = request.app[TICKETS_KEY]
    ticket = secrets.token_urlsafe(24)
    book.issue(ticket, asyncio.get_running_loop().time())
    return web.json_response({"ticket": ticket, "expires_in_s": book.ttl_s}, status=201,
                             headers={"Cache-Control": "no-store"})


async def close_websockets(app: web.Application) -> None:
    """Going-away (1001) to every open WebSocket, so no handler keeps the shutdown waiting."""
    sockets = [ws for ws in app[SOCKETS_KEY] if not ws.closed]
    closing = asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway stopping")
                               for ws in sockets), return_exceptions=True)
    with contextlib.suppress(TimeoutError):     # a client that reads nothing blocks the drain
        await asyncio.wait_for(closing, WS_CLOSE_TIMEOUT_S + 1)


async def say(request: web.Request) -> web.Response:
    """POST {"text": "...", "barge_in": true} -> 202 {"reply_id": ...}."""
    gateway = request.app[GATEWAY_KEY]
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    text, barge_in = body.get("text"), body.get("barge_in", True)
    if not isinstance(text, str) or not text.strip():
        return _error(400, "'text' must be a non-empty string")
    if not isinstance(barge_in, bool):
        return _error(400, "'barge_in' must be true or false")
    limit = gateway.max_text_chars
    if len(text) > limit:
        return _error(413, f"'text' is longer than tts.max_text_chars ({limit})")
    try:
        reply = gateway.say(request.match_info["call_id"], text.strip(), barge_in=barge_in,
                            source="api")
    except SayRefused as refused:
        return _error(SAY_REFUSED_STATUS[refused.reason], refused.reason.value)
    return web.json_response({"reply_id": reply.reply_id, "status": "queued"}, status=202)


async def set_secure(request: web.Request) -> web.Response:
    """POST {"secure": true} (the default; no body is the same) -> 200 {"call_id", "secure"}."""
    secure = await _secure_flag(request)
    if isinstance(secure, web.Response):
        return secure
    call_id = request.match_info["call_id"]
    try:
        request.app[GATEWAY_KEY].set_secure(call_id, secure, by="api")
    except SecureRefused as refused:
        return _error(SECURE_REFUSED_STATUS[refused.reason], refused.reason.value)
    return web.json_response({"call_id": call_id, "secure": secure})


async def _secure_flag(request: web.Request) -> bool | web.Response:
    """The body's ``secure`` (true when the body is empty or leaves it out), or the 400."""
    if not (await request.read()).strip():
        return True
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "body must be JSON")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    secure = body.get("secure", True)
    if not isinstance(secure, bool):
        return _error(400, "'secure' must be true or false")
    return secure


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "body must be JSON")
    if not isinstance(body, dict):
        return _error(400, "body must be a JSON object")
    return body


async def set_consent(request: web.Request) -> web.Response:
    """POST {"granted": true, "channels": ["customer"], "purpose": "..."} -> 200 records."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    granted, channels = body.get("granted"), body.get("channels", [])
    purpose = body.get("purpose")
    if not isinstance(granted, bool):
        return _error(400, "'granted' must be true or false")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        return _error(400, "'channels' must be a list of channel names (agent, customer)")
    if purpose is not None and (not isinstance(purpose, str) or not purpose.strip()):
        return _error(400, "'purpose' must be a non-empty string")
    call_id = request.match_info["call_id"]
    try:
        records = request.app[GATEWAY_KEY].set_consent(call_id, granted=granted,
                                                       channels=channels, purpose=purpose)
    except ConsentRefused as refused:
        return _error(refused.status, refused.message)
    return web.json_response({"call_id": call_id, "records": records})


async def withdraw_consent(request: web.Request) -> web.Response:
    """POST {"reason": "..."} -> 200 {"withdrawn": true, "grants_withdrawn": n, ...}."""
    body = await _json_object(request)
    if isinstance(body, web.Response):
        return body
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return _error(400, "'reason' must be a non-empty string")
    try:
        view = request.app[GATEWAY_KEY].withdraw_consent(
            request.match_info["conversation_id"], reason=reason.strip())
    except ConsentRefused as refused:
        return _error(refused.status, refused.message)
    return web.json_response(view)


async def get_consent(request: web.Request) -> web.Response:
    try:
        view = request.app[GATEWAY_KEY].conversation_consent(
            request.match_info["conversation_id"])
    except ConsentRefused as refused:
        return _error(refused.status, refused.message)
    return web.json_response(view)


async def create_transcription(request: web.Request) -> web.Response:
    """POST {"files": [...], "options": {...}, "webhook_url": "..."} -> 201 + Location."""
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "body must be JSON")
    try:
        view = await request.app[GATEWAY_KEY].create_transcription(body)
    except BatchRefused as refused:
        return _error(refused.status, refused.message)
    return web.json_response(view, status=201, headers={hdrs.LOCATION: view["self"]})


async def list_transcriptions(request: web.Request) -> web.Response:
    """GET ?status=running -> {"transcriptions": [...]} (newest first)."""
    try:
        jobs = await request.app[GATEWAY_KEY].transcriptions(request.query.get("status"))
    except BatchRefused as refused:
        return _error(refused.status, refused.message)
    return web.json_response({"transcriptions": jobs})


async def get_transcription(request: web.Request) -> web.Response:
    try:
        job = await request.app[GATEWAY_KEY].transcription(request.match_info["job_id"])
    except BatchRefused as refused:
        return _error(refused.status, refused.message)
    return _error(404, "unknown transcription") if job is None else web.json_response(job)


async def delete_transcription(request: web.Request) -> web.Response:
    try:
        answer = await request.app[GATEWAY_KEY].delete_transcription(
            request.match_info["job_id"])
    except BatchRefused as refused:
        return _error(refused.status, refused.message)
    if answer is None:
        return _error(404, "unknown transcription")
    status, body = answer
    return web.Response(status=204) if status == 204 else web.json_response(body, status=status)


def build_app(gateway: GatewayControl, config: HttpConfig) -> web.Application:
    token = config.token.reveal() if config.token is not None else None
    app = web.Application(middlewares=[_token_middleware(token)], client_max_size=64 * 1024)
    app[GATEWAY_KEY] = gateway
    app[TICKETS_KEY] = TicketBook()
    app[SOCKETS_KEY] = weakref.WeakSet()
    app.on_shutdown.append(close_websockets)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/calls", list_calls)
    app.router.add_get("/v1/calls/{call_id}", get_call)
    app.router.add_post("/v1/calls/{call_id}/hangup", hangup_call)
    app.router.add_get(EVENTS_PATH, events_ws)
    app.router.add_post("/v1/ws-ticket", ws_ticket)
    app.router.add_post("/v1/calls/{call_id}/say", say)
    app.router.add_post("/v1/calls/{call_id}/secure", set_secure)
    app.router.add_post("/v1/calls/{call_id}/consent", set_consent)
    app.router.add_post("/v1/conversations/{conversation_id}/consent/withdraw",
                        withdraw_consent)
    app.router.add_get("/v1/conversations/{conversation_id}/consent", get_consent)
    app.router.add_post(TRANSCRIPTIONS_PATH, create_transcription)
    app.router.add_get(TRANSCRIPTIONS_PATH, list_transcriptions)
    app.router.add_get(TRANSCRIPTIONS_PATH + "/{job_id}", get_transcription)
    app.router.add_delete(TRANSCRIPTIONS_PATH + "/{job_id}", delete_transcription)
    return app


class HttpServer:
    def __init__(self, gateway: GatewayControl, config: HttpConfig) -> None:
        self._runner = web.AppRunner(build_app(gateway, config), access_log=None,
                                     shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        self._config = config
        self.port = config.port

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._config.bind_address, self._config.port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close_websockets(self) -> None:
        if self._runner.app is not None:
            await close_websockets(self._runner.app)

    async def stop(self) -> None:
        await self.close_websockets()       # before cleanup, which waits for every handler
        await self._runner.cleanup()
