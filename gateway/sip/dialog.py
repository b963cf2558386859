"""One inbound call's SIP dialog (RFC 3261 sections 12-15) as data plus a state enum (pure).

Layer: pure core.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.sdp import AnswerPlan, SessionDescription
from gateway.sip.transaction import TxnKey

Address = tuple[str, int]


class CallState(enum.Enum):
    OFFERED = "offered"        # INVITE received, 100 sent, waiting for media (ports)
    EARLY = "early"            # 180 sent
    ANSWERED = "answered"      # 200 sent, waiting for ACK
    CONFIRMED = "confirmed"    # ACK received: media flows
    ENDING = "ending"          # we sent BYE
    ENDED = "ended"


# state -> states it may move to (a missing transition is our bug: DialogStateError)
TRANSITIONS: dict[CallState, frozenset[CallState]] = {
    CallState.OFFERED: frozenset({CallState.EARLY, CallState.ANSWERED, CallState.ENDED}),
    CallState.EARLY: frozenset({CallState.ANSWERED, CallState.ENDED}),
    CallState.ANSWERED: frozenset({CallState.CONFIRMED, CallState.ENDING, CallState.ENDED}),
    CallState.CONFIRMED: frozenset({CallState.ENDING, CallState.ENDED}),
    CallState.ENDING: frozenset({CallState.ENDED}),
    CallState.ENDED: frozenset(),
}


class DialogStateError(RuntimeError):
    """We asked a dialog for a transition its state does not allow (a bug on our side)."""


@dataclass(frozen=True, slots=True)
class CallMetadata:
    """What the call was, as signalled: used for channel mapping, events and later exports."""

    call_id: str
    sip_call_id: str
    from_uri: str
    from_display: str | None
    to_uri: str
    request_uri: str
    remote_addr: Address
    transport: str
    headers: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        return {"call_id": self.call_id, "sip_call_id": self.sip_call_id,
                "from": self.from_uri, "from_display": self.from_display, "to": self.to_uri,
                "request_uri": self.request_uri, "remote": f"{self.remote_addr[0]}:"
                f"{self.remote_addr[1]}", "transport": self.transport,
                "headers": dict(self.headers)}


@dataclass(slots=True)
class Dialog:
    meta: CallMetadata
    invite: SipRequest
    invite_key: TxnKey
    local_tag: str
    remote_tag: str | None
    offer: SessionDescription
    plan: AnswerPlan
    addr: Address
    transport: str
    state: CallState = CallState.OFFERED
    local_cseq: int = 1
    remote_cseq: int = 0
    sdp_version: int = 1
    sdp_session_id: int = 0      # o= sess-id of our answers: fixed for the dialog
    answer_sdp: bytes = b""
    media_address: str = ""
    media_ports: tuple[int | None, ...] = ()
    ok_response: SipResponse | None = None
    end_reason: str = ""
    siprec: bool = False         # a SIPREC recording session (Contact gets +sip.srs)

    @property
    def call_id(self) -> str:
        return self.meta.call_id

    def move(self, new: CallState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise DialogStateError(f"call {self.call_id}: {self.state.name} -> {new.name}")
        self.state = new

    @property
    def answered(self) -> bool:
        return self.state in (CallState.ANSWERED, CallState.CONFIRMED, CallState.ENDING)

    @property
    def live(self) -> bool:
        return self.state is not CallState.ENDED
