"""The call registry in the shell: every live call, its lifecycle, tasks, media and teardown.

The SIP service tells the :class:`CallManager` (its :class:`~gateway.sip.callside.CallSide`)
what the SIP core decided: offered, answered, confirmed, media changed, ended. The manager
moves the call's :class:`~gateway.calls.lifecycle.Lifecycle`, opens its media, runs the
media clock, and leaves the rest to two owners: :class:`~gateway.calls.conversation.
Conversations` (channels, roles, conversations, recording, ASR) and
:class:`~gateway.calls.voice.Voices` (replies, barge-in, the bot). Teardown waits for the
last transcript before ``call.ended`` goes out.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.analytics.talk import TalkStatistics
from gateway.calls.commands import SayRefused, SecureRefusal, SecureRefused
from gateway.calls.conversation import CallConversation, Conversations
from gateway.calls.lifecycle import CallPhase, Lifecycle, Trigger
from gateway.calls.timeline import RECORDING_RATE_HZ, ChannelSink
from gateway.calls.voice import CallVoice, Voices
from gateway.config import GatewayConfig
from gateway.consent.live import PROMPT_SOURCE, LiveConsent, facts_of
from gateway.events.bus import EventBus
from gateway.events.types import (
    CallAnswered,
    CallEnded,
    CallMediaChanged,
    CallSecureChanged,
    DtmfReceived,
    to_wire,
)
from gateway.logs import get_logger
from gateway.media.ports import PortAllocator, PortsExhausted
from gateway.media.session import CallMedia
from gateway.metrics import Metrics

if TYPE_CHECKING:   # the CallSide signatures, and what is handed on to the owners
    import numpy as np
    import numpy.typing as npt

    from gateway.asr.stream import AsrHub
    from gateway.consent.store import ConsentStore
    from gateway.media.dtmf import DtmfEvent
    from gateway.media.session import MediaLeg
    from gateway.sip.callside import SipControl
    from gateway.sip.core import MediaOffer
    from gateway.sip.dialog import CallMetadata
    from gateway.sip.sdp import AnswerPlan
    from gateway.sip.siprec import RecordingMetadata
    from gateway.tts.client import TtsClient
    from gateway.tts.playout import Reply

TICK_S = 0.1


class _Unbound:
    """The :class:`SipControl` before a SIP service was bound: using it is a wiring bug."""

    def answer(self, call_id: str, ports: Sequence[int | None]) -> None:
        raise RuntimeError(f"answer {call_id}: no SIP service bound (SipService(..., calls))")

    def reject(self, call_id: str, status: int, reason: str) -> None:
        raise RuntimeError(f"reject {call_id}: no SIP service bound")

    def hangup(self, call_id: str, reason: str) -> bool:
        raise RuntimeError(f"hangup {call_id}: no SIP service bound")


@dataclass(slots=True)
class Call:
    meta: CallMetadata
    lifecycle: Lifecycle
    talk: CallConversation
    media: CallMedia | None = None
    voice: CallVoice | None = None
    answered_at: float | None = None
    secure: bool = False        # keypad secure mode (POST /v1/calls/{id}/secure)

    def summary(self) -> dict[str, Any]:
        return {**self.meta.to_dict(), "state": self.lifecycle.phase.value,
                "secure": self.secure,
                "conversation_id": self.talk.conversation_id,
                "channels": self.talk.channels, "participants": self.talk.participants,
                "legs": self.media.stats() if self.media else [],
                "asr": [{"channel": ch.key.rpartition("/")[2], "model": ch.hub.config.asr_model,
                         "version": ch.version} for ch in self.talk.asr]}


class CallManager:
    def __init__(self, config: GatewayConfig, metrics: Metrics, events: EventBus,
                 asr: AsrHub | None, tts: TtsClient | None = None,
                 consent: ConsentStore | None = None) -> None:
        self.config = config
        self._metrics, self._events = metrics, events
        self._log = get_logger("calls")
        self._ports = PortAllocator(config.rtp.port_min, config.rtp.port_max)
        self.calls: dict[str, Call] = {}
        self.conversations = Conversations(config, events, asr)
        self.voices = Voices(config, events, tts, find=self.calls.get,
                             hangup=lambda call_id, why: self.sip.hangup(call_id, why))
        self.consent = LiveConsent(config, events, consent)
        self._teardowns: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tick_task: asyncio.Task[None] | None = None
        self.sip: SipControl = _Unbound()

    def start(self) -> None:
        self._tick_task = asyncio.create_task(self._ticker(), name="media tick")

    def bind(self, sip: SipControl) -> None:
        """The SIP service this manager was handed to hands itself over (at its construction)."""
        self.sip = sip

    def apply_config(self, config: GatewayConfig) -> None:
        self.config = config
        self.conversations.apply_config(config)
        self.voices.apply_config(config)
        self.consent.apply_config(config)

    @property
    def active(self) -> int:
        return len(self.calls)

    # ----------------------------------------------------------------- offered -> answered
    def offered(self, call_id: str, meta: CallMetadata, plan: AnswerPlan,
                media: MediaOffer | None = None) -> None:
        talk = self.conversations.join(call_id, meta, plan, media)
        self.calls[call_id] = Call(meta, Lifecycle(call_id), talk)
        self.consent.offered(call_id, talk.conversation_id, talk.channels, facts_of(
            meta, talk.channels, media.metadata if media is not None else None,
            talk.plan_labels()))
        self._idle.clear()
        self._metrics.active_calls.set(len(self.calls))
        self._spawn(self._open(call_id, plan), f"media {call_id}")

    def metadata_updated(self, call_id: str, metadata: RecordingMetadata | None,
                         error: str | None) -> None:
        call = self.calls.get(call_id)
        if call is not None:
            self.conversations.metadata_updated(call.talk, metadata, error)

    async def _open(self, call_id: str, plan: AnswerPlan) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        media = CallMedia(call_id, self.config, self._ports, on_drops=self._count_rtp_drops)
        sinks = self.conversations.sinks(call.talk, lambda pcm: self._heard_audio(call, pcm),
                                         lambda: self._heard_words(call_id))
        try:
            await media.open(plan, sinks, lambda leg, ev: self._on_dtmf(call_id, leg, ev))
        except (PortsExhausted, OSError) as exc:
            self._metrics.rtp_dropped.labels(reason="no_port").inc()
            self._log.error("rtp.ports_exhausted", call_id=call_id, error=str(exc))
            self.conversations.drop_asr(call.talk)
            self.sip.reject(call_id, 503, "Service Unavailable (no RTP port)")
            return
        call.media = media
        call.voice = self.voices.attach(call_id, media)
        if self.config.sip.answer_delay_ms:
            await asyncio.sleep(self.config.sip.answer_delay_ms / 1000)
        self.sip.answer(call_id, media.port_list)

    def _count_rtp_drops(self, reason: str, count: int) -> None:
        self._metrics.rtp_dropped.labels(reason=reason).inc(count)

    def answered(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        call.lifecycle.move(Trigger.ANSWERED)
        call.answered_at = time.time()
        self._metrics.calls.labels(outcome="answered").inc()
        self._events.emit(CallAnswered(
            call_id=call_id, sip_call_id=call.meta.sip_call_id,
            conversation_id=call.talk.conversation_id, channels=tuple(call.talk.channels),
            ports=tuple(call.media.port_list) if call.media else ()))

    def confirmed(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        if call.lifecycle.move(Trigger.CONFIRMED) is CallPhase.ANSWERED:
            self.voices.greet(call.voice)
            self.consent.ask(call_id, lambda text: self._prompt(call_id, text))

    def _prompt(self, call_id: str, text: str) -> str | None:
        """The consent question, spoken in full (no barge-in): its reply id, or None."""
        try:
            return self.voices.say(call_id, text, barge_in=False, source=PROMPT_SOURCE).reply_id
        except SayRefused:
            return None

    def media_changed(self, call_id: str, plan: AnswerPlan) -> None:
        call = self.calls.get(call_id)
        if call is None or call.media is None:
            return
        call.media.update(plan)
        call.lifecycle.move(Trigger.HELD if call.media.held else Trigger.RESUMED)
        self._events.emit(CallMediaChanged(
            call_id=call_id, state=call.lifecycle.phase.value,
            directions=tuple(s.remote_direction for s in plan.accepted)))

    # ----------------------------------------------------------------- spoken replies
    def say(self, call_id: str, text: str, *, barge_in: bool, source: str) -> Reply:
        """Queue a spoken reply; :class:`~gateway.calls.commands.SayRefused` if it cannot be."""
        return self.voices.say(call_id, text, barge_in=barge_in, source=source)

    # ----------------------------------------------------------------- secure (keypad) mode
    def set_secure(self, call_id: str, secure: bool, *, by: str) -> bool:
        """Secure mode on or off: ``call.secure_changed`` goes out and True comes back; False
        (and no event) when the call already was in that mode. :class:`~gateway.calls.commands.
        SecureRefused` for an unknown call or one that is ending."""
        call = self.calls.get(call_id)
        if call is None:
            raise SecureRefused(SecureRefusal.UNKNOWN_CALL)
        if call.lifecycle.phase in (CallPhase.ENDING, CallPhase.ENDED):
            raise SecureRefused(SecureRefusal.ENDING)
        if call.secure == secure:
            return False
        call.secure = secure
        self._events.emit(CallSecureChanged(call_id=call_id, secure=secure, by=by))
        return True

    @staticmethod
    def _heard_audio(call: Call, pcm: npt.NDArray[np.int16]) -> None:
        if call.voice is not None:
            call.voice.heard_audio(pcm)

    def _heard_words(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is not None and call.voice is not None:
            call.voice.heard_words()

    def _on_dtmf(self, call_id: str, leg: MediaLeg, ev: DtmfEvent) -> None:
        start_s = self._dtmf_start_s(call_id, leg, ev)
        end_s = None if start_s is None else round(start_s + ev.duration_ms / 1000, 4)
        self._events.emit(DtmfReceived(call_id=call_id, channel=leg.channel, digit=ev.digit,
                                       duration_ms=ev.duration_ms, end_seen=ev.end_seen,
                                       start_s=start_s, end_s=end_s))
        self.consent.dtmf(call_id, leg.channel, ev.digit)

    def _dtmf_start_s(self, call_id: str, leg: MediaLeg, ev: DtmfEvent) -> float | None:
        """Where the tone began on the conversation timeline, in seconds, where the recorder
        put the leg's audio of that instant: the event's RTP timestamp mapped through the leg's
        audio (exact). Before the leg played any audio, the time it was reported less its
        duration (``position_at``; late by the network delay, by up to the decoder's end
        timeout when the end packets were lost). None for a call no longer registered."""
        position = leg.pipeline.position_of(ev.rtp_ts)
        if position is not None and isinstance(leg.sink, ChannelSink):
            return round(max(0.0, leg.sink.offset_s + position / RECORDING_RATE_HZ), 4)
        call = self.calls.get(call_id)
        if call is None:
            return None
        heard_s = call.talk.media.position_at(self._loop.time()) / RECORDING_RATE_HZ
        return round(max(0.0, heard_s - ev.duration_ms / 1000), 4)

    # ----------------------------------------------------------------- media clock
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = self._loop.time()
            for call_id, call in list(self.calls.items()):
                if call.media is None or not call.lifecycle.media_live:
                    continue
                try:
                    reason = call.media.tick(now)
                except Exception:   # one call's bug must not stop the clock of the others
                    self._log.exception("media.tick_failed", call_id=call_id)
                    continue
                if reason is not None:
                    self._log.warning("rtp.timeout", call_id=call_id, reason=reason)
                    self.sip.hangup(call_id, reason)

    # ----------------------------------------------------------------- teardown
    def ended(self, call_id: str, reason: str, by: str, answered: bool) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        call.lifecycle.move(Trigger.ENDED)
        task = self._loop.create_task(self._teardown(call, reason, by, answered))
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)

    async def _teardown(self, call: Call, reason: str, by: str, answered: bool) -> None:
        call_id = call.meta.call_id
        legs: list[dict[str, Any]] = []
        if call.voice is not None:
            await call.voice.close()
        if call.media is not None:
            call.media.close()              # flushes jitter buffers into ASR and recording
            legs = call.media.stats()
        finals = await self.conversations.finish_asr(call.talk)
        recording = self.conversations.leave(call.talk)
        self.consent.ended(call_id)
        self.calls.pop(call_id, None)
        call.lifecycle.move(Trigger.TORN_DOWN)
        self._metrics.active_calls.set(len(self.calls))
        self._metrics.calls.labels(outcome="completed" if answered else "unanswered").inc()
        self._count_legs(legs)
        duration = round(time.time() - call.answered_at, 3) if call.answered_at else 0.0
        self._events.emit(CallEnded(
            call_id=call_id, reason=reason, by=by, answered=answered, duration_s=duration,
            sip_call_id=call.meta.sip_call_id, conversation_id=call.talk.conversation_id,
            channels=tuple(call.talk.channels), legs=tuple(legs), asr_finals_flushed=finals,
            recording=str(recording) if recording else None))
        if not self.calls:
            self._idle.set()

    def _count_legs(self, legs: Sequence[dict[str, Any]]) -> None:
        for leg in legs:
            self._metrics.rtp_packets.labels(direction="in").inc(leg.get("received", 0))
            self._metrics.rtp_packets.labels(direction="out").inc(leg.get("sent", 0))
            self._metrics.rtp_lost.inc(leg.get("lost", 0))
            self._metrics.rtp_jitter.observe(leg.get("jitter_ms", 0.0) / 1000)

    async def wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
        await self.voices.close()
        if self._teardowns:
            await asyncio.wait(list(self._teardowns),
                               timeout=self.config.triton.final_timeout_s + 1)
        for call in list(self.calls.values()):
            if call.media is not None:
                call.media.close()
            self.conversations.leave(call.talk)
        self.calls.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def summary(self, call_id: str) -> dict[str, Any] | None:
        """``GET /v1/calls/{id}``: the call, with its conversation's talk statistics so far."""
        call = self.calls.get(call_id)
        if call is None:
            return None
        return {**call.summary(), "statistics": self.statistics(call_id),
                "consent": self.consent.call_state(call_id)}

    def summaries(self) -> list[dict[str, Any]]:
        return [c.summary() for c in self.calls.values()]

    def statistics(self, call_id: str) -> dict[str, Any] | None:
        """The live talk statistics of the call's conversation (wire form), from the
        statistics processor on the bus; None with ``[statistics]`` off."""
        talk = next((p for p in self._events.processors if isinstance(p, TalkStatistics)), None)
        stats = talk.snapshot(call_id, time.time()) if talk is not None else None
        return to_wire(stats) if stats is not None else None
