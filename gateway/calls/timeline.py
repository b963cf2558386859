"""A conversation's media in the shell: the shared timeline, recording, per-channel sinks.

A conversation is one call (a single leg, or SIPREC's two streams) or two calls joined
by a correlation header (:mod:`gateway.calls.conversation` decides which). Each channel's
audio goes to the conversation's recorder (8 kHz, time-aligned on the conversation
timeline), to its ASR stream and to the call's barge-in detector.

Layer: shell.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.asr.stream import AsrChannel
from gateway.media.recording import StereoRecorder

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
                 on_audio: Callable[[npt.NDArray[np.int16]], None] | None = None) -> None:
        self.media = media
        self.on_audio = on_audio
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
        self.samples += len(pcm8k)

    def end(self) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {"channel": self.channel, "offset_s": round(self.offset_s, 3),
                "audio_s": round(self.samples / RECORDING_RATE_HZ, 3)}
