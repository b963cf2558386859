"""SIP transaction layer (RFC 3261 section 17) and UAS 2xx retransmission (13.3.1.4), sans-I/O.

The layer never touches sockets or clocks: the shell feeds it parsed messages with the
source address and the current monotonic time, asks ``next_deadline()`` when to wake up,
calls ``handle_timers(now)`` then, and acts on the returned outputs (send ``Transmit``
messages, pass ``RequestReceived`` / ``ResponseReceived`` to the core, count
``RetransmissionAbsorbed`` / ``StrayResponse``...).

Implemented: server INVITE (17.2.1), server non-INVITE (17.2.2), client non-INVITE
(17.1.2), matching (17.1.3, 17.2.3, with a simplified RFC 2543 fallback) and the 2xx
retransmitter of an INVITE UAS (13.3.1.4), owned by the layer.

TODO: client INVITE transactions (17.1.1, Timers A/B/D, ACK for non-2xx) are not
implemented -- the gateway does not place calls yet. ``send_request`` rejects INVITE.

Responses of a server transaction are sent to the address/transport the request came
from (symmetric response routing, as with RFC 3581 ``rport``); the shell may rewrite
``Transmit.addr`` if it implements RFC 3261 18.2.2 to the letter.

Each transaction kind has a transition table ``(state, event) -> state``; an event
missing from the table raises ``TransactionStateError`` (a bug in the caller or in this
layer, never a peer's doing: every peer-driven event is in the tables).

Layer: pure core.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from enum import Enum

from gateway.sip.message import SipMessage, SipRequest, SipResponse, Via

MAGIC_COOKIE = "z9hG4bK"
_UNRELIABLE_TRANSPORTS = frozenset({"UDP"})

Address = tuple[str, int]


# --------------------------------------------------------------------------- errors


class TransactionError(ValueError):
    """Base class of transaction layer errors."""


class TransactionStateError(TransactionError):
    """An event is not allowed in the transaction's current state (a bug on our side)."""


class UnknownTransactionError(TransactionError):
    """No live transaction has this key (or it has the wrong role)."""


class DuplicateTransactionError(TransactionError):
    """A transaction (or pending 2xx) with this key already exists."""


class UnsupportedRequestError(TransactionError):
    """The request cannot start a client transaction here (INVITE, ACK, bad branch...)."""


class InvalidResponseError(TransactionError):
    """The response status code is outside 100..699."""


# --------------------------------------------------------------------------- config / keys


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 timer base values (17.1.1.1, table 4)."""

    t1_s: float = 0.5
    t2_s: float = 4.0
    t4_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.t1_s <= self.t2_s or self.t4_s < 0:
            raise ValueError(f"invalid timers: need 0 < T1 <= T2 and T4 >= 0, got {self}")

    @property
    def timeout_s(self) -> float:
        """64*T1: Timers B, F, H, J (UDP) and the 2xx ACK wait."""
        return 64 * self.t1_s


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class TxnKey:
    """Transaction identity. ``sent_by`` is empty for client keys (17.1.3).

    With an RFC 3261 branch, ``branch`` is the top-Via branch; without the magic cookie
    (RFC 2543 peers) it is a synthetic string from Request-URI, From tag, Call-ID, CSeq
    number and top Via. ``method`` is the CSeq method, with ACK mapped to INVITE.
    """

    role: Role
    branch: str
    sent_by: str
    method: str


@dataclass(frozen=True, slots=True)
class OkKey:
    """Identity of a 2xx awaiting its ACK: Call-ID plus CSeq number (13.3.1.4)."""

    call_id: str
    cseq: int


class TxnKind(Enum):
    SERVER_INVITE = "server-invite"
    SERVER_NON_INVITE = "server-non-invite"
    CLIENT_NON_INVITE = "client-non-invite"


class TxnState(Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class TxnEvent(Enum):
    RECV_REQUEST = "request retransmission received"
    RECV_ACK = "ACK received"
    RECV_PROVISIONAL = "1xx received"
    RECV_FINAL = "final response received"
    SEND_PROVISIONAL = "1xx sent"
    SEND_2XX = "2xx to INVITE sent"
    SEND_FINAL = "final response sent"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"


class TimerName(Enum):
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - RFC 3261 name
    J = "J"
    K = "K"
    OK_RETRANSMIT = "2xx retransmit"
    OK_TIMEOUT = "2xx ACK wait"


_TIMER_EVENTS: dict[TimerName, TxnEvent] = {
    TimerName.E: TxnEvent.TIMER_E,
    TimerName.F: TxnEvent.TIMER_F,
    TimerName.G: TxnEvent.TIMER_G,
    TimerName.H: TxnEvent.TIMER_H,
    TimerName.I: TxnEvent.TIMER_I,
    TimerName.J: TxnEvent.TIMER_J,
    TimerName.K: TxnEvent.TIMER_K,
}


_S, _E = TxnState, TxnEvent

_SERVER_INVITE_TABLE: dict[tuple[TxnState, TxnEvent], TxnState] = {
    (_S.PROCEEDING, _E.RECV_REQUEST): _S.PROCEEDING,
    (_S.PROCEEDING, _E.RECV_ACK): _S.PROCEEDING,  # ACK before any final: absorbed
    (_S.PROCEEDING, _E.SEND_PROVISIONAL): _S.PROCEEDING,
    (_S.PROCEEDING, _E.SEND_2XX): _S.TERMINATED,
    (_S.PROCEEDING, _E.SEND_FINAL): _S.COMPLETED,
    (_S.COMPLETED, _E.RECV_REQUEST): _S.COMPLETED,
    (_S.COMPLETED, _E.RECV_ACK): _S.CONFIRMED,
    (_S.COMPLETED, _E.TIMER_G): _S.COMPLETED,
    (_S.COMPLETED, _E.TIMER_H): _S.TERMINATED,
    (_S.CONFIRMED, _E.RECV_REQUEST): _S.CONFIRMED,
    (_S.CONFIRMED, _E.RECV_ACK): _S.CONFIRMED,
    (_S.CONFIRMED, _E.TIMER_I): _S.TERMINATED,
}

_SERVER_NON_INVITE_TABLE: dict[tuple[TxnState, TxnEvent], TxnState] = {
    (_S.TRYING, _E.RECV_REQUEST): _S.TRYING,
    (_S.TRYING, _E.SEND_PROVISIONAL): _S.PROCEEDING,
    (_S.TRYING, _E.SEND_FINAL): _S.COMPLETED,
    (_S.PROCEEDING, _E.RECV_REQUEST): _S.PROCEEDING,
    (_S.PROCEEDING, _E.SEND_PROVISIONAL): _S.PROCEEDING,
    (_S.PROCEEDING, _E.SEND_FINAL): _S.COMPLETED,
    (_S.COMPLETED, _E.RECV_REQUEST): _S.COMPLETED,
    (_S.COMPLETED, _E.TIMER_J): _S.TERMINATED,
}

_CLIENT_NON_INVITE_TABLE: dict[tuple[TxnState, TxnEvent], TxnState] = {
    (_S.TRYING, _E.TIMER_E): _S.TRYING,
    (_S.TRYING, _E.TIMER_F): _S.TERMINATED,
    (_S.TRYING, _E.RECV_PROVISIONAL): _S.PROCEEDING,
    (_S.TRYING, _E.RECV_FINAL): _S.COMPLETED,
    (_S.PROCEEDING, _E.TIMER_E): _S.PROCEEDING,
    (_S.PROCEEDING, _E.TIMER_F): _S.TERMINATED,
    (_S.PROCEEDING, _E.RECV_PROVISIONAL): _S.PROCEEDING,
    (_S.PROCEEDING, _E.RECV_FINAL): _S.COMPLETED,
    (_S.COMPLETED, _E.RECV_PROVISIONAL): _S.COMPLETED,
    (_S.COMPLETED, _E.RECV_FINAL): _S.COMPLETED,
    (_S.COMPLETED, _E.TIMER_K): _S.TERMINATED,
}

TRANSITIONS: dict[TxnKind, dict[tuple[TxnState, TxnEvent], TxnState]] = {
    TxnKind.SERVER_INVITE: _SERVER_INVITE_TABLE,
    TxnKind.SERVER_NON_INVITE: _SERVER_NON_INVITE_TABLE,
    TxnKind.CLIENT_NON_INVITE: _CLIENT_NON_INVITE_TABLE,
}


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Transmit:
    """Serialize ``message`` and send it to ``addr`` over ``transport``."""

    message: SipMessage
    addr: Address
    transport: str


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the core (including CANCEL and ACK for a 2xx).

    For ACK no transaction exists: ``key`` then has method "ACK" and names nothing live.
    """

    request: SipRequest
    addr: Address
    transport: str
    key: TxnKey


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A provisional or final response of a client transaction, for the core."""

    response: SipResponse
    key: TxnKey


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    """Client Timer F fired, or server INVITE Timer H (no ACK for a 3xx-6xx)."""

    key: TxnKey
    method: str


@dataclass(frozen=True, slots=True)
class RetransmissionAbsorbed:
    """A retransmitted request / response (or extra ACK) was absorbed by ``key``."""

    key: TxnKey


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """A 2xx to INVITE got no ACK within 64*T1: the core should send BYE (13.3.1.4)."""

    call_id: str
    cseq: int
    key: TxnKey
    response: SipResponse


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response matching no client transaction.

    A 2xx to INVITE (``is_invite_2xx``) is a retransmission the core must re-ACK; the
    others are to be dropped (and counted).
    """

    response: SipResponse
    addr: Address
    transport: str

    @property
    def is_invite_2xx(self) -> bool:
        return 200 <= self.response.status < 300 and self.response.cseq[1] == "INVITE"


Output = (
    Transmit
    | RequestReceived
    | ResponseReceived
    | TransactionTimedOut
    | RetransmissionAbsorbed
    | AckTimedOut
    | StrayResponse
)


# --------------------------------------------------------------------------- key helpers


def is_reliable(transport: str) -> bool:
    """True for stream/reliable transports (TCP, TLS, SCTP, WS...): no retransmissions."""
    return transport.upper() not in _UNRELIABLE_TRANSPORTS


def _sent_by(via: Via) -> str:
    port = "" if via.port is None else str(via.port)
    return f"{via.host.lower()}:{port}"


def _fallback_branch(request: SipRequest, via: Via) -> str:
    """RFC 2543 matching, simplified: Request-URI, From tag, Call-ID, CSeq number, top Via."""
    number, _ = request.cseq
    return "|".join(
        ("rfc2543", request.uri, request.from_.tag or "", request.call_id, str(number), str(via))
    )


def server_key(request: SipRequest, method: str | None = None) -> TxnKey:
    """Server transaction key of ``request`` (17.2.3); ACK maps to its INVITE.

    ``method`` overrides the key method (e.g. "INVITE" to find what a CANCEL cancels).
    Raises ``SipHeaderError`` (a ValueError) when the top Via is missing or malformed.
    """
    via = request.top_via
    branch = via.branch
    if branch is None or not branch.startswith(MAGIC_COOKIE):
        branch = _fallback_branch(request, via)
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    return TxnKey(Role.SERVER, branch, _sent_by(via), method)


def client_key(message: SipMessage) -> TxnKey | None:
    """Client transaction key (17.1.3): top-Via branch + CSeq method; None without branch."""
    branch = message.top_via.branch
    if branch is None:
        return None
    return TxnKey(Role.CLIENT, branch, "", message.cseq[1])


# --------------------------------------------------------------------------- timer queue

TimerOwner = TxnKey | OkKey


class _TimerQueue:
    """Min-heap of deadlines with lazy cancellation (one live entry per owner and timer)."""

    __slots__ = ("_heap", "_live", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerOwner, TimerName]] = []
        self._live: dict[tuple[TimerOwner, TimerName], int] = {}
        self._seq = 0

    def schedule(self, owner: TimerOwner, name: TimerName, deadline: float) -> None:
        self._seq += 1
        self._live[(owner, name)] = self._seq
        heapq.heappush(self._heap, (deadline, self._seq, owner, name))

    def cancel(self, owner: TimerOwner, *names: TimerName) -> None:
        for name in names or tuple(TimerName):
            self._live.pop((owner, name), None)

    def deadline(self, owner: TimerOwner, name: TimerName) -> float | None:
        seq = self._live.get((owner, name))
        if seq is None:
            return None
        return next(entry[0] for entry in self._heap if entry[1] == seq)

    def _prune(self) -> None:
        heap = self._heap
        while heap and self._live.get((heap[0][2], heap[0][3])) != heap[0][1]:
            heapq.heappop(heap)

    def peek(self) -> float | None:
        self._prune()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> tuple[TimerOwner, TimerName, float] | None:
        self._prune()
        if not self._heap or self._heap[0][0] > now:
            return None
        deadline, _, owner, name = heapq.heappop(self._heap)
        del self._live[(owner, name)]
        return owner, name, deadline


# --------------------------------------------------------------------------- state records


@dataclass(slots=True)
class _Transaction:
    key: TxnKey
    kind: TxnKind
    state: TxnState
    request: SipRequest
    addr: Address
    transport: str
    last_response: SipResponse | None = None
    interval_s: float = 0.0  # current Timer E / G retransmission interval


@dataclass(slots=True)
class _PendingOk:
    key: OkKey
    txn_key: TxnKey
    response: SipResponse
    addr: Address
    transport: str
    interval_s: float


# --------------------------------------------------------------------------- the layer


class TransactionLayer:
    """All client and server transactions of one SIP endpoint, plus pending 2xx."""

    def __init__(self, timers: TimerConfig = TimerConfig()) -> None:
        self._cfg = timers
        self._txns: dict[TxnKey, _Transaction] = {}
        self._oks: dict[OkKey, _PendingOk] = {}
        self._queue = _TimerQueue()

    # ---- queries

    def __len__(self) -> int:
        """Number of live transactions (pending 2xx are counted by ``pending_2xx``)."""
        return len(self._txns)

    @property
    def pending_2xx(self) -> int:
        """Number of 2xx responses to INVITE still awaiting their ACK."""
        return len(self._oks)

    def state(self, key: TxnKey) -> TxnState | None:
        """Current state of a live transaction; None once terminated."""
        txn = self._txns.get(key)
        return txn.state if txn is not None else None

    def timer_deadline(self, key: TimerOwner, name: TimerName) -> float | None:
        """When timer ``name`` of a transaction / pending 2xx fires next; None if not armed."""
        return self._queue.deadline(key, name)

    def next_deadline(self) -> float | None:
        return self._queue.peek()

    def server_request(self, key: TxnKey) -> SipRequest | None:
        txn = self._txns.get(key)
        if txn is None or key.role is not Role.SERVER:
            return None
        return txn.request

    def find_invite_for_cancel(self, cancel: SipRequest) -> TxnKey | None:
        """The live server INVITE transaction a CANCEL targets (9.2), if any."""
        if cancel.method != "CANCEL":
            raise UnsupportedRequestError(f"expected a CANCEL, got {cancel.method}")
        key = server_key(cancel, method="INVITE")
        return key if key in self._txns else None

    def discard(self, key: TxnKey) -> None:
        """Forget a server transaction the core will never answer (a late retransmission of
        an INVITE whose dialog is already confirmed: RFC 6026 absorbs those)."""
        txn = self._txns.get(key)
        if txn is not None and key.role is Role.SERVER:
            self._terminate(txn)

    # ---- inputs

    def receive(self, msg: SipMessage, addr: Address, transport: str, now: float) -> list[Output]:
        """Match a received message against the transactions (17.1.3 / 17.2.3)."""
        if isinstance(msg, SipRequest):
            return self._receive_request(msg, addr, transport, now)
        return self._receive_response(msg, addr, transport, now)

    def send_response(self, key: TxnKey, response: SipResponse, now: float) -> list[Output]:
        """The core answers server transaction ``key``."""
        txn = self._live(key, Role.SERVER)
        event = _send_event(txn.kind, response.status)
        if event is TxnEvent.SEND_2XX:
            self._check_no_pending_ok(txn.request)
        self._transition(txn, event)
        txn.last_response = response
        outputs: list[Output] = [Transmit(response, txn.addr, txn.transport)]
        if event is TxnEvent.SEND_2XX:
            self._terminate(txn)
            self._start_ok_retransmitter(txn, response, now)
        elif event is TxnEvent.SEND_FINAL:
            self._server_completed(txn, now)
        return outputs

    def send_request(
        self, request: SipRequest, addr: Address, transport: str, now: float
    ) -> tuple[TxnKey, list[Output]]:
        """Start a non-INVITE client transaction (17.1.2); the top Via must carry a branch."""
        key = self._new_client_key(request)
        txn = _Transaction(
            key, TxnKind.CLIENT_NON_INVITE, TxnState.TRYING, request, addr, transport
        )
        self._txns[key] = txn
        self._queue.schedule(key, TimerName.F, now + self._cfg.timeout_s)
        if not is_reliable(transport):
            txn.interval_s = self._cfg.t1_s
            self._queue.schedule(key, TimerName.E, now + txn.interval_s)
        return key, [Transmit(request, addr, transport)]

    def handle_timers(self, now: float) -> list[Output]:
        """Fire every timer due at or before ``now``, in deadline order."""
        outputs: list[Output] = []
        while (due := self._queue.pop_due(now)) is not None:
            owner, name, deadline = due
            if isinstance(owner, OkKey):
                outputs.extend(self._fire_ok_timer(self._oks[owner], name, deadline))
            else:
                outputs.extend(self._fire_txn_timer(self._txns[owner], name, deadline))
        return outputs

    # ---- requests

    def _receive_request(
        self, request: SipRequest, addr: Address, transport: str, now: float
    ) -> list[Output]:
        key = server_key(request)
        txn = self._txns.get(key)
        if request.method == "ACK":
            return self._receive_ack(request, txn, addr, transport, now)
        if txn is not None:
            return self._absorb_request(txn)
        if request.method == "INVITE":
            pending = self._oks.get(OkKey(request.call_id, request.cseq[0]))
            if pending is not None and pending.txn_key == key:
                return [
                    Transmit(pending.response, pending.addr, pending.transport),
                    RetransmissionAbsorbed(key),
                ]
        return self._new_server(request, key, addr, transport)

    def _new_server(
        self, request: SipRequest, key: TxnKey, addr: Address, transport: str
    ) -> list[Output]:
        if request.method == "INVITE":
            kind, state = TxnKind.SERVER_INVITE, TxnState.PROCEEDING
        else:
            kind, state = TxnKind.SERVER_NON_INVITE, TxnState.TRYING
        self._txns[key] = _Transaction(key, kind, state, request, addr, transport)
        return [RequestReceived(request, addr, transport, key)]

    def _absorb_request(self, txn: _Transaction) -> list[Output]:
        """A retransmitted request: resend the last response unless Trying / Confirmed."""
        self._transition(txn, TxnEvent.RECV_REQUEST)
        outputs: list[Output] = []
        if txn.last_response is not None and txn.state is not TxnState.CONFIRMED:
            outputs.append(Transmit(txn.last_response, txn.addr, txn.transport))
        outputs.append(RetransmissionAbsorbed(txn.key))
        return outputs

    def _receive_ack(
        self,
        ack: SipRequest,
        txn: _Transaction | None,
        addr: Address,
        transport: str,
        now: float,
    ) -> list[Output]:
        if txn is not None:  # only server INVITE keys have method INVITE
            before = txn.state
            self._transition(txn, TxnEvent.RECV_ACK)
            if before is TxnState.COMPLETED:
                self._server_confirmed(txn, now)
                return []
            return [RetransmissionAbsorbed(txn.key)]
        pending = self._oks.pop(OkKey(ack.call_id, ack.cseq[0]), None)
        if pending is not None:
            self._queue.cancel(pending.key)
        ack_key = server_key(ack, method="ACK")
        return [RequestReceived(ack, addr, transport, ack_key)]

    # ---- responses

    def _receive_response(
        self, response: SipResponse, addr: Address, transport: str, now: float
    ) -> list[Output]:
        key = client_key(response)
        txn = self._txns.get(key) if key is not None else None
        if txn is None:
            return [StrayResponse(response, addr, transport)]
        provisional = response.status < 200
        event = TxnEvent.RECV_PROVISIONAL if provisional else TxnEvent.RECV_FINAL
        before = txn.state
        self._transition(txn, event)
        if before is TxnState.COMPLETED:
            return [RetransmissionAbsorbed(txn.key)]
        if not provisional:
            self._queue.cancel(txn.key, TimerName.E, TimerName.F)
            delay_s = 0.0 if is_reliable(txn.transport) else self._cfg.t4_s
            self._arm_or_fire(txn, TimerName.K, now, delay_s)
        return [ResponseReceived(response, txn.key)]

    # ---- server transaction phases

    def _server_completed(self, txn: _Transaction, now: float) -> None:
        reliable = is_reliable(txn.transport)
        if txn.kind is TxnKind.SERVER_INVITE:
            if not reliable:
                txn.interval_s = self._cfg.t1_s
                self._queue.schedule(txn.key, TimerName.G, now + txn.interval_s)
            self._queue.schedule(txn.key, TimerName.H, now + self._cfg.timeout_s)
        else:
            delay_s = 0.0 if reliable else self._cfg.timeout_s
            self._arm_or_fire(txn, TimerName.J, now, delay_s)

    def _server_confirmed(self, txn: _Transaction, now: float) -> None:
        self._queue.cancel(txn.key, TimerName.G, TimerName.H)
        delay_s = 0.0 if is_reliable(txn.transport) else self._cfg.t4_s
        self._arm_or_fire(txn, TimerName.I, now, delay_s)

    def _arm_or_fire(self, txn: _Transaction, name: TimerName, now: float, delay_s: float) -> None:
        """Schedule a terminating timer (I, J, K); with zero delay, fire it right away."""
        if delay_s > 0:
            self._queue.schedule(txn.key, name, now + delay_s)
        else:
            self._fire_txn_timer(txn, name, now)

    # ---- timers

    def _fire_txn_timer(self, txn: _Transaction, name: TimerName, at: float) -> list[Output]:
        self._transition(txn, _TIMER_EVENTS[name])
        if name is TimerName.E or name is TimerName.G:
            return self._retransmit(txn, name, at)
        self._terminate(txn)
        if name is TimerName.F or name is TimerName.H:
            return [TransactionTimedOut(txn.key, txn.key.method)]
        return []

    def _retransmit(self, txn: _Transaction, name: TimerName, at: float) -> list[Output]:
        if name is TimerName.E and txn.state is TxnState.PROCEEDING:
            txn.interval_s = self._cfg.t2_s
        else:
            txn.interval_s = min(2 * txn.interval_s, self._cfg.t2_s)
        self._queue.schedule(txn.key, name, at + txn.interval_s)
        if name is TimerName.E:
            return [Transmit(txn.request, txn.addr, txn.transport)]
        assert txn.last_response is not None
        return [Transmit(txn.last_response, txn.addr, txn.transport)]

    def _fire_ok_timer(self, pending: _PendingOk, name: TimerName, at: float) -> list[Output]:
        if name is TimerName.OK_TIMEOUT:
            del self._oks[pending.key]
            self._queue.cancel(pending.key)
            key = pending.key
            return [AckTimedOut(key.call_id, key.cseq, pending.txn_key, pending.response)]
        pending.interval_s = min(2 * pending.interval_s, self._cfg.t2_s)
        self._queue.schedule(pending.key, TimerName.OK_RETRANSMIT, at + pending.interval_s)
        return [Transmit(pending.response, pending.addr, pending.transport)]

    # ---- 2xx retransmitter

    def _check_no_pending_ok(self, request: SipRequest) -> None:
        key = OkKey(request.call_id, request.cseq[0])
        if key in self._oks:
            raise DuplicateTransactionError(f"a 2xx for {key} is already awaiting its ACK")

    def _start_ok_retransmitter(self, txn: _Transaction, response: SipResponse, now: float) -> None:
        """13.3.1.4: retransmit T1, 2*T1 ... T2 (on any transport) until ACK or 64*T1."""
        key = OkKey(txn.request.call_id, txn.request.cseq[0])
        pending = _PendingOk(key, txn.key, response, txn.addr, txn.transport, self._cfg.t1_s)
        self._oks[key] = pending
        self._queue.schedule(key, TimerName.OK_RETRANSMIT, now + pending.interval_s)
        self._queue.schedule(key, TimerName.OK_TIMEOUT, now + self._cfg.timeout_s)

    # ---- plumbing

    def _live(self, key: TxnKey, role: Role) -> _Transaction:
        txn = self._txns.get(key)
        if txn is None or key.role is not role:
            raise UnknownTransactionError(f"no live {role.value} transaction {key}")
        return txn

    def _new_client_key(self, request: SipRequest) -> TxnKey:
        if request.method in ("INVITE", "ACK"):
            # TODO: client INVITE transactions (17.1.1) when the gateway places calls.
            raise UnsupportedRequestError(
                f"{request.method} client transactions are not implemented"
                " (ACK for 2xx is sent by the core without a transaction)"
            )
        if request.cseq[1] != request.method:
            raise UnsupportedRequestError(
                f"CSeq method {request.cseq[1]} does not match {request.method}"
            )
        key = client_key(request)
        if key is None or not key.branch.startswith(MAGIC_COOKIE):
            raise UnsupportedRequestError("top Via needs an RFC 3261 branch (z9hG4bK...)")
        if key in self._txns:
            raise DuplicateTransactionError(f"client transaction {key} already exists")
        return key

    def _transition(self, txn: _Transaction, event: TxnEvent) -> None:
        new_state = TRANSITIONS[txn.kind].get((txn.state, event))
        if new_state is None:
            raise TransactionStateError(
                f"{txn.kind.value} transaction in state {txn.state.value}: "
                f"{event.value} is not allowed"
            )
        txn.state = new_state

    def _terminate(self, txn: _Transaction) -> None:
        txn.state = TxnState.TERMINATED
        self._queue.cancel(txn.key)
        del self._txns[txn.key]


def _send_event(kind: TxnKind, status: int) -> TxnEvent:
    if not 100 <= status <= 699:
        raise InvalidResponseError(f"status {status} is not in 100..699")
    if status < 200:
        return TxnEvent.SEND_PROVISIONAL
    if status < 300 and kind is TxnKind.SERVER_INVITE:
        return TxnEvent.SEND_2XX
    return TxnEvent.SEND_FINAL
