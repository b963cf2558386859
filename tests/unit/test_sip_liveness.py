"""DispatchHealth: the SIP side's readiness check behind /readyz (issue 13 item 1)."""

from __future__ import annotations

from gateway.sip.liveness import DispatchHealth


def test_healthy_when_steps_succeed_and_no_deadline_is_overdue() -> None:
    h = DispatchHealth()
    h.step_done(True)
    ok, detail = h.check(now=100.0, next_deadline=100.5)
    assert ok and detail["consecutive_failures"] == 0 and detail["timer_overdue_s"] == 0.0


def test_consecutive_dispatch_failures_make_it_unready_and_one_success_recovers() -> None:
    h = DispatchHealth(max_consecutive_failures=3)
    for _ in range(2):
        h.step_done(False, "BrokenPipeError: [Errno 32] Broken pipe")
    assert h.check(0.0, None)[0] is True          # one bad message is not an outage
    h.step_done(False, "BrokenPipeError: [Errno 32] Broken pipe")
    ok, detail = h.check(0.0, None)
    assert not ok and detail["failures"] == 3 and "Broken pipe" in detail["last_error"]
    h.step_done(True)
    assert h.check(0.0, None)[0] is True
    assert h.check(0.0, None)[1]["failures"] == 3


def test_timers_that_stopped_firing_make_it_unready() -> None:
    h = DispatchHealth(timer_overdue_s=5.0)
    assert h.check(now=104.9, next_deadline=100.0)[0] is True
    ok, detail = h.check(now=105.0, next_deadline=100.0)
    assert not ok and detail["timer_overdue_s"] == 5.0
