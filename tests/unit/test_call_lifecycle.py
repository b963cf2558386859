"""Tests for gateway.calls.lifecycle: the call side's phase table, h11 style.

The allowed transitions are written out here by hand (what SIP can tell the call side, in
which phase), not read from the module; every other (phase, trigger) pair must raise.
"""

from __future__ import annotations

import itertools

import pytest

from gateway.calls.commands import SayRefusal, SayRefused
from gateway.calls.lifecycle import (
    TRANSITIONS,
    CallPhase,
    Lifecycle,
    LifecycleError,
    Trigger,
    next_phase,
)

P, T = CallPhase, Trigger

ALLOWED: dict[tuple[CallPhase, Trigger], CallPhase] = {
    (P.OFFERED, T.ANSWERED): P.ANSWERED,
    (P.OFFERED, T.ENDED): P.ENDING,           # CANCEL, reject, no RTP port
    (P.ANSWERED, T.CONFIRMED): P.CONFIRMED,   # the ACK
    (P.ANSWERED, T.HELD): P.HELD,             # a re-INVITE before the ACK
    (P.ANSWERED, T.RESUMED): P.CONFIRMED,
    (P.ANSWERED, T.ENDED): P.ENDING,          # no ACK: SIP sent BYE
    (P.CONFIRMED, T.CONFIRMED): P.CONFIRMED,  # the ACK after such a re-INVITE
    (P.CONFIRMED, T.HELD): P.HELD,
    (P.CONFIRMED, T.RESUMED): P.CONFIRMED,
    (P.CONFIRMED, T.ENDED): P.ENDING,
    (P.HELD, T.CONFIRMED): P.HELD,            # the ACK does not take a call off hold
    (P.HELD, T.HELD): P.HELD,
    (P.HELD, T.RESUMED): P.CONFIRMED,
    (P.HELD, T.ENDED): P.ENDING,
    (P.ENDING, T.TORN_DOWN): P.ENDED,
}
FORBIDDEN = [pair for pair in itertools.product(CallPhase, Trigger) if pair not in ALLOWED]


@pytest.mark.parametrize(("phase", "trigger"), sorted(ALLOWED, key=str))
def test_every_allowed_transition(phase: CallPhase, trigger: Trigger) -> None:
    assert next_phase(phase, trigger) is ALLOWED[(phase, trigger)]
    life = Lifecycle("c-1", phase)
    assert life.move(trigger) is phase
    assert life.phase is ALLOWED[(phase, trigger)]


@pytest.mark.parametrize(("phase", "trigger"), sorted(FORBIDDEN, key=str))
def test_a_missing_transition_raises_and_leaves_the_phase(phase: CallPhase,
                                                          trigger: Trigger) -> None:
    with pytest.raises(LifecycleError, match=f"{phase.name} on {trigger.name}"):
        next_phase(phase, trigger)
    life = Lifecycle("c-7", phase)
    with pytest.raises(LifecycleError, match="call c-7"):
        life.move(trigger)
    assert life.phase is phase


def test_the_table_is_exactly_the_allowed_list() -> None:
    table = {(p, t): new for p, row in TRANSITIONS.items() for t, new in row.items()}
    assert table == ALLOWED
    assert set(TRANSITIONS) == set(CallPhase)
    assert len(FORBIDDEN) == len(CallPhase) * len(Trigger) - len(ALLOWED) == 21


def test_a_whole_call_and_its_media_clock() -> None:
    life = Lifecycle("c-2")
    seen = [(life.phase, life.media_live)]
    for trigger in (T.ANSWERED, T.CONFIRMED, T.HELD, T.RESUMED, T.ENDED, T.TORN_DOWN):
        life.move(trigger)
        seen.append((life.phase, life.media_live))
    assert seen == [(P.OFFERED, False), (P.ANSWERED, True), (P.CONFIRMED, True),
                    (P.HELD, True), (P.CONFIRMED, True), (P.ENDING, False), (P.ENDED, False)]


def test_ended_once_only_and_nothing_after_teardown() -> None:
    life = Lifecycle("c-3")
    life.move(T.ENDED)
    with pytest.raises(LifecycleError):
        life.move(T.ENDED)          # a second teardown for one call is a bug
    life.move(T.TORN_DOWN)
    for trigger in Trigger:
        with pytest.raises(LifecycleError):
            life.move(trigger)


def test_phase_values_are_the_strings_of_the_api_and_events() -> None:
    """GET /v1/calls "state" and call.media_changed "state" show these values."""
    assert [p.value for p in CallPhase] == ["offered", "answered", "confirmed", "held",
                                            "ending", "ended"]


@pytest.mark.parametrize("reason", list(SayRefusal))
def test_say_refused_carries_its_reason_and_message(reason: SayRefusal) -> None:
    refused = SayRefused(reason)
    assert refused.reason is reason and str(refused) == reason.value
