"""Is the SIP side still answering? A pure check behind ``/readyz`` (time is a parameter).

Two symptoms of a SIP side that stopped working while the process still runs: every
dispatch of a received message or timer raises (so nothing gets answered), or the
transaction timers stopped firing (a deadline the core asked for is long past, so
retransmissions, timeouts and delayed answers never happen).

Layer: pure core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_CONSECUTIVE_FAILURES = 3
TIMER_OVERDUE_S = 5.0


@dataclass(slots=True)
class DispatchHealth:
    max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES
    timer_overdue_s: float = TIMER_OVERDUE_S
    consecutive_failures: int = 0
    failures: int = 0
    last_error: str = ""

    def step_done(self, ok: bool, error: str = "") -> None:
        """One dispatch step (a message, a timer, an answer) finished or raised."""
        if ok:
            self.consecutive_failures = 0
            return
        self.consecutive_failures += 1
        self.failures += 1
        self.last_error = error[:200]

    def check(self, now: float, next_deadline: float | None) -> tuple[bool, dict[str, Any]]:
        overdue = 0.0 if next_deadline is None else max(0.0, now - next_deadline)
        ok = (self.consecutive_failures < self.max_consecutive_failures
              and overdue < self.timer_overdue_s)
        return ok, {"ok": ok, "consecutive_failures": self.consecutive_failures,
                    "failures": self.failures, "last_error": self.last_error,
                    "timer_overdue_s": round(overdue, 3)}
