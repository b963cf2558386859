"""Tests for gateway.sip.registration against a fake registrar written here.

The fake registrar issues its own Digest challenges and checks the client's credentials with
``digest.expected_response`` (and, in one test, with plain hashlib), enforces increasing nonce
counts, answers 423/503/403 as configured, and can play a NAT (received/rport). Time is a
simulated clock; every request and response goes through ``to_bytes``/``parse_message``.
Expected values (delays, headers) come from the rules in the task, not from running the code.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pytest

from gateway.config import Secret, SipAccount
from gateway.sip import digest
from gateway.sip.message import (
    SipRequest,
    SipResponse,
    build_response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)
from gateway.sip.registration import (
    AUTH_REJECTED,
    Registration,
    RegistrationChanged,
    RegistrationError,
    RegOutput,
    RegState,
    SendRegister,
)

REG_A, REG_B, REG_C = "sip:reg-a.example.com", "sip:reg-b.example.com:5080", "sip:10.0.0.3"
PASSWORD = "s3cret"
ALLOWED = {"INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"}


def account(**overrides: object) -> SipAccount:
    values: dict[str, object] = {
        "name": "pbx",
        "user": "alice",
        "domain": "example.com",
        "password": Secret(PASSWORD),
        "registrars": (REG_A,),
        "expires_s": 600,
    }
    values.update(overrides)
    return SipAccount(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- fake registrar


@dataclass
class FakeRegistrar:
    """A registrar (or authenticating proxy) that really checks Digest credentials."""

    password: str = PASSWORD
    username: str = "alice"
    realm: str = "example.com"
    algorithm: str = "MD5"
    qop: str | None = "auth"
    status_for_auth: int = 401  # 407: behave as an authenticating proxy
    fresh_nonce_on_failure: bool = True
    min_expires_s: int | None = None
    send_min_expires: bool = True
    max_grant_s: int | None = None
    expires_in_contact: bool = True
    expires_header_s: int | None = None  # a different Expires header value (default: granted)
    nat: tuple[str, int] | None = None  # (received, rport) as a NAT would show them
    forbid: bool = False
    require_auth: bool = True
    requests: list[SipRequest] = field(default_factory=list)
    accepted_nc: list[tuple[str, int]] = field(default_factory=list)  # (nonce, nc)
    _nonces: dict[str, bool] = field(default_factory=dict)  # nonce -> stale
    _last_nc: dict[str, int] = field(default_factory=dict)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def _headers(self) -> tuple[str, str]:
        if self.status_for_auth == 407:
            return "Proxy-Authenticate", "Proxy-Authorization"
        return "WWW-Authenticate", "Authorization"

    def expire_nonces(self) -> None:
        for nonce in self._nonces:
            self._nonces[nonce] = True

    def __call__(self, request: SipRequest) -> SipResponse:
        self.requests.append(request)
        if self.forbid:
            return self._respond(request, 403)
        verdict = self._check_credentials(request) if self.require_auth else "ok"
        if verdict != "ok":
            return self._challenge(request, stale=verdict == "stale", last=verdict)
        return self._register(request)

    def _check_credentials(self, request: SipRequest) -> str:
        value = request.headers.get(self._headers[1])
        if value is None:
            return "none"
        creds = digest.parse_credentials(value)
        stale = self._nonces.get(creds["nonce"])
        if stale is None:
            return "unknown"
        if stale:
            return "stale"
        assert creds["uri"] == request.uri
        nc = int(creds["nc"], 16) if "nc" in creds else 0
        if self.qop is not None:
            assert nc > self._last_nc.get(creds["nonce"], 0), "nonce count must increase"
            self._last_nc[creds["nonce"]] = nc
        challenge = self._challenge_obj(creds["nonce"], stale=False)
        expected = digest.expected_response(
            challenge, method="REGISTER", uri=creds["uri"], username=self.username,
            password=self.password, nc=nc if self.qop else None,
            cnonce=creds.get("cnonce"), qop=creds.get("qop"),
        )  # fmt: skip
        if creds["username"] != self.username or creds["response"] != expected:
            return creds["nonce"]  # wrong: remember which nonce was used
        self.accepted_nc.append((creds["nonce"], nc))
        return "ok"

    def _challenge_obj(self, nonce: str, stale: bool) -> digest.Challenge:
        qop = (self.qop,) if self.qop else ()
        return digest.Challenge("Digest", self.realm, nonce, self.algorithm, qop, "op4que", stale)

    def _challenge(self, request: SipRequest, stale: bool, last: str) -> SipResponse:
        if last in self._nonces and not self.fresh_nonce_on_failure:
            nonce = last
        else:
            nonce = f"nonce{next(self._counter)}"
            self._nonces[nonce] = False
        value = (
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={self.algorithm}, '
            f'opaque="op4que"'
        )
        if self.qop:
            value += f', qop="{self.qop}"'
        if stale:
            value += ", stale=true"
        response = self._respond(request, self.status_for_auth)
        response.headers.add(self._headers[0], value)
        return response

    def _register(self, request: SipRequest) -> SipResponse:
        contact = parse_name_addr(request.headers.get_all("Contact")[0])
        asked = int(contact.param("expires") or request.headers.get("Expires") or "3600")
        if self.min_expires_s is not None and 0 < asked < self.min_expires_s:
            response = self._respond(request, 423)
            if self.send_min_expires:
                response.headers.add("Min-Expires", str(self.min_expires_s))
            return response
        granted = min(asked, self.max_grant_s) if self.max_grant_s is not None else asked
        response = self._respond(request, 200)
        if granted:
            response.headers.add("Contact", "<sip:alice@192.0.2.99:5060>;expires=3333")
            suffix = f";expires={granted}" if self.expires_in_contact else ""
            response.headers.add("Contact", f"<{contact.uri}>{suffix}")
            response.headers.add("Expires", str(self.expires_header_s or granted))
        return response

    def _respond(self, request: SipRequest, status: int) -> SipResponse:
        response = build_response(request, status, to_tag="regtag")
        if self.nat is not None:
            via = request.top_via.with_params(received=self.nat[0], rport=str(self.nat[1]))
            response.headers.set("Via", str(via))
        return response


def reply(status: int, **headers: str) -> Callable[[SipRequest], SipResponse]:
    def answer(request: SipRequest) -> SipResponse:
        response = build_response(request, status)
        for name, value in headers.items():
            response.headers.add(name.replace("_", "-"), value)
        return response

    return answer


def silent(request: SipRequest) -> None:
    return None


Server = Callable[[SipRequest], SipResponse | None]


# --------------------------------------------------------------------------- harness


class Net:
    """Fake clock + network: delivers each REGISTER to the server named by its destination."""

    def __init__(self, reg: Registration, servers: dict[str, Server]) -> None:
        self.reg = reg
        self.servers = servers
        self.now = 0.0
        self.sent: list[tuple[float, SendRegister]] = []
        self.events: list[RegistrationChanged] = []

    def feed(self, outputs: Iterable[RegOutput]) -> None:
        queue = list(outputs)
        while queue:
            out = queue.pop(0)
            if isinstance(out, RegistrationChanged):
                self.events.append(out)
                continue
            self.sent.append((self.now, out))
            assert len(self.sent) < 5000, "request storm"
            wire = parse_message(out.request.to_bytes())
            assert isinstance(wire, SipRequest)
            response = self.servers[str(out.destination)](wire)
            if response is None:
                queue += self.reg.on_timeout(self.now)
            else:
                parsed = parse_message(response.to_bytes())
                assert isinstance(parsed, SipResponse)
                queue += self.reg.on_response(parsed, self.now)

    def start(self) -> None:
        self.feed(self.reg.start(self.now))

    def run_until(self, end: float) -> None:
        while (deadline := self.reg.next_deadline()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.feed(self.reg.handle_timer(self.now))
        self.now = end

    @property
    def requests(self) -> list[SipRequest]:
        return [send.request for _, send in self.sent]

    @property
    def states(self) -> list[RegState]:
        return [event.state for event in self.events]


def make(
    servers: dict[str, Server],
    acct: SipAccount | None = None,
    *,
    random: Callable[[], float] = lambda: 0.5,
    host: str = "192.0.2.10",
    port: int = 5062,
    transport: str = "udp",
) -> Net:
    reg = Registration(
        acct or account(), local_host=host, local_port=port, transport=transport,
        user_agent="asr-gateway/test", random=random,
    )  # fmt: skip
    return Net(reg, servers)


def contact_of(request: SipRequest) -> tuple[str, int | None, str | None]:
    contact = parse_name_addr(request.headers.get_all("Contact")[0])
    return contact.uri.host, contact.uri.port, contact.param("expires")


def gaps(net: Net) -> list[float]:
    times = [t for t, _ in net.sent]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


# --------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize(
    ("algorithm", "qop"), [("MD5", "auth"), ("SHA-256", "auth"), ("MD5", None)]
)
def test_happy_path_registers_after_digest_challenge(algorithm: str, qop: str | None) -> None:
    server = FakeRegistrar(algorithm=algorithm, qop=qop)
    net = make({REG_A: server})
    net.start()
    assert net.reg.state is RegState.REGISTERED and net.reg.registered
    assert net.states == [RegState.REGISTERING, RegState.REGISTERED]
    assert net.events[-1].expires_s == 600 and net.events[-1].code == 200
    assert net.events[-1].registrar == REG_A and net.events[-1].account == "pbx"
    first, second = server.requests
    assert "Authorization" not in first.headers
    creds = digest.parse_credentials(second.headers.get("Authorization") or "")
    assert creds["username"] == "alice" and creds["realm"] == "example.com"
    assert creds["opaque"] == "op4que" and creds["uri"] == "sip:example.com"
    assert creds["algorithm"].upper() == algorithm
    assert len(server.accepted_nc) == 1


def test_request_headers_follow_rfc3261_register_rules() -> None:
    server = FakeRegistrar()
    net = make({REG_A: server})
    net.start()
    first, second = server.requests
    for request in (first, second):
        assert request.method == "REGISTER" and request.uri == "sip:example.com"
        assert str(request.to.uri) == "sip:alice@example.com" and request.to.tag is None
        assert str(request.from_.uri) == "sip:alice@example.com"
        assert request.headers.get("Max-Forwards") == "70"
        assert request.headers.get("Expires") == "600"
        assert request.headers.get("User-Agent") == "asr-gateway/test"
        assert set(request.headers.get_all("Allow")) == ALLOWED
        assert "Route" not in request.headers
        via = request.top_via
        assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.10", 5062)
        assert via.branch is not None and via.branch.startswith("z9hG4bK")
        assert via.has_param("rport")
        assert contact_of(request) == ("192.0.2.10", 5062, "600")
        assert parse_name_addr(request.headers.get_all("Contact")[0]).uri.user == "alice"
        assert "transport" not in str(parse_name_addr(request.headers.get_all("Contact")[0]).uri)
    assert first.call_id == second.call_id
    assert first.from_.tag is not None and first.from_.tag == second.from_.tag
    assert second.cseq == (first.cseq[0] + 1, "REGISTER")
    assert first.branch != second.branch


def test_md5_response_matches_an_independent_hashlib_computation() -> None:
    server = FakeRegistrar()
    net = make({REG_A: server})
    net.start()
    creds = digest.parse_credentials(server.requests[1].headers.get("Authorization") or "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"alice:example.com:{PASSWORD}")
    ha2 = md5("REGISTER:sip:example.com")
    expected = md5(f"{ha1}:{creds['nonce']}:{creds['nc']}:{creds['cnonce']}:auth:{ha2}")
    assert creds["nc"] == "00000001" and creds["qop"] == "auth"
    assert creds["response"] == expected


def test_auth_user_and_contact_user_are_used() -> None:
    server = FakeRegistrar(username="1001")
    net = make({REG_A: server}, account(auth_user="1001", contact_user="gw"))
    net.start()
    assert net.reg.registered
    creds = digest.parse_credentials(server.requests[1].headers.get("Authorization") or "")
    assert creds["username"] == "1001"
    assert str(server.requests[1].to.uri) == "sip:alice@example.com"
    assert parse_name_addr(server.requests[1].headers.get_all("Contact")[0]).uri.user == "gw"


def test_proxy_authentication_407() -> None:
    server = FakeRegistrar(status_for_auth=407)
    net = make({REG_A: server})
    net.start()
    assert net.reg.registered
    answer = server.requests[1]
    assert "Authorization" not in answer.headers
    creds = digest.parse_credentials(answer.headers.get("Proxy-Authorization") or "")
    assert creds["username"] == "alice"


def test_proxy_then_registrar_challenge_sends_both_credentials() -> None:
    proxy = FakeRegistrar(status_for_auth=407, realm="proxy.example.net")
    registrar = FakeRegistrar()

    def chain(request: SipRequest) -> SipResponse:
        first = proxy(request)
        return first if first.status == 407 else registrar(request)

    net = make({REG_A: chain})
    net.start()
    assert net.reg.registered
    last = registrar.requests[-1]
    assert "Proxy-Authorization" in last.headers and "Authorization" in last.headers
    assert len(registrar.accepted_nc) == 1 and len(proxy.accepted_nc) >= 1


# --------------------------------------------------------------------------- auth failures


@pytest.mark.parametrize("fresh_nonce", [True, False])
def test_wrong_password_fails_without_a_tight_loop(fresh_nonce: bool) -> None:
    server = FakeRegistrar(password="other", fresh_nonce_on_failure=fresh_nonce)
    net = make({REG_A: server})
    net.start()
    assert net.reg.state is RegState.FAILED and not net.reg.registered
    assert net.events[-1].reason == AUTH_REJECTED and net.events[-1].code == 401
    assert len(server.requests) == 2
    deadline = net.reg.next_deadline()
    assert deadline is not None and deadline >= 240.0
    net.run_until(3600.0)
    # at most one credentialed retry cycle (<= 2 requests) per ~5 minutes
    assert len(server.requests) <= 2 * (3600 // 240 + 1)
    assert net.reg.state is RegState.FAILED
    assert max(gaps(net)) >= 240.0


def test_forbidden_403_fails_like_rejected_credentials() -> None:
    server = FakeRegistrar(forbid=True)
    net = make({REG_A: server})
    net.start()
    assert net.reg.state is RegState.FAILED
    assert net.events[-1].code == 403 and net.events[-1].reason == AUTH_REJECTED
    net.run_until(3600.0)
    assert len(server.requests) <= 3600 // 240 + 1


def test_realm_mismatch_fails_with_a_clear_reason() -> None:
    server = FakeRegistrar(realm="evil.example.org")
    net = make({REG_A: server}, account(realm="example.com"))
    net.start()
    assert net.reg.state is RegState.FAILED
    assert "realm" in net.events[-1].reason and "evil.example.org" in net.events[-1].reason
    assert len(server.requests) == 1  # no credentials were sent to the wrong realm


def test_stale_nonce_is_retried_once_with_the_new_nonce() -> None:
    server = FakeRegistrar()
    net = make({REG_A: server})
    net.start()
    first_nonce = server.accepted_nc[0][0]
    server.expire_nonces()
    net.run_until(500.0)  # the refresh (at ~0.8 * 600 s) meets a stale nonce
    assert net.reg.registered
    refresh, retry = server.requests[2], server.requests[3]
    sent = digest.parse_credentials(refresh.headers.get("Authorization") or "")
    assert sent["nonce"] == first_nonce and sent["nc"] == "00000002"  # nc grows per nonce
    again = digest.parse_credentials(retry.headers.get("Authorization") or "")
    assert again["nonce"] != first_nonce and again["nc"] == "00000001"
    assert server.accepted_nc[-1] == (again["nonce"], 1)
    assert RegState.FAILED not in net.states


def test_endless_stale_challenges_do_not_loop() -> None:
    server = FakeRegistrar()

    def always_stale(request: SipRequest) -> SipResponse:
        server.expire_nonces()
        return server(request)

    net = make({REG_A: always_stale})
    net.start()
    assert net.reg.state is RegState.FAILED
    assert len(server.requests) <= 3


def test_refresh_reuses_the_nonce_with_increasing_nc() -> None:
    server = FakeRegistrar()
    net = make({REG_A: server})
    net.start()
    net.run_until(2000.0)
    assert [nc for _, nc in server.accepted_nc] == [1, 2, 3, 4, 5]  # 0 s + 4 refreshes
    assert len({nonce for nonce, _ in server.accepted_nc}) == 1
    assert len(server.requests) == 1 + 5  # only the very first request was challenged


# --------------------------------------------------------------------------- expiry


def test_423_retries_at_once_with_min_expires() -> None:
    server = FakeRegistrar(min_expires_s=1800)
    net = make({REG_A: server})
    net.start()
    assert net.reg.registered and net.events[-1].expires_s == 1800
    statuses = [request.headers.get("Expires") for request in server.requests]
    assert statuses == ["600", "600", "1800"]
    assert contact_of(server.requests[-1])[2] == "1800"
    assert {t for t, _ in net.sent} == {0.0}  # retried at once
    net.run_until(1700.0)
    assert server.requests[-1].headers.get("Expires") == "1800"  # refreshes keep it


def test_423_without_min_expires_fails() -> None:
    server = FakeRegistrar(min_expires_s=1800, send_min_expires=False)
    net = make({REG_A: server})
    net.start()
    assert net.reg.state is RegState.FAILED and net.events[-1].code == 423


def test_423_min_expires_is_capped_at_one_day() -> None:
    server = FakeRegistrar(min_expires_s=100000)
    net = make({REG_A: server})
    net.start()
    assert server.requests[2].headers.get("Expires") == "86400"
    assert net.reg.state is RegState.FAILED  # the registrar still refuses 86400


@pytest.mark.parametrize("rand", [0.0, 0.999999])
def test_refresh_happens_before_expiry_within_jitter(rand: float) -> None:
    server = FakeRegistrar(max_grant_s=300, expires_header_s=3600)
    net = make({REG_A: server}, account(expires_s=3600), random=lambda: rand)
    net.start()
    assert net.events[-1].expires_s == 300  # our Contact's expires: not 3333, not Expires
    deadline = net.reg.next_deadline()
    assert deadline is not None
    assert 0.8 * 300 * 0.95 <= deadline <= 0.8 * 300
    net.run_until(deadline - 0.001)
    assert len(server.requests) == 2
    net.run_until(deadline)
    refresh = server.requests[2]
    assert refresh.call_id == server.requests[0].call_id
    assert refresh.cseq[0] == server.requests[1].cseq[0] + 1
    assert refresh.headers.get("Expires") == "3600"  # keeps asking for the configured value


def test_short_grant_refreshes_at_least_five_seconds_before_expiry() -> None:
    server = FakeRegistrar(max_grant_s=20, expires_in_contact=False)  # Expires header only
    net = make({REG_A: server}, random=lambda: 0.0)
    net.start()
    assert net.events[-1].expires_s == 20
    deadline = net.reg.next_deadline()
    assert deadline is not None and 10.0 <= deadline <= 15.0


def test_refresh_keeps_registered_state_without_new_events() -> None:
    net = make({REG_A: FakeRegistrar()})
    net.start()
    net.run_until(3000.0)
    assert net.states == [RegState.REGISTERING, RegState.REGISTERED]
    assert len(net.sent) > 4


# --------------------------------------------------------------------------- failover / backoff


def test_failover_order_and_backoff_growth() -> None:
    servers: dict[str, Server] = {REG_A: silent, REG_B: silent, REG_C: silent}
    net = make(servers, account(registrars=(REG_A, REG_B, REG_C)))
    net.start()
    net.run_until(3000.0)
    destinations = [str(send.destination) for _, send in net.sent]
    assert destinations[:7] == [REG_A, REG_B, REG_C, REG_A, REG_B, REG_C, REG_A]
    expected = [min(300.0, 2.0**n) for n in range(len(net.sent) - 1)]
    assert gaps(net) == pytest.approx(expected)  # random 0.5 = no jitter
    assert net.reg.state is RegState.BACKOFF
    assert net.events[-1].code is None and "timeout" in net.events[-1].reason


def test_backoff_jitter_stays_within_twenty_percent() -> None:
    values = itertools.cycle([0.0, 0.999999, 0.25, 0.75, 0.5])
    net = make({REG_A: silent}, random=lambda: next(values))
    net.start()
    net.run_until(4000.0)
    observed = gaps(net)
    assert len(observed) >= 15
    for n, gap in enumerate(observed):
        base = min(300.0, 2.0**n)
        assert 0.8 * base - 1e-9 <= gap <= 1.2 * base + 1e-9
    assert observed[0] == pytest.approx(0.8) and observed[1] == pytest.approx(2 * 1.2, rel=1e-5)


def test_success_resets_backoff_and_sticks_to_that_registrar() -> None:
    good = FakeRegistrar()
    servers: dict[str, Server] = {REG_A: silent, REG_B: silent, REG_C: good}
    net = make(servers, account(registrars=(REG_A, REG_B, REG_C)))
    net.start()
    net.run_until(10.0)
    assert net.reg.registered and net.events[-1].registrar == REG_C
    net.run_until(1500.0)
    later = [str(send.destination) for t, send in net.sent if t > 10.0]
    assert later and set(later) == {REG_C}
    # refresh failure: fail over to the next registrar, backoff restarted at ~1 s
    servers[REG_C] = silent
    failed_at = net.reg.next_deadline()
    assert failed_at is not None
    net.run_until(failed_at)
    assert net.reg.state is RegState.BACKOFF and net.events[-1].registrar == REG_A
    assert net.reg.next_deadline() == pytest.approx(failed_at + 1.0)


def test_server_errors_fail_over() -> None:
    servers: dict[str, Server] = {REG_A: reply(500), REG_B: reply(604), REG_C: reply(404)}
    net = make(servers, account(registrars=(REG_A, REG_B, REG_C)))
    net.start()
    net.run_until(3.5)
    assert [str(send.destination) for _, send in net.sent] == [REG_A, REG_B, REG_C]
    assert [e.code for e in net.events if e.state is RegState.BACKOFF] == [500, 604, 404]


def test_503_retry_after_is_respected() -> None:
    net = make({REG_A: reply(503, Retry_After="120")})
    net.start()
    assert net.reg.state is RegState.BACKOFF and net.events[-1].code == 503
    assert net.reg.next_deadline() == pytest.approx(120.0)
    net.run_until(119.0)
    assert len(net.sent) == 1
    net.run_until(120.0)
    assert len(net.sent) == 2


def test_503_retry_after_applies_to_that_registrar_only() -> None:
    servers: dict[str, Server] = {REG_A: reply(503, Retry_After="120 (maintenance)"), REG_B: silent}
    net = make(servers, account(registrars=(REG_A, REG_B)))
    net.start()
    net.run_until(121.0)
    times = [(t, str(send.destination)) for t, send in net.sent]
    # A: 503 -> B after ~1 s; B times out -> back to A, but not before A's Retry-After
    assert times == [(0.0, REG_A), (pytest.approx(1.0), REG_B), (pytest.approx(120.0), REG_A)]


def test_stale_responses_are_ignored() -> None:
    server = FakeRegistrar()
    net = make({REG_A: server})
    net.start()
    old = build_response(server.requests[0], 500)
    assert net.reg.on_response(old, 1.0) == []
    assert net.reg.on_timeout(1.0) == []  # nothing pending
    assert net.reg.registered


# --------------------------------------------------------------------------- proxy / NAT / IPv6


def test_outbound_proxy_route_and_destination() -> None:
    proxy_uri = "sip:proxy.example.net:5070"
    server = FakeRegistrar()
    net = make({proxy_uri: server}, account(outbound_proxy=proxy_uri, registrars=(REG_A, REG_B)))
    net.start()
    assert net.reg.registered
    for _, send in net.sent:
        assert str(send.destination) == proxy_uri
        route = parse_name_addr(send.request.headers.get_all("Route")[0])
        assert (route.uri.host, route.uri.port) == ("proxy.example.net", 5070)
        assert route.uri.has_param("lr")
        assert send.request.uri == "sip:example.com"


def test_rport_and_received_are_learned_for_the_contact() -> None:
    server = FakeRegistrar(nat=("203.0.113.7", 40123))
    net = make({REG_A: server})
    net.start()
    assert net.reg.registered
    # the 401 revealed the public address: the answer to it already carries it
    assert contact_of(server.requests[0]) == ("192.0.2.10", 5062, "600")
    assert contact_of(server.requests[1]) == ("203.0.113.7", 40123, "600")
    via = server.requests[1].top_via
    assert (via.host, via.port) == ("192.0.2.10", 5062)  # Via keeps the socket address
    net.run_until(1000.0)
    assert contact_of(server.requests[-1]) == ("203.0.113.7", 40123, "600")
    assert len(server.requests) == 4  # 401, 200, two refreshes: no re-register loop


def test_200_showing_a_nat_address_triggers_an_immediate_re_register() -> None:
    server = FakeRegistrar(nat=("203.0.113.7", 40123), require_auth=False)
    net = make({REG_A: server})
    net.start()
    assert net.reg.registered
    assert [contact_of(r)[:2] for r in server.requests] == [
        ("192.0.2.10", 5062),
        ("203.0.113.7", 40123),
    ]
    assert {t for t, _ in net.sent} == {0.0}
    net.run_until(1000.0)
    assert len(server.requests) == 4  # then only the two refreshes


def test_update_local_address_changes_the_next_contact() -> None:
    server = FakeRegistrar()
    net = make({REG_A: server})
    net.start()
    net.reg.update_local_address("198.51.100.4", 6000)
    net.run_until(500.0)
    assert contact_of(server.requests[-1]) == ("198.51.100.4", 6000, "600")
    with pytest.raises(RegistrationError):
        net.reg.update_local_address("198.51.100.4", 0)


def test_ipv6_local_host_in_via_and_contact() -> None:
    server = FakeRegistrar()
    net = make({REG_A: server}, host="2001:db8::5", port=5062)
    net.start()
    assert net.reg.registered
    raw = server.requests[0].to_bytes().decode()
    assert "Via: SIP/2.0/UDP [2001:db8::5]:5062;" in raw
    assert "<sip:alice@[2001:db8::5]:5062>;expires=600" in raw
    assert parse_via(server.requests[0].headers.get_all("Via")[0]).host == "2001:db8::5"


def test_tcp_transport_in_via_and_contact() -> None:
    server = FakeRegistrar()
    net = make({REG_A: server}, transport="tcp")
    net.start()
    request = server.requests[0]
    assert request.top_via.transport == "TCP"
    contact = parse_name_addr(request.headers.get_all("Contact")[0])
    assert contact.uri.param("transport") == "tcp"
    assert net.reg.registered  # the 200's Contact (with transport) is still recognised


# --------------------------------------------------------------------------- unregister


def test_unregister_sends_expires_zero() -> None:
    server = FakeRegistrar()
    net = make({REG_A: server})
    net.start()
    net.now = 100.0
    net.feed(net.reg.unregister(net.now))
    last = server.requests[-1]
    assert last.headers.get("Expires") == "0" and contact_of(last)[2] == "0"
    assert last.call_id == server.requests[0].call_id
    assert net.states[-2:] == [RegState.UNREGISTERING, RegState.UNREGISTERED]
    assert net.reg.next_deadline() is None and not net.reg.registered
    assert net.reg.unregister(net.now) == []


def test_unregister_answers_a_fresh_challenge() -> None:
    server = FakeRegistrar(fresh_nonce_on_failure=True)
    net = make({REG_A: server})
    net.start()
    server._nonces.clear()  # the registrar forgot every nonce: the unregister is challenged
    net.feed(net.reg.unregister(50.0))
    assert net.reg.state is RegState.UNREGISTERED
    last = server.requests[-1]
    assert last.headers.get("Expires") == "0" and "Authorization" in last.headers
    assert net.events[-1].code == 200


def test_unregister_timeout_still_ends_unregistered() -> None:
    servers: dict[str, Server] = {REG_A: FakeRegistrar()}
    net = make(servers)
    net.start()
    servers[REG_A] = silent
    net.feed(net.reg.unregister(10.0))
    assert net.reg.state is RegState.UNREGISTERED


def test_unregister_when_not_registered_sends_nothing() -> None:
    net = make({REG_A: silent})
    net.start()
    assert net.states[-1] is RegState.BACKOFF
    count = len(net.sent)
    net.feed(net.reg.unregister(0.5))
    assert len(net.sent) == count and net.reg.state is RegState.UNREGISTERED
    assert net.reg.next_deadline() is None


def test_start_after_unregister_registers_again() -> None:
    server = FakeRegistrar()
    net = make({REG_A: server})
    net.start()
    net.feed(net.reg.unregister(1.0))
    net.start()
    assert net.reg.registered


def test_account_without_registrars_is_rejected() -> None:
    with pytest.raises(RegistrationError):
        make({}, account(registrars=()))
    with pytest.raises(RegistrationError):
        make({}, account(registrars=("http://nope",)))


def test_account_name_property() -> None:
    net = make({REG_A: silent})
    assert net.reg.account_name == "pbx" and net.reg.state is RegState.IDLE
    assert net.reg.next_deadline() is None
    assert parse_uri(REG_B).port == 5080
