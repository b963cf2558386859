"""The voice owner: spoken replies (TTS playout), barge-in, voice detection, bot actions.

:class:`Voices` gives each call that can send audio a :class:`CallVoice` (a
:class:`~gateway.tts.playout.Playout` on the first leg we may send on, and an energy
detector of caller speech), queues replies from the HTTP API, the greeting and the bot
webhook, and stops a reply that allows barge-in when the caller speaks (loud enough for
long enough) or the recognizer hears words. :meth:`Voices.say` returns the queued
:class:`~gateway.tts.playout.Reply` or raises :class:`~gateway.calls.commands.SayRefused`.

Layer: shell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import numpy.typing as npt

from gateway.bot import BotAction, BotClient
from gateway.calls.commands import SayRefusal, SayRefused
from gateway.calls.lifecycle import Lifecycle
from gateway.config import GatewayConfig
from gateway.events.bus import EventBus
from gateway.logs import get_logger
from gateway.media.session import CallMedia
from gateway.media.vad import EnergyVad
from gateway.tts.client import TtsClient
from gateway.tts.playout import Playout, Reply

SEND_DIRECTIONS = ("sendrecv", "sendonly")


class CallVoice:
    """One call's spoken side: its playout and the caller-speech detector for barge-in."""

    def __init__(self, playout: Playout, vad: EnergyVad) -> None:
        self.playout = playout
        self.vad = vad

    def say(self, text: str, *, barge_in: bool, source: str) -> Reply:
        return self.playout.say(text, barge_in=barge_in, source=source)

    def greet(self, recording_notice: str, greeting: str) -> None:
        """On the ACK: the recording notice (not interruptible), then the greeting."""
        if recording_notice:
            self.say(recording_notice, barge_in=False, source="recording_notice")
        if greeting:
            self.say(greeting, barge_in=True, source="greeting")

    def heard_audio(self, pcm: npt.NDArray[np.int16]) -> None:
        """Caller audio (8 kHz): enough speech while we speak interrupts the reply."""
        if not self.playout.speaking:
            self.vad.reset()
            return
        if self.vad.push(pcm):
            self.playout.interrupt("barge-in: caller speech")
            self.vad.reset()

    def heard_words(self) -> None:
        """The recognizer heard the caller say something."""
        self.playout.interrupt("barge-in: caller words")

    async def close(self) -> None:
        """Hangup: cut the current reply whatever it allows, drop the queue, stop."""
        self.playout.interrupt("hangup", force=True)
        await self.playout.close()


class VoicedCall(Protocol):
    """What :meth:`Voices.say` needs of a call the registry holds."""

    @property
    def lifecycle(self) -> Lifecycle: ...

    @property
    def voice(self) -> CallVoice | None: ...


class Voices:
    def __init__(self, config: GatewayConfig, events: EventBus, tts: TtsClient | None, *,
                 find: Callable[[str], VoicedCall | None],
                 hangup: Callable[[str, str], bool]) -> None:
        self.config = config
        self._events, self._tts = events, tts
        self._find, self._hangup = find, hangup
        self._log = get_logger("calls")
        self.bot = BotClient(config.bot, self._bot_action)
        events.subscribe(self.bot.on_event)

    def apply_config(self, config: GatewayConfig) -> None:
        self.config = config
        self.bot.config = config.bot

    def attach(self, call_id: str, media: CallMedia) -> CallVoice | None:
        """A voice on the call's first leg we may send on (None: TTS off, or receive-only)."""
        if self._tts is None:
            return None
        tts = self.config.tts
        for leg in media.legs:
            stream = leg.stream
            if stream.direction in SEND_DIRECTIONS and stream.pt is not None:
                playout = Playout(call_id, leg.endpoint, encoding=stream.encoding or "PCMU",
                                  payload_type=stream.pt, ptime_ms=stream.ptime_ms,
                                  tts=self._tts, emit=self._events.emit,
                                  voice=tts.voice, rate=tts.rate)
                leg.sender = playout
                return CallVoice(playout, EnergyVad(threshold_dbfs=tts.barge_in_threshold_dbfs,
                                                    min_speech_ms=tts.barge_in_ms))
        return None

    def greet(self, voice: CallVoice | None) -> None:
        if voice is not None:
            voice.greet(self.config.tts.recording_notice, self.config.tts.greeting)

    def say(self, call_id: str, text: str, *, barge_in: bool, source: str) -> Reply:
        """Queue a spoken reply; :class:`SayRefused` when the call cannot speak."""
        call = self._find(call_id)
        if call is None:
            raise SayRefused(SayRefusal.UNKNOWN_CALL)
        if not self.config.tts.enabled or self._tts is None:
            raise SayRefused(SayRefusal.TTS_DISABLED)
        voice = call.voice
        if voice is None or not call.lifecycle.media_live:
            raise SayRefused(SayRefusal.CANNOT_PLAY)
        return voice.say(text, barge_in=barge_in, source=source)

    async def _bot_action(self, call_id: str, action: BotAction) -> None:
        if action.say:
            try:
                self.say(call_id, action.say, barge_in=True, source="bot")
            except SayRefused as refused:
                self._log.warning("bot.say_refused", call_id=call_id,
                                  reason=refused.reason.value)
        if action.hangup:
            self._hangup(call_id, "bot hangup")

    async def close(self) -> None:
        await self.bot.close()
