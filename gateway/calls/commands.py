"""Why the call side refuses a command from outside (the HTTP API, the bot), as types.

:meth:`gateway.calls.registry.CallManager.say` returns the queued reply or raises
:class:`SayRefused` carrying a :class:`SayRefusal`; the HTTP layer maps the reason to a
status code by its value, never by comparing message text.

Layer: pure core.
"""

from __future__ import annotations

import enum


class SayRefusal(enum.Enum):
    """Why a spoken reply was not queued; the value is the message clients see."""

    UNKNOWN_CALL = "unknown call"
    TTS_DISABLED = "tts disabled"
    CANNOT_PLAY = "call cannot play audio (not answered, or receive-only)"


class SayRefused(Exception):
    """A reply that cannot be spoken on this call now, and why."""

    def __init__(self, reason: SayRefusal) -> None:
        super().__init__(reason.value)
        self.reason = reason
