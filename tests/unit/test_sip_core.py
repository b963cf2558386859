"""Tests for gateway.sip.core.SipCore: raw SIP bytes in, datagrams and call events out.

Every input is written by hand here (never with the gateway's serializer); outputs are read
with ``parse_message`` and with plain byte/regex checks. Time is a fake clock: timers are run
by asking ``next_deadline()`` and calling ``handle_timers`` at exactly that time, as the shell
does. Expected values come from RFC 3261/3264 (and the task), not from running the code.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Secret, SipAccount
from gateway.sip.core import (
    Absorbed,
    CallAnswered,
    CallConfirmed,
    CallEnded,
    CallOffered,
    CoreSettings,
    Dropped,
    MediaChanged,
    Output,
    Rejected,
    Send,
    SipCore,
)
from gateway.sip.dialog import Address
from gateway.sip.message import SipRequest, SipResponse, SipUri, parse_message
from gateway.sip.registration import Registration, RegistrationChanged, RegState
from gateway.sip.transaction import TimerConfig

T1_S, T2_S = 0.5, 4.0
TIMEOUT_S = 64 * T1_S
GW_HOST, GW_PORT = "192.0.2.1", 5060
PEER: Address = ("192.0.2.10", 5062)
MEDIA_HOST, MEDIA_PORT = "192.0.2.1", 40000
RR = ("<sip:p1.example.net;lr>", "<sip:p2.example.net;lr;ftag=x>", "<sip:p3.example.net;lr>")
CONTACT_URI = "sip:caller@192.0.2.10:5062;transport=udp"


# --------------------------------------------------------------------------- set-up


def make_settings(**changes: Any) -> CoreSettings:
    values: dict[str, Any] = {
        "local_host": GW_HOST, "local_port": GW_PORT, "user_agent": "gw-test/1",
        "max_calls": 10, "trunk_allow": (), "invite_rate_per_s": 1000.0,
        "send_ringing": True, "copy_headers": ("X-Leg", "X-Agent-Id"),
        "codecs": ("PCMU", "PCMA"), "telephone_event": True, "ptime_ms": 20,
        "timers": TimerConfig(t1_s=T1_S, t2_s=T2_S, t4_s=5.0),
    }  # fmt: skip
    values.update(changes)
    return CoreSettings(**values)


@dataclass
class FakeResolver:
    table: dict[str, Address] = field(default_factory=dict)
    asked: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, uri: SipUri, transport: str) -> Address | None:
        self.asked.append((uri.host, transport))
        return self.table.get(uri.host)


def make_core(**changes: Any) -> SipCore:
    return SipCore(make_settings(**changes), FakeResolver())


# --------------------------------------------------------------------------- hand-made bytes


def sdp(codecs: str = "0 8 101", direction: str = "sendrecv", version: int = 1,
        extra_m: str = "") -> bytes:
    maps = {"0": "PCMU/8000", "8": "PCMA/8000", "18": "G729/8000", "101": "telephone-event/8000"}
    lines = ["v=0", f"o=caller 777 {version} IN IP4 192.0.2.10", "s=call", "c=IN IP4 192.0.2.10",
             "t=0 0", f"m=audio 30000 RTP/AVP {codecs}"]
    lines += [f"a=rtpmap:{pt} {maps[pt]}" for pt in codecs.split()]
    lines += [f"a={direction}", "a=ptime:20"]
    if extra_m:
        lines += [extra_m, "a=rtpmap:0 PCMU/8000"]
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass
class Leg:
    """Dialog identifiers of the caller side, to write requests by hand."""

    call_id: str = "call-1@192.0.2.10"
    from_tag: str = "ftag1"
    to_tag: str | None = None
    branch: str = "z9hG4bKinv1"
    cseq: int = 1
    transport: str = "UDP"


def request(method: str, leg: Leg, *, branch: str | None = None, cseq: int | None = None,
            to_tag: str | None = None, body: bytes = b"", content_type: str = "application/sdp",
            headers: Sequence[str] = (), uri: str = f"sip:gw@{GW_HOST}:{GW_PORT}") -> bytes:
    to = f"<sip:gw@{GW_HOST}:{GW_PORT}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{leg.transport} 192.0.2.10:5062;branch={branch or leg.branch};rport",
        "Max-Forwards: 70",
        f'From: "Alice Caller" <sip:alice@example.com>;tag={leg.from_tag}',
        f"To: {to}",
        f"Call-ID: {leg.call_id}",
        f"CSeq: {cseq if cseq is not None else leg.cseq} {method}",
        f"Contact: <{CONTACT_URI}>",
        *headers,
    ]
    if body:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def invite(leg: Leg, body: bytes | None = None, headers: Sequence[str] = (),
           **kw: Any) -> bytes:
    rr = [f"Record-Route: {RR[0]}, {RR[1]}", f"Record-Route: {RR[2]}"]
    return request("INVITE", leg, body=sdp() if body is None else body,
                   headers=[*rr, "X-Leg: inbound-7", "X-Agent-Id: 42", "X-Other: no",
                            *headers], **kw)


def ack(leg: Leg, *, branch: str = "z9hG4bKack1", cseq: int | None = None) -> bytes:
    return request("ACK", leg, branch=branch, cseq=cseq, to_tag=leg.to_tag)


def reply_to(raw: bytes, status: int, reason: str, to_tag: str = "peer-tag",
             extra: Sequence[str] = ()) -> bytes:
    """A response written by hand: copy Via/From/To/Call-ID/CSeq lines of ``raw``."""
    text = raw.decode()
    keep = [line for line in text.split("\r\n")
            if re.match(r"(?i)(via|from|call-id|cseq):", line)]
    to_line = next(line for line in text.split("\r\n") if line.lower().startswith("to:"))
    if ";tag=" not in to_line:
        to_line += f";tag={to_tag}"
    lines = [f"SIP/2.0 {status} {reason}", *keep, to_line, *extra, "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --------------------------------------------------------------------------- reading outputs


def sent(outputs: Sequence[Output]) -> list[Send]:
    return [o for o in outputs if isinstance(o, Send)]


def responses(outputs: Sequence[Output]) -> list[SipResponse]:
    result = []
    for o in sent(outputs):
        msg = parse_message(o.data)
        assert isinstance(msg, SipResponse)
        result.append(msg)
    return result


def statuses(outputs: Sequence[Output]) -> list[int]:
    return [int(o.data.split(b" ", 2)[1]) for o in sent(outputs)]


def sent_requests(outputs: Sequence[Output]) -> list[SipRequest]:
    result = []
    for o in sent(outputs):
        msg = parse_message(o.data)
        assert isinstance(msg, SipRequest)
        result.append(msg)
    return result


def of_type(outputs: Sequence[Any], kind: type[Any]) -> list[Any]:
    return [o for o in outputs if isinstance(o, kind)]


def header_lines(raw: bytes, name: str) -> list[str]:
    return re.findall(rf"(?im)^{re.escape(name)}[ \t]*:[ \t]*([^\r\n]*)", raw.decode())


def body_of(raw: bytes) -> str:
    return raw.split(b"\r\n\r\n", 1)[1].decode()


def o_line(body: str) -> tuple[str, int]:
    match = re.search(r"(?m)^o=\S+ (\d+) (\d+) IN IP4 ", body)
    assert match is not None, body
    return match.group(1), int(match.group(2))


def run_timers(core: SipCore, until: float) -> list[tuple[float, Output]]:
    """Fire every deadline up to ``until`` at its exact time, like the shell's timer."""
    fired: list[tuple[float, Output]] = []
    for _ in range(10_000):
        deadline = core.next_deadline()
        if deadline is None or deadline > until:
            return fired
        fired += [(deadline, o) for o in core.handle_timers(deadline)]
    raise AssertionError("timers never settle")


def sends_at(fired: Sequence[tuple[float, Output]]) -> list[tuple[float, bytes]]:
    return [(t, o.data) for t, o in fired if isinstance(o, Send)]


def rfc_retransmit_times(start: float, stop: float) -> list[float]:
    """T1, 2*T1, 4*T1 ... capped at T2 after ``start``, strictly before ``stop``."""
    times, t, interval = [], start, T1_S
    while t + interval < stop:
        t += interval
        times.append(t)
        interval = min(2 * interval, T2_S)
    return times


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    core: SipCore
    leg: Leg
    offered: CallOffered
    outputs: list[Output]


def offer_call(core: SipCore | None = None, leg: Leg | None = None, now: float = 0.0,
               addr: Address = PEER, **kw: Any) -> Scenario:
    core = core or make_core()
    leg = leg or Leg()
    out = core.receive(invite(leg, **kw), addr, leg.transport.lower(), now)
    offers = of_type(out, CallOffered)
    assert len(offers) == 1, out
    return Scenario(core, leg, offers[0], out)


def answer_call(s: Scenario, now: float = 0.0) -> SipResponse:
    out = s.core.answer(s.offered.call_id, MEDIA_HOST, [MEDIA_PORT], now)
    assert of_type(out, CallAnswered) == [CallAnswered(s.offered.call_id)]
    (ok,) = responses(out)
    assert ok.status == 200
    s.leg.to_tag = ok.to.tag
    s.outputs = out
    return ok


def confirmed_call(**kw: Any) -> Scenario:
    s = offer_call(**kw)
    answer_call(s)
    out = s.core.receive(ack(s.leg), PEER, s.leg.transport.lower(), 0.1)
    assert out == [CallConfirmed(s.offered.call_id)]
    return s


# =========================================================================== INVITE -> 200 -> ACK


@pytest.mark.parametrize("ringing", [True, False])
def test_invite_gets_100_then_optional_180_then_call_offered(ringing: bool) -> None:
    s = offer_call(make_core(send_ringing=ringing))
    assert statuses(s.outputs) == ([100, 180] if ringing else [100])
    assert all(o.addr == PEER and o.transport == "udp" for o in sent(s.outputs))
    trying = responses(s.outputs)[0]
    assert trying.to.tag is None                     # 100 creates no dialog (8.2.6.1)
    assert isinstance(s.outputs[-1], CallOffered)
    if ringing:
        ringing_raw = sent(s.outputs)[1].data
        assert parse_message(ringing_raw).to.tag        # dialog-creating 180 has a To tag
        assert header_lines(ringing_raw, "Record-Route") == list(RR)
        assert header_lines(ringing_raw, "Contact") == [f"<sip:gateway@{GW_HOST}:{GW_PORT}>"]


def test_responses_copy_via_with_received_and_rport() -> None:
    s = offer_call(addr=("198.51.100.5", 6000))      # source differs from the Via sent-by
    (via,) = header_lines(sent(s.outputs)[0].data, "Via")
    assert "branch=z9hG4bKinv1" in via
    assert "received=198.51.100.5" in via and "rport=6000" in via
    assert sent(s.outputs)[0].addr == ("198.51.100.5", 6000)


def test_call_offered_metadata() -> None:
    s = offer_call(addr=("::ffff:192.0.2.10", 5062))
    meta = s.offered.meta
    assert meta.call_id == s.offered.call_id
    assert meta.sip_call_id == "call-1@192.0.2.10"
    assert meta.from_uri == "sip:alice@example.com"
    assert meta.from_display == "Alice Caller"
    assert meta.to_uri == f"sip:gw@{GW_HOST}:{GW_PORT}"
    assert meta.request_uri == f"sip:gw@{GW_HOST}:{GW_PORT}"
    assert meta.remote_addr == ("192.0.2.10", 5062)        # IPv4-mapped IPv6 normalised
    assert meta.transport == "udp"
    assert meta.headers == (("X-Leg", "inbound-7"), ("X-Agent-Id", "42"))  # X-Other not wanted
    (stream,) = s.offered.plan.streams
    assert stream.accepted and (stream.remote_address, stream.remote_port) == ("192.0.2.10",
                                                                               30000)


@pytest.mark.parametrize(("codecs", "offer", "expected_pt", "expected_name"), [
    (("PCMU", "PCMA"), "8 0 101", 0, "PCMU"),       # our preference wins over offer order
    (("PCMA", "PCMU"), "0 8 101", 8, "PCMA"),
    (("PCMA",), "0 8", 8, "PCMA"),
])  # fmt: skip
def test_answer_sends_200_with_sdp_answer(codecs: tuple[str, ...], offer: str,
                                          expected_pt: int, expected_name: str) -> None:
    s = offer_call(make_core(codecs=codecs), body=sdp(offer))
    tag_180 = responses(s.outputs)[1].to.tag
    ok = answer_call(s)
    raw = sent(s.outputs)[0].data
    assert raw.startswith(b"SIP/2.0 200 ")
    assert ok.to.tag == tag_180
    assert ok.cseq == (1, "INVITE") and ok.call_id == s.leg.call_id
    assert header_lines(raw, "Record-Route") == list(RR)         # same values, same order
    assert header_lines(raw, "Contact") == [f"<sip:gateway@{GW_HOST}:{GW_PORT}>"]
    assert header_lines(raw, "Content-Type") == ["application/sdp"]
    body = body_of(raw)
    assert int(header_lines(raw, "Content-Length")[0]) == len(body.encode())
    m_line = re.search(r"(?m)^m=audio (\d+) RTP/AVP ([\d ]+)\r$", body)
    assert m_line is not None, body
    assert int(m_line.group(1)) == MEDIA_PORT
    assert m_line.group(2).split()[0] == str(expected_pt)
    assert f"a=rtpmap:{expected_pt} {expected_name}/8000" in body
    assert f"c=IN IP4 {MEDIA_HOST}" in body


def test_ack_confirms_and_stops_200_retransmissions() -> None:
    s = offer_call()
    answer_call(s)
    assert s.core.receive(ack(s.leg), PEER, "udp", 0.2) == [CallConfirmed(s.offered.call_id)]
    assert sends_at(run_timers(s.core, 10 * TIMEOUT_S)) == []
    assert s.offered.call_id in s.core.calls                     # and the call lives on


def test_200_retransmitted_with_doubling_interval_until_ack() -> None:
    s = offer_call()
    answer_call(s)
    ok_bytes = sent(s.outputs)[0].data
    early = sends_at(run_timers(s.core, 9.0))
    assert [t for t, _ in early] == rfc_retransmit_times(0.0, 9.0) == [0.5, 1.5, 3.5, 7.5]
    assert all(data == ok_bytes for _, data in early)
    assert of_type(s.core.receive(ack(s.leg), PEER, "udp", 9.0), CallConfirmed)
    assert sends_at(run_timers(s.core, 200.0)) == []


def test_no_ack_within_64_t1_sends_bye_and_ends_call() -> None:
    s = offer_call()
    answer_call(s)
    fired = run_timers(s.core, TIMEOUT_S)
    oks = [t for t, data in sends_at(fired) if data.startswith(b"SIP/2.0 200")]
    assert oks == rfc_retransmit_times(0.0, TIMEOUT_S)
    byes = [(t, data) for t, data in sends_at(fired) if data.startswith(b"BYE ")]
    assert [t for t, _ in byes] == [TIMEOUT_S]
    out = s.core.receive(reply_to(byes[0][1], 200, "OK"), PEER, "udp", TIMEOUT_S + 0.1)
    (ended,) = of_type(out, CallEnded)
    assert (ended.call_id, ended.by, ended.answered) == (s.offered.call_id, "local", True)
    assert "ACK" in ended.reason
    assert s.offered.call_id not in s.core.calls


# =========================================================================== BYE from the peer


def test_bye_from_peer_gets_200_and_ends_call_once() -> None:
    s = confirmed_call()
    bye = request("BYE", s.leg, branch="z9hG4bKbye1", cseq=2, to_tag=s.leg.to_tag)
    out = s.core.receive(bye, PEER, "udp", 5.0)
    (ok,) = responses(out)
    assert ok.status == 200 and ok.cseq == (2, "BYE")
    assert of_type(out, CallEnded) == [CallEnded(s.offered.call_id, "remote hangup", "remote",
                                                 True)]
    again = s.core.receive(bye, PEER, "udp", 5.5)                # retransmitted BYE
    assert [o.data for o in sent(again)] == [o.data for o in sent(out)]
    assert of_type(again, CallEnded) == [] and of_type(again, Absorbed)


@pytest.mark.parametrize(("call_id", "to_tag"), [("call-1@192.0.2.10", "wrong-tag"),
                                                 ("other-call@x", None)])
def test_bye_for_unknown_dialog_gets_481(call_id: str, to_tag: str | None) -> None:
    s = confirmed_call()
    leg = Leg(call_id=call_id)
    out = s.core.receive(request("BYE", leg, branch="z9hG4bKb2", cseq=2,
                                 to_tag=to_tag or "nope"), PEER, "udp", 1.0)
    assert statuses(out) == [481]
    assert of_type(out, CallEnded) == [] and s.offered.call_id in s.core.calls


def test_bye_in_early_dialog_ends_the_invite_with_487() -> None:
    s = offer_call()                                   # 180 sent: early dialog exists
    s.leg.to_tag = responses(s.outputs)[1].to.tag
    bye = request("BYE", s.leg, branch="z9hG4bKbye1", cseq=2, to_tag=s.leg.to_tag)
    out = s.core.receive(bye, PEER, "udp", 1.0)
    got = {(r.cseq[1], r.status) for r in responses(out)}
    assert got == {("BYE", 200), ("INVITE", 487)}      # 15.1.2: pending INVITE answered
    assert of_type(out, CallEnded) == [CallEnded(s.offered.call_id, "remote hangup", "remote",
                                                 False)]
    assert s.core.answer(s.offered.call_id, MEDIA_HOST, [MEDIA_PORT], 1.5) == []


# =========================================================================== CANCEL


def cancel(leg: Leg) -> bytes:
    return request("CANCEL", leg)          # same branch and CSeq number as the INVITE (9.1)


def test_cancel_before_answer() -> None:
    s = offer_call()
    tag_180 = responses(s.outputs)[1].to.tag
    out = s.core.receive(cancel(s.leg), PEER, "udp", 1.0)
    got = [(r.status, r.cseq) for r in responses(out)]
    assert got == [(200, (1, "CANCEL")), (487, (1, "INVITE"))]
    assert responses(out)[1].to.tag == tag_180
    assert of_type(out, CallEnded) == [CallEnded(s.offered.call_id, "cancelled", "remote",
                                                 False)]
    assert s.core.answer(s.offered.call_id, MEDIA_HOST, [MEDIA_PORT], 1.1) == []


def test_487_retransmitted_by_timer_g_until_ack() -> None:
    s = offer_call()
    out = s.core.receive(cancel(s.leg), PEER, "udp", 1.0)
    final = sent(out)[1].data
    fired = sends_at(run_timers(s.core, 5.0))
    assert [t for t, _ in fired] == rfc_retransmit_times(1.0, 5.0) == [1.5, 2.5, 4.5]
    assert all(data == final for _, data in fired)
    s.leg.to_tag = responses(out)[1].to.tag
    assert s.core.receive(ack(s.leg, branch=s.leg.branch), PEER, "udp", 5.0) == []
    assert sends_at(run_timers(s.core, 100.0)) == []


def test_cancel_for_unknown_transaction_gets_481() -> None:
    s = offer_call()
    out = s.core.receive(cancel(Leg(branch="z9hG4bKother")), PEER, "udp", 1.0)
    assert statuses(out) == [481]
    assert of_type(out, CallEnded) == [] and s.offered.call_id in s.core.calls


@pytest.mark.parametrize("acked", [False, True])
def test_cancel_after_200_gets_200_and_call_continues(acked: bool) -> None:
    s = offer_call()
    answer_call(s)
    if acked:
        s.core.receive(ack(s.leg), PEER, "udp", 0.1)
    out = s.core.receive(cancel(s.leg), PEER, "udp", 0.2)
    assert [(r.status, r.cseq[1]) for r in responses(out)] == [(200, "CANCEL")]
    assert of_type(out, CallEnded) == []
    assert s.offered.call_id in s.core.calls


# =========================================================================== retransmitted INVITE


@pytest.mark.parametrize(("ringing", "resent"), [(True, 180), (False, 100)])
def test_retransmitted_invite_is_absorbed_and_last_provisional_resent(ringing: bool,
                                                                      resent: int) -> None:
    s = offer_call(make_core(send_ringing=ringing))
    out = s.core.receive(invite(s.leg), PEER, "udp", 0.5)
    assert of_type(out, CallOffered) == [] and of_type(out, Absorbed)
    assert statuses(out) == [resent]
    assert sent(out)[0].data == sent(s.outputs)[-1].data
    assert len(s.core.calls) == 1


def test_invite_retransmitted_while_200_unacked_gets_the_200_again() -> None:
    s = offer_call()
    answer_call(s)
    ok_bytes = sent(s.outputs)[0].data
    out = s.core.receive(invite(s.leg), PEER, "udp", 0.3)
    assert [o.data for o in sent(out)] == [ok_bytes] and of_type(out, CallOffered) == []


def test_late_invite_retransmission_after_ack_creates_no_second_call() -> None:
    s = confirmed_call()
    out = s.core.receive(invite(s.leg), PEER, "udp", 2.0)
    assert of_type(out, CallOffered) == [] and sent(out) == []
    assert list(s.core.calls) == [s.offered.call_id]
    assert len(s.core._txns) == 0          # no unanswered INVITE transaction left behind


# =========================================================================== admission / OPTIONS


def options(leg: Leg | None = None) -> bytes:
    return request("OPTIONS", leg or Leg(call_id="opt-1", branch="z9hG4bKopt"))


def test_options_gets_200_with_allow() -> None:
    out = make_core().receive(options(), PEER, "udp", 0.0)
    assert statuses(out) == [200]
    (allow,) = header_lines(sent(out)[0].data, "Allow")
    assert {m.strip() for m in allow.split(",")} >= {"INVITE", "ACK", "BYE", "CANCEL",
                                                     "OPTIONS"}


@pytest.mark.parametrize("why", ["draining", "max_calls"])
def test_options_gets_503_while_draining_or_full(why: str) -> None:
    core = make_core(max_calls=1)
    if why == "draining":
        core.draining = True
    else:
        offer_call(core)
    out = core.receive(options(), PEER, "udp", 1.0)
    assert statuses(out) == [503]
    assert of_type(out, Rejected)[0].method == "OPTIONS"


@pytest.mark.parametrize("why", ["draining", "max_calls"])
def test_invite_gets_503_with_retry_after_while_draining_or_full(why: str) -> None:
    core = make_core(max_calls=1)
    if why == "draining":
        core.draining = True
    else:
        offer_call(core)
    out = core.receive(invite(Leg(call_id="second", branch="z9hG4bKinv2")), PEER, "udp", 1.0)
    assert statuses(out) == [503]
    retry_after = header_lines(sent(out)[0].data, "Retry-After")
    assert len(retry_after) == 1 and int(retry_after[0]) > 0
    assert of_type(out, CallOffered) == []
    assert [(r.status, r.method) for r in of_type(out, Rejected)] == [(503, "INVITE")]


@pytest.mark.parametrize(("source", "accepted"), [
    ("10.1.2.3", True),
    ("::ffff:10.1.2.3", True),          # dual-stack socket: IPv4-mapped source
    ("192.0.2.10", False),
    ("2001:db8::1", False),
])  # fmt: skip
def test_trunk_allow(source: str, accepted: bool) -> None:
    core = make_core(trunk_allow=(ipaddress.ip_network("10.0.0.0/8"),))
    out = core.receive(invite(Leg()), (source, 5062), "udp", 0.0)
    if accepted:
        assert statuses(out)[0] == 100
        assert of_type(out, CallOffered)[0].meta.remote_addr == ("10.1.2.3", 5062)
    else:
        assert statuses(out) == [403] and of_type(out, CallOffered) == []


def test_invite_rate_limit_per_source_recovers_with_time() -> None:
    core = make_core(invite_rate_per_s=2.0)          # burst of 2, then 2 per second

    def send(n: int, now: float, addr: Address = PEER) -> int:
        leg = Leg(call_id=f"rate-{n}", branch=f"z9hG4bKrate{n}")
        return statuses(core.receive(invite(leg), addr, "udp", now))[0]

    assert [send(1, 0.0), send(2, 0.0), send(3, 0.0)] == [100, 100, 503]
    assert send(30, 0.0, ("::ffff:192.0.2.10", 5999)) == 503  # same source, mapped form
    assert send(4, 0.0, ("192.0.2.99", 5060)) == 100      # other sources unaffected
    assert send(5, 0.1) == 503
    assert send(6, 0.6) == 100                             # 0.6 s * 2/s >= one token


def test_require_unknown_extension_gets_420_with_unsupported() -> None:
    out = make_core().receive(invite(Leg(), headers=["Require: 100rel, foo"]), PEER, "udp", 0.0)
    assert statuses(out) == [420]
    (unsupported,) = header_lines(sent(out)[0].data, "Unsupported")
    assert {t.strip() for t in unsupported.split(",")} == {"100rel", "foo"}


# =========================================================================== SDP problems


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (sdp("18"), "application/sdp", 488),               # only G729 offered
    (sdp(), "text/plain", 415),
    (b"", "application/sdp", 488),                     # offerless INVITE: documented limit
    (b"this is not sdp\r\n", "application/sdp", 400),
    (b"v=0\r\ns=x\r\nm=audio 1 RTP/AVP 0\r\n", "application/sdp", 400),  # no o= line
])  # fmt: skip
def test_sdp_problems_rejected(body: bytes, content_type: str, status: int) -> None:
    core = make_core()
    raw = request("INVITE", Leg(), body=body, content_type=content_type)
    out = core.receive(raw, PEER, "udp", 0.0)
    assert statuses(out) == [status]
    if status == 415:
        (accept,) = header_lines(sent(out)[0].data, "Accept")
        assert {t.strip() for t in accept.split(",")} == {
            "application/sdp", "multipart/mixed", "application/rs-metadata+xml"}
    assert of_type(out, CallOffered) == [] and core.calls == {}
    assert [r.status for r in of_type(out, Rejected)] == [status]


# =========================================================================== re-INVITE


def reinvite(s: Scenario, n: int, body: bytes) -> bytes:
    return request("INVITE", s.leg, branch=f"z9hG4bKre{n}", cseq=1 + n, to_tag=s.leg.to_tag,
                   body=body)


def test_reinvite_hold_and_resume() -> None:
    s = confirmed_call()
    first_session, first_version = o_line(body_of(sent(s.outputs)[0].data))
    out = s.core.receive(reinvite(s, 1, sdp(direction="sendonly", version=2)), PEER, "udp", 1.0)
    (ok,) = sent(out)
    body = body_of(ok.data)
    assert ok.data.startswith(b"SIP/2.0 200 ") and "a=recvonly" in body
    assert header_lines(ok.data, "Content-Type") == ["application/sdp"]
    assert parse_message(ok.data).to.tag == s.leg.to_tag
    (changed,) = of_type(out, MediaChanged)
    assert changed.call_id == s.offered.call_id
    assert changed.plan.streams[0].remote_direction == "sendonly"
    assert o_line(body) == (first_session, first_version + 1)     # RFC 3264 section 8
    assert of_type(s.core.receive(ack(s.leg, branch="z9hG4bKack2", cseq=2), PEER, "udp", 1.1),
                   CallConfirmed) == []

    out = s.core.receive(reinvite(s, 2, sdp(version=3)), PEER, "udp", 2.0)
    body = body_of(sent(out)[0].data)
    assert "a=sendrecv" in body
    assert of_type(out, MediaChanged)[0].plan.streams[0].remote_direction == "sendrecv"
    assert o_line(body) == (first_session, first_version + 2)


def test_reinvite_for_unknown_dialog_gets_481() -> None:
    s = confirmed_call()
    s.leg.to_tag = "not-ours"
    out = s.core.receive(reinvite(s, 1, sdp()), PEER, "udp", 1.0)
    assert statuses(out) == [481] and of_type(out, MediaChanged) == []


def test_reinvite_adding_a_stream_is_refused_not_crashed() -> None:
    s = confirmed_call()
    body = sdp(extra_m="m=audio 30002 RTP/AVP 0")      # a second stream we hold no port for
    out = s.core.receive(reinvite(s, 1, body), PEER, "udp", 1.0)
    assert statuses(out) == [488] and of_type(out, MediaChanged) == []
    assert s.offered.call_id in s.core.calls


# =========================================================================== local hangup


def test_hangup_confirmed_call_sends_bye_along_the_route_set() -> None:
    s = confirmed_call()
    out = s.core.hangup(s.offered.call_id, "agent left", 5.0)
    (send,) = sent(out)
    assert send.addr == PEER and send.transport == "udp"
    raw = send.data
    assert raw.startswith(f"BYE {CONTACT_URI} SIP/2.0\r\n".encode())   # remote target
    assert header_lines(raw, "Route") == list(RR)     # UAS: Record-Route order (12.1.1)
    bye = parse_message(raw)
    assert isinstance(bye, SipRequest)
    assert bye.from_.uri == SipUri("sip", "gw", GW_HOST, GW_PORT)
    assert bye.from_.tag == s.leg.to_tag
    assert str(bye.to.uri) == "sip:alice@example.com" and bye.to.tag == s.leg.from_tag
    assert bye.call_id == s.leg.call_id
    number, method = bye.cseq
    assert method == "BYE" and number >= 1
    assert (bye.top_via.branch or "").startswith("z9hG4bK")
    assert s.core.hangup(s.offered.call_id, "again", 5.1) == []        # one BYE only
    done = s.core.receive(reply_to(raw, 200, "OK"), PEER, "udp", 5.2)
    assert of_type(done, CallEnded) == [CallEnded(s.offered.call_id, "agent left", "local",
                                                  True)]
    assert s.core.calls == {}


def test_bye_without_response_times_out_and_ends_call() -> None:
    s = confirmed_call()
    (bye,) = sent(s.core.hangup(s.offered.call_id, "bye", 10.0))
    fired = run_timers(s.core, 10.0 + TIMEOUT_S)
    retransmits = [t for t, data in sends_at(fired) if data == bye.data]
    assert retransmits == rfc_retransmit_times(10.0, 10.0 + TIMEOUT_S)  # Timer E (UDP)
    (ended,) = [o for _, o in fired if isinstance(o, CallEnded)]
    assert ended.by == "local" and "timed out" in ended.reason
    assert s.core.calls == {}


@pytest.mark.parametrize(("draining", "status"), [(False, 480), (True, 503)])
def test_hangup_before_answer_rejects_the_invite(draining: bool, status: int) -> None:
    s = offer_call()
    s.core.draining = draining
    out = s.core.hangup(s.offered.call_id, "no agent", 1.0)
    assert [(r.status, r.cseq[1]) for r in responses(out)] == [(status, "INVITE")]
    assert of_type(out, CallEnded) == [CallEnded(s.offered.call_id, "no agent", "local", False)]


# =========================================================================== malformed input


@pytest.mark.parametrize("data", [
    b"", b"\x00\xff\xfe garbage", b"hello world\r\n\r\n", b"INVITE\r\n\r\n",
    b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n", bytes(range(256)),
])  # fmt: skip
def test_garbage_is_dropped(data: bytes) -> None:
    out = make_core().receive(data, PEER, "udp", 0.0)
    assert len(out) == 1 and isinstance(out[0], Dropped) and out[0].addr == PEER


@pytest.mark.parametrize(("raw", "status"), [
    (request("OPTIONS", Leg(), headers=["This line has no colon"]), 400),
    (request("OPTIONS", Leg(), headers=["Bad Name: x"]), 400),
    (request("OPTIONS", Leg(), headers=["X-Bin: a\x00b"]), 400),
    (request("OPTIONS", Leg(), headers=["Expires: 1"]).replace(b"Expires: 1", b"Expires: \xff"),
     400),
    (request("INVITE", Leg(), uri="http://example.com/x", body=sdp()), 416),
])  # fmt: skip
def test_bad_request_with_answerable_headers_gets_error(raw: bytes, status: int) -> None:
    out = make_core().receive(raw, PEER, "udp", 0.0)
    (resp,) = responses(out)
    assert resp.status == status and resp.call_id == "call-1@192.0.2.10"
    assert sent(out)[0].addr == PEER
    assert [r.status for r in of_type(out, Rejected)] == [status]


def test_malformed_ack_is_dropped_silently() -> None:
    raw = request("ACK", Leg(), to_tag="x", headers=["This line has no colon"])
    out = make_core().receive(raw, PEER, "udp", 0.0)
    assert sent(out) == [] and [type(o) for o in out] == [Dropped]


def _without(raw: bytes, name: bytes) -> bytes:
    return b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith(name + b":"))


OPT = request("OPTIONS", Leg())


@pytest.mark.parametrize(("raw", "status"), [
    # RFC 4475 3.1.2.16: unknown version; the Via says SIP/7.0 too but names where to answer
    (OPT.replace(b" SIP/2.0\r\n", b" SIP/7.0\r\n", 1).replace(b"Via: SIP/2.0/", b"Via: SIP/7.0/"),
     505),
    (_without(OPT, b"Call-ID"), 400),
    (_without(OPT, b"CSeq"), 400),
    (_without(_without(OPT, b"From"), b"To"), 400),
    (OPT.replace(b"OPTIONS sip:", b"OPTIONS  sip:", 1), 400),               # 3.1.2.9
    (OPT.replace(b"OPTIONS sip:gw@", b"OPTIONS sip:gw@x; lr ", 1), 400),    # 3.1.2.8
    (OPT.replace(b"OPTIONS sip:gw@", b"OPTIONS sip:g\xffw@", 1), 400),     # bad UTF-8 start
    (OPT.replace(b'"Alice Caller"', b'"Alice \xff Caller"', 1), 400),     # bad UTF-8 From
    (OPT.replace(b"5062;branch=", b"5062;;,;branch=", 1), 400),             # 3.1.2.1
])  # fmt: skip
def test_readable_via_means_an_answer(raw: bytes, status: int) -> None:
    """Issue 13 item 19: these were dropped; with a readable Via they are answered."""
    out = make_core().receive(raw, PEER, "udp", 0.0)
    (reply,) = sent(out)
    assert reply.addr == PEER
    assert reply.data.startswith(f"SIP/2.0 {status} ".encode()), reply.data
    assert b"branch=z9hG4bKinv1" in reply.data          # the Via came back
    assert [r.status for r in of_type(out, Rejected)] == [status]


@pytest.mark.parametrize("raw", [
    _without(OPT, b"Via"),
    _without(OPT, b"Call-ID").replace(b"Via: SIP/2.0/UDP 192.0.2.10:5062", b"Via: SIP/2.0/UDP"),
    request("ACK", Leg(), to_tag="x").replace(b"ACK sip:", b"ACK  sip:", 1),
    _without(request("ACK", Leg(), to_tag="x"), b"Call-ID"),
])  # fmt: skip
def test_no_readable_via_or_an_ack_is_dropped(raw: bytes) -> None:
    out = make_core().receive(raw, PEER, "udp", 0.0)
    assert sent(out) == [] and [type(o) for o in out] == [Dropped]


def test_escaped_nul_in_a_quoted_display_name_is_valid() -> None:
    """RFC 4475 3.1.1.2: a quoted-pair may escape NUL; it was dropped as a parse error."""
    raw = OPT.replace(b'"Alice Caller"', b'"Alice\\\x00Caller"', 1)
    out = make_core().receive(raw, PEER, "udp", 0.0)
    assert statuses(out) == [200]
    assert b'From: "Alice\\\x00Caller"' in sent(out)[0].data
    bare = OPT.replace(b'"Alice Caller"', b'"Alice\x00Caller"', 1)    # not escaped: invalid
    assert statuses(make_core().receive(bare, PEER, "udp", 0.0)) == [400]


# =========================================================================== TCP


def test_tcp_contact_and_no_timer_g_but_2xx_still_retransmitted() -> None:
    core = make_core()
    s = offer_call(core, Leg(transport="TCP"))
    assert all(o.transport == "tcp" for o in sent(s.outputs))
    ok = answer_call(s)
    assert header_lines(sent(s.outputs)[0].data, "Contact") == [
        f"<sip:gateway@{GW_HOST}:{GW_PORT};transport=tcp>"]
    assert ok.status == 200
    oks = sends_at(run_timers(core, 4.0))                 # 13.3.1.4: on any transport
    assert [t for t, _ in oks] == rfc_retransmit_times(0.0, 4.0)

    rejected = offer_call(core, Leg(call_id="tcp-2", branch="z9hG4bKtcp2", transport="TCP"),
                          now=4.0)
    core.receive(ack(s.leg), PEER, "tcp", 4.0)
    out = core.hangup(rejected.offered.call_id, "x", 4.0)
    assert statuses(out) == [480]
    assert sends_at(run_timers(core, 4.0 + 2 * TIMEOUT_S)) == []    # no Timer G on TCP

    (bye,) = sent(core.hangup(s.offered.call_id, "done", 200.0))
    assert bye.transport == "tcp"
    fired = run_timers(core, 200.0 + TIMEOUT_S)
    assert sends_at(fired) == []                          # no Timer E on TCP
    assert of_type([o for _, o in fired], CallEnded)       # Timer F still ends it


# =========================================================================== registration


REGISTRAR_ADDR: Address = ("198.51.100.7", 5070)
PASSWORD = "pa55"


def account() -> SipAccount:
    return SipAccount(name="pbx", user="alice", domain="example.com", password=Secret(PASSWORD),
                      registrars=("sip:registrar.example.com:5070",), expires_s=300)


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def digest_params(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    return {k: v1 or v2 for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', value)}


def registered_core() -> tuple[SipCore, FakeResolver, list[Output]]:
    resolver = FakeResolver({"registrar.example.com": REGISTRAR_ADDR})
    core = SipCore(make_settings(), resolver)
    reg = Registration(account(), local_host=GW_HOST, local_port=GW_PORT, transport="udp",
                       user_agent="gw-test/1", random=lambda: 0.5)
    out = core.add_registration(reg, 0.0)
    (first,) = sent(out)
    assert first.addr == REGISTRAR_ADDR and resolver.asked == [("registrar.example.com", "udp")]
    assert first.data.startswith(b"REGISTER sip:example.com SIP/2.0\r\n")
    assert header_lines(first.data, "Authorization") == []
    challenge = 'Digest realm="example.com", nonce="n0nce", qop="auth", algorithm=MD5'
    out = core.receive(reply_to(first.data, 401, "Unauthorized", to_tag="r1",
                                extra=[f"WWW-Authenticate: {challenge}"]),
                       REGISTRAR_ADDR, "udp", 0.1)
    (second,) = sent(out)
    assert second.addr == REGISTRAR_ADDR
    (auth,) = header_lines(second.data, "Authorization")
    p = digest_params(auth)
    ha1 = md5(f"alice:example.com:{PASSWORD}")
    ha2 = md5(f"REGISTER:{p['uri']}")
    expected = md5(f"{ha1}:n0nce:{p['nc']}:{p['cnonce']}:auth:{ha2}")
    assert (p["username"], p["realm"], p["uri"]) == ("alice", "example.com", "sip:example.com")
    assert p["response"] == expected
    out = core.receive(reply_to(second.data, 200, "OK", to_tag="r1", extra=["Expires: 300"]),
                       REGISTRAR_ADDR, "udp", 0.2)
    return core, resolver, out


def test_registration_through_the_core_with_digest() -> None:
    _core, _resolver, out = registered_core()
    (changed,) = of_type(out, RegistrationChanged)
    assert (changed.account, changed.state, changed.code) == ("pbx", RegState.REGISTERED, 200)
    assert sent(out) == []


@pytest.mark.parametrize("how", ["unregister_all", "remove_registration"])
def test_unregister_sends_expires_0(how: str) -> None:
    core, _resolver, _out = registered_core()
    out = core.unregister_all(1.0) if how == "unregister_all" else core.remove_registration(
        "pbx", 1.0)
    (reg,) = sent(out)
    assert reg.addr == REGISTRAR_ADDR
    assert header_lines(reg.data, "Expires") == ["0"]
    assert all(c.endswith(";expires=0") for c in header_lines(reg.data, "Contact"))
    assert header_lines(reg.data, "Authorization")         # cached credentials reused
    done = core.receive(reply_to(reg.data, 200, "OK", to_tag="r1"), REGISTRAR_ADDR, "udp", 1.1)
    assert [c.state for c in of_type(done, RegistrationChanged)] == [RegState.UNREGISTERED]


def test_bye_goes_to_the_first_contact_of_a_list() -> None:
    core, leg = make_core(), Leg()
    raw = invite(leg).replace(f"Contact: <{CONTACT_URI}>".encode(),
                              f"Contact: <{CONTACT_URI}>, <sip:second@192.0.2.10:5070>".encode())
    out = core.receive(raw, PEER, "udp", 0.0)
    (offered,) = of_type(out, CallOffered)
    answer_call(Scenario(core, leg, offered, out))
    assert core.receive(ack(leg), PEER, "udp", 0.1) == [CallConfirmed(offered.call_id)]
    (bye,) = sent(core.hangup(offered.call_id, "done", 1.0))     # no exception from the list
    assert bye.data.startswith(f"BYE {CONTACT_URI} SIP/2.0\r\n".encode())


def test_star_contact_outside_register_is_refused() -> None:
    raw = invite(Leg()).replace(f"Contact: <{CONTACT_URI}>".encode(), b"Contact: *")
    (resp,) = responses(make_core().receive(raw, PEER, "udp", 0.0))
    assert resp.status == 400 and "Contact" in resp.reason


def test_siprec_session_answers_with_an_srs_contact_and_its_dialog_says_so() -> None:
    """RFC 7866 6.1.1: the SRS's Contact carries +sip.srs; a plain call's does not."""
    raw = (Path(__file__).resolve().parents[1] / "siprec_corpus"
           / "invite_generic_crlf.sip").read_bytes()
    core = make_core()
    (offered,) = of_type(core.receive(raw, ("198.51.100.10", 5060), "udp", 0.0), CallOffered)
    assert offered.media is not None and offered.media.siprec
    assert core.calls[offered.call_id].siprec is True
    out = core.answer(offered.call_id, MEDIA_HOST, [MEDIA_PORT, MEDIA_PORT + 2], 0.0)
    (ok,) = sent(out)
    assert header_lines(ok.data, "Contact") == [f"<sip:gateway@{GW_HOST}:{GW_PORT}>;+sip.srs"]
    plain = offer_call()
    assert plain.core.calls[plain.offered.call_id].siprec is False
