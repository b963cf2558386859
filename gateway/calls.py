"""Calls in the shell: media, channels, conversations, ASR streams and call events.

The SIP service tells the :class:`CallManager` what the SIP core decided (offered,
answered, media changed, ended); the manager opens and closes media, labels legs
agent/customer, joins correlated calls into conversations, streams audio to ASR and
emits the call and transcript events. Teardown waits for the last transcript.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.asr.contract import Hypothesis
from gateway.asr.stream import AsrChannel, AsrHub
from gateway.bot import BotAction, BotClient
from gateway.channels import ChannelMapper, ConversationJoiner
from gateway.config import GatewayConfig
from gateway.conversation import ChannelSink, ConversationMedia
from gateway.events.bus import EventBus
from gateway.events.types import (
    CallAnswered,
    CallEnded,
    CallMediaChanged,
    CallOffered,
    DtmfReceived,
    Party,
    SiprecMetadataUpdated,
    TranscriptFinal,
    TranscriptPartial,
    TranscriptWord,
)
from gateway.logs import get_logger
from gateway.media.dtmf import DtmfEvent
from gateway.media.ports import PortAllocator, PortsExhausted
from gateway.media.recording import StereoRecorder
from gateway.media.session import CallMedia, MediaLeg
from gateway.media.vad import EnergyVad
from gateway.metrics import Metrics
from gateway.sip.callside import SipControl
from gateway.sip.core import MediaOffer
from gateway.sip.dialog import CallMetadata
from gateway.sip.sdp import AnswerPlan
from gateway.sip.siprec import Participant, RecordingMetadata, SiprecRoleConfig, map_roles
from gateway.tts.client import TtsClient
from gateway.tts.playout import Playout, Reply

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
    offered_at: float
    conversation: ConversationMedia
    channels: list[str]
    media: CallMedia | None = None
    asr: list[AsrChannel] = field(default_factory=list)
    answered_at: float | None = None
    state: str = "offered"
    playout: Playout | None = None
    vad: EnergyVad | None = None
    participants: list[dict[str, Any] | None] = field(default_factory=list)
    siprec: MediaOffer | None = None

    def plan_labels(self) -> list[str | None]:
        if self.siprec is None:
            return []
        return [s.label for s in self.siprec.plan.accepted]

    def participant_of(self, channel: str) -> dict[str, Any] | None:
        for ch, who in zip(self.channels, self.participants, strict=False):
            if ch == channel:
                return who
        return None

    def summary(self) -> dict[str, Any]:
        return {**self.meta.to_dict(), "state": self.state,
                "conversation_id": self.conversation.conversation_id,
                "channels": self.channels, "participants": self.participants,
                "legs": self.media.stats() if self.media else []}


class CallManager:
    def __init__(self, config: GatewayConfig, metrics: Metrics, events: EventBus,
                 asr: AsrHub | None, tts: TtsClient | None = None) -> None:
        self.config = config
        self._metrics, self._events, self._asr, self._tts = metrics, events, asr, tts
        self.bot = BotClient(config.bot, self._bot_action)
        events.subscribe(self.bot.on_event)
        self._log = get_logger("calls")
        self._ports = PortAllocator(config.rtp.port_min, config.rtp.port_max)
        self._mapper = ChannelMapper(config.channels)
        self._joiner = ConversationJoiner(config.channels.correlation_header)
        self._conversations: dict[str, ConversationMedia] = {}
        self.calls: dict[str, Call] = {}
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
        self._mapper = ChannelMapper(config.channels)
        self._joiner.header = config.channels.correlation_header
        self.bot.config = config.bot

    @property
    def active(self) -> int:
        return len(self.calls)

    # ----------------------------------------------------------------- offered -> answered
    def offered(self, call_id: str, meta: CallMetadata, plan: AnswerPlan,
                media: MediaOffer | None = None) -> None:
        if media is not None and media.siprec:
            self._offered_siprec(call_id, meta, plan, media)
            return
        decision = self._mapper.classify(meta)
        conv = self._joiner.add(call_id, meta, decision.channel, self._loop.time())
        channel = conv.channel_of(call_id)
        conv_media = self._conversation_media(conv.conversation_id)
        conv_media.calls.add(call_id)
        channels = [channel] * len(plan.accepted)
        self.calls[call_id] = Call(meta, time.time(), conv_media, channels)
        self._idle.clear()
        self._metrics.active_calls.set(len(self.calls))
        self._log.info("channel.assigned", call_id=call_id, channel=channel,
                       why=decision.why, conversation=conv.why)
        self._events.emit(_offered(meta, conv.conversation_id, channel, tuple(channels)))
        self._spawn(self._open(call_id, plan), f"media {call_id}")

    def _offered_siprec(self, call_id: str, meta: CallMetadata, plan: AnswerPlan,
                        media: MediaOffer) -> None:
        """A SIPREC recording session: one call, one conversation, a channel per stream."""
        mapping = map_roles(media.sdp, media.metadata, self._siprec_roles())
        decisions, warnings = mapping.decisions, mapping.warnings
        by_index = {d.mline_index: d for d in decisions}
        channels, participants = [], []
        for stream in plan.accepted:
            decision = by_index.get(stream.index)
            channels.append(decision.channel if decision else self.config.channels.default)
            participants.append(_participant(decision.participant) if decision else None)
        conv = self._conversation_media(uuid.uuid4().hex)
        conv.calls.add(call_id)
        self.calls[call_id] = Call(meta, time.time(), conv, channels,
                                   participants=participants, siprec=media)
        self._idle.clear()
        self._metrics.active_calls.set(len(self.calls))
        for warning in (*warnings, *([media.metadata_error] if media.metadata_error else [])):
            self._log.warning("siprec.mapping_warning", call_id=call_id, warning=warning)
        self._log.info("siprec.roles", call_id=call_id, channels=channels,
                       why=[d.why for d in decisions],
                       evidence=[e.to_dict() for e in mapping.evidence])
        self._events.emit(_offered(
            meta, conv.conversation_id, None, tuple(channels),
            siprec=True, participants=_parties(participants),
            session_id=media.metadata.session_id if media.metadata else None))
        self._spawn(self._open(call_id, plan), f"media {call_id}")

    def _siprec_roles(self) -> SiprecRoleConfig:
        patterns = tuple(r.pattern for r in self.config.channels.rules
                         if r.match == "siprec_participant" and r.channel == "agent")
        cfg = self.config.siprec
        return SiprecRoleConfig(agent_patterns=patterns, caller_labels=cfg.caller_labels,
                                fallback=cfg.fallback)

    def metadata_updated(self, call_id: str, metadata: RecordingMetadata | None,
                         error: str | None) -> None:
        """re-INVITE/UPDATE with new metadata: streams keep their channel, participants move."""
        call = self.calls.get(call_id)
        if call is None or call.siprec is None:
            return
        if error is not None or metadata is None:
            self._log.warning("siprec.metadata_rejected", call_id=call_id, error=error)
            return
        for i, stream in enumerate(call.plan_labels()):
            who = metadata.participant_for_label(stream) if stream else None
            if who is not None and i < len(call.participants):
                call.participants[i] = _participant(who)
        self._events.emit(SiprecMetadataUpdated(
            call_id=call_id, participants=_parties(call.participants),
            channels=tuple(call.channels)))

    def _conversation_media(self, conversation_id: str) -> ConversationMedia:
        media = self._conversations.get(conversation_id)
        if media is None:
            media = ConversationMedia(conversation_id, self._loop.time(),
                                      self._recorder(conversation_id))
            self._conversations[conversation_id] = media
        return media

    def _recorder(self, conversation_id: str) -> StereoRecorder | None:
        storage = self.config.storage
        if not storage.record:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        name = f"{stamp}-{conversation_id}.{storage.recording_format}"
        path = Path(storage.recordings_dir) / name
        try:
            return StereoRecorder(path, fmt=storage.recording_format)
        except (OSError, ValueError) as exc:
            self._log.error("recording.open_failed", path=str(path), error=str(exc))
            return None

    async def _open(self, call_id: str, plan: AnswerPlan) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        media = CallMedia(call_id, self.config, self._ports, on_drops=self._count_rtp_drops)
        sinks = [self._sink(call, channel) for channel in call.channels]
        try:
            await media.open(plan, sinks, lambda leg, ev: self._on_dtmf(call_id, leg, ev))
        except (PortsExhausted, OSError) as exc:
            self._metrics.rtp_dropped.labels(reason="no_port").inc()
            self._log.error("rtp.ports_exhausted", call_id=call_id, error=str(exc))
            self._close_asr(call)
            self.sip.reject(call_id, 503, "Service Unavailable (no RTP port)")
            return
        call.media = media
        self._attach_playout(call, media)
        if self.config.sip.answer_delay_ms:
            await asyncio.sleep(self.config.sip.answer_delay_ms / 1000)
        self.sip.answer(call_id, media.port_list)

    def _count_rtp_drops(self, reason: str, count: int) -> None:
        self._metrics.rtp_dropped.labels(reason=reason).inc(count)

    def _sink(self, call: Call, channel: str) -> ChannelSink:
        asr = None
        if self._asr is not None:
            key = f"{call.meta.call_id}/{channel}"
            asr = self._asr.open(key, lambda ch, hyp, lat: self._on_transcript(
                call.meta.call_id, channel, hyp, lat), self.config.triton.phrases)
            call.asr.append(asr)
        return ChannelSink(call.conversation, channel, asr,
                           lambda pcm: self._barge_in_audio(call, pcm))

    def answered(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        call.state, call.answered_at = "answered", time.time()
        self._metrics.calls.labels(outcome="answered").inc()
        self._events.emit(CallAnswered(
            call_id=call_id, sip_call_id=call.meta.sip_call_id,
            conversation_id=call.conversation.conversation_id, channels=tuple(call.channels),
            ports=tuple(call.media.port_list) if call.media else ()))

    def confirmed(self, call_id: str) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        first = call.state == "answered"
        call.state = "confirmed"
        tts = self.config.tts
        if first and call.playout is not None:
            if tts.recording_notice:
                call.playout.say(tts.recording_notice, barge_in=False, source="recording_notice")
            if tts.greeting:
                call.playout.say(tts.greeting, barge_in=True, source="greeting")

    # ----------------------------------------------------------------- spoken replies
    def _attach_playout(self, call: Call, media: CallMedia) -> None:
        if self._tts is None:
            return
        for leg in media.legs:
            stream = leg.stream
            if stream.direction in ("sendrecv", "sendonly") and stream.pt is not None:
                call.playout = Playout(call.meta.call_id, leg.endpoint,
                                       encoding=stream.encoding or "PCMU",
                                       payload_type=stream.pt, ptime_ms=stream.ptime_ms,
                                       tts=self._tts, emit=self._events.emit,
                                       voice=self.config.tts.voice, rate=self.config.tts.rate)
                tts = self.config.tts
                call.vad = EnergyVad(threshold_dbfs=tts.barge_in_threshold_dbfs,
                                     min_speech_ms=tts.barge_in_ms)
                leg.sender = call.playout
                return

    def say(self, call_id: str, text: str, *, barge_in: bool, source: str) -> Reply | str:
        """Queue a spoken reply; a reason string when the call cannot speak."""
        call = self.calls.get(call_id)
        if call is None:
            return "unknown call"
        if not self.config.tts.enabled or self._tts is None:
            return "tts disabled"
        if call.playout is None or call.state not in ("answered", "confirmed", "held"):
            return "call cannot play audio (not answered, or receive-only)"
        return call.playout.say(text, barge_in=barge_in, source=source)

    def _barge_in_audio(self, call: Call, pcm: npt.NDArray[np.int16]) -> None:
        playout, vad = call.playout, call.vad
        if playout is None or vad is None:
            return
        if not playout.speaking:
            vad.reset()
            return
        if vad.push(pcm):
            playout.interrupt("barge-in: caller speech")
            vad.reset()

    async def _bot_action(self, call_id: str, action: BotAction) -> None:
        if action.say:
            result = self.say(call_id, action.say, barge_in=True, source="bot")
            if isinstance(result, str):
                self._log.warning("bot.say_refused", call_id=call_id, reason=result)
        if action.hangup:
            self.sip.hangup(call_id, "bot hangup")

    def media_changed(self, call_id: str, plan: AnswerPlan) -> None:
        call = self.calls.get(call_id)
        if call is None or call.media is None:
            return
        call.media.update(plan)
        call.state = "held" if call.media.held else "confirmed"
        self._events.emit(CallMediaChanged(
            call_id=call_id, state=call.state,
            directions=tuple(s.remote_direction for s in plan.accepted)))

    # ----------------------------------------------------------------- events from media/ASR
    def _on_dtmf(self, call_id: str, leg: MediaLeg, ev: DtmfEvent) -> None:
        self._events.emit(DtmfReceived(call_id=call_id, channel=leg.channel, digit=ev.digit,
                                       duration_ms=ev.duration_ms, end_seen=ev.end_seen))

    def _on_transcript(self, call_id: str, channel: str, hyp: Hypothesis,
                       latency_s: float | None) -> None:
        call = self.calls.get(call_id)
        if not hyp.text and not hyp.is_final:
            return
        if hyp.is_final and not hyp.text:   # an empty END final: no event (nor latency metric,
            return                          # which gateway.asr.stream observes per event)
        if call is not None and call.playout is not None and hyp.text and not hyp.is_final:
            call.playout.interrupt("barge-in: caller words")
        transcript = TranscriptFinal if hyp.is_final else TranscriptPartial
        self._events.emit(transcript(
            call_id=call_id, channel=channel,
            participant=Party.from_dict(call.participant_of(channel)) if call else None,
            conversation_id=call.conversation.conversation_id if call else None,
            text=hyp.text, segment=hyp.segment, start_s=hyp.start_s, end_s=hyp.end_s,
            words=tuple(TranscriptWord(word=w.word, start_s=w.start_s, end_s=w.end_s,
                                       confidence=w.confidence) for w in hyp.words),
            latency_s=None if latency_s is None else round(latency_s, 3)))

    # ----------------------------------------------------------------- media clock
    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = self._loop.time()
            for call_id, call in list(self.calls.items()):
                if call.media is None or call.state not in ("confirmed", "held", "answered"):
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
        call.state = "ending"
        task = self._loop.create_task(self._teardown(call, reason, by, answered))
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)

    async def _teardown(self, call: Call, reason: str, by: str, answered: bool) -> None:
        call_id = call.meta.call_id
        legs: list[dict[str, Any]] = []
        if call.playout is not None:
            call.playout.interrupt("hangup", force=True)
            await call.playout.close()
        if call.media is not None:
            call.media.close()              # flushes jitter buffers into ASR and recording
            legs = call.media.stats()
        finals = await self._finish_asr(call)
        recording = self._leave_conversation(call)
        self.calls.pop(call_id, None)
        self._joiner.remove(call_id)
        self._metrics.active_calls.set(len(self.calls))
        self._metrics.calls.labels(outcome="completed" if answered else "unanswered").inc()
        for leg in legs:
            self._metrics.rtp_packets.labels(direction="in").inc(leg.get("received", 0))
            self._metrics.rtp_packets.labels(direction="out").inc(leg.get("sent", 0))
            self._metrics.rtp_lost.inc(leg.get("lost", 0))
            self._metrics.rtp_jitter.observe(leg.get("jitter_ms", 0.0) / 1000)
        duration = round(time.time() - call.answered_at, 3) if call.answered_at else 0.0
        self._events.emit(CallEnded(
            call_id=call_id, reason=reason, by=by, answered=answered, duration_s=duration,
            sip_call_id=call.meta.sip_call_id, conversation_id=call.conversation.conversation_id,
            channels=tuple(call.channels), legs=tuple(legs), asr_finals_flushed=finals,
            recording=str(recording) if recording else None))
        if not self.calls:
            self._idle.set()

    async def _finish_asr(self, call: Call) -> bool:
        if not call.asr:
            return True
        timeout = self.config.triton.final_timeout_s
        results = await asyncio.gather(*(ch.close(timeout) for ch in call.asr))
        if not all(results):
            self._log.warning("asr.final_timeout", call_id=call.meta.call_id)
        return all(results)

    def _close_asr(self, call: Call) -> None:
        for ch in call.asr:
            ch.closing = True
            ch.hub.forget(ch)

    def _leave_conversation(self, call: Call) -> Path | None:
        conv = call.conversation
        conv.calls.discard(call.meta.call_id)
        if conv.calls:
            return None
        self._conversations.pop(conv.conversation_id, None)
        try:
            return conv.close_recording()
        except OSError as exc:
            self._log.error("recording.close_failed", error=str(exc))
            return None

    async def wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
        await self.bot.close()
        if self._teardowns:
            await asyncio.wait(list(self._teardowns),
                               timeout=self.config.triton.final_timeout_s + 1)
        for call in list(self.calls.values()):
            if call.media is not None:
                call.media.close()
            self._leave_conversation(call)
        self.calls.clear()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def summary(self, call_id: str) -> dict[str, Any] | None:
        call = self.calls.get(call_id)
        return call.summary() if call else None

    def summaries(self) -> list[dict[str, Any]]:
        return [c.summary() for c in self.calls.values()]


def _participant(who: Participant | None) -> dict[str, Any] | None:
    if who is None:
        return None
    return {"id": who.participant_id, "aor": who.aor, "name": who.name}


def _parties(participants: Sequence[dict[str, Any] | None]) -> tuple[Party | None, ...]:
    return tuple(Party.from_dict(p) for p in participants)


def _offered(meta: CallMetadata, conversation_id: str, channel: str | None,
             channels: tuple[str, ...], *, siprec: bool = False,
             participants: tuple[Party | None, ...] = (), session_id: str | None = None
             ) -> CallOffered:
    return CallOffered(
        call_id=meta.call_id, conversation_id=conversation_id, channel=channel,
        channels=channels, siprec=siprec, participants=participants, session_id=session_id,
        sip_call_id=meta.sip_call_id, from_uri=meta.from_uri, from_display=meta.from_display,
        to_uri=meta.to_uri, request_uri=meta.request_uri,
        remote=f"{meta.remote_addr[0]}:{meta.remote_addr[1]}", transport=meta.transport,
        headers=dict(meta.headers))
