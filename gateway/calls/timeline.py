"""A conversation's media in the shell: the shared timeline, recording, per-channel sinks.

A conversation is one call (a single leg, or SIPREC's two streams) or two calls joined
by a correlation header (:mod:`gateway.calls.conversation` decides which). Each channel's
audio goes to the conversation's recorder (8 kHz, time-aligned on the conversation
timeline), to its ASR stream and to the call's barge-in detector.

With audio redaction on, :class:`RecordingMasks` (a listener on the event bus) tones over
or silences, in the recording, every span of a ``redaction.applied`` event (see its
docstring for the time base and the teardown order).

Layer: shell.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.asr.stream import AsrChannel
from gateway.calls.activity import VoiceActivity
from gateway.events.bus import EventBus
from gateway.events.types import CallEnded, Envelope, RedactionApplied, RedactionSpan
from gateway.logs import get_logger
from gateway.media.recording import MaskResult, StereoRecorder

RECORDING_RATE_HZ = 8000


class ConversationMedia:
    def __init__(self, conversation_id: str, start: float, recorder: StereoRecorder | None
                 ) -> None:
        self.conversation_id = conversation_id
        self.start = start
        self.recorder = recorder
        self.calls: set[str] = set()
        self.recording_path: Path | None = None

    def position_at(self, now: float) -> int:
        return max(0, round((now - self.start) * RECORDING_RATE_HZ))

    def close_recording(self) -> Path | None:
        if self.recorder is not None and self.recording_path is None:
            self.recording_path = self.recorder.close()
        return self.recording_path


class ChannelSink:
    """An :class:`~gateway.media.leg.AudioSink` feeding the recorder and the ASR stream."""

    def __init__(self, media: ConversationMedia, channel: str, asr: AsrChannel | None,
                 on_audio: Callable[[npt.NDArray[np.int16]], None] | None = None,
                 activity: VoiceActivity | None = None) -> None:
        self.media = media
        self.on_audio = on_audio
        self.activity = activity            # talk spurts as voice.* events ([statistics])
        self.channel = channel
        self.asr = asr
        self._offset: int | None = None
        self.samples = 0

    @property
    def offset_s(self) -> float:
        """Where this leg's audio starts on the conversation timeline."""
        return (self._offset or 0) / RECORDING_RATE_HZ

    def audio(self, position: int, pcm8k: npt.NDArray[np.int16],
              pcm_model: npt.NDArray[np.float32], now: float) -> None:
        if self._offset is None:
            self._offset = self.media.position_at(now) - position
        if self.media.recorder is not None and len(pcm8k):
            self.media.recorder.write(self.channel, self._offset + position, pcm8k)
        if self.asr is not None:
            self.asr.push(pcm_model, now)
        if self.on_audio is not None and len(pcm8k):
            self.on_audio(pcm8k)
        if self.activity is not None:
            self.activity.audio(self._offset, position, pcm8k)
        self.samples += len(pcm8k)

    def end(self) -> None:
        if self.activity is not None:
            self.activity.end(self._offset)

    def summary(self) -> dict[str, Any]:
        return {"channel": self.channel, "offset_s": round(self.offset_s, 3),
                "audio_s": round(self.samples / RECORDING_RATE_HZ, 3)}


class RecordingMasks:
    """Applies each ``redaction.applied`` span to its conversation's recording.

    A listener on the event bus, subscribed while at least one masked recording is open (or
    closing). An event is matched by its ``call_id`` (a call of a tracked conversation), else
    by its ``conversation_id``; the span, padded by ``padding_s()``, is masked with
    :meth:`StereoRecorder.mask`. The listener never raises: a failure is logged as
    ``recording.mask_failed``, a span that was already on disk as ``recording.redaction_late``
    (warning, with the seconds that had been written unmasked and the seconds patched).

    Time base: every span is on the conversation timeline (transcripts are put there by
    :class:`~gateway.calls.conversation.Conversations`, DTMF by the call registry), the
    recording's own time base.

    Teardown: the last call to leave hands its recording to :meth:`close_after_end` instead of
    closing it. The call's ``call.ended`` goes out right after (the processor releases the
    finals it held, and their ``redaction.applied``, before it, in the same ``emit``); the
    recording is closed when that ``call.ended`` reaches this listener, after those spans
    were masked, or on the next turn of the loop if no ``call.ended`` comes.
    """

    def __init__(self, events: EventBus, padding_s: Callable[[], float]) -> None:
        self._events = events
        self._padding_s = padding_s
        self._media: dict[str, ConversationMedia] = {}       # conversation_id -> tracked
        self._calls: dict[str, ConversationMedia] = {}           # call_id -> its conversation
        self._closing: set[str] = set()
        self._log = get_logger("calls")

    @property
    def subscribed(self) -> bool:
        return bool(self._media)

    def track(self, media: ConversationMedia) -> None:
        """A conversation whose recording is to be masked (subscribes with the first)."""
        if media.conversation_id in self._media:    # its last recording still closing
            self.close(media.conversation_id)
        if not self._media:
            self._events.subscribe(self.on_event)
        self._media[media.conversation_id] = media

    def add_call(self, call_id: str, media: ConversationMedia) -> None:
        if media.conversation_id in self._media:
            self._calls[call_id] = media

    def tracks(self, media: ConversationMedia) -> bool:
        """Whether ``media``'s recording is masked here (its close comes through here)."""
        return self._media.get(media.conversation_id) is media

    def close_after_end(self, media: ConversationMedia,
                        loop: asyncio.AbstractEventLoop) -> Path | None:
        """The last call left: close after its ``call.ended`` (the path it will have)."""
        self._closing.add(media.conversation_id)
        loop.call_soon(self.close, media.conversation_id)
        return media.recorder.path if media.recorder is not None else None

    def close(self, conversation_id: str) -> Path | None:
        """Close a tracked recording now (idempotent; unsubscribes after the last)."""
        media = self._media.pop(conversation_id, None)
        self._closing.discard(conversation_id)
        if media is None:
            return None
        for call_id in [c for c, m in self._calls.items() if m is media]:
            del self._calls[call_id]
        if not self._media:
            self._events.unsubscribe(self.on_event)
        try:
            return media.close_recording()
        except OSError as exc:
            self._log.error("recording.close_failed", error=str(exc))
            return None

    def close_all(self) -> None:
        for conversation_id in list(self._media):
            self.close(conversation_id)

    def on_event(self, envelope: Envelope) -> None:
        event = envelope.event
        try:
            if isinstance(event, RedactionApplied):
                self._mask(event)
            elif isinstance(event, CallEnded):
                self._ended(event)
        except Exception as exc:  # a masking bug must never reach the bus (nor the call)
            self._log.error("recording.mask_failed", call_id=event.call_id, error=repr(exc))

    def _ended(self, event: CallEnded) -> None:
        self._calls.pop(event.call_id, None)
        if event.conversation_id in self._closing:
            self.close(event.conversation_id)

    def _mask(self, event: RedactionApplied) -> None:
        media = self._target(event)
        if media is None or media.recorder is None:
            return
        padding_s = self._padding_s()
        for span in event.spans:
            try:
                result = media.recorder.mask(event.channel, span.start_s, span.end_s,
                                             padding_s=padding_s)
            except Exception as exc:
                self._log.error("recording.mask_failed", call_id=event.call_id,
                                conversation_id=media.conversation_id, channel=event.channel,
                                entity=span.entity, error=repr(exc))
                continue
            if result.late:
                self._late(event, span, result, media.recorder.sample_rate_hz)

    def _target(self, event: RedactionApplied) -> ConversationMedia | None:
        """The recording a span goes to."""
        media = self._calls.get(event.call_id)
        return media if media is not None else self._media.get(event.conversation_id or "")

    def _late(self, event: RedactionApplied, span: RedactionSpan, result: MaskResult,
              rate_hz: int) -> None:
        self._log.warning("recording.redaction_late", call_id=event.call_id,
                          conversation_id=event.conversation_id, channel=event.channel,
                          entity=span.entity, source=event.source,
                          on_disk_s=round(result.on_disk / rate_hz, 3),
                          patched_s=round(result.patched / rate_hz, 3))
