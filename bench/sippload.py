"""Call load from sipp: N simultaneous PCMU calls streaming a looped mu-law file.

With ``two_legs`` the calls come from two sipp instances, ``agent`` and ``customer``,
whose k-th calls share ``X-Conversation-Id: <conv>-k``: the gateway joins each pair into
one conversation with an agent and a customer channel (the production shape). Each
instance runs in a thread around :func:`tests.peers.sipp.run_sipp`, bounded by sipp's
own ``-timeout`` and a kill after it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from tests.peers.ports import free_udp_port, free_udp_port_pair
from tests.peers.sipp import SippResult, run_sipp

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "uac_bench.xml"
_SIPP_SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class LoadPlan:
    calls: int                    # simultaneous calls, all instances together
    call_duration_s: float        # RTP streaming time of each call (sipp -d)
    ramp_s: float = 2.0           # all calls are placed within this time
    two_legs: bool = True
    total_calls: int | None = None  # calls to place in all (soak); default: ``calls``
    conversation: str = "bench"
    direction: str = "sendrecv"   # SDP direction offered (sendonly: the peer only receives)

    def legs(self) -> list[tuple[str, int]]:
        if not self.two_legs or self.calls < 2:
            return [("customer", self.calls)]
        half = self.calls // 2
        return [("agent", half), ("customer", self.calls - half)]

    def rate_cps(self, concurrent: int) -> float:
        return max(1.0, concurrent / max(self.ramp_s, 0.1))

    def timeout_s(self, concurrent: int, total: int) -> float:
        rounds = -(-total // max(concurrent, 1))
        return rounds * (self.call_duration_s + self.ramp_s + 5.0) + _SIPP_SLACK_S


class LoadRun:
    """The sipp instances of one plan, running in the background."""

    def __init__(self, plan: LoadPlan, target: str, media: Path, workdir: Path) -> None:
        self.plan = plan
        self.target = target
        self.media = media
        self.workdir = workdir
        self.results: dict[str, SippResult] = {}
        self.errors: dict[str, str] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> LoadRun:
        legs = self.plan.legs()
        for leg, concurrent in legs:
            total = concurrent if self.plan.total_calls is None else max(
                concurrent, self.plan.total_calls * concurrent // max(self.plan.calls, 1))
            thread = threading.Thread(target=self._run, args=(leg, concurrent, total),
                                      name=f"sipp-{leg}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def _run(self, leg: str, concurrent: int, total: int) -> None:
        try:
            self.results[leg] = run_sipp(
                SCENARIO, self.target, local_port=free_udp_port(), calls=total,
                rate=self.plan.rate_cps(concurrent), concurrent=concurrent,
                timeout_s=self.plan.timeout_s(concurrent, total),
                extra=["-d", str(int(self.plan.call_duration_s * 1000)), "-aa"],
                media_port=free_udp_port_pair(), media_file=self.media,
                keys={"conv": self.plan.conversation, "leg": leg,
                      "direction": self.plan.direction},
                workdir=self.workdir / f"sipp-{leg}")
        except Exception as exc:  # noqa: BLE001 - reported with the figures, never lost
            self.errors[leg] = repr(exc)

    def join(self) -> dict[str, SippResult]:
        for thread in self._threads:
            thread.join(self.plan.timeout_s(self.plan.calls, self.plan.total_calls
                                            or self.plan.calls) + _SIPP_SLACK_S)
        return self.results

    def successful(self) -> int:
        return sum(r.successful_calls for r in self.results.values())

    def failed(self) -> int:
        return sum(r.failed_calls for r in self.results.values()) + sum(
            1 for leg, _n in self.plan.legs() if leg not in self.results)

    def failure_report(self) -> str:
        parts = [f"{leg}: {err}" for leg, err in self.errors.items()]
        parts += [r.describe()[-3000:] for r in self.results.values() if not r.ok]
        return "\n".join(parts)
