"""A call's life on the call side, h11 style: a phase enum and a transition table (pure).

The SIP dialog has its own state (:class:`gateway.sip.dialog.CallState`); this is what the
call side makes of what SIP tells it: offered (media opening), answered (200 sent),
confirmed (ACK seen, media flows), held (a re-offer put the media on hold), ending
(teardown running: the last transcripts are awaited), ended (torn down). Each input the
registry gets is a :class:`Trigger`; a trigger the current phase has no transition for is
a bug on our side and raises :class:`LifecycleError`, so the table is the whole truth.

Layer: pure core.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class CallPhase(enum.Enum):
    OFFERED = "offered"        # INVITE handed over: media is opening, no 200 yet
    ANSWERED = "answered"      # 200 OK sent, waiting for the ACK
    CONFIRMED = "confirmed"    # ACK received (or media resumed): media flows both ways
    HELD = "held"              # a re-offer put the media on hold (sendonly/inactive)
    ENDING = "ending"          # the dialog is over: teardown waits for the last transcript
    ENDED = "ended"            # torn down: the registry no longer holds the call


class Trigger(enum.Enum):
    """What happened to the call (SIP told us, or the teardown finished)."""

    ANSWERED = "answered"      # SIP sent the 200 OK
    CONFIRMED = "confirmed"    # SIP received the ACK for it (once per dialog)
    HELD = "held"              # a re-INVITE's media is on hold
    RESUMED = "resumed"        # a re-INVITE's media is not on hold
    ENDED = "ended"            # SIP ended the dialog (BYE, CANCEL, reject, timeout)
    TORN_DOWN = "torn_down"    # teardown done: ASR flushed, recording closed, event sent


_MID_CALL: dict[Trigger, CallPhase] = {
    Trigger.HELD: CallPhase.HELD,
    Trigger.RESUMED: CallPhase.CONFIRMED,
    Trigger.ENDED: CallPhase.ENDING,
}

# phase -> trigger -> next phase. A missing entry is our bug (LifecycleError).
TRANSITIONS: dict[CallPhase, dict[Trigger, CallPhase]] = {
    CallPhase.OFFERED: {Trigger.ANSWERED: CallPhase.ANSWERED, Trigger.ENDED: CallPhase.ENDING},
    CallPhase.ANSWERED: {Trigger.CONFIRMED: CallPhase.CONFIRMED, **_MID_CALL},
    # The ACK after a re-INVITE that came before it: the re-offer decided the media.
    CallPhase.CONFIRMED: {Trigger.CONFIRMED: CallPhase.CONFIRMED, **_MID_CALL},
    CallPhase.HELD: {Trigger.CONFIRMED: CallPhase.HELD, **_MID_CALL},
    CallPhase.ENDING: {Trigger.TORN_DOWN: CallPhase.ENDED},
    CallPhase.ENDED: {},
}

# Phases in which the call's media clock runs (RTP timeout, RTCP) and a reply may be spoken.
LIVE_MEDIA = frozenset({CallPhase.ANSWERED, CallPhase.CONFIRMED, CallPhase.HELD})


class LifecycleError(RuntimeError):
    """The registry fed a trigger the call's phase does not allow (a bug on our side)."""


def next_phase(phase: CallPhase, trigger: Trigger) -> CallPhase:
    """The phase ``trigger`` leads to from ``phase``; :class:`LifecycleError` if none."""
    try:
        return TRANSITIONS[phase][trigger]
    except KeyError:
        raise LifecycleError(f"no transition from {phase.name} on {trigger.name}") from None


@dataclass(slots=True)
class Lifecycle:
    """One call's phase; :meth:`move` is the only way to change it."""

    call_id: str
    phase: CallPhase = CallPhase.OFFERED

    def move(self, trigger: Trigger) -> CallPhase:
        """Apply ``trigger``; returns the phase it left (LifecycleError if not allowed)."""
        try:
            new = next_phase(self.phase, trigger)
        except LifecycleError as exc:
            raise LifecycleError(f"call {self.call_id}: {exc}") from None
        old, self.phase = self.phase, new
        return old

    @property
    def media_live(self) -> bool:
        """Answered and not ending: the media clock runs and replies may be spoken."""
        return self.phase in LIVE_MEDIA
