"""HTTP side port hardening: bearer scheme case, WebSocket tokens for browsers, shutdown.

The auth tests run the real aiohttp app of a real (not started) ``Gateway`` in this
process; the shutdown test runs the daemon as a subprocess.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.config import GatewayConfig, HttpConfig, Secret
from gateway.events.types import CallAnswered
from gateway.http_api import build_app
from gateway.http_auth import EVENTS_SUBPROTOCOL
from gateway.server import Gateway
from tests.conftest import GatewayFactory

TOKEN = "s3cret-Token_42"
BEARER_ENTRY = f"asr-gateway.bearer.{TOKEN}"


@pytest.fixture
async def gw_obj() -> Gateway:
    base = GatewayConfig()
    return Gateway(dataclasses.replace(
        base, http=HttpConfig(token=Secret(TOKEN)),
        triton=dataclasses.replace(base.triton, asr_enabled=False)))


@pytest.fixture
async def client(gw_obj: Gateway) -> AsyncIterator[TestClient[aiohttp.web.Request,
                                                               aiohttp.web.Application]]:
    async with TestClient(TestServer(build_app(gw_obj, gw_obj.config.http))) as c:
        yield c


Client = TestClient[aiohttp.web.Request, aiohttp.web.Application]


@pytest.mark.parametrize("header", [
    f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"beARer {TOKEN}",
    f"Bearer   {TOKEN}  ", f"\tBearer\t{TOKEN}", f"  bearer {TOKEN}"])
async def test_bearer_scheme_is_case_insensitive_and_whitespace_tolerant(
        client: Client, header: str) -> None:
    resp = await client.get("/v1/calls", headers={"Authorization": header})
    assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("header", [
    "", "Bearer", "Bearer ", f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}", f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN} extra"])
async def test_wrong_or_malformed_authorization_is_refused(client: Client, header: str) -> None:
    resp = await client.get("/v1/calls", headers={"Authorization": header} if header else {})
    assert resp.status == 401


async def _first_event(ws: aiohttp.ClientWebSocketResponse, gateway: Gateway) -> str:
    gateway.events.emit(CallAnswered(call_id="c-ws-1", sip_call_id="x", conversation_id="v-1",
                                     channels=("customer",), ports=(None,)))
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return str(msg.data)


async def test_websocket_token_in_a_subprotocol_entry(client: Client, gw_obj: Gateway) -> None:
    async with client.ws_connect("/v1/events", protocols=(EVENTS_SUBPROTOCOL, BEARER_ENTRY)
                                 ) as ws:
        assert ws.protocol == EVENTS_SUBPROTOCOL      # chosen, and the token not echoed
        assert "c-ws-1" in await _first_event(ws, gw_obj)
    async with client.ws_connect("/v1/events", protocols=(BEARER_ENTRY,)) as ws:
        assert ws.protocol == BEARER_ENTRY            # a browser needs one of its offers back
        assert "c-ws-1" in await _first_event(ws, gw_obj)


@pytest.mark.parametrize("protocols", [
    (EVENTS_SUBPROTOCOL,), (EVENTS_SUBPROTOCOL, "asr-gateway.bearer.wrong"),
    ("asr-gateway.bearer.",), (f"asr-gateway.bearer.{TOKEN}x",), ("bearer", TOKEN)])
async def test_websocket_wrong_subprotocol_token_is_refused(client: Client,
                                                             protocols: tuple[str, ...]) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await client.ws_connect("/v1/events", protocols=protocols)
    assert exc.value.status == 401


async def test_subprotocol_token_is_only_for_the_websocket(client: Client) -> None:
    resp = await client.get("/v1/calls", headers={"Sec-WebSocket-Protocol": BEARER_ENTRY})
    assert resp.status == 401


async def test_header_auth_still_answers_an_offered_subprotocol(client: Client) -> None:
    async with client.ws_connect("/v1/events", protocols=(EVENTS_SUBPROTOCOL,),
                                 headers={"Authorization": f"bearer {TOKEN}"}) as ws:
        assert ws.protocol == EVENTS_SUBPROTOCOL


async def _ticket(client: Client) -> str:
    resp = await client.post("/v1/ws-ticket", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert 0 < body["expires_in_s"] <= 60
    assert resp.headers["Cache-Control"] == "no-store"
    return str(body["ticket"])


async def test_ws_ticket_is_single_use(client: Client, gw_obj: Gateway) -> None:
    assert (await client.post("/v1/ws-ticket")).status == 401
    ticket = await _ticket(client)
    async with client.ws_connect("/v1/events", params={"ticket": ticket}) as ws:
        assert "c-ws-1" in await _first_event(ws, gw_obj)
    with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
        await client.ws_connect("/v1/events", params={"ticket": ticket})
    assert exc.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/v1/events", params={"ticket": "made-up"})


async def test_ws_ticket_is_not_a_token_for_other_routes(client: Client) -> None:
    ticket = await _ticket(client)
    assert (await client.get("/v1/calls", params={"ticket": ticket})).status == 401
    assert (await client.post("/v1/ws-ticket", params={"ticket": ticket})).status == 401


async def test_no_token_configured_refuses_every_way(gw_obj: Gateway) -> None:
    app = build_app(gw_obj, HttpConfig(token=None))
    async with TestClient(TestServer(app)) as c:
        assert (await c.post("/v1/ws-ticket")).status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await c.ws_connect("/v1/events", protocols=("asr-gateway.bearer.",))
        assert exc.value.status == 403


# ------------------------------------------------------------------ the daemon: shutdown

async def _watch_close(url: str, headers: dict[str, str],
                       protocols: tuple[str, ...] = ()) -> tuple[aiohttp.ClientSession,
                                                                 aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url, headers=headers, protocols=protocols)
    return session, ws


async def _close_code(ws: aiohttp.ClientWebSocketResponse, timeout_s: float) -> int | None:
    """The code in the server's close frame (None: the connection ended without one).
    ``ws.close_code`` is not it: it turns 1006 when the client's close reply cannot be sent
    any more, which is the case here since the clients are read one after the other."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = await asyncio.wait_for(ws.receive(), deadline - time.monotonic())
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING,
                        aiohttp.WSMsgType.ERROR):
            return None
    return None


@pytest.mark.slow
async def test_sigterm_closes_websockets_going_away_and_exits_promptly(
        gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory({"http": {"token": TOKEN}, "triton": {"asr_enabled": False}})
    base = f"http://127.0.0.1:{gw.http_port}"
    status, body = gw.http("/v1/ws-ticket", method="POST", token=TOKEN)
    assert status == 201, body
    ticket = json.loads(body)["ticket"]
    clients = [await _watch_close(f"{base}/v1/events", {"Authorization": f"bearer {TOKEN}"}),
               await _watch_close(f"{base}/v1/events", {},
                                  protocols=(EVENTS_SUBPROTOCOL, BEARER_ENTRY)),
               await _watch_close(f"{base}/v1/events?ticket={ticket}", {})]
    try:
        await asyncio.sleep(0.3)
        started = time.monotonic()
        gw.signal(signal.SIGTERM)
        codes = [await _close_code(ws, 10) for _s, ws in clients]
        rc = await asyncio.to_thread(gw.wait, 20)
        took = time.monotonic() - started
    finally:
        for session, ws in clients:
            await ws.close()
            await session.close()
    assert rc == 0
    assert codes == [1001, 1001, 1001], codes
    assert not gw.events("gateway.shutdown_step_timeout"), gw.events(
        "gateway.shutdown_step_timeout")
    assert took < 4.0, f"shutdown took {took:.1f} s with WebSocket clients connected"
    output = "".join(gw.raw)
    assert TOKEN not in output and ticket not in output, "tokens and tickets are never logged"
