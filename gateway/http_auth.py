"""Bearer-token checks for the HTTP side port (pure: no I/O, no clock; time is a parameter).

Three ways to present the token, all compared in constant time:

- ``Authorization: Bearer <token>``: the scheme is case-insensitive (RFC 7235 section 2.1)
  and whitespace around the scheme and the token is tolerated.
- WebSocket only (browsers cannot set headers there): a ``Sec-WebSocket-Protocol`` entry
  ``asr-gateway.bearer.<token>``; the server answers with ``asr-gateway.events`` when the
  client offered it too (so the token is not echoed), else with the bearer entry itself.
- WebSocket only: ``?ticket=<ticket>`` from ``POST /v1/ws-ticket``, valid once and for
  ``TICKET_TTL_S`` seconds.

Layer: pure core.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass

BEARER_SCHEME = "bearer"
EVENTS_SUBPROTOCOL = "asr-gateway.events"
BEARER_SUBPROTOCOL_PREFIX = "asr-gateway.bearer."
TICKET_TTL_S = 30.0
MAX_TICKETS = 1000


def token_matches(sent: str, token: str) -> bool:
    """Constant time in the length of what was sent and of the token."""
    return hmac.compare_digest(sent.encode(), token.encode())


def bearer_credentials(header: str) -> str | None:
    """The credentials of an ``Authorization`` header with the Bearer scheme, else None."""
    parts = header.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != BEARER_SCHEME:
        return None
    return parts[1].strip()


def offered_subprotocols(header: str) -> list[str]:
    """``Sec-WebSocket-Protocol`` is a comma-separated list (RFC 6455 section 11.3.4)."""
    return [p.strip() for p in header.split(",") if p.strip()]


@dataclass(frozen=True, slots=True)
class SubprotocolAuth:
    ok: bool
    answer: str | None        # the subprotocol to select in the handshake response


def subprotocol_auth(offered: list[str], token: str) -> SubprotocolAuth:
    """Checks every ``asr-gateway.bearer.`` entry (so timing says nothing about which one)."""
    entries = [p for p in offered if p.startswith(BEARER_SUBPROTOCOL_PREFIX)]
    matched = [p for p in entries
               if token_matches(p[len(BEARER_SUBPROTOCOL_PREFIX):], token)]
    if not matched:
        return SubprotocolAuth(False, None)
    return SubprotocolAuth(True, EVENTS_SUBPROTOCOL if EVENTS_SUBPROTOCOL in offered
                           else matched[0])


def _digest(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode()).digest()


class TicketBook:
    """Short-lived single-use WebSocket tickets; only their SHA-256 digests are kept.

    The caller draws the random ticket text (``secrets.token_urlsafe``) and the time.
    At most ``max_tickets`` are outstanding: the oldest are dropped first.
    """

    def __init__(self, ttl_s: float = TICKET_TTL_S, max_tickets: int = MAX_TICKETS) -> None:
        self.ttl_s = ttl_s
        self.max_tickets = max_tickets
        self._expires: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._expires)

    def issue(self, ticket: str, now: float) -> float:
        """Remember ``ticket``; returns its expiry time."""
        self._expire(now)
        while len(self._expires) >= self.max_tickets:
            self._expires.popitem(last=False)
        expires = now + self.ttl_s
        self._expires[_digest(ticket)] = expires
        return expires

    def redeem(self, ticket: str, now: float) -> bool:
        """True once for a ticket issued less than ``ttl_s`` ago; it is used up either way."""
        self._expire(now)
        expires = self._expires.pop(_digest(ticket), None)
        return expires is not None and now < expires

    def _expire(self, now: float) -> None:
        while self._expires:
            digest, expires = next(iter(self._expires.items()))
            if expires > now:
                return
            del self._expires[digest]
