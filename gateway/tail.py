"""``asr-gateway tail``: live transcripts, spoken replies and call summaries from a gateway.

:class:`TailFormatter` is the pure part (events in, lines out); :func:`tail` is the
WebSocket shell around it.

When the connection is lost after it was up (the gateway stops or restarts: close
code 1001, or the socket dies), tail says so on stderr and reconnects with backoff
(``backoff_s``: 0.5 s doubling to 10 s), giving up with exit 1 after
``--reconnect-for`` seconds without a connection; events sent while it was away are
not replayed. ``--no-reconnect`` exits 1 at the first loss. A first connection that
fails exits 1 at once (wrong ``--url``, gateway not running), a refused token exits 2.
Ctrl-C exits 0.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp

COLOURS = {"agent": "\033[36m", "customer": "\033[33m"}
REPLY_COLOUR = "\033[35m"
RESET = "\033[0m"
DEFAULT_TYPES = ("transcript.final,transcript.partial,call.answered,call.ended,dtmf,"
                 "tts.started,tts.finished,tts.interrupted,tts.failed")
DEFAULT_TOKEN_ENV = "ASR_GW_HTTP_TOKEN"
RECONNECT_FOR_S = 300.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
CONNECT_TIMEOUT_S = 10.0
MAX_TRACKED_CALLS = 10_000          # calls whose call.ended never came are forgotten oldest first
EXIT_OK = 0
EXIT_LOST = 1
EXIT_REFUSED = 2


# ------------------------------------------------------------------ the pure part

def backoff_s(attempt: int) -> float:
    """Delay before reconnect attempt ``attempt`` (0, 1, ...): 0.5, 1, 2, 4, 8, 10, 10 ..."""
    return float(min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(attempt, 16)))


def close_reason(code: int | None) -> str:
    if code == aiohttp.WSCloseCode.GOING_AWAY:
        return "the gateway is shutting down (close code 1001)"
    if code is None or code == aiohttp.WSCloseCode.ABNORMAL_CLOSURE:
        return "the connection dropped (no close frame)"
    return f"the gateway closed the connection (close code {code})"


def refused_message(url: str, status: int, token: str | None, token_env: str) -> str:
    if status == 401 and token is None:
        return (f"tail: {url}: HTTP 401: no token: {token_env} is not set "
                f"(export {token_env}=<the gateway's http.token>, or name another variable "
                "with --token-env)")
    if status == 401:
        return (f"tail: {url}: HTTP 401: the gateway refused the token in {token_env} "
                "(it must equal the gateway's http.token)")
    if status == 403:
        return f"tail: {url}: HTTP 403: the gateway's control API is disabled (no http.token)"
    return f"tail: {url}: HTTP {status} on /v1/events"


@dataclass(slots=True)
class _CallTally:
    finals: dict[str, int] = field(default_factory=dict)
    replies: int = 0
    reply_s: float = 0.0


class TailFormatter:
    """Lines for one event; keeps per-call counts for the summary at ``call.ended``."""

    def __init__(self, colour: bool) -> None:
        self.colour = colour
        self._calls: OrderedDict[str, _CallTally] = OrderedDict()

    def lines(self, event: dict[str, Any]) -> list[str]:
        kind = str(event.get("type", ""))
        call = str(event.get("call_id", ""))[-6:]
        if kind.startswith("transcript."):
            return self._transcript(kind, call, event)
        if kind == "dtmf":
            return [f"[{call}] {event.get('channel', '?'):>8}: DTMF {event.get('digit')}"]
        if kind.startswith("tts."):
            return self._reply(kind, call, event)
        if kind == "call.answered":
            return [f"[{call}] call.answered"]
        if kind == "call.ended":
            return [self._ended(call, event)]
        return []

    def _tally(self, event: dict[str, Any]) -> _CallTally:
        call_id = str(event.get("call_id", ""))
        tally = self._calls.get(call_id)
        if tally is None:
            tally = self._calls[call_id] = _CallTally()
            while len(self._calls) > MAX_TRACKED_CALLS:
                self._calls.popitem(last=False)
        return tally

    def _transcript(self, kind: str, call: str, event: dict[str, Any]) -> list[str]:
        channel = str(event.get("channel", "?"))
        if kind == "transcript.final":
            finals = self._tally(event).finals
            finals[channel] = finals.get(channel, 0) + 1
        elif not self.colour:
            return []                         # partials only make sense on a live terminal
        mark = "" if kind == "transcript.final" else " …"
        line = f"[{call}] {channel:>8}: {event.get('text', '')}{mark}"
        return [self._paint(COLOURS.get(channel, ""), line)]

    def _reply(self, kind: str, call: str, event: dict[str, Any]) -> list[str]:
        played_s = float(event.get("played_ms", 0)) / 1000
        if kind == "tts.started":
            self._tally(event).replies += 1
            source = event.get("source")
            text = f"{event.get('text', '')}" + (f" ({source})" if source else "")
        elif kind == "tts.finished":
            self._tally(event).reply_s += played_s
            text = f"(finished, {played_s:.1f} s spoken)"
        elif kind == "tts.interrupted":
            self._tally(event).reply_s += played_s
            text = f"(interrupted: {event.get('reason', '?')}, after {played_s:.1f} s)"
        elif kind == "tts.failed":
            text = f"(failed: {event.get('error', '?')})"
        else:
            return []
        return [self._paint(REPLY_COLOUR, f"[{call}] {'reply':>8}: {text}")]

    def _ended(self, call: str, event: dict[str, Any]) -> str:
        tally = self._calls.pop(str(event.get("call_id", "")), _CallTally())
        head = f"[{call}] call.ended {event.get('reason', '')}".rstrip()
        return f"{head}: {call_summary(event, tally.finals, tally.replies, tally.reply_s)}"

    def _paint(self, colour: str, line: str) -> str:
        return f"{colour}{line}{RESET}" if self.colour and colour else line


def call_summary(ended: dict[str, Any], finals: dict[str, int], replies: int,
                 reply_s: float) -> str:
    """One line: duration, finals per channel, replies, RTP per leg, recording."""
    parts = [f"{float(ended.get('duration_s', 0.0)):.1f} s" if ended.get("answered", True)
             else "not answered"]
    total = sum(finals.values())
    per = ", ".join(f"{ch} {n}" for ch, n in sorted(finals.items()))
    parts.append(f"{total} final{'s' if total != 1 else ''}" + (f" ({per})" if per else ""))
    if replies:
        parts.append(f"{replies} repl{'ies' if replies != 1 else 'y'} ({reply_s:.1f} s spoken)")
    for leg in ended.get("legs") or ():
        if isinstance(leg, dict):
            parts.append(f"{leg.get('channel', '?')} RTP {leg.get('received', 0)} packets, "
                         f"{leg.get('lost', 0)} lost")
    if ended.get("asr_finals_flushed") is False:
        parts.append("ASR did not flush its last finals in time")
    if ended.get("recording"):
        parts.append(f"recording {ended['recording']}")
    return "; ".join(parts)


# ------------------------------------------------------------------ the shell

@dataclass(frozen=True, slots=True)
class TailOptions:
    url: str = "http://127.0.0.1:8088"
    token: str | None = None
    token_env: str = DEFAULT_TOKEN_ENV
    call_id: str | None = None
    types: str = DEFAULT_TYPES
    reconnect: bool = True
    reconnect_for_s: float = RECONNECT_FOR_S


class _Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def _connect(session: aiohttp.ClientSession, opts: TailOptions
                   ) -> aiohttp.ClientWebSocketResponse:
    params = {"types": opts.types, **({"call_id": opts.call_id} if opts.call_id else {})}
    headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else {}
    try:
        return await session.ws_connect(opts.url.rstrip("/") + "/v1/events", params=params,
                                        headers=headers, timeout=aiohttp.ClientWSTimeout(
                                            ws_close=5), heartbeat=30)
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status in (401, 403):
            raise _Refused(exc.status) from exc
        raise


async def _follow(ws: aiohttp.ClientWebSocketResponse, formatter: TailFormatter,
                  out: TextIO) -> str:
    """Print events until the connection ends; returns why it ended (the code of the close
    frame: ``ws.close_code`` turns 1006 when our reply cannot be sent any more)."""
    code: int | None = None
    async with ws:
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.BINARY:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                code = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else None
                break
            _print_event(msg.data, formatter, out)
    return close_reason(code if code is not None else ws.close_code)


def _print_event(data: str, formatter: TailFormatter, out: TextIO) -> None:
    try:
        event = json.loads(data)
    except ValueError:
        return
    if isinstance(event, dict):
        for line in formatter.lines(event):
            print(line, file=out, flush=True)


async def tail(opts: TailOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    formatter = TailFormatter(out.isatty())
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT_S)) as session:
        try:
            ws = await _connect(session, opts)
        except _Refused as exc:
            print(refused_message(opts.url, exc.status, opts.token, opts.token_env), file=err)
            return EXIT_REFUSED
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            print(f"tail: cannot connect to {opts.url}: {exc} (is the gateway running? "
                  "--url)", file=err)
            return EXIT_LOST
        while True:
            why = await _follow(ws, formatter, out)
            if not opts.reconnect:
                print(f"tail: {opts.url}: {why}; exiting (--no-reconnect)", file=err)
                return EXIT_LOST
            print(f"tail: {opts.url}: {why}; reconnecting (for up to "
                  f"{opts.reconnect_for_s:g} s)", file=err)
            result = await _reconnect(session, opts, loop.time() + opts.reconnect_for_s, err)
            if isinstance(result, int):
                return result
            ws = result
            print(f"tail: reconnected to {opts.url} (events in between were missed)", file=err)


async def _reconnect(session: aiohttp.ClientSession, opts: TailOptions, give_up_at: float,
                     err: TextIO) -> aiohttp.ClientWebSocketResponse | int:
    loop = asyncio.get_running_loop()
    attempt = 0
    while True:
        delay = backoff_s(attempt)
        if loop.time() + delay > give_up_at:
            print(f"tail: {opts.url}: no connection for {opts.reconnect_for_s:g} s; giving up",
                  file=err)
            return EXIT_LOST
        await asyncio.sleep(delay)
        attempt += 1
        try:
            return await _connect(session, opts)
        except _Refused as exc:
            print(refused_message(opts.url, exc.status, opts.token, opts.token_env), file=err)
            return EXIT_REFUSED
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            print(f"tail: reconnect {attempt} failed ({exc}); next try in "
                  f"{backoff_s(attempt):g} s", file=err)


def run(opts: TailOptions) -> int:
    try:
        return asyncio.run(tail(opts))
    except KeyboardInterrupt:
        return EXIT_OK
