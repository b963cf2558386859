"""The consent of live calls: decisions at offer time, the keypad question, the control API.

:class:`LiveConsent` is owned by the call registry. At ``offered`` it runs the pure policy
(:func:`~gateway.consent.policy.decide`) on the call's facts and records each decision; at
the ACK it asks ``consent.ivr_prompt`` (spoken through the call's voice) of the channels no
source decided, and a keypad digit from a channel answers for it; the timeout runs from the
end of the prompt (its ``tts.finished``/``interrupted``/``failed`` on the bus). Every
decision goes into the :class:`~gateway.consent.store.ConsentStore` first and then out as
``consent.granted``/``consent.declined``; a decision the store did not keep is logged
(``consent.store_failed``) and not announced. Withdrawals (``consent.withdrawn``) work with
or without a live call of the conversation.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.channels import uri_user
from gateway.config import GatewayConfig
from gateway.consent.policy import (
    SOURCE_API,
    ChannelConsent,
    ConsentFacts,
    ConsentRecord,
    ConsentRefused,
    ConsentValueError,
    IvrQuestion,
    decide,
    latest_per_channel,
    parse_channels,
)
from gateway.consent.store import ConsentStore, ConsentWithdrawnError
from gateway.events.bus import EventBus
from gateway.events.types import (
    ConsentDeclined,
    ConsentGranted,
    ConsentWithdrawn,
    Envelope,
    ReplyFailed,
    ReplyFinished,
    ReplyInterrupted,
)
from gateway.logs import get_logger

if TYPE_CHECKING:
    from gateway.sip.dialog import CallMetadata
    from gateway.sip.siprec import RecordingMetadata

PROMPT_SOURCE = "consent_prompt"
Say = Callable[[str], str | None]
"""Speak a prompt (not interruptible): its reply id, or None when the call cannot speak."""


@dataclass(slots=True)
class _CallConsent:
    call_id: str
    conversation_id: str
    channels: tuple[str, ...]
    decided: dict[str, ConsentRecord] = field(default_factory=dict)
    ivr: IvrQuestion | None = None
    prompt_id: str | None = None
    timer: asyncio.TimerHandle | None = None


class LiveConsent:
    def __init__(self, config: GatewayConfig, events: EventBus, store: ConsentStore | None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self._events, self._clock = events, clock
        self._log = get_logger("consent")
        self._calls: dict[str, _CallConsent] = {}
        events.subscribe(self._on_event)

    def apply_config(self, config: GatewayConfig) -> None:
        self.config = config

    # ----------------------------------------------------------------- call lifecycle
    def offered(self, call_id: str, conversation_id: str, channels: Sequence[str],
                facts: ConsentFacts) -> None:
        if not self.config.consent.enabled:
            return
        call = _CallConsent(call_id, conversation_id, tuple(dict.fromkeys(channels)))
        self._calls[call_id] = call
        for decision in decide(self.config.consent, facts):
            self._apply(call, decision)

    def ask(self, call_id: str, say: Say) -> None:
        """At the ACK: the keypad question to the channels no source decided."""
        call = self._calls.get(call_id)
        prompt = self.config.consent.ivr_prompt
        if call is None or not prompt:
            return
        undecided = [ch for ch in call.channels if ch not in call.decided]
        if not undecided:
            return
        reply_id = say(prompt)
        if reply_id is None:
            self._log.warning("consent.ivr_unavailable", call_id=call_id,
                              why="the call cannot play the prompt (TTS off, receive-only)")
            return
        call.ivr, call.prompt_id = IvrQuestion(self.config.consent, undecided), reply_id

    def dtmf(self, call_id: str, channel: str, digit: str) -> None:
        call = self._calls.get(call_id)
        if call is None or call.ivr is None:
            return
        decision = call.ivr.on_digit(channel, digit)
        if decision is not None:
            self._apply(call, decision)
            self._ivr_over(call)

    def ended(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        if call is not None and call.timer is not None:
            call.timer.cancel()

    def _on_event(self, envelope: Envelope) -> None:
        event = envelope.event
        if not isinstance(event, ReplyFinished | ReplyInterrupted | ReplyFailed):
            return
        call = self._calls.get(event.call_id)
        if call is None or call.ivr is None or call.prompt_id != event.reply_id:
            return
        call.ivr.prompt_done(self._clock())
        loop = asyncio.get_running_loop()
        call.timer = loop.call_later(self.config.consent.ivr_timeout_s, self._expire, call)

    def _expire(self, call: _CallConsent) -> None:
        call.timer = None
        if call.ivr is None or self._calls.get(call.call_id) is not call:
            return
        now = max(self._clock(), call.ivr.deadline or 0.0)   # the timer fired: it is due
        for decision in call.ivr.on_timer(now):
            self._apply(call, decision)
        self._ivr_over(call)

    @staticmethod
    def _ivr_over(call: _CallConsent) -> None:
        if call.ivr is not None and call.ivr.done:
            call.ivr = None
            if call.timer is not None:
                call.timer.cancel()
                call.timer = None

    # ----------------------------------------------------------------- recording decisions
    def _apply(self, call: _CallConsent, decision: ChannelConsent,
               purpose: str | None = None) -> ConsentRecord | None:
        rec = decision.record(call.conversation_id, call.call_id, self.config.consent,
                              round(self._clock(), 6), purpose)
        if self.store is None:
            self._log.error("consent.store_failed", call_id=call.call_id,
                            error="no consent store")
            return None
        try:
            self.store.record(rec)
        except ConsentWithdrawnError as exc:
            self._log.warning("consent.grant_refused", call_id=call.call_id, why=str(exc))
            return None
        except sqlite3.Error as exc:
            self._log.error("consent.store_failed", call_id=call.call_id, error=str(exc))
            return None
        if rec.purpose == self.config.consent.purpose:
            call.decided[rec.channel] = rec
        kind = ConsentGranted if rec.granted else ConsentDeclined
        self._events.emit(kind(call_id=rec.call_id, conversation_id=rec.conversation_id,
                               channel=rec.channel, purpose=rec.purpose, source=rec.source,
                               at=rec.at, policy_version=rec.policy_version,
                               evidence=rec.evidence))
        return rec

    # ----------------------------------------------------------------- control API
    def set(self, call_id: str, *, granted: bool, channels: Sequence[str],
            purpose: str | None, source: str = SOURCE_API,
            evidence: str = "control API") -> list[ConsentRecord]:
        """Grant or decline channels of a live call (all of its own when ``channels`` is
        empty); :class:`ConsentRefused` for an unknown call, a bad channel, a withdrawal."""
        if not self.config.consent.enabled:
            raise ConsentRefused(503, "consent is off: [consent] enabled = false")
        call = self._calls.get(call_id)
        if call is None:
            raise ConsentRefused(404, "unknown call")
        try:
            wanted = parse_channels(channels, call.channels)
        except ConsentValueError as exc:
            raise ConsentRefused(400, str(exc)) from None
        foreign = [ch for ch in wanted if ch not in call.channels]
        if foreign:
            raise ConsentRefused(400, f"the call has no {foreign[0]} channel "
                                      f"(its channels: {', '.join(call.channels)})")
        if granted and self._withdrawn(call.conversation_id):
            raise ConsentRefused(409, "consent of this conversation was withdrawn")
        out = []
        for channel in wanted:
            if call.ivr is not None and channel in call.ivr.waiting:
                call.ivr.waiting.remove(channel)
            rec = self._apply(call, ChannelConsent(channel, granted, source, evidence), purpose)
            if rec is None:
                raise ConsentRefused(503, "the consent store did not keep the decision")
            out.append(rec)
        self._ivr_over(call)
        return out

    def withdraw(self, conversation_id: str, *, reason: str, source: str) -> dict[str, Any]:
        """Withdraw a conversation's consent (live or long ended); ``consent.withdrawn``."""
        try:
            return self._withdraw(conversation_id, reason, source)
        except sqlite3.Error as exc:
            self._log.error("consent.store_failed", conversation_id=conversation_id,
                            error=str(exc))
            raise ConsentRefused(503, f"the consent store failed: {exc}") from None

    def _withdraw(self, conversation_id: str, reason: str, source: str) -> dict[str, Any]:
        live = [c for c in self._calls.values() if c.conversation_id == conversation_id]
        if self.store is None:
            raise ConsentRefused(503, "no consent store")
        if not live and not self.store.known(conversation_id):
            raise ConsentRefused(404, "unknown conversation (no consent recorded for it)")
        at = round(self._clock(), 6)
        count = self.store.withdraw(conversation_id=conversation_id, reason=reason, at=at,
                                    source=source)
        done = self.store.withdrawals(conversation_id)[-1]
        for call in live:
            call.decided.clear()
            if call.ivr is not None:
                call.ivr.waiting.clear()
                self._ivr_over(call)
        self._events.emit(ConsentWithdrawn(
            call_id=live[0].call_id if live else None, conversation_id=conversation_id,
            reason=reason, source=source, at=at, grants_withdrawn=count,
            channels=tuple(done["channels"])))
        return {"conversation_id": conversation_id, "withdrawn": True,
                "grants_withdrawn": count, "channels": done["channels"], "at": at}

    # ----------------------------------------------------------------- views
    def call_state(self, call_id: str) -> dict[str, Any] | None:
        """``consent`` of ``GET /v1/calls/{id}``: per channel, the decision in force."""
        call = self._calls.get(call_id)
        if call is None:
            return None
        waiting = call.ivr.waiting if call.ivr is not None else []
        withdrawn = self._withdrawn(call.conversation_id)
        return {ch: _view(call.decided.get(ch), ch in waiting, withdrawn)
                for ch in call.channels}

    def _withdrawn(self, conversation_id: str) -> bool:
        if self.store is None:
            return False
        try:
            return self.store.withdrawn(conversation_id)
        except sqlite3.Error as exc:
            self._log.error("consent.store_failed", conversation_id=conversation_id,
                            error=str(exc))
            return False

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        """``GET /v1/conversations/{id}/consent``: the store's view (404 when unknown)."""
        live = any(c.conversation_id == conversation_id for c in self._calls.values())
        if self.store is None:
            raise ConsentRefused(503, "no consent store")
        try:
            if not live and not self.store.known(conversation_id):
                raise ConsentRefused(404, "unknown conversation (no consent recorded for it)")
            return conversation_view(self.store, conversation_id, self.config.consent.purpose)
        except sqlite3.Error as exc:
            raise ConsentRefused(503, f"the consent store failed: {exc}") from None

    def close(self) -> None:
        for call in self._calls.values():
            if call.timer is not None:
                call.timer.cancel()
        self._calls.clear()
        if self.store is not None:
            self.store.close()


def facts_of(meta: CallMetadata, channels: Sequence[str],
             metadata: RecordingMetadata | None = None,
             labels: Sequence[str | None] = ()) -> ConsentFacts:
    """The policy's facts of an offered call; a SIPREC session's participants' extension data
    per channel (``labels``: the accepted streams' labels, in the order of ``channels``)."""
    hints: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    if metadata is not None:
        for channel, label in zip(channels, labels, strict=False):
            who = metadata.participant_for_label(label) if label else None
            if who is not None:
                hints.append((channel, who.hints))
    return ConsentFacts(
        channels=tuple(channels), headers=meta.headers, source_ip=meta.remote_addr[0],
        from_user=uri_user(meta.from_uri), to_user=uri_user(meta.to_uri),
        request_user=uri_user(meta.request_uri),
        session_hints=metadata.hints if metadata is not None else (),
        channel_hints=tuple(hints))


def _view(rec: ConsentRecord | None, pending: bool, withdrawn: bool) -> dict[str, Any]:
    if rec is None:
        return {"granted": False, "source": None, "pending_ivr": pending,
                "withdrawn": withdrawn}
    return {"granted": rec.granted and not withdrawn, "source": rec.source,
            "purpose": rec.purpose, "at": rec.at, "policy_version": rec.policy_version,
            "evidence": rec.evidence, "pending_ivr": pending, "withdrawn": withdrawn}


def conversation_view(store: ConsentStore, conversation_id: str,
                      purpose: str) -> dict[str, Any]:
    """A conversation's consent as the API and ``asr-gateway consent show`` print it."""
    records = store.status(conversation_id)
    latest = latest_per_channel(records, purpose)
    return {"conversation_id": conversation_id, "purpose": purpose,
            "withdrawn": store.withdrawn(conversation_id),
            "exportable_channels": sorted(store.exportable_channels(conversation_id,
                                                                    purpose=purpose)),
            "channels": {ch: rec.to_dict() for ch, rec in sorted(latest.items())},
            "records": [r.to_dict() for r in records],
            "withdrawals": store.withdrawals(conversation_id)}
