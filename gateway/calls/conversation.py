"""The conversation owner: channels, agent/customer roles, conversations, recording, ASR wiring.

For each offered call :class:`Conversations` decides the channel of every accepted stream
(the channel rules for a plain call, SIPREC's role mapping for a recording session), joins
correlated calls into one conversation with one recording, opens an ASR stream per channel
and turns its hypotheses into transcript events; with audio redaction on, its
:class:`~gateway.calls.timeline.RecordingMasks` masks the recordings' redacted spans. What it
decided for one call is a :class:`CallConversation`, which the call registry keeps and hands
back at teardown.

Layer: shell.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.asr.contract import Hypothesis
from gateway.asr.stream import AsrChannel, AsrHub
from gateway.calls.activity import VoiceActivity, settings_of
from gateway.calls.timeline import ChannelSink, ConversationMedia, RecordingMasks
from gateway.channels import ChannelMapper, ConversationJoiner
from gateway.config import GatewayConfig
from gateway.events.bus import EventBus
from gateway.events.types import (
    CallOffered,
    Party,
    SiprecMetadataUpdated,
    TranscriptFinal,
    TranscriptPartial,
    TranscriptWord,
)
from gateway.logs import get_logger
from gateway.media.recording import StereoRecorder
from gateway.sip.core import MediaOffer
from gateway.sip.dialog import CallMetadata
from gateway.sip.sdp import AnswerPlan
from gateway.sip.siprec import Participant, RecordingMetadata, SiprecRoleConfig, map_roles

AudioHook = Callable[[npt.NDArray[np.int16]], None]


@dataclass(slots=True)
class CallConversation:
    """One call's place in its conversation: a channel (and participant) per stream."""

    call_id: str
    media: ConversationMedia
    channels: list[str]
    participants: list[dict[str, Any] | None] = field(default_factory=list)
    siprec: MediaOffer | None = None
    asr: list[AsrChannel] = field(default_factory=list)

    @property
    def conversation_id(self) -> str:
        return self.media.conversation_id

    def plan_labels(self) -> list[str | None]:
        if self.siprec is None:
            return []
        return [s.label for s in self.siprec.plan.accepted]

    def participant_of(self, channel: str) -> dict[str, Any] | None:
        for ch, who in zip(self.channels, self.participants, strict=False):
            if ch == channel:
                return who
        return None


class Conversations:
    def __init__(self, config: GatewayConfig, events: EventBus, asr: AsrHub | None) -> None:
        self.config = config
        self._events, self._asr = events, asr
        self._log = get_logger("calls")
        self._mapper = ChannelMapper(config.channels)
        self._joiner = ConversationJoiner(config.channels.correlation_header)
        self._open: dict[str, ConversationMedia] = {}
        self._loop = asyncio.get_running_loop()
        self.masks = RecordingMasks(events, self._padding_s)

    def apply_config(self, config: GatewayConfig) -> None:
        self.config = config
        self._mapper = ChannelMapper(config.channels)
        self._joiner.header = config.channels.correlation_header

    # ----------------------------------------------------------------- joining
    def join(self, call_id: str, meta: CallMetadata, plan: AnswerPlan,
             media: MediaOffer | None) -> CallConversation:
        """Place an offered call (emits ``call.offered``)."""
        if media is not None and media.siprec:
            return self._join_siprec(call_id, meta, plan, media)
        decision = self._mapper.classify(meta)
        conv = self._joiner.add(call_id, meta, decision.channel, self._loop.time())
        channel = conv.channel_of(call_id)
        talk = CallConversation(call_id, self._media(conv.conversation_id),
                                [channel] * len(plan.accepted))
        talk.media.calls.add(call_id)
        self._log.info("channel.assigned", call_id=call_id, channel=channel,
                       why=decision.why, conversation=conv.why)
        self._events.emit(_offered(meta, conv.conversation_id, channel, tuple(talk.channels)))
        return talk

    def _join_siprec(self, call_id: str, meta: CallMetadata, plan: AnswerPlan,
                     media: MediaOffer) -> CallConversation:
        """A SIPREC recording session: one call, one conversation, a channel per stream."""
        mapping = map_roles(media.sdp, media.metadata, self._siprec_roles())
        decisions, warnings = mapping.decisions, mapping.warnings
        by_index = {d.mline_index: d for d in decisions}
        channels, participants = [], []
        for stream in plan.accepted:
            decision = by_index.get(stream.index)
            channels.append(decision.channel if decision else self.config.channels.default)
            participants.append(_participant(decision.participant) if decision else None)
        talk = CallConversation(call_id, self._media(uuid.uuid4().hex), channels,
                                participants, siprec=media)
        talk.media.calls.add(call_id)
        for warning in (*warnings, *([media.metadata_error] if media.metadata_error else [])):
            self._log.warning("siprec.mapping_warning", call_id=call_id, warning=warning)
        self._log.info("siprec.roles", call_id=call_id, channels=channels,
                       why=[d.why for d in decisions],
                       evidence=[e.to_dict() for e in mapping.evidence])
        self._events.emit(_offered(
            meta, talk.conversation_id, None, tuple(channels),
            siprec=True, participants=_parties(participants),
            session_id=media.metadata.session_id if media.metadata else None))
        return talk

    def _siprec_roles(self) -> SiprecRoleConfig:
        patterns = tuple(r.pattern for r in self.config.channels.rules
                         if r.match == "siprec_participant" and r.channel == "agent")
        cfg = self.config.siprec
        return SiprecRoleConfig(agent_patterns=patterns, caller_labels=cfg.caller_labels,
                                fallback=cfg.fallback)

    def metadata_updated(self, talk: CallConversation, metadata: RecordingMetadata | None,
                         error: str | None) -> None:
        """re-INVITE/UPDATE with new metadata: streams keep their channel, participants move."""
        if talk.siprec is None:
            return
        if error is not None or metadata is None:
            self._log.warning("siprec.metadata_rejected", call_id=talk.call_id, error=error)
            return
        for i, stream in enumerate(talk.plan_labels()):
            who = metadata.participant_for_label(stream) if stream else None
            if who is not None and i < len(talk.participants):
                talk.participants[i] = _participant(who)
        self._events.emit(SiprecMetadataUpdated(
            call_id=talk.call_id, participants=_parties(talk.participants),
            channels=tuple(talk.channels)))

    # ----------------------------------------------------------------- media and recording
    def _media(self, conversation_id: str) -> ConversationMedia:
        media = self._open.get(conversation_id)
        if media is None:
            media = ConversationMedia(conversation_id, self._loop.time(),
                                      self._recorder(conversation_id))
            self._open[conversation_id] = media
            if media.recorder is not None and self._audio_redaction():
                self.masks.track(media)
        return media

    def _audio_redaction(self) -> bool:
        """Recordings get redacted spans masked (and a delay window to mask them in)."""
        redaction = self.config.redaction
        return redaction.enabled and redaction.audio != "off"

    def _padding_s(self) -> float:
        return self.config.redaction.audio_padding_ms / 1000

    def _recorder(self, conversation_id: str) -> StereoRecorder | None:
        storage = self.config.storage
        if not storage.record:
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        name = f"{stamp}-{conversation_id}.{storage.recording_format}"
        path = Path(storage.recordings_dir) / name
        redaction = self.config.redaction
        masked = self._audio_redaction()
        try:
            return StereoRecorder(path, fmt=storage.recording_format,
                                  delay_s=redaction.audio_delay_s if masked else 0.0,
                                  mask_mode=redaction.audio if masked else "tone")
        except (OSError, ValueError) as exc:
            self._log.error("recording.open_failed", path=str(path), error=str(exc))
            return None

    def sinks(self, talk: CallConversation, on_audio: AudioHook,
              on_words: Callable[[], None]) -> list[ChannelSink]:
        """One sink per stream: recording, a new ASR stream, and ``on_audio`` (barge-in)."""
        sinks = [self._sink(talk, channel, on_audio, on_words) for channel in talk.channels]
        self.masks.add_call(talk.call_id, talk.media)
        return sinks

    def _sink(self, talk: CallConversation, channel: str, on_audio: AudioHook,
              on_words: Callable[[], None]) -> ChannelSink:
        asr = None
        box: list[ChannelSink] = []
        if self._asr is not None:
            key = f"{talk.call_id}/{channel}"
            asr = self._asr.open(key, lambda ch, hyp, lat: self._transcript(
                talk, channel, hyp, lat, on_words, box[0].offset_s if box else 0.0),
                self.config.triton.phrases)
            talk.asr.append(asr)
        box.append(ChannelSink(talk.media, channel, asr, on_audio, self._activity(talk, channel)))
        return box[0]

    def _activity(self, talk: CallConversation, channel: str) -> VoiceActivity | None:
        """The channel's talk spurts as ``voice.*`` events, for the statistics."""
        statistics = self.config.statistics
        if not statistics.enabled:
            return None
        return VoiceActivity(self._events, talk.call_id, talk.conversation_id, channel,
                             settings_of(statistics))

    def leave(self, talk: CallConversation) -> Path | None:
        """The call is gone; the last call out closes the recording (its path). A masked
        recording is closed once the call's ``call.ended`` has passed the bus (the masks the
        processor releases before it still apply; :class:`RecordingMasks`)."""
        self._joiner.remove(talk.call_id)
        conv = talk.media
        conv.calls.discard(talk.call_id)
        if conv.calls:
            return None
        self._open.pop(conv.conversation_id, None)
        if self.masks.tracks(conv):
            return self.masks.close_after_end(conv, self._loop)
        try:
            return conv.close_recording()
        except OSError as exc:
            self._log.error("recording.close_failed", error=str(exc))
            return None

    # ----------------------------------------------------------------- ASR
    def _transcript(self, talk: CallConversation, channel: str, hyp: Hypothesis,
                    latency_s: float | None, on_words: Callable[[], None],
                    offset_s: float) -> None:
        """One hypothesis as a transcript event; its times move from the channel's stream
        time (from the leg's first audio) onto the conversation timeline (``offset_s``, where
        that audio starts in the recording)."""
        if not hyp.text:    # nothing heard, or an empty END final: no event (nor latency
            return          # metric, which gateway.asr.stream observes per event)
        if not hyp.is_final:
            on_words()      # the caller is talking: barge-in
        transcript = TranscriptFinal if hyp.is_final else TranscriptPartial
        self._events.emit(transcript(
            call_id=talk.call_id, channel=channel,
            participant=Party.from_dict(talk.participant_of(channel)),
            conversation_id=talk.conversation_id,
            text=hyp.text, segment=hyp.segment, start_s=_on(hyp.start_s, offset_s),
            end_s=_on(hyp.end_s, offset_s),
            words=tuple(TranscriptWord(word=w.word, start_s=_on(w.start_s, offset_s),
                                       end_s=_on(w.end_s, offset_s),
                                       confidence=w.confidence) for w in hyp.words),
            latency_s=None if latency_s is None else round(latency_s, 3)))

    async def finish_asr(self, talk: CallConversation) -> bool:
        """Close the call's ASR streams; True when every last final came in time."""
        if not talk.asr:
            return True
        timeout = self.config.triton.final_timeout_s
        results = await asyncio.gather(*(ch.close(timeout) for ch in talk.asr))
        if not all(results):
            self._log.warning("asr.final_timeout", call_id=talk.call_id)
        return all(results)

    def drop_asr(self, talk: CallConversation) -> None:
        """The call never got media: its ASR streams go without waiting for finals."""
        for ch in talk.asr:
            ch.closing = True
            ch.hub.forget(ch)


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


def _on(stream_s: float, offset_s: float) -> float:
    """A stream time on the conversation timeline (ms resolution: no float noise)."""
    return round(stream_s + offset_s, 3) if offset_s else stream_s
