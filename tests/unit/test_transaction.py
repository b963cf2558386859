"""SIP transaction layer (RFC 3261 section 17, 13.3.1.4) driven by a fake clock."""

from __future__ import annotations

import pytest

from gateway.sip.message import SipRequest, SipResponse, build_response, parse_message
from gateway.sip.transaction import (
    AckTimedOut,
    DuplicateTransactionError,
    InvalidResponseError,
    Output,
    RequestReceived,
    ResponseReceived,
    RetransmissionAbsorbed,
    Role,
    StrayResponse,
    TimerConfig,
    TimerName,
    TransactionLayer,
    TransactionStateError,
    TransactionTimedOut,
    Transmit,
    TxnKey,
    TxnState,
    UnknownTransactionError,
    UnsupportedRequestError,
)

T0 = 1000.0
PEER = ("10.0.0.2", 5062)
# RFC 3261 17.1.2.2 / 17.2.1 with T1=0.5 s, T2=4 s: intervals 0.5, 1, 2, 4, 4, ... from t0,
# cut off by the 64*T1 = 32 s timeout. Written out by hand as the independent reference.
BACKOFF_OFFSETS_S = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
TIMEOUT_S = 32.0
T4_S = 5.0


def make_request(
    method: str,
    *,
    branch: str | None = "z9hG4bKaaa1",
    cseq: int = 1,
    call_id: str = "call-1@10.0.0.2",
    sent_by: str = "10.0.0.2:5062",
    transport: str = "UDP",
    uri: str = "sip:gw@10.0.0.1",
    to_tag: str | None = None,
    cseq_method: str | None = None,
) -> SipRequest:
    branch_param = f";branch={branch}" if branch is not None else ""
    to_param = f";tag={to_tag}" if to_tag is not None else ""
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by}{branch_param}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@10.0.0.2>;tag=from1\r\n"
        f"To: <sip:gw@10.0.0.1>{to_param}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, SipRequest)
    return message


def respond(request: SipRequest, status: int) -> SipResponse:
    """A response as the peer (or our core) would build it: Via/From/To/Call-ID/CSeq copied."""
    return build_response(request, status, to_tag="totag")


def drive(layer: TransactionLayer, until: float) -> list[tuple[float, Output]]:
    """Advance the fake clock from deadline to deadline up to ``until``."""
    fired: list[tuple[float, Output]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        fired.extend((deadline, out) for out in layer.handle_timers(deadline))
    return fired


def transmit_times(fired: list[tuple[float, Output]]) -> list[float]:
    return [t for t, out in fired if isinstance(out, Transmit)]


def only_transmit(outputs: list[Output]) -> Transmit:
    transmits = [out for out in outputs if isinstance(out, Transmit)]
    assert len(transmits) == 1, outputs
    return transmits[0]


def new_server_txn(
    layer: TransactionLayer, request: SipRequest, transport: str = "UDP", now: float = T0
) -> TxnKey:
    outputs = layer.receive(request, PEER, transport, now)
    assert len(outputs) == 1 and isinstance(outputs[0], RequestReceived), outputs
    return outputs[0].key


# --------------------------------------------------------------------------- client non-INVITE


def test_client_timer_e_doubles_to_t2_and_timer_f_times_out() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS")
    key, outputs = layer.send_request(request, PEER, "UDP", T0)
    assert outputs == [Transmit(request, PEER, "UDP")]
    fired = drive(layer, T0 + 100)
    assert transmit_times(fired) == [T0 + x for x in BACKOFF_OFFSETS_S]
    assert all(out == Transmit(request, PEER, "UDP") for _, out in fired[:-1])
    assert fired[-1] == (T0 + TIMEOUT_S, TransactionTimedOut(key, "OPTIONS"))
    assert len(layer) == 0 and layer.next_deadline() is None


def test_client_timers_fire_exactly_at_deadline_not_before() -> None:
    layer = TransactionLayer()
    layer.send_request(make_request("OPTIONS"), PEER, "UDP", T0)
    for offset in BACKOFF_OFFSETS_S[:5]:
        assert layer.handle_timers(T0 + offset - 1e-6) == []
        assert len(layer.handle_timers(T0 + offset)) == 1


def test_late_timer_handling_keeps_the_schedule_anchored() -> None:
    layer = TransactionLayer()
    key, _ = layer.send_request(make_request("OPTIONS"), PEER, "UDP", T0)
    late = layer.handle_timers(T0 + 2.0)  # E was due at +0.5 and +1.5
    assert [type(out) for out in late] == [Transmit, Transmit]
    assert layer.next_deadline() == T0 + 3.5
    assert layer.timer_deadline(key, TimerName.F) == T0 + TIMEOUT_S


def test_client_provisional_moves_to_proceeding_and_e_continues_at_t2() -> None:
    layer = TransactionLayer()
    request = make_request("REGISTER")
    key, _ = layer.send_request(request, PEER, "UDP", T0)
    layer.handle_timers(T0 + 0.5)
    trying = respond(request, 100)
    assert layer.receive(trying, PEER, "UDP", T0 + 0.7) == [ResponseReceived(trying, key)]
    assert layer.state(key) is TxnState.PROCEEDING
    fired = drive(layer, T0 + 100)
    # E already armed for +1.5 stays; every later interval is T2 = 4 s; F at +32.
    assert transmit_times(fired) == [T0 + x for x in (1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5)]
    assert fired[-1][1] == TransactionTimedOut(key, "REGISTER")


def test_client_final_response_completes_absorbs_and_timer_k_terminates() -> None:
    layer = TransactionLayer()
    request = make_request("BYE")
    key, _ = layer.send_request(request, PEER, "UDP", T0)
    ok = respond(request, 200)
    assert layer.receive(ok, PEER, "UDP", T0 + 1.0) == [ResponseReceived(ok, key)]
    assert layer.state(key) is TxnState.COMPLETED
    assert layer.receive(ok, PEER, "UDP", T0 + 2.0) == [RetransmissionAbsorbed(key)]
    late_1xx = respond(request, 180)
    assert layer.receive(late_1xx, PEER, "UDP", T0 + 2.5) == [RetransmissionAbsorbed(key)]
    fired = drive(layer, T0 + 100)
    assert fired == []  # no retransmission, no timeout after the final response
    assert layer.state(key) is None and len(layer) == 0


def test_client_timer_k_fires_t4_after_final() -> None:
    layer = TransactionLayer()
    request = make_request("BYE")
    key, _ = layer.send_request(request, PEER, "UDP", T0)
    layer.receive(respond(request, 481), PEER, "UDP", T0 + 1.0)
    assert layer.next_deadline() == T0 + 1.0 + T4_S
    layer.handle_timers(T0 + 1.0 + T4_S - 1e-6)
    assert layer.state(key) is TxnState.COMPLETED
    layer.handle_timers(T0 + 1.0 + T4_S)
    assert layer.state(key) is None


def test_client_tcp_has_no_retransmissions_and_zero_timer_k() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS", transport="TCP")
    key, _ = layer.send_request(request, PEER, "TCP", T0)
    assert layer.next_deadline() == T0 + TIMEOUT_S  # only Timer F
    other = make_request("OPTIONS", branch="z9hG4bKaaa2", transport="TCP")
    other_key, _ = layer.send_request(other, PEER, "TCP", T0)
    assert layer.receive(respond(other, 200), PEER, "TCP", T0 + 1)[0] == ResponseReceived(
        respond(other, 200), other_key
    )
    assert layer.state(other_key) is None  # Timer K = 0 on TCP
    assert drive(layer, T0 + 100) == [(T0 + TIMEOUT_S, TransactionTimedOut(key, "OPTIONS"))]


def test_send_request_rejects_invite_ack_bad_branch_and_duplicates() -> None:
    layer = TransactionLayer()
    with pytest.raises(UnsupportedRequestError):
        layer.send_request(make_request("INVITE"), PEER, "UDP", T0)
    with pytest.raises(UnsupportedRequestError):
        layer.send_request(make_request("ACK"), PEER, "UDP", T0)
    with pytest.raises(UnsupportedRequestError):
        layer.send_request(make_request("OPTIONS", branch="1234"), PEER, "UDP", T0)
    layer.send_request(make_request("OPTIONS"), PEER, "UDP", T0)
    with pytest.raises(DuplicateTransactionError):
        layer.send_request(make_request("OPTIONS"), PEER, "UDP", T0)
    assert len(layer) == 1


# --------------------------------------------------------------------------- stray responses


def test_responses_matching_no_client_transaction_are_stray() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS")
    layer.send_request(request, PEER, "UDP", T0)
    other_branch = respond(make_request("OPTIONS", branch="z9hG4bKzzz"), 200)
    wrong_method = respond(make_request("INFO", cseq_method="INFO"), 200)  # same branch
    invite_ok = respond(make_request("INVITE", branch="z9hG4bKold"), 200)
    for response in (other_branch, wrong_method, invite_ok):
        outputs = layer.receive(response, PEER, "UDP", T0 + 1)
        assert outputs == [StrayResponse(response, PEER, "UDP")]
    assert not StrayResponse(other_branch, PEER, "UDP").is_invite_2xx
    assert StrayResponse(invite_ok, PEER, "UDP").is_invite_2xx
    assert not StrayResponse(respond(make_request("INVITE"), 486), PEER, "UDP").is_invite_2xx
    assert len(layer) == 1


# --------------------------------------------------------------------------- server non-INVITE


def test_server_non_invite_retransmissions_get_the_last_response() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS")
    key = new_server_txn(layer, request)
    assert key.role is Role.SERVER and key.method == "OPTIONS"
    assert layer.server_request(key) is request
    assert layer.receive(request, PEER, "UDP", T0 + 0.1) == [RetransmissionAbsorbed(key)]
    trying = respond(request, 100)
    assert layer.send_response(key, trying, T0 + 0.2) == [Transmit(trying, PEER, "UDP")]
    assert layer.state(key) is TxnState.PROCEEDING
    assert layer.receive(request, PEER, "UDP", T0 + 0.3) == [
        Transmit(trying, PEER, "UDP"),
        RetransmissionAbsorbed(key),
    ]
    ok = respond(request, 200)
    layer.send_response(key, ok, T0 + 1.0)
    assert layer.state(key) is TxnState.COMPLETED
    assert layer.receive(request, PEER, "UDP", T0 + 2.0) == [
        Transmit(ok, PEER, "UDP"),
        RetransmissionAbsorbed(key),
    ]


def test_server_non_invite_timer_j_is_64_t1_on_udp() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS")
    key = new_server_txn(layer, request)
    layer.send_response(key, respond(request, 200), T0 + 1.0)
    assert drive(layer, T0 + 1.0 + TIMEOUT_S - 1e-6) == []
    assert layer.state(key) is TxnState.COMPLETED
    assert drive(layer, T0 + 1.0 + TIMEOUT_S) == []  # Timer J is silent
    assert len(layer) == 0
    # After termination the same request is new again.
    assert isinstance(layer.receive(request, PEER, "UDP", T0 + 40)[0], RequestReceived)


def test_server_non_invite_tcp_terminates_at_once() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS", transport="TCP")
    key = new_server_txn(layer, request, "TCP")
    layer.send_response(key, respond(request, 200), T0)
    assert len(layer) == 0 and layer.next_deadline() is None


def test_server_response_goes_to_request_source() -> None:
    layer = TransactionLayer()
    request = make_request("OPTIONS")
    outputs = layer.receive(request, ("192.0.2.9", 40000), "UDP", T0)
    key = outputs[0].key if isinstance(outputs[0], RequestReceived) else None
    assert key is not None
    sent = only_transmit(layer.send_response(key, respond(request, 200), T0))
    assert sent.addr == ("192.0.2.9", 40000) and sent.transport == "UDP"


# --------------------------------------------------------------------------- server INVITE


def test_invite_retransmission_resends_last_provisional() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    key = new_server_txn(layer, invite)
    assert layer.state(key) is TxnState.PROCEEDING
    assert layer.receive(invite, PEER, "UDP", T0 + 0.1) == [RetransmissionAbsorbed(key)]
    trying, ringing = respond(invite, 100), respond(invite, 180)
    layer.send_response(key, trying, T0 + 0.1)
    assert only_transmit(layer.receive(invite, PEER, "UDP", T0 + 0.5)).message is trying
    layer.send_response(key, ringing, T0 + 0.6)
    outputs = layer.receive(invite, PEER, "UDP", T0 + 1.5)
    assert outputs == [Transmit(ringing, PEER, "UDP"), RetransmissionAbsorbed(key)]
    assert len(layer) == 1


def test_invite_error_response_timer_g_then_timer_h() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    key = new_server_txn(layer, invite)
    busy = respond(invite, 486)
    layer.send_response(key, busy, T0)
    assert layer.state(key) is TxnState.COMPLETED
    fired = drive(layer, T0 + 100)
    assert transmit_times(fired) == [T0 + x for x in BACKOFF_OFFSETS_S]
    assert all(out == Transmit(busy, PEER, "UDP") for _, out in fired[:-1])
    assert fired[-1] == (T0 + TIMEOUT_S, TransactionTimedOut(key, "INVITE"))
    assert len(layer) == 0


def test_ack_confirms_stops_timer_g_and_timer_i_terminates() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    key = new_server_txn(layer, invite)
    busy = respond(invite, 486)
    layer.send_response(key, busy, T0)
    layer.handle_timers(T0 + 0.5)
    # ACK for a non-2xx: same branch as the INVITE (17.1.1.3), CSeq method ACK.
    ack = make_request("ACK", to_tag="totag")
    assert layer.receive(invite, PEER, "UDP", T0 + 0.9)[0] == Transmit(busy, PEER, "UDP")
    assert layer.receive(ack, PEER, "UDP", T0 + 1.0) == []
    assert layer.state(key) is TxnState.CONFIRMED
    assert layer.receive(ack, PEER, "UDP", T0 + 1.2) == [RetransmissionAbsorbed(key)]
    assert layer.receive(invite, PEER, "UDP", T0 + 1.3) == [RetransmissionAbsorbed(key)]
    fired = drive(layer, T0 + 100)
    assert fired == []  # no more 486 retransmissions, no Timer H
    assert layer.state(key) is None
    layer2 = TransactionLayer()
    key2 = new_server_txn(layer2, invite)
    layer2.send_response(key2, busy, T0)
    layer2.receive(ack, PEER, "UDP", T0 + 1.0)
    assert layer2.next_deadline() == T0 + 1.0 + T4_S  # Timer I = T4 on UDP


def test_invite_error_response_over_tcp_no_timer_g_and_zero_timer_i() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE", transport="TCP")
    key = new_server_txn(layer, invite, "TCP")
    layer.send_response(key, respond(invite, 603), T0)
    assert layer.next_deadline() == T0 + TIMEOUT_S  # Timer H only
    assert layer.receive(make_request("ACK", transport="TCP"), PEER, "TCP", T0 + 1) == []
    assert len(layer) == 0 and layer.next_deadline() is None
    key2 = new_server_txn(layer, make_request("INVITE", branch="z9hG4bKb2", transport="TCP"), "TCP")
    layer.send_response(key2, respond(invite, 603), T0)
    assert drive(layer, T0 + 100) == [(T0 + TIMEOUT_S, TransactionTimedOut(key2, "INVITE"))]


def test_ack_from_other_sent_by_does_not_match_the_invite() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    key = new_server_txn(layer, invite)
    layer.send_response(key, respond(invite, 486), T0)
    spoofed = make_request("ACK", sent_by="10.9.9.9:5060")
    outputs = layer.receive(spoofed, PEER, "UDP", T0 + 1)
    assert len(outputs) == 1 and isinstance(outputs[0], RequestReceived)
    assert layer.state(key) is TxnState.COMPLETED


# --------------------------------------------------------------------------- 2xx retransmitter


def test_2xx_terminates_server_txn_and_is_retransmitted_until_ack_timeout() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    key = new_server_txn(layer, invite)
    ok = respond(invite, 200)
    assert layer.send_response(key, ok, T0) == [Transmit(ok, PEER, "UDP")]
    assert len(layer) == 0 and layer.pending_2xx == 1
    fired = drive(layer, T0 + 100)
    assert transmit_times(fired) == [T0 + x for x in BACKOFF_OFFSETS_S]
    assert all(out == Transmit(ok, PEER, "UDP") for _, out in fired[:-1])
    assert fired[-1] == (T0 + TIMEOUT_S, AckTimedOut("call-1@10.0.0.2", 1, key, ok))
    assert layer.pending_2xx == 0 and layer.next_deadline() is None


def test_ack_for_2xx_stops_retransmission_and_reaches_the_core() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE", cseq=7)
    key = new_server_txn(layer, invite)
    layer.send_response(key, respond(invite, 200), T0)
    layer.handle_timers(T0 + 0.5)
    ack = make_request("ACK", branch="z9hG4bKnewack", cseq=7, to_tag="totag")
    outputs = layer.receive(ack, PEER, "UDP", T0 + 0.8)
    assert len(outputs) == 1 and isinstance(outputs[0], RequestReceived)
    assert outputs[0].request is ack and outputs[0].key.method == "ACK"
    assert layer.pending_2xx == 0
    assert drive(layer, T0 + 100) == []


def test_ack_with_other_cseq_does_not_stop_the_2xx() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE", cseq=7)
    layer.send_response(new_server_txn(layer, invite), respond(invite, 200), T0)
    ack = make_request("ACK", branch="z9hG4bKnewack", cseq=8)
    assert isinstance(layer.receive(ack, PEER, "UDP", T0 + 0.1)[0], RequestReceived)
    assert layer.pending_2xx == 1
    assert transmit_times(drive(layer, T0 + 1.5)) == [T0 + 0.5, T0 + 1.5]


def test_invite_retransmission_after_2xx_resends_the_2xx() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    key = new_server_txn(layer, invite)
    ok = respond(invite, 200)
    layer.send_response(key, ok, T0)
    outputs = layer.receive(invite, PEER, "UDP", T0 + 0.2)
    assert outputs == [Transmit(ok, PEER, "UDP"), RetransmissionAbsorbed(key)]
    assert len(layer) == 0


def test_2xx_is_retransmitted_over_tcp_too() -> None:
    # 13.3.1.4: retransmitted "even if the transport at the UAS is reliable".
    layer = TransactionLayer()
    invite = make_request("INVITE", transport="TCP")
    key = new_server_txn(layer, invite, "TCP")
    layer.send_response(key, respond(invite, 200), T0)
    assert transmit_times(drive(layer, T0 + 4.0)) == [T0 + 0.5, T0 + 1.5, T0 + 3.5]


def test_custom_timer_config_scales_the_schedules() -> None:
    layer = TransactionLayer(TimerConfig(t1_s=0.25, t2_s=1.0, t4_s=2.0))
    key, _ = layer.send_request(make_request("OPTIONS"), PEER, "UDP", 0.0)
    fired = drive(layer, 100.0)
    assert transmit_times(fired)[:5] == [0.25, 0.75, 1.75, 2.75, 3.75]
    assert fired[-1] == (16.0, TransactionTimedOut(key, "OPTIONS"))
    with pytest.raises(ValueError):
        TimerConfig(t1_s=5.0, t2_s=4.0)


# --------------------------------------------------------------------------- CANCEL


def test_cancel_is_its_own_transaction_and_finds_its_invite() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    invite_key = new_server_txn(layer, invite)
    cancel = make_request("CANCEL")
    cancel_key = new_server_txn(layer, cancel, now=T0 + 1)
    assert cancel_key != invite_key and cancel_key.method == "CANCEL"
    assert layer.find_invite_for_cancel(cancel) == invite_key
    assert layer.server_request(invite_key) is invite
    assert len(layer) == 2
    # A CANCEL with another branch or from another sent-by cancels nothing.
    assert layer.find_invite_for_cancel(make_request("CANCEL", branch="z9hG4bKx")) is None
    assert layer.find_invite_for_cancel(make_request("CANCEL", sent_by="10.0.0.3")) is None
    layer.send_response(cancel_key, respond(cancel, 200), T0 + 1)
    layer.send_response(invite_key, respond(invite, 487), T0 + 1)
    assert layer.state(invite_key) is TxnState.COMPLETED
    with pytest.raises(UnsupportedRequestError):
        layer.find_invite_for_cancel(invite)


def test_cancel_after_invite_terminated_finds_nothing() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    key = new_server_txn(layer, invite)
    layer.send_response(key, respond(invite, 200), T0)
    assert layer.find_invite_for_cancel(make_request("CANCEL")) is None
    assert layer.server_request(key) is None


# --------------------------------------------------------------------------- RFC 2543 fallback


def test_rfc2543_requests_match_without_magic_cookie() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE", branch=None)
    key = new_server_txn(layer, invite)
    assert layer.receive(invite, PEER, "UDP", T0 + 0.5) == [RetransmissionAbsorbed(key)]
    cancel = make_request("CANCEL", branch=None)
    assert layer.find_invite_for_cancel(cancel) == key
    # Another CSeq number is another transaction.
    other = make_request("INVITE", branch=None, cseq=2)
    assert isinstance(layer.receive(other, PEER, "UDP", T0 + 1)[0], RequestReceived)
    layer.send_response(key, respond(invite, 486), T0 + 1)
    ack = make_request("ACK", branch=None, to_tag="totag")
    assert layer.receive(ack, PEER, "UDP", T0 + 2) == []
    assert layer.state(key) is TxnState.CONFIRMED


def test_legacy_branch_without_cookie_uses_fallback_too() -> None:
    layer = TransactionLayer()
    key = new_server_txn(layer, make_request("OPTIONS", branch="legacy1"))
    other_uri = make_request("OPTIONS", branch="legacy1", uri="sip:other@10.0.0.1")
    outputs = layer.receive(other_uri, PEER, "UDP", T0)
    assert isinstance(outputs[0], RequestReceived) and outputs[0].key != key


# --------------------------------------------------------------------------- errors


def test_illegal_transitions_raise_state_errors() -> None:
    layer = TransactionLayer()
    options = make_request("OPTIONS")
    key = new_server_txn(layer, options)
    layer.send_response(key, respond(options, 200), T0)
    with pytest.raises(TransactionStateError):
        layer.send_response(key, respond(options, 500), T0)
    with pytest.raises(TransactionStateError):
        layer.send_response(key, respond(options, 100), T0)
    invite = make_request("INVITE", branch="z9hG4bKinv")
    invite_key = new_server_txn(layer, invite)
    layer.send_response(invite_key, respond(invite, 486), T0)
    with pytest.raises(TransactionStateError):
        layer.send_response(invite_key, respond(invite, 180), T0)
    with pytest.raises(TransactionStateError):
        layer.send_response(invite_key, respond(invite, 200), T0)
    assert layer.state(invite_key) is TxnState.COMPLETED  # unchanged by the failed calls
    assert issubclass(TransactionStateError, ValueError)


def test_unknown_keys_and_bad_status_are_rejected() -> None:
    layer = TransactionLayer()
    invite = make_request("INVITE")
    key = new_server_txn(layer, invite)
    with pytest.raises(InvalidResponseError):
        layer.send_response(key, SipResponse(700, "X", invite.headers.copy()), T0)
    layer.send_response(key, respond(invite, 200), T0)
    with pytest.raises(UnknownTransactionError):  # the 2xx terminated it
        layer.send_response(key, respond(invite, 200), T0)
    client_key, _ = layer.send_request(make_request("OPTIONS"), PEER, "UDP", T0)
    with pytest.raises(UnknownTransactionError):
        layer.send_response(client_key, respond(invite, 200), T0)


# --------------------------------------------------------------------------- many transactions


def test_hundreds_of_transactions_are_all_cleaned_up() -> None:
    layer = TransactionLayer()
    for i in range(200):
        now = T0 + i * 0.01
        options = make_request("OPTIONS", branch=f"z9hG4bKs{i}", call_id=f"o{i}")
        layer.send_response(new_server_txn(layer, options, now=now), respond(options, 200), now)
        invite = make_request("INVITE", branch=f"z9hG4bKi{i}", call_id=f"i{i}")
        invite_key = new_server_txn(layer, invite, now=now)
        if i % 2:
            layer.send_response(invite_key, respond(invite, 486), now)
            if i % 4 == 1:  # ACK for the 486 reuses the INVITE branch
                ack = make_request("ACK", branch=f"z9hG4bKi{i}", call_id=f"i{i}")
                layer.receive(ack, PEER, "UDP", now)
        else:
            layer.send_response(invite_key, respond(invite, 200), now)
            if i % 4 == 0:
                ack = make_request("ACK", branch=f"z9hG4bKa{i}", call_id=f"i{i}")
                layer.receive(ack, PEER, "UDP", now + 0.1)
        request = make_request("BYE", branch=f"z9hG4bKc{i}", call_id=f"c{i}")
        client_key, _ = layer.send_request(request, PEER, "UDP", now)
        if i % 3:
            layer.receive(respond(request, 200), PEER, "UDP", now + 0.2)
    assert len(layer) > 300 and layer.pending_2xx == 50
    outputs = layer.handle_timers(T0 + 1000)
    timed_out = [out for out in outputs if isinstance(out, TransactionTimedOut)]
    acks_missing = [out for out in outputs if isinstance(out, AckTimedOut)]
    assert len(timed_out) == 50 + 67  # unACKed 486 (Timer H) + unanswered BYE (Timer F)
    assert len(acks_missing) == 50
    assert len(layer) == 0 and layer.pending_2xx == 0
    assert layer.next_deadline() is None
