"""The SIP shell: sockets, timers, DNS, RTP ports and call bookkeeping around :class:`SipCore`.

The call side is a :class:`~gateway.sip.callside.CallSide` handed over at construction; the
core's outputs are dispatched by type in :meth:`SipService._dispatch` (one branch per output
type, mypy checks none is missing; an unknown one is logged and counted, never dropped
silently).

Layer: shell.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any, Never

from gateway.config import GatewayConfig, SipAccount
from gateway.events.bus import EventBus
from gateway.events.types import CallRejected
from gateway.logs import get_logger
from gateway.metrics import Metrics
from gateway.sip import core as sipcore
from gateway.sip.callside import CallSide
from gateway.sip.dialog import Address
from gateway.sip.liveness import DispatchHealth
from gateway.sip.message import SipUri, parse_uri
from gateway.sip.registration import Registration, RegistrationChanged, RegState
from gateway.sip.sdp import AnswerPlan
from gateway.sip.transaction import TimerConfig
from gateway.sip.transport import SipTransports

UNREGISTER_WAIT_S = 3.0
BYE_WAIT_S = 5.0
STATIC_PT = {"PCMU": 0, "PCMA": 8}


def _wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _primary_address(v6: bool) -> str:
    """The address the host would use to reach the outside (no packet is sent)."""
    family, probe = (socket.AF_INET6, "2001:db8::1") if v6 else (socket.AF_INET, "192.0.2.1")
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            return str(s.getsockname()[0])
    except OSError:
        return "::1" if v6 else "127.0.0.1"


class SipService:
    def __init__(self, config: GatewayConfig, metrics: Metrics, events: EventBus,
                 calls: CallSide) -> None:
        self.config = config
        self._metrics = metrics
        self._events = events
        self._log = get_logger("sip")
        self._transports = SipTransports(self._on_datagram, self._on_stream_error)
        self._health = DispatchHealth()
        self.calls = calls
        calls.bind(self)
        self._core: sipcore.SipCore | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._resolved: dict[tuple[str, int | None, str], Address] = {}
        self._reg_states: dict[str, RegistrationChanged] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        sip = self.config.sip
        port = await self._transports.start(sip.bind_address, sip.port, sip.transports)
        self._transports.trace_enabled = self.config.logging.sip_trace
        self._core = sipcore.SipCore(self._settings(self.config, port), self._lookup)
        self._log.info("sip.listening", address=sip.bind_address, port=port,
                       transports=list(sip.transports))

    def _settings(self, cfg: GatewayConfig, port: int) -> sipcore.CoreSettings:
        sip, rtp = cfg.sip, cfg.rtp
        host = sip.advertised_address or sip.bind_address
        if _wildcard(host):
            host = _primary_address(":" in sip.bind_address)
        return sipcore.CoreSettings(
            local_host=host, local_port=port, user_agent=sip.user_agent,
            max_calls=sip.max_calls, trunk_allow=sip.trunk_allow,
            invite_rate_per_s=sip.invite_rate_per_s, send_ringing=sip.send_ringing,
            copy_headers=_headers_to_copy(cfg), codecs=rtp.codecs,
            telephone_event=rtp.telephone_event, ptime_ms=rtp.ptime_ms,
            timers=TimerConfig(t1_s=sip.t1_ms / 1000, t2_s=sip.t2_ms / 1000),
            siprec_metadata_required=cfg.siprec.metadata_required)

    def listening(self) -> dict[str, Any]:
        return {"address": self.config.sip.bind_address, "port": self._transports.port,
                "transports": list(self.config.sip.transports)}

    def is_listening(self) -> bool:
        return self._core is not None

    @property
    def port(self) -> int:
        return self._transports.port

    @property
    def core(self) -> sipcore.SipCore:
        assert self._core is not None, "SipService.start() first"
        return self._core

    @property
    def active_calls(self) -> int:
        return self.calls.active

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.calls.stop()
        await self._transports.stop()

    # ----------------------------------------------------------------- core plumbing
    def _on_datagram(self, data: bytes, addr: Address, transport: str) -> None:
        self._metrics.sip_messages.labels(direction="in", transport=transport).inc()
        self._drive(lambda now: self.core.receive(data, addr, transport, now))

    def _on_stream_error(self, addr: Address, exc: Exception) -> None:
        self._metrics.sip_dropped.labels(reason="stream").inc()
        self._log.warning("sip.stream_error", peer=f"{addr[0]}:{addr[1]}", error=str(exc))

    def _drive(self, step: Any) -> None:
        """Run one core step, act on its outputs, re-arm the timer. Never raises."""
        try:
            outputs = step(self._loop.time())
            self._act(outputs)
            self._health.step_done(True)
        except Exception as exc:  # a bug must cost one message, not the daemon
            self._health.step_done(False, f"{type(exc).__name__}: {exc}")
            self._metrics.sip_dropped.labels(reason="internal_error").inc()
            self._log.exception("sip.internal_error")
        finally:
            self._arm_timer()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """For /readyz: sockets open, dispatch not failing, timers firing (sip/liveness.py)."""
        deadline = self._core.next_deadline() if self._core is not None else None
        ok, detail = self._health.check(self._loop.time(), deadline)
        sockets = self._transports.is_open()
        return ok and sockets, {**detail, "ok": ok and sockets, "sockets_open": sockets}

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.core.next_deadline() if self._core is not None else None
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._drive(self.core.handle_timers)

    def _act(self, outputs: Sequence[sipcore.Output]) -> None:
        for o in outputs:
            self._dispatch(o)

    def _dispatch(self, o: sipcore.Output) -> None:
        match o:
            case sipcore.Send():
                self._on_Send(o)
            case sipcore.Dropped():
                self._on_Dropped(o)
            case sipcore.Absorbed():
                self._on_Absorbed(o)
            case sipcore.Rejected():
                self._on_Rejected(o)
            case sipcore.CallOffered():
                self._on_CallOffered(o)
            case sipcore.MetadataUpdated():
                self._on_MetadataUpdated(o)
            case sipcore.CallAnswered():
                self._on_CallAnswered(o)
            case sipcore.CallConfirmed():
                self._on_CallConfirmed(o)
            case sipcore.MediaChanged():
                self._on_MediaChanged(o)
            case sipcore.CallEnded():
                self._on_CallEnded(o)
            case RegistrationChanged():
                self._on_RegistrationChanged(o)
            case _:
                self._unhandled(o)

    def _unhandled(self, o: Never) -> None:
        """An output type :meth:`_dispatch` has no branch for (mypy flags the gap before)."""
        self._metrics.sip_dropped.labels(reason="unhandled_output").inc()
        self._log.error("sip.unhandled_output", output=type(o).__name__)

    def _on_Send(self, o: sipcore.Send) -> None:
        self._metrics.sip_messages.labels(direction="out", transport=o.transport).inc()
        self._transports.send(o.data, o.addr, o.transport)

    def _on_Dropped(self, o: sipcore.Dropped) -> None:
        self._metrics.sip_dropped.labels(reason=o.reason.split(":")[0]).inc()
        self._log.info("sip.dropped", reason=o.reason, source=f"{o.addr[0]}:{o.addr[1]}")

    def _on_Absorbed(self, o: sipcore.Absorbed) -> None:
        self._metrics.sip_retransmissions.labels(direction="in").inc()

    def _on_Rejected(self, o: sipcore.Rejected) -> None:
        if o.method == "INVITE":
            self._metrics.calls.labels(outcome=f"rejected_{o.status}").inc()
            self._events.emit(CallRejected(status=o.status, reason=o.reason,
                                           source=f"{o.addr[0]}:{o.addr[1]}"))
        elif o.status >= 400 and o.method != "OPTIONS":
            self._log.info("sip.rejected", method=o.method, status=o.status, reason=o.reason)

    # ----------------------------------------------------------------- calls
    def _on_CallOffered(self, o: sipcore.CallOffered) -> None:
        self.calls.offered(o.call_id, o.meta, o.plan, o.media)

    def _on_MetadataUpdated(self, o: sipcore.MetadataUpdated) -> None:
        self.calls.metadata_updated(o.call_id, o.metadata, o.error)

    def answer(self, call_id: str, ports: Sequence[int | None]) -> None:
        host = self._media_host()
        self._drive(lambda now: self.core.answer(call_id, host, ports, now))

    def reject(self, call_id: str, status: int, reason: str) -> None:
        self._drive(lambda now: self.core.reject(call_id, status, reason, now))

    def _media_host(self) -> str:
        rtp = self.config.rtp
        host = rtp.advertised_address or rtp.bind_address
        return self.core.settings.local_host if _wildcard(host) else host

    def _on_CallAnswered(self, o: sipcore.CallAnswered) -> None:
        self.calls.answered(o.call_id)

    def _on_CallConfirmed(self, o: sipcore.CallConfirmed) -> None:
        self.calls.confirmed(o.call_id)

    def _on_MediaChanged(self, o: sipcore.MediaChanged) -> None:
        self.calls.media_changed(o.call_id, o.plan)
        if o.media is not None and o.media.siprec:
            self.calls.metadata_updated(o.call_id, o.media.metadata, o.media.metadata_error)

    def _on_CallEnded(self, o: sipcore.CallEnded) -> None:
        self.calls.ended(o.call_id, o.reason, o.by, o.answered)

    def hangup(self, call_id: str, reason: str) -> bool:
        """BYE/CANCEL; False when the call is gone already (RTP timeout or bot after a BYE)."""
        if call_id not in self.core.calls:
            return False
        self._drive(lambda now: self.core.hangup(call_id, reason, now))
        return True

    def calls_summary(self) -> list[dict[str, Any]]:
        return self.calls.summaries()

    def call_summary(self, call_id: str) -> dict[str, Any] | None:
        return self.calls.summary(call_id)

    # ----------------------------------------------------------------- drain
    def set_draining(self, draining: bool) -> None:
        self.core.draining = draining

    async def wait_calls_ended(self, timeout_s: float) -> bool:
        return await self.calls.wait_idle(timeout_s)

    async def hangup_all(self, reason: str) -> None:
        live = list(self.core.calls)
        if not live:
            await self.calls.wait_idle(BYE_WAIT_S)
            return
        self._log.info("sip.hangup_all", calls=len(live), reason=reason)
        for call_id in live:
            self.hangup(call_id, reason)
        await self.calls.wait_idle(BYE_WAIT_S + self.config.triton.final_timeout_s)

    # ----------------------------------------------------------------- registration
    def start_registrations(self) -> None:
        for account in self.config.sip.accounts:
            self._spawn(self._register(account), f"register {account.name}")

    async def _register(self, account: SipAccount) -> None:
        await self._resolve_account(account)
        reg = Registration(account, local_host=self.core.settings.local_host,
                           local_port=self.port, transport=account.transport,
                           user_agent=self.config.sip.user_agent)
        self._drive(lambda now: self.core.add_registration(reg, now))

    async def _resolve_account(self, account: SipAccount) -> None:
        targets = [account.outbound_proxy] if account.outbound_proxy else list(account.registrars)
        for text in targets:
            uri = parse_uri(text)
            key = (uri.host, uri.port, account.transport)
            try:
                infos = await self._loop.getaddrinfo(uri.host, uri.port or 5060,
                                                     type=socket.SOCK_DGRAM)
            except OSError as exc:
                self._log.error("sip.resolve_failed", account=account.name, host=uri.host,
                                error=str(exc))
                continue
            self._resolved[key] = (str(infos[0][4][0]), int(infos[0][4][1]))

    def _lookup(self, uri: SipUri, transport: str) -> Address | None:
        try:
            ipaddress.ip_address(uri.host)
            return (uri.host, uri.port or 5060)
        except ValueError:
            return self._resolved.get((uri.host, uri.port, transport))

    def _on_RegistrationChanged(self, o: RegistrationChanged) -> None:
        self._reg_states[o.account] = o
        self._metrics.registration.labels(account=o.account).set(
            1 if o.state is RegState.REGISTERED else 0)
        level = "info" if o.state is not RegState.FAILED else "error"
        getattr(self._log, level)(f"sip.{o.state.name.lower()}", account=o.account,
                                  registrar=o.registrar, code=o.code, reason=o.reason,
                                  expires_s=o.expires_s)

    def registration_states(self) -> dict[str, bool]:
        return {a.name: (self._reg_states.get(a.name) is not None
                         and self._reg_states[a.name].state is RegState.REGISTERED)
                for a in self.config.sip.accounts}

    def registration_details(self) -> dict[str, RegistrationChanged]:
        return dict(self._reg_states)

    async def unregister_all(self) -> None:
        if not self.core.registrations:
            return
        self._drive(self.core.unregister_all)
        deadline = self._loop.time() + UNREGISTER_WAIT_S
        while self._loop.time() < deadline and any(
                r.state is RegState.UNREGISTERING for r in self.core.registrations.values()):
            await asyncio.sleep(0.05)

    # ----------------------------------------------------------------- reload
    def apply_config(self, new: GatewayConfig) -> None:
        old = self.config
        self.config = new
        self._transports.trace_enabled = new.logging.sip_trace
        self.core.settings = self._settings(new, self.port)
        if new.sip.accounts != old.sip.accounts:
            self._reload_accounts(old.sip.accounts, new.sip.accounts)

    def _reload_accounts(self, old: Sequence[SipAccount], new: Sequence[SipAccount]) -> None:
        new_by_name = {a.name: a for a in new}
        for account in old:
            if new_by_name.get(account.name) != account:
                self._reg_states.pop(account.name, None)
                self._drive(lambda now, n=account.name: self.core.remove_registration(n, now))
        old_set = set(old)
        for account in new:
            if account not in old_set:
                self._spawn(self._register(account), f"register {account.name}")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _codec(plan: AnswerPlan | None) -> str | None:
    if plan is None or not plan.accepted:
        return None
    return plan.accepted[0].encoding


def _headers_to_copy(cfg: GatewayConfig) -> tuple[str, ...]:
    """sip.copy_headers plus every header the channel rules, the joiner and consent look at."""
    wanted = list(cfg.sip.copy_headers)
    extra = [r.header for r in cfg.channels.rules if r.header]
    extra += [h for h in (cfg.consent.header, *(r.header for r in cfg.consent.rules)) if h]
    if cfg.channels.correlation_header:
        extra.append(cfg.channels.correlation_header)
    known = {h.lower() for h in wanted}
    for header in extra:
        if header.lower() not in known:
            wanted.append(header)
            known.add(header.lower())
    return tuple(wanted)
