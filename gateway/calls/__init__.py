"""Calls: one owner per concern.

- :mod:`~gateway.calls.lifecycle` (pure): a call's phase and its transition table.
- :mod:`~gateway.calls.commands` (pure): why a command from outside is refused.
- :mod:`~gateway.calls.registry`: :class:`CallManager`, the SIP service's call side; holds
  every call, moves its lifecycle, owns its tasks, media clock and teardown.
- :mod:`~gateway.calls.conversation`: channels, agent/customer roles (SIPREC too),
  conversations, recording, the ASR streams and transcript events.
- :mod:`~gateway.calls.timeline`: a conversation's timeline, recorder and channel sinks.
- :mod:`~gateway.calls.voice`: spoken replies, barge-in, voice detection, bot actions.

``from gateway.calls import CallManager`` stays the daemon's way in.

Layer: package.
"""

from gateway.calls.registry import CallManager

__all__ = ["CallManager"]
