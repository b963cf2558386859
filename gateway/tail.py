"""``asr-gateway tail``: live transcripts from a running gateway, one colour per channel."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any, TextIO

import aiohttp

COLOURS = {"agent": "\033[36m", "customer": "\033[33m"}
RESET = "\033[0m"
DEFAULT_TYPES = "transcript.final,transcript.partial,call.answered,call.ended,dtmf"


def format_event(event: dict[str, Any], colour: bool) -> str | None:
    kind = event.get("type", "")
    call = str(event.get("call_id", ""))[-6:]
    if kind.startswith("transcript."):
        if kind == "transcript.partial" and not colour:
            return None                       # partials only make sense on a live terminal
        channel = event.get("channel", "?")
        mark = "" if kind == "transcript.final" else " …"
        line = f"[{call}] {channel:>8}: {event.get('text', '')}{mark}"
        return f"{COLOURS.get(channel, '')}{line}{RESET}" if colour else line
    if kind == "dtmf":
        return f"[{call}] {event.get('channel', '?'):>8}: DTMF {event.get('digit')}"
    if kind in ("call.answered", "call.ended"):
        extra = event.get("reason", "") if kind == "call.ended" else ""
        return f"[{call}] {kind} {extra}".rstrip()
    return None


async def tail(url: str, token: str | None, call_id: str | None, types: str,
               out: TextIO = sys.stdout) -> int:
    params = {"types": types, **({"call_id": call_id} if call_id else {})}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    colour = out.isatty()
    async with aiohttp.ClientSession() as session:
        try:
            ws = await session.ws_connect(url.rstrip("/") + "/v1/events", params=params,
                                          headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            print(f"tail: {url}: HTTP {exc.status} (token?)", file=sys.stderr)
            return 2
        async with ws:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                line = format_event(json.loads(msg.data), colour)
                if line:
                    print(line, file=out, flush=True)
    return 0


def run(url: str, token: str | None, call_id: str | None, types: str) -> int:
    try:
        return asyncio.run(tail(url, token, call_id, types))
    except KeyboardInterrupt:
        return 0
    except aiohttp.ClientError as exc:
        print(f"tail: {url}: {exc}", file=sys.stderr)
        return 1
