"""SIP registration client (RFC 3261 section 10), sans-I/O.

One :class:`Registration` keeps one binding of ``account`` alive: it builds REGISTER
requests, answers Digest challenges (401/407), refreshes before expiry, honours
423 Min-Expires, backs off exponentially with jitter on failures while failing over
through the ordered registrar list, and unregisters (Expires: 0) on request.

The caller (the SIP core) sends each :class:`SendRegister` through a client transaction
and feeds back the final response (``on_response``) or a transaction timeout/transport
failure (``on_timeout``); it calls ``handle_timer`` once ``next_deadline`` has passed.
Every state change is reported as a :class:`RegistrationChanged` with a log-ready reason.

Timing rules:

* refresh at ``max(min(0.8 * expires, expires - 5 s), 0.5 * expires)``, minus up to 5 %
  jitter (so never later than that);
* after the n-th consecutive failure wait ``min(300, 2 ** (n - 1))`` seconds, +-20 %
  jitter, and move to the next registrar (wrapping); a ``Retry-After`` makes that
  registrar unavailable until then;
* rejected credentials (401/407 again, or 403) and other configuration-type problems
  enter FAILED and retry only after about 5 minutes (+-20 %).

Contact NAT handling (RFC 3581): ``received``/``rport`` in a response's top Via replace
the Contact address of the next REGISTER; when a 2xx shows that the registered Contact is
not the address the registrar sees, the binding is re-registered at once with the
corrected Contact. The Via keeps the local (socket) address.

Layer: pure core.
"""

from __future__ import annotations

import enum
import random as _random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.config import SipAccount
from gateway.sip import digest
from gateway.sip.message import (
    Headers,
    SipHeaderError,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    new_branch,
    new_call_id,
    new_tag,
    parse_name_addr,
    parse_uri,
)

BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0
BACKOFF_JITTER = 0.2  # +-20 %
FAILED_RETRY_S = 300.0  # after rejected credentials / unusable challenge / bad 423
REFRESH_FRACTION = 0.8
REFRESH_MARGIN_S = 5.0
REFRESH_JITTER = 0.05  # refresh up to 5 % earlier, never later
MAX_EXPIRES_S = 86400
MAX_RETRY_AFTER_S = 86400
MAX_CHALLENGES_PER_ATTEMPT = 4
DEFAULT_SIP_PORT = 5060
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS"
AUTH_REJECTED = "authentication rejected (wrong user or password?)"


class RegistrationError(ValueError):
    """The account cannot be registered as configured (no registrar, unparsable URI...)."""


class RegState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    BACKOFF = "backoff"
    FAILED = "failed"
    UNREGISTERING = "unregistering"
    UNREGISTERED = "unregistered"


@dataclass(frozen=True, slots=True)
class SendRegister:
    """Send ``request`` to ``destination`` (the outbound proxy if set, else the registrar)."""

    account: str
    request: SipRequest
    destination: SipUri


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    account: str
    state: RegState
    registrar: str
    code: int | None
    reason: str
    expires_s: int | None


RegOutput = SendRegister | RegistrationChanged


class _Timer(enum.Enum):
    REFRESH = "refresh"
    RETRY = "retry"


@dataclass(slots=True)
class _Pending:
    """The REGISTER in flight: what it asked for and which nonces it answered."""

    cseq: int
    expires_s: int
    contact: tuple[str, int]
    unregister: bool
    nonces: dict[str, str]  # credentials header name -> nonce used


@dataclass(slots=True)
class _AuthCache:
    challenge: digest.Challenge
    nc: int = 0


@dataclass(slots=True)
class _Attempt:
    """Per attempt (start, refresh, retry, unregister): guards against challenge loops."""

    challenges: int = 0
    stale_retried: bool = False
    answered: set[str] = field(default_factory=set)


def _parse_seconds(value: str | None) -> int | None:
    """Leading decimal seconds of a header/param value ("120 (comment);duration=5" -> 120)."""
    if value is None:
        return None
    text = value.strip()
    end = 0
    while end < len(text) and text[end].isascii() and text[end].isdigit():
        end += 1
    return int(text[:end]) if end else None


def _parse_uri_setting(value: str, what: str) -> SipUri:
    try:
        return parse_uri(value)
    except SipHeaderError as exc:
        raise RegistrationError(f"{what} {value!r} is not a valid SIP URI: {exc}") from None


class Registration:
    """Registration state machine for one account (see module docstring)."""

    def __init__(
        self,
        account: SipAccount,
        *,
        local_host: str,
        local_port: int,
        transport: str,
        user_agent: str,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not account.registrars:
            raise RegistrationError(f"account {account.name!r} has no registrar")
        self._account = account
        self._registrars = tuple(_parse_uri_setting(r, "registrar") for r in account.registrars)
        self._proxy = (
            _parse_uri_setting(account.outbound_proxy, "outbound_proxy")
            if account.outbound_proxy
            else None
        )
        domain = SipUri("sip", None, account.domain.strip("[]"), None)
        self._request_uri = str(domain)
        self._aor = str(SipUri("sip", account.user, domain.host, None))
        self._via_addr = (local_host, local_port)
        self._contact_addr = (local_host, local_port)
        self._transport = transport.lower()
        self._user_agent = user_agent
        self._random = random
        self._call_id = new_call_id(local_host)
        self._from_tag = new_tag()
        self._cseq = 0
        self._expires_s = min(account.expires_s, MAX_EXPIRES_S)
        self._state = RegState.IDLE
        self._index = 0
        self._failures = 0
        self._not_before: dict[int, float] = {}
        self._auth: dict[str, _AuthCache] = {}
        self._attempt = _Attempt()
        self._pending: _Pending | None = None
        self._deadline: float | None = None
        self._timer = _Timer.RETRY
        self._last_event: RegistrationChanged | None = None

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> RegState:
        return self._state

    @property
    def registered(self) -> bool:
        return self._state is RegState.REGISTERED

    @property
    def account_name(self) -> str:
        return self._account.name

    @property
    def registrar(self) -> str:
        """The registrar currently in use (as configured)."""
        return self._account.registrars[self._index]

    def next_deadline(self) -> float | None:
        return self._deadline

    # ------------------------------------------------------------------ inputs

    def start(self, now: float) -> list[RegOutput]:
        """Register now (also cuts a BACKOFF/FAILED wait short); no-op while active."""
        if self._state in (RegState.REGISTERING, RegState.REGISTERED, RegState.UNREGISTERING):
            return []
        self._failures = 0
        return self._begin()

    def on_response(self, response: SipResponse, now: float) -> list[RegOutput]:
        """Feed a final response; responses to anything but the pending request are ignored."""
        pending = self._pending
        if pending is None or not self._matches(response, pending):
            return []
        self._pending = None
        self._learn_from_via(response)
        status = response.status
        if status in (401, 407):
            return self._on_challenge(response, pending, now)
        if pending.unregister:
            return self._stop(status, f"unregistered from {self.registrar} ({_status(response)})")
        if 200 <= status < 300:
            return self._on_success(response, pending, now)
        if status == 423:
            return self._on_too_brief(response, pending, now)
        if status == 403:
            return self._give_up(403, AUTH_REJECTED, now)
        retry_after = _parse_seconds(response.headers.get("Retry-After"))
        return self._on_failure(status, _status(response), now, retry_after)

    def on_timeout(self, now: float) -> list[RegOutput]:
        """The pending REGISTER timed out or its transport failed."""
        pending = self._pending
        if pending is None:
            return []
        self._pending = None
        if pending.unregister:
            return self._stop(None, f"unregister from {self.registrar} timed out")
        return self._on_failure(None, "no response (timeout or transport error)", now, None)

    def handle_timer(self, now: float) -> list[RegOutput]:
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        if self._timer is _Timer.REFRESH:
            self._attempt = _Attempt()
            return [self._send(unregister=False)]
        return self._begin()

    def unregister(self, now: float) -> list[RegOutput]:
        """Remove the binding (Expires: 0) if registered; otherwise just stop."""
        if self._state in (RegState.UNREGISTERING, RegState.UNREGISTERED):
            return []
        self._deadline = None
        if self._state is not RegState.REGISTERED:
            self._pending = None
            return self._stop(None, "stopped (no binding to remove)")
        self._attempt = _Attempt()
        out = self._change(RegState.UNREGISTERING, None, f"unregistering from {self.registrar}")
        out.append(self._send(unregister=True))
        return out

    def update_local_address(self, host: str, port: int) -> None:
        """Use ``host:port`` in the Contact of the next REGISTER (e.g. the NAT public address)."""
        if not host or not 0 < port <= 65535:
            raise RegistrationError(f"invalid contact address {host!r}:{port}")
        self._contact_addr = (host.strip("[]"), port)

    # ------------------------------------------------------------------ responses

    def _matches(self, response: SipResponse, pending: _Pending) -> bool:
        try:
            return response.call_id == self._call_id and response.cseq == (
                pending.cseq,
                "REGISTER",
            )
        except SipHeaderError:
            return False

    def _learn_from_via(self, response: SipResponse) -> None:
        try:
            via = response.top_via
        except SipHeaderError:
            return
        received, rport = via.param("received"), _parse_seconds(via.param("rport"))
        if received is None and rport is None:
            return
        port = rport if rport is not None and 0 < rport <= 65535 else self._contact_addr[1]
        self.update_local_address(received or via.host, port)

    def _on_success(self, response: SipResponse, pending: _Pending, now: float) -> list[RegOutput]:
        granted = self._granted_expires(response, pending)
        if granted <= 0:
            return self._on_failure(
                response.status, "registrar granted no binding (expires=0)", now, None
            )
        self._failures = 0
        self._not_before.pop(self._index, None)
        self._schedule(now + self._refresh_delay(granted), _Timer.REFRESH)
        reason = f"registered with {self.registrar} ({_status(response)}), expires in {granted} s"
        out = self._change(RegState.REGISTERED, response.status, reason, granted)
        if self._contact_addr != pending.contact:
            self._deadline = None
            self._attempt = _Attempt()
            out.append(self._send(unregister=False))
        return out

    def _granted_expires(self, response: SipResponse, pending: _Pending) -> int:
        for value in response.headers.get_all("Contact"):
            try:
                contact = parse_name_addr(value)
            except SipHeaderError:
                continue
            expires = _parse_seconds(contact.param("expires"))
            if expires is not None and self._is_ours(contact.uri, pending.contact):
                return expires
        expires = _parse_seconds(response.headers.get("Expires"))
        return pending.expires_s if expires is None else expires

    def _is_ours(self, uri: SipUri, contact: tuple[str, int]) -> bool:
        return (
            uri.user == self._account.contact_user
            and uri.host.lower() == contact[0].lower()
            and (uri.port or DEFAULT_SIP_PORT) == contact[1]
        )

    def _on_too_brief(
        self, response: SipResponse, pending: _Pending, now: float
    ) -> list[RegOutput]:
        min_expires = _parse_seconds(response.headers.get("Min-Expires"))
        if min_expires is None:
            return self._give_up(423, "423 Interval Too Brief without Min-Expires", now)
        wanted = min(min_expires, MAX_EXPIRES_S)
        if wanted <= pending.expires_s:
            reason = (
                f"423 Interval Too Brief for {pending.expires_s} s "
                f"but Min-Expires is {min_expires} s"
            )
            return self._give_up(423, reason, now)
        self._expires_s = wanted
        return [self._send(unregister=False)]

    def _on_failure(
        self, code: int | None, what: str, now: float, retry_after_s: int | None
    ) -> list[RegOutput]:
        failed = self.registrar
        if retry_after_s:
            self._not_before[self._index] = now + min(retry_after_s, MAX_RETRY_AFTER_S)
        self._failures += 1
        self._fail_over()
        delay = max(self._backoff_delay(), self._not_before.get(self._index, now) - now)
        self._schedule(now + delay, _Timer.RETRY)
        reason = f"{what} from {failed}; retrying with {self.registrar} in {delay:.1f} s"
        return self._change(RegState.BACKOFF, code, reason)

    def _give_up(self, code: int | None, reason: str, now: float) -> list[RegOutput]:
        """FAILED: a problem that a quick retry will not fix; retry after ~5 minutes."""
        self._failures += 1
        self._fail_over()
        self._schedule(now + FAILED_RETRY_S * self._jitter(), _Timer.RETRY)
        return self._change(RegState.FAILED, code, reason)

    # ------------------------------------------------------------------ authentication

    def _on_challenge(
        self, response: SipResponse, pending: _Pending, now: float
    ) -> list[RegOutput]:
        header = "Proxy-Authorization" if response.status == 407 else "Authorization"
        problem = self._answer_problem(response, header, pending)
        if problem is not None:
            if pending.unregister:
                return self._stop(response.status, f"unregister failed: {problem}")
            return self._give_up(response.status, problem, now)
        return [self._send(unregister=pending.unregister)]

    def _answer_problem(self, response: SipResponse, header: str, pending: _Pending) -> str | None:
        """Pick and remember the challenge to answer; or say why it cannot be answered."""
        name = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
        try:
            challenge = digest.choose_challenge(response.headers.get_all(name))
        except digest.DigestError as exc:
            return f"cannot answer {_status(response)}: {exc}"
        problem = self._challenge_problem(challenge, header, pending)
        if problem is None:
            self._remember(header, challenge)
        return problem

    def _challenge_problem(
        self, challenge: digest.Challenge, header: str, pending: _Pending
    ) -> str | None:
        """Why this challenge must not be answered (None: answer it)."""
        attempt = self._attempt
        attempt.challenges += 1
        realm = self._account.realm
        if realm and challenge.realm != realm:
            return f"realm mismatch: registrar asks for {challenge.realm!r}, configured {realm!r}"
        if attempt.challenges > MAX_CHALLENGES_PER_ATTEMPT:
            return AUTH_REJECTED
        sent_nonce = pending.nonces.get(header)
        if sent_nonce is not None and challenge.stale:
            if attempt.stale_retried:
                return "registrar keeps reporting a stale nonce"
            attempt.stale_retried = True
        elif sent_nonce is not None and (
            challenge.nonce == sent_nonce or header in attempt.answered
        ):
            return AUTH_REJECTED
        attempt.answered.add(header)
        return None

    def _remember(self, header: str, challenge: digest.Challenge) -> None:
        cache = self._auth.get(header)
        if cache is None or cache.challenge.nonce != challenge.nonce:
            self._auth[header] = _AuthCache(challenge)
        else:
            cache.challenge = challenge

    def _credentials(self) -> list[tuple[str, str, str]]:
        """(header, value, nonce) for every cached challenge; each use bumps its nc."""
        result: list[tuple[str, str, str]] = []
        for header, cache in self._auth.items():
            cache.nc += 1
            value = digest.authorization(
                cache.challenge,
                method="REGISTER",
                uri=self._request_uri,
                username=self._account.auth_user or self._account.user,
                password=self._account.password.reveal(),
                nc=cache.nc,
                cnonce=secrets.token_hex(8),
            )
            result.append((header, value, cache.challenge.nonce))
        return result

    # ------------------------------------------------------------------ requests

    def _begin(self) -> list[RegOutput]:
        self._attempt = _Attempt()
        out = self._change(RegState.REGISTERING, None, f"registering with {self.registrar}")
        out.append(self._send(unregister=False))
        return out

    def _send(self, *, unregister: bool) -> SendRegister:
        self._cseq += 1
        expires = 0 if unregister else self._expires_s
        headers = self._base_headers(expires)
        nonces: dict[str, str] = {}
        for header, value, nonce in self._credentials():
            headers.add(header, value)
            nonces[header] = nonce
        headers.add("Content-Length", "0")
        self._pending = _Pending(self._cseq, expires, self._contact_addr, unregister, nonces)
        request = SipRequest("REGISTER", self._request_uri, headers)
        destination = self._proxy or self._registrars[self._index]
        return SendRegister(self._account.name, request, destination)

    def _base_headers(self, expires: int) -> Headers:
        via = Via(
            self._transport.upper(), *self._via_addr, (("branch", new_branch()), ("rport", None))
        )
        headers = Headers()
        headers.add("Via", str(via))
        headers.add("Max-Forwards", "70")
        if self._proxy is not None:
            headers.add("Route", f"<{self._proxy.with_params(lr=None)}>")
        headers.add("From", f"<{self._aor}>;tag={self._from_tag}")
        headers.add("To", f"<{self._aor}>")
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", f"<{self._contact_uri()}>;expires={expires}")
        headers.add("Expires", str(expires))
        headers.add("Allow", ALLOW)
        headers.add("User-Agent", self._user_agent)
        return headers

    def _contact_uri(self) -> SipUri:
        params = () if self._transport == "udp" else (("transport", self._transport),)
        host, port = self._contact_addr
        return SipUri("sip", self._account.contact_user, host, port, params)

    # ------------------------------------------------------------------ timing / state

    def _fail_over(self) -> None:
        if len(self._registrars) > 1:
            self._index = (self._index + 1) % len(self._registrars)
            self._auth.clear()

    def _jitter(self) -> float:
        return 1.0 + BACKOFF_JITTER * (2.0 * self._random() - 1.0)

    def _backoff_delay(self) -> float:
        exponent = min(self._failures - 1, 16)
        return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2.0**exponent) * self._jitter()

    def _refresh_delay(self, expires_s: int) -> float:
        base = max(min(expires_s * REFRESH_FRACTION, expires_s - REFRESH_MARGIN_S), expires_s / 2)
        return base * (1.0 - REFRESH_JITTER * self._random())

    def _schedule(self, deadline: float, timer: _Timer) -> None:
        self._deadline, self._timer = deadline, timer

    def _stop(self, code: int | None, reason: str) -> list[RegOutput]:
        self._deadline = None
        return self._change(RegState.UNREGISTERED, code, reason)

    def _change(
        self, state: RegState, code: int | None, reason: str, expires_s: int | None = None
    ) -> list[RegOutput]:
        """Enter ``state``; report it unless nothing visible changed (e.g. a refresh)."""
        self._state = state
        event = RegistrationChanged(
            self._account.name, state, self.registrar, code, reason, expires_s
        )
        if event == self._last_event:
            return []
        self._last_event = event
        return [event]


def _status(response: SipResponse) -> str:
    return f"{response.status} {response.reason}".rstrip()


__all__ = [
    "RegOutput",
    "RegState",
    "Registration",
    "RegistrationChanged",
    "RegistrationError",
    "SendRegister",
]
