"""A channel's voice activity as events: the talk spurts of its decoded audio on the bus.

Each :class:`~gateway.calls.timeline.ChannelSink` of a call owns one
:class:`VoiceActivity` (with ``[statistics]`` on). It runs the channel's 8 kHz audio, as the
leg decodes it, through :class:`~gateway.analytics.activity.TalkSpurtSegmenter` and emits
``voice.started`` / ``voice.stopped`` at the spurt edges (a few a minute, never per frame)
and ``voice.ended`` when the leg's audio ends, every time on the conversation timeline
(the sink's offset plus the position in the leg). The statistics processor
(:mod:`gateway.analytics.talk`) turns them into the conversation's figures.

A failure of the detector is logged once and turns the channel's detection off; it never
reaches the media path.

Layer: shell.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.analytics.activity import (
    SAMPLE_RATE_HZ,
    ActivitySettings,
    Boundary,
    TalkSpurtSegmenter,
)
from gateway.config import TalkStatisticsConfig
from gateway.events.bus import EventBus
from gateway.events.types import VoiceEnded, VoiceStarted, VoiceStopped
from gateway.logs import get_logger


def settings_of(config: TalkStatisticsConfig) -> ActivitySettings:
    return ActivitySettings(threshold_dbfs=config.threshold_dbfs,
                            hangover_ms=config.hangover_ms, min_talk_ms=config.min_talk_ms)


class VoiceActivity:
    """Talk spurts of one channel of one call, as events."""

    def __init__(self, events: EventBus, call_id: str, conversation_id: str, channel: str,
                 settings: ActivitySettings) -> None:
        self._events = events
        self.call_id, self.conversation_id, self.channel = call_id, conversation_id, channel
        self.segmenter = TalkSpurtSegmenter(settings)
        self._failed = False
        self._ended = False

    def audio(self, offset: int, position: int, pcm8k: npt.NDArray[np.int16]) -> None:
        """Audio at ``position`` of the leg, whose position 0 is ``offset`` samples into the
        conversation timeline."""
        if self._failed or self._ended:
            return
        try:
            for boundary in self.segmenter.push(position, pcm8k):
                self._emit(offset, boundary)
        except Exception as exc:  # the detector's bug must never reach the media path
            self._fail(exc)

    def end(self, offset: int | None) -> None:
        """The leg's audio ended: an open spurt stops, then ``voice.ended`` (none for a leg
        that never had audio)."""
        if self._ended or offset is None:
            return
        self._ended = True
        if self._failed:
            return
        try:
            end = self.segmenter.position
            for boundary in self.segmenter.end():
                self._emit(offset, boundary)
            self._events.emit(VoiceEnded(
                call_id=self.call_id, conversation_id=self.conversation_id,
                channel=self.channel, at_s=_seconds(offset + end)))
        except Exception as exc:
            self._fail(exc)

    def _emit(self, offset: int, boundary: Boundary) -> None:
        start_s = _seconds(offset + boundary.start)
        if boundary.speaking:
            self._events.emit(VoiceStarted(call_id=self.call_id,
                                           conversation_id=self.conversation_id,
                                           channel=self.channel, at_s=start_s))
            return
        at_s = _seconds(offset + boundary.position)
        self._events.emit(VoiceStopped(call_id=self.call_id,
                                       conversation_id=self.conversation_id,
                                       channel=self.channel, start_s=start_s, at_s=at_s,
                                       talk_s=round(at_s - start_s, 6)))

    def _fail(self, exc: Exception) -> None:
        self._failed = True
        get_logger("calls").error("voice_activity.failed", call_id=self.call_id,
                                  channel=self.channel, error=repr(exc))


def _seconds(samples: int) -> float:
    """Samples on the 8 kHz timeline as seconds (exact: 1/8000 s has 6 decimals)."""
    return round(samples / SAMPLE_RATE_HZ, 6)
