"""The gateway's SIP user agent core (UAS + registration client), sans-I/O.

Bytes and the current time go in; datagrams to send and call events come out.
The shell (``gateway.sip.service``) owns sockets, timers and media, and calls
:meth:`SipCore.answer` once it has RTP ports for an offered call.

Layer: pure core.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.sip import transaction as txn
from gateway.sip.admission import IPNetwork, RateLimiter, allowed, normalize_ip
from gateway.sip.dialog import Address, CallMetadata, CallState, Dialog
from gateway.sip.message import (
    Headers,
    SipHeaderError,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    build_response,
    new_branch,
    parse_message,
    parse_name_addr,
)
from gateway.sip.multipart import BodyPart, MultipartError, find_part, parse_multipart
from gateway.sip.registration import (
    Registration,
    RegistrationChanged,
    RegOutput,
    SendRegister,
)
from gateway.sip.sdp import (
    AnswerPlan,
    NoAcceptableMedia,
    SdpError,
    SessionDescription,
    build_answer,
    negotiate,
    parse_sdp,
)
from gateway.sip.siprec import (
    RecordingMetadata,
    SiprecError,
    is_siprec_invite,
    parse_metadata,
)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
ACCEPT = "application/sdp, multipart/mixed, application/rs-metadata+xml"
NOT_ALLOWED = frozenset({"REGISTER", "SUBSCRIBE", "PUBLISH", "MESSAGE", "REFER", "NOTIFY"})
SUPPORTED_OPTIONS: frozenset[str] = frozenset({"siprec"})
METADATA_TYPE = "application/rs-metadata+xml"


@dataclass(frozen=True, slots=True)
class CoreSettings:
    local_host: str               # advertised host for Via/Contact
    local_port: int
    user_agent: str
    max_calls: int
    trunk_allow: tuple[IPNetwork, ...]
    invite_rate_per_s: float
    send_ringing: bool
    copy_headers: tuple[str, ...]
    codecs: tuple[str, ...]
    telephone_event: bool
    ptime_ms: int
    timers: txn.TimerConfig
    siprec_metadata_required: bool = False


# ----------------------------------------------------------------- outputs (past tense)
@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    addr: Address
    transport: str


@dataclass(frozen=True, slots=True)
class MediaOffer:
    """What an INVITE offered: its SDP, our plan, and for SIPREC the recording metadata."""

    sdp: SessionDescription
    plan: AnswerPlan
    siprec: bool = False
    metadata: RecordingMetadata | None = None
    metadata_error: str | None = None


@dataclass(frozen=True, slots=True)
class CallOffered:
    call_id: str
    meta: CallMetadata
    plan: AnswerPlan
    media: MediaOffer | None = None


@dataclass(frozen=True, slots=True)
class CallAnswered:
    call_id: str


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    call_id: str


@dataclass(frozen=True, slots=True)
class MediaChanged:
    call_id: str
    plan: AnswerPlan
    media: MediaOffer | None = None


@dataclass(frozen=True, slots=True)
class MetadataUpdated:
    call_id: str
    metadata: RecordingMetadata | None
    error: str | None


@dataclass(frozen=True, slots=True)
class CallEnded:
    call_id: str
    reason: str
    by: str            # "remote" | "local"
    answered: bool


@dataclass(frozen=True, slots=True)
class Rejected:
    status: int
    reason: str
    method: str
    addr: Address


@dataclass(frozen=True, slots=True)
class Dropped:
    reason: str
    addr: Address


@dataclass(frozen=True, slots=True)
class Absorbed:
    what: str


Output = (Send | CallOffered | CallAnswered | CallConfirmed | MediaChanged | CallEnded
          | Rejected | Dropped | Absorbed | RegistrationChanged | MetadataUpdated)
Resolver = Callable[[SipUri, str], Address | None]


class SipCore:
    def __init__(self, settings: CoreSettings, resolve: Resolver) -> None:
        self.settings = settings
        self.draining = False
        self.calls: dict[str, Dialog] = {}
        self._resolve = resolve
        self._txns = txn.TransactionLayer(settings.timers)
        self._by_dialog: dict[tuple[str, str], str] = {}     # (sip Call-ID, local tag) -> call_id
        self._by_invite: dict[txn.TxnKey, str] = {}   # INVITE server txn key -> call_id
        self._bye_keys: dict[txn.TxnKey, str] = {}    # BYE client txn key -> call_id
        self._reg_keys: dict[txn.TxnKey, Registration] = {}   # REGISTER client txn key
        self._rate = RateLimiter(settings.invite_rate_per_s)
        self.registrations: dict[str, Registration] = {}

    # ------------------------------------------------------------------ public input
    @property
    def active_calls(self) -> int:
        return sum(1 for d in self.calls.values() if d.live)

    def receive(self, data: bytes, addr: Address, transport: str, now: float) -> list[Output]:
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            return self._bad_message(exc, addr, transport)
        if isinstance(msg, SipRequest):
            self._stamp_received(msg, addr)
        return self._route(self._txns.receive(msg, addr, transport, now), now)

    def next_deadline(self) -> float | None:
        times = [t for t in (self._txns.next_deadline(),
                             *(r.next_deadline() for r in self.registrations.values()))
                 if t is not None]
        return min(times) if times else None

    def handle_timers(self, now: float) -> list[Output]:
        out = self._route(self._txns.handle_timers(now), now)
        for reg in self.registrations.values():
            deadline = reg.next_deadline()
            if deadline is not None and deadline <= now:
                out += self._registration_outputs(reg, reg.handle_timer(now), now)
        return out

    # ------------------------------------------------------------------ routing
    def _route(self, outputs: Sequence[Any], now: float) -> list[Output]:
        result: list[Output] = []
        for o in outputs:
            result += self._route_one(o, now)
        return result

    def _route_one(self, o: Any, now: float) -> list[Output]:
        if isinstance(o, txn.Transmit):
            return [Send(o.message.to_bytes(), o.addr, o.transport)]
        if isinstance(o, txn.RequestReceived):
            return self._on_request(o, now)
        if isinstance(o, txn.ResponseReceived):
            return self._on_response(o.key, o.response, now)
        if isinstance(o, txn.TransactionTimedOut):
            return self._on_client_timeout(o.key, now)
        if isinstance(o, txn.AckTimedOut):
            call_id = self._call_for_sip_id(o.call_id)
            return self.hangup(call_id, "no ACK for 200 OK", now) if call_id else []
        if isinstance(o, txn.RetransmissionAbsorbed):
            return [Absorbed("retransmission")]
        return [Absorbed(type(o).__name__)]

    def _call_for_sip_id(self, sip_call_id: str) -> str | None:
        for (cid, _tag), call_id in self._by_dialog.items():
            if cid == sip_call_id:
                return call_id
        return None

    def _bad_message(self, exc: SipParseError, addr: Address, transport: str) -> list[Output]:
        req = exc.request
        if req is None or req.method == "ACK":
            return [Dropped(f"parse: {exc.reason}", addr)]
        resp = build_response(req, exc.status, f"Bad Request ({exc.reason})"[:120]
                              if exc.status == 400 else None)
        return [Send(resp.to_bytes(), addr, transport),
                Rejected(exc.status, exc.reason, req.method, addr)]

    @staticmethod
    def _stamp_received(req: SipRequest, addr: Address) -> None:
        """RFC 3581 / 18.2.1: note the real source in the top Via so responses reach it."""
        vias = req.headers.get_all("Via")
        if not vias:
            return
        try:
            top = req.top_via
        except ValueError:
            return
        updates: dict[str, str | None] = {}
        if top.host != addr[0]:
            updates["received"] = addr[0]
        if top.has_param("rport") and top.param("rport") is None:
            updates["rport"] = str(addr[1])
            updates["received"] = addr[0]
        if updates:
            req.headers.set("Via", ", ".join([str(top.with_params(**updates)), *vias[1:]]))

    # ------------------------------------------------------------------ requests
    def _on_request(self, o: txn.RequestReceived, now: float) -> list[Output]:
        req = o.request
        handler = {
            "INVITE": self._on_invite, "ACK": self._on_ack, "BYE": self._on_bye,
            "CANCEL": self._on_cancel, "OPTIONS": self._on_options, "INFO": self._on_info,
            "UPDATE": self._on_update,
        }.get(req.method)
        if handler is not None:
            return handler(o, now)
        status = 405 if req.method in NOT_ALLOWED else 501
        return self._reply(o, status, now, extra=[("Allow", ALLOW)])

    def _reply(self, o: txn.RequestReceived, status: int, now: float, *, reason: str | None = None,
               to_tag: str | None = None, extra: Sequence[tuple[str, str]] = (),
               body: bytes = b"", content_type: str = "") -> list[Output]:
        resp = build_response(o.request, status, reason, to_tag)
        resp.headers.add("Server", self.settings.user_agent)
        for name, value in extra:
            resp.headers.add(name, value)
        if body:
            resp.headers.set("Content-Type", content_type)
            resp.body = body
        out: list[Output] = self._route(self._txns.send_response(o.key, resp, now), now)
        if status >= 300 and o.request.method in ("INVITE", "OPTIONS"):
            out.append(Rejected(status, resp.reason, o.request.method, o.addr))
        return out

    def _refusal(self, o: txn.RequestReceived,
                 now: float) -> tuple[int, str, list[tuple[str, str]]] | None:
        src = normalize_ip(o.addr[0])
        if not allowed(src, self.settings.trunk_allow):
            return 403, "Forbidden (source not in sip.trunk_allow)", []
        if self.draining:
            return 503, "Service Unavailable (draining)", [("Retry-After", "30")]
        if self.active_calls >= self.settings.max_calls:
            return 503, "Service Unavailable (max calls)", [("Retry-After", "5")]
        if not self._rate.allow(src, now):
            return 503, "Service Unavailable (rate limit)", [("Retry-After", "1")]
        unsupported = self._unsupported(o.request)
        if unsupported:
            return 420, "Bad Extension", [("Unsupported", ", ".join(unsupported))]
        return None

    @staticmethod
    def _unsupported(req: SipRequest) -> list[str]:
        return [t for t in req.headers.get_all("Require") if t.lower() not in SUPPORTED_OPTIONS]

    def _on_invite(self, o: txn.RequestReceived, now: float) -> list[Output]:
        if o.request.to.tag is not None:
            return self._on_reinvite(o, now)
        if self._is_known_invite(o.request):
            self._txns.discard(o.key)
            return [Absorbed("late INVITE retransmission")]
        refusal = self._refusal(o, now)
        if refusal is not None:
            status, reason, extra = refusal
            return self._reply(o, status, now, reason=reason, extra=extra)
        offer = self._negotiate(o.request)
        if isinstance(offer, tuple):
            status, reason = offer
            return self._reply(o, status, now, reason=reason,
                               extra=[("Accept", ACCEPT)] if status == 415 else [])
        return self._offer_call(o, offer, now)

    def _is_known_invite(self, req: SipRequest) -> bool:
        """A retransmitted initial INVITE that outlived its transaction (after the ACK)."""
        tag, cseq = req.from_.tag, req.cseq[0]
        return any(d.meta.sip_call_id == req.call_id and d.remote_tag == tag
                   and d.invite.cseq[0] == cseq for d in self.calls.values())

    def _negotiate(self, req: SipRequest) -> MediaOffer | tuple[int, str]:
        """The request's offer (plain SDP, or SIPREC multipart with metadata) and our plan."""
        if not req.body:
            return 488, "Not Acceptable Here (offerless INVITE not supported)"
        body = _split_body(req)
        if isinstance(body, tuple):
            return body
        sdp_body, parts = body.sdp, body.parts
        if not sdp_body:
            return 415, "Unsupported Media Type (no application/sdp part)"
        siprec = is_siprec_invite(req.headers, parts)
        metadata, problem = _siprec_metadata(parts) if siprec else (None, None)
        if problem is not None and self.settings.siprec_metadata_required:
            return 400, f"Bad Request (SIPREC metadata: {problem[:80]})"
        try:
            offer = parse_sdp(sdp_body)
            plan = negotiate(offer, codecs=self.settings.codecs,
                             telephone_event=self.settings.telephone_event,
                             default_ptime_ms=self.settings.ptime_ms, recv_only=siprec)
        except NoAcceptableMedia as exc:
            return 488, f"Not Acceptable Here ({str(exc)[:80]})"
        except SdpError as exc:
            return 400, f"Bad Request (SDP: {str(exc)[:80]})"
        return MediaOffer(offer, plan, siprec, metadata, problem)

    def _offer_call(self, o: txn.RequestReceived, media: MediaOffer,
                    now: float) -> list[Output]:
        req = o.request
        call_id = "c-" + secrets.token_hex(8)
        meta = self._metadata(call_id, req, o.addr, o.transport)
        dialog = Dialog(meta=meta, invite=req, invite_key=o.key, local_tag=secrets.token_hex(8),
                        remote_tag=req.from_.tag, offer=media.sdp, plan=media.plan,
                        addr=o.addr, transport=o.transport, remote_cseq=req.cseq[0],
                        siprec=media.siprec)
        self.calls[call_id] = dialog
        self._by_dialog[(req.call_id, dialog.local_tag)] = call_id
        self._by_invite[o.key] = call_id
        out = self._reply(o, 100, now)
        if self.settings.send_ringing:
            out += self._reply(o, 180, now, to_tag=dialog.local_tag,
                               extra=self._dialog_headers(dialog))
            dialog.move(CallState.EARLY)
        out.append(CallOffered(call_id, meta, media.plan, media))
        return out

    def _metadata(self, call_id: str, req: SipRequest, addr: Address,
                  transport: str) -> CallMetadata:
        wanted = {h.lower() for h in self.settings.copy_headers}
        copied = tuple((n, v) for n, v in req.headers.items() if n.lower() in wanted)
        src = (normalize_ip(addr[0]), addr[1])
        frm = req.from_
        return CallMetadata(call_id, req.call_id, str(frm.uri), frm.display, str(req.to.uri),
                            req.uri, src, transport, copied)

    def _contact(self, transport: str, srs: bool = False) -> str:
        host = self.settings.local_host
        host = f"[{host}]" if ":" in host else host
        tp = ";transport=tcp" if transport.lower() == "tcp" else ""
        feature = ";+sip.srs" if srs else ""
        return f"<sip:gateway@{host}:{self.settings.local_port}{tp}>{feature}"

    def _dialog_headers(self, d: Dialog) -> list[tuple[str, str]]:
        rr = [("Record-Route", v) for v in d.invite.headers.get_all("Record-Route")]
        contact = self._contact(d.transport, srs=d.siprec)
        return [*rr, ("Contact", contact), ("Allow", ALLOW)]

    def answer(self, call_id: str, media_address: str, ports: Sequence[int | None],
               now: float) -> list[Output]:
        """The shell has RTP ports for an offered call: send 200 OK with the SDP answer."""
        d = self.calls.get(call_id)
        if d is None or d.state not in (CallState.OFFERED, CallState.EARLY):
            return []        # cancelled meanwhile: the shell frees the ports on CallEnded
        d.media_address, d.media_ports = media_address, tuple(ports)
        d.sdp_session_id = int.from_bytes(secrets.token_bytes(4), "big")
        d.answer_sdp = build_answer(d.offer, d.plan, local_address=media_address, ports=ports,
                                    session_id=d.sdp_session_id,
                                    session_version=d.sdp_version)
        d.move(CallState.ANSWERED)
        out = self._reply(_as_received(d), 200, now, to_tag=d.local_tag,
                          extra=self._dialog_headers(d), body=d.answer_sdp,
                          content_type="application/sdp")
        out.append(CallAnswered(call_id))
        return out

    def reject(self, call_id: str, status: int, reason: str, now: float) -> list[Output]:
        """Refuse an offered call (e.g. no RTP port left -> 503)."""
        d = self.calls.get(call_id)
        if d is None or d.state not in (CallState.OFFERED, CallState.EARLY):
            return []
        out = self._reply(_as_received(d), status, now, reason=reason, to_tag=d.local_tag)
        return out + self._end(d, reason, "local")

    def _end(self, d: Dialog, reason: str, by: str) -> list[Output]:
        answered = d.answered
        d.move(CallState.ENDED)
        d.end_reason = reason
        self.calls.pop(d.call_id, None)
        self._by_dialog.pop((d.meta.sip_call_id, d.local_tag), None)
        self._by_invite.pop(d.invite_key, None)
        return [CallEnded(d.call_id, reason, by, answered)]

    def _find_dialog(self, req: SipRequest) -> Dialog | None:
        call_id = self._by_dialog.get((req.call_id, req.to.tag or ""))
        return self.calls.get(call_id) if call_id else None

    def _on_ack(self, o: txn.RequestReceived, now: float) -> list[Output]:
        d = self._find_dialog(o.request)
        if d is None or d.state is not CallState.ANSWERED:
            return [Absorbed("ack")]
        d.move(CallState.CONFIRMED)
        return [CallConfirmed(d.call_id)]

    def _on_bye(self, o: txn.RequestReceived, now: float) -> list[Output]:
        d = self._find_dialog(o.request)
        if d is None:
            return self._reply(o, 481, now)
        out = self._reply(o, 200, now)
        if d.state is CallState.ENDING:
            return out          # BYE glare: ours is in flight; its response ends the call
        if d.state in (CallState.OFFERED, CallState.EARLY):     # 15.1.2: answer the INVITE
            out += self._reply(_as_received(d), 487, now, to_tag=d.local_tag)
        return out + self._end(d, "remote hangup", "remote")

    def _on_cancel(self, o: txn.RequestReceived, now: float) -> list[Output]:
        call_id = self._by_invite.get(txn.server_key(o.request, method="INVITE"))
        d = self.calls.get(call_id) if call_id else None
        if d is None:   # a live INVITE transaction without a call (already refused): 200
            live = self._txns.find_invite_for_cancel(o.request) is not None
            return self._reply(o, 200 if live else 481, now)
        out = self._reply(o, 200, now)
        if d.state in (CallState.OFFERED, CallState.EARLY):
            out += self._reply(_as_received(d), 487, now, to_tag=d.local_tag)
            out += self._end(d, "cancelled", "remote")
        return out

    def _on_options(self, o: txn.RequestReceived, now: float) -> list[Output]:
        extra = [("Allow", ALLOW), ("Accept", "application/sdp")]
        if o.request.to.tag is None and (self.draining
                                         or self.active_calls >= self.settings.max_calls):
            return self._reply(o, 503, now, reason="Service Unavailable (draining)"
                               if self.draining else "Service Unavailable (max calls)",
                               extra=extra)
        return self._reply(o, 200, now, extra=extra)

    def _on_info(self, o: txn.RequestReceived, now: float) -> list[Output]:
        return self._reply(o, 200 if self._find_dialog(o.request) else 481, now)

    def _on_update(self, o: txn.RequestReceived, now: float) -> list[Output]:
        """UPDATE carrying new SIPREC metadata (RFC 7866 8.2.2); SDP in UPDATE is refused."""
        d = self._find_dialog(o.request)
        if d is None:
            return self._reply(o, 481, now)
        body = _split_body(o.request) if o.request.body else _Body(b"", ())
        if isinstance(body, tuple):
            return self._reply(o, body[0], now, reason=body[1])
        if body.sdp:
            return self._reply(o, 488, now, reason="Not Acceptable Here (SDP in UPDATE)")
        if not body.parts:
            return self._reply(o, 200, now)
        metadata, problem = _siprec_metadata(body.parts)
        out = self._reply(o, 200, now)
        if metadata is not None or problem is not None:
            out.append(MetadataUpdated(d.call_id, metadata, problem))
        return out

    def _on_reinvite(self, o: txn.RequestReceived, now: float) -> list[Output]:
        d = self._find_dialog(o.request)
        if d is None or d.state not in (CallState.ANSWERED, CallState.CONFIRMED):
            return self._reply(o, 481, now)
        if not o.request.body:     # offerless re-INVITE: re-offer what we have
            return self._reply(o, 200, now, extra=self._dialog_headers(d), body=d.answer_sdp,
                               content_type="application/sdp")
        media = self._negotiate(o.request)
        if isinstance(media, tuple):
            return self._reply(o, media[0], now, reason=media[1])
        plan = media.plan
        ports = _ports_for(plan, d.media_ports)
        if any(s.accepted and p is None for s, p in zip(plan.streams, ports, strict=True)):
            return self._reply(o, 488, now, reason="Not Acceptable Here (new media stream)")
        d.offer, d.plan = media.sdp, plan
        d.sdp_version += 1
        d.answer_sdp = build_answer(d.offer, plan, local_address=d.media_address,
                                    ports=ports, session_id=d.sdp_session_id,
                                    session_version=d.sdp_version)
        out = self._reply(o, 200, now, extra=self._dialog_headers(d), body=d.answer_sdp,
                          content_type="application/sdp")
        return out + [MediaChanged(d.call_id, plan, media)]

    # ------------------------------------------------------------------ local hangup
    def hangup(self, call_id: str, reason: str, now: float) -> list[Output]:
        d = self.calls.get(call_id)
        if d is None:
            return []
        if d.state in (CallState.OFFERED, CallState.EARLY):
            return self.reject(call_id, 480 if not self.draining else 503, reason, now)
        if d.state is CallState.ENDING:
            return []
        d.move(CallState.ENDING)
        d.end_reason = reason
        bye = self._bye(d)
        key, outputs = self._txns.send_request(bye, d.addr, d.transport, now)
        self._bye_keys[key] = d.call_id
        return self._route(outputs, now)

    def _bye(self, d: Dialog) -> SipRequest:
        d.local_cseq += 1
        inv = d.invite
        host = self.settings.local_host
        host = f"[{host}]" if ":" in host else host
        h = Headers()
        h.add("Via", f"SIP/2.0/{d.transport.upper()} {host}:{self.settings.local_port}"
                     f";branch={new_branch()};rport")
        for route in inv.headers.get_all("Record-Route"):     # UAS: in order (12.1.1)
            h.add("Route", route)
        h.add("Max-Forwards", "70")
        h.add("From", str(inv.to.with_tag(d.local_tag)))
        h.add("To", inv.headers.get("From") or "")
        h.add("Call-ID", inv.call_id)
        h.add("CSeq", f"{d.local_cseq} BYE")
        h.add("User-Agent", self.settings.user_agent)
        h.add("Reason", 'SIP;cause=200;text="' + d.end_reason.replace('"', "'")[:60] + '"')
        return SipRequest("BYE", _remote_target(inv), h)

    # ------------------------------------------------------------------ responses / timeouts
    def _on_response(self, key: txn.TxnKey, resp: SipResponse, now: float) -> list[Output]:
        if key in self._reg_keys:
            reg = self._reg_keys[key]
            if resp.status < 200:
                return []
            del self._reg_keys[key]
            self._learn_rport(reg, resp)
            return self._registration_outputs(reg, reg.on_response(resp, now), now)
        call_id = self._bye_keys.pop(key, None) if resp.status >= 200 else None
        d = self.calls.get(call_id) if call_id else None
        return self._end(d, d.end_reason, "local") if d is not None else []

    def _on_client_timeout(self, key: txn.TxnKey, now: float) -> list[Output]:
        reg = self._reg_keys.pop(key, None)
        if reg is not None:
            return self._registration_outputs(reg, reg.on_timeout(now), now)
        call_id = self._bye_keys.pop(key, None)
        d = self.calls.get(call_id) if call_id else None
        return self._end(d, d.end_reason + " (BYE timed out)", "local") if d else []

    @staticmethod
    def _learn_rport(reg: Registration, resp: SipResponse) -> None:
        try:
            via = resp.top_via
        except ValueError:
            return
        received, rport = via.param("received"), via.param("rport")
        if received and rport and rport.isdigit():
            reg.update_local_address(received, int(rport))

    # ------------------------------------------------------------------ registrations
    def add_registration(self, reg: Registration, now: float) -> list[Output]:
        self.registrations[reg.account_name] = reg
        return self._registration_outputs(reg, reg.start(now), now)

    def remove_registration(self, name: str, now: float) -> list[Output]:
        reg = self.registrations.pop(name, None)
        return self._registration_outputs(reg, reg.unregister(now), now) if reg else []

    def unregister_all(self, now: float) -> list[Output]:
        out: list[Output] = []
        for reg in self.registrations.values():
            out += self._registration_outputs(reg, reg.unregister(now), now)
        return out

    def _registration_outputs(self, reg: Registration, outputs: Sequence[RegOutput],
                              now: float) -> list[Output]:
        """Act for ``reg`` (which may already be removed from ``registrations``)."""
        result: list[Output] = []
        for o in outputs:
            if isinstance(o, SendRegister):
                result += self._send_register(reg, o, now)
            else:
                result.append(o)
        return result

    def _send_register(self, reg: Registration, o: SendRegister, now: float) -> list[Output]:
        transport = o.request.top_via.transport.lower()
        addr = self._resolve(o.destination, transport)
        if addr is None:
            return self._registration_outputs(reg, reg.on_timeout(now), now)
        key, outputs = self._txns.send_request(o.request, addr, transport, now)
        self._reg_keys[key] = reg
        return self._route(outputs, now)


@dataclass(frozen=True, slots=True)
class _Body:
    sdp: bytes
    parts: tuple[BodyPart, ...]


def _split_body(req: SipRequest) -> _Body | tuple[int, str]:
    """SDP bytes and all body parts of an SDP, metadata-only or multipart/mixed body."""
    header = req.headers.get("Content-Type") or ""
    ctype = header.split(";")[0].strip().lower()
    if ctype == "application/sdp":
        return _Body(req.body, ())
    if ctype == METADATA_TYPE:
        return _Body(b"", (BodyPart(METADATA_TYPE, (), None, (), req.body),))
    if ctype != "multipart/mixed":
        return 415, "Unsupported Media Type"
    try:
        parts = parse_multipart(header, req.body)
    except MultipartError as exc:
        return 400, f"Bad Request (multipart: {str(exc)[:80]})"
    sdp = find_part(parts, "application/sdp")
    return _Body(sdp.body if sdp is not None else b"", parts)


def _siprec_metadata(parts: Sequence[BodyPart]) -> tuple[RecordingMetadata | None, str | None]:
    part = find_part(parts, METADATA_TYPE)
    if part is None:
        return None, "no rs-metadata part"
    try:
        return parse_metadata(part.body), None
    except SiprecError as exc:
        return None, str(exc)


def _remote_target(invite: SipRequest) -> str:
    """The INVITE's (first) Contact URI, else its From URI (12.1.1)."""
    contacts = invite.headers.get_all("Contact")
    try:
        return str(parse_name_addr(contacts[0]).uri) if contacts else str(invite.from_.uri)
    except SipHeaderError:
        return str(invite.from_.uri)


def _as_received(d: Dialog) -> txn.RequestReceived:
    return txn.RequestReceived(d.invite, d.addr, d.transport, d.invite_key)


def _ports_for(plan: AnswerPlan, ports: tuple[int | None, ...]) -> list[int | None]:
    return [ports[s.index] if s.accepted and s.index < len(ports) else None for s in plan.streams]
