"""Why the call side refuses a command from outside (the HTTP API, the bot), as types.

:meth:`gateway.calls.registry.CallManager.say` returns the queued reply or raises
:class:`SayRefused` carrying a :class:`SayRefusal`, and
:meth:`~gateway.calls.registry.CallManager.set_secure` raises :class:`SecureRefused` carrying a
:class:`SecureRefusal`; the HTTP layer maps the reason to a status code by its value, never by
comparing message text.

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


class SecureRefusal(enum.Enum):
    """Why a call's secure (keypad) mode was not changed; the value is the message clients see."""

    UNKNOWN_CALL = "unknown call"
    ENDING = "call is ending"


class SecureRefused(Exception):
    """A secure-mode change that cannot be made on this call now, and why."""

    def __init__(self, reason: SecureRefusal) -> None:
        super().__init__(reason.value)
        self.reason = reason
