"""RTP inactivity for one call (sans-I/O: times are parameters).

:meth:`RtpTimeout.check` reports an expiry once, on the transition from active to timed out;
while the hangup it causes is in progress (a BYE being retransmitted) later checks say nothing.
Packets arriving again re-arm it, and so does hold (no media is expected then).

Layer: pure core.
"""

from __future__ import annotations


class RtpTimeout:
    __slots__ = ("last_activity", "expired")

    def __init__(self, now: float) -> None:
        self.last_activity = now
        self.expired = False

    def activity(self, at: float) -> None:
        """A packet arrived at ``at`` (or the call was put on hold, or re-negotiated)."""
        if at > self.last_activity:
            self.last_activity = at
            self.expired = False

    def check(self, now: float, timeout_s: float) -> str | None:
        """The hangup reason, the first time ``timeout_s`` passed without activity."""
        if self.expired or now - self.last_activity <= timeout_s:
            return None
        self.expired = True
        return f"rtp timeout ({timeout_s:g} s without packets)"
