"""``bench capacity``: how much CPU and memory the gateway spends per call, and whether its
media path keeps up, at N simultaneous sipp calls on loopback (ASR: ``asr_ack``).

Per N: a fresh gateway; an idle baseline (CPU rate, RSS); sipp places the N calls within
``ramp_s``; once all are answered the measuring window runs until the first call is due
to end. CPU is /proc utime+stime over the window, RSS the median sampled in it; the
event-loop lag and audio->Triton send delay quantiles come from the growth of the
gateway's histograms over the window; frame loss from the ``call.ended`` events.
The reference is bench/pjsua_sink.py receiving the same sipp load (``reference_calls``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procstat, promtext, report, stack
from bench.audio import looped_ulaw
from bench.figures import median, ratio, rounded
from bench.reference import PjsuaSink
from bench.sippload import LoadPlan, LoadRun
from tests.gateway_proc import GatewayProcess

NAME = "capacity"
SETTLE_S = 1.0
END_MARGIN_S = 1.0
SAMPLE_PERIOD_S = 0.5
ANSWER_SLACK_S = 20.0
ENDED_TIMEOUT_S = 30.0
FRAMES_PER_S = 50


@dataclass(frozen=True, slots=True)
class CapacityParams:
    calls: tuple[int, ...] = (4, 50, 100, 200)
    call_duration_s: float = 20.0
    ramp_s: float = 2.0
    idle_s: float = 5.0
    reference_calls: int = 4          # 0: no pjsua reference
    two_legs: bool = True
    chunk_ms: int = 160               # the gateway's triton.chunk_ms (audio per ASR request)


@dataclass(frozen=True, slots=True)
class Window:
    """CPU and memory of one process over the measuring window."""

    cpu_s: float
    wall_s: float
    rss_bytes: int
    idle_cpu_rate: float
    idle_rss_bytes: int
    host_busy_cores: float            # every process on the host, over the window

    def per_call_s(self, calls: int) -> float:
        return self.cpu_s / (calls * self.wall_s)

    def net_per_call_s(self, calls: int) -> float:
        return (self.cpu_s - self.idle_cpu_rate * self.wall_s) / (calls * self.wall_s)

    def rss_per_call_kb(self, calls: int) -> float:
        return (self.rss_bytes - self.idle_rss_bytes) / calls / 1024


def _idle(pid: int, idle_s: float) -> tuple[float, int]:
    first = procstat.sample(pid)
    time.sleep(idle_s)
    last = procstat.sample(pid)
    return (last.cpu_s - first.cpu_s) / (last.at_s - first.at_s), last.rss_bytes


def _wait_answered(answered: Callable[[], int], calls: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while answered() < calls:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _window(pid: int, until: float, idle: tuple[float, int]) -> Window:
    """Sample ``pid`` from now until ``until`` (monotonic)."""
    host_before = procstat.host_busy_seconds()
    first = procstat.sample(pid)
    rss = [first.rss_bytes]
    while time.monotonic() + SAMPLE_PERIOD_S < until:
        time.sleep(SAMPLE_PERIOD_S)
        rss.append(procstat.rss_bytes(pid))
    last = procstat.sample(pid)
    wall = last.at_s - first.at_s
    host = (procstat.host_busy_seconds() - host_before) / wall
    return Window(last.cpu_s - first.cpu_s, wall, int(median([float(r) for r in rss]) or 0),
                  idle[0], idle[1], host)


def _leg_totals(ended: list[dict[str, Any]]) -> dict[str, int]:
    totals = {"expected": 0, "received": 0, "lost": 0, "late": 0, "concealed": 0}
    for event in ended:
        for leg in event.get("legs", []):
            jb = leg.get("jitter_buffer", {})
            totals["expected"] += int(leg.get("expected", 0))
            totals["received"] += int(leg.get("received", 0))
            totals["lost"] += int(leg.get("lost", 0))
            totals["late"] += int(jb.get("late", 0))
            totals["concealed"] += int(jb.get("concealed_frames", 0))
    return totals


def _quantiles_ms(before: str, after: str, name: str, qs: Mapping[str, float]
                  ) -> dict[str, float | None]:
    """Quantiles (ms) of what the histogram ``name`` observed between the two scrapes, and
    how many observations that was."""
    grown = promtext.growth(promtext.parse_histogram(after, name),
                            promtext.parse_histogram(before, name))
    out: dict[str, float | None] = {}
    for label, q in qs.items():
        value = promtext.quantile(grown, q)
        out[label] = rounded(None if value is None else value * 1000, 2)
    out["observations"] = grown.count
    return out


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def _scrape(gw: GatewayProcess) -> str:
    status, body = gw.http("/metrics")
    if status != 200:
        raise stack.BenchSetupError(f"/metrics answered {status}")
    return body.decode()


@dataclass(slots=True)
class _Run:
    """What one gateway run needs from the surroundings."""

    params: CapacityParams
    triton_url: str
    triton_pid: int
    media: Path
    workdir: Path


def _plan(params: CapacityParams, calls: int, direction: str = "sendrecv") -> LoadPlan:
    return LoadPlan(calls=calls, call_duration_s=params.call_duration_s, ramp_s=params.ramp_s,
                    two_legs=params.two_legs, direction=direction)


def measure_gateway(run: _Run, calls: int) -> dict[str, Any]:
    workdir = run.workdir / f"gateway-{calls}"
    extra = {"triton": {"chunk_ms": run.params.chunk_ms}}
    with stack.gateway(workdir, run.triton_url, max_calls=calls + 10, extra=extra) as gw:
        assert gw.proc is not None
        pid = gw.proc.pid
        idle = _idle(pid, run.params.idle_s)
        udp_before = procstat.udp_receive_errors()
        load = LoadRun(_plan(run.params, calls), f"127.0.0.1:{gw.sip_port}", run.media,
                       workdir).start()
        started = time.monotonic()
        all_answered = _wait_answered(lambda: len(gw.events("call.answered")), calls,
                                      run.params.ramp_s + ANSWER_SLACK_S)
        time.sleep(SETTLE_S)
        before = _scrape(gw)
        triton_before = procstat.tree_cpu_seconds(run.triton_pid)
        window = _window(pid, started + run.params.call_duration_s - END_MARGIN_S, idle)
        after = _scrape(gw)
        backlog_s = _gauge(after, "gateway_asr_buffered_seconds")
        triton_cpu = procstat.tree_cpu_seconds(run.triton_pid) - triton_before
        load.join()
        _wait_answered(lambda: len(gw.events("call.ended")), calls, ENDED_TIMEOUT_S)
        ended = gw.events("call.ended")
        udp_errors = procstat.udp_receive_errors() - udp_before
    row = _gateway_row(calls, window, all_answered, load, ended, (before, after), triton_cpu,
                       udp_errors)
    row["asr_buffered_s_per_channel_at_window_end"] = rounded(backlog_s / calls, 3)
    return row


def _gateway_row(calls: int, window: Window, all_answered: bool, load: LoadRun,
                 ended: list[dict[str, Any]], scrapes: tuple[str, str], triton_cpu_s: float,
                 udp_errors: int) -> dict[str, Any]:
    legs = _leg_totals(ended)
    expected = max(legs["expected"], 1)
    lag = _quantiles_ms(*scrapes, "gateway_event_loop_lag_seconds", {"p50": 0.5, "p99": 0.99})
    send = _quantiles_ms(*scrapes, "gateway_asr_send_delay_seconds", {"p50": 0.5, "p99": 0.99})
    not_remote = [e["reason"] for e in ended if e.get("reason") != "remote hangup"]
    return {
        "calls": calls,
        "window_s": round(window.wall_s, 2),
        "all_answered_in_time": all_answered,
        "sipp_successful": load.successful(),
        "sipp_failed": load.failed(),
        "calls_ended": len(ended),
        "ended_other_than_remote_hangup": not_remote,
        "cpu_s_per_call_s": rounded(window.per_call_s(calls), 5),
        "cpu_s_per_call_s_net_of_idle": rounded(window.net_per_call_s(calls), 5),
        "cpu_cores_busy": rounded(window.cpu_s / window.wall_s, 3),
        "host_busy_cores": rounded(window.host_busy_cores, 3),
        "idle_cpu_cores": rounded(window.idle_cpu_rate, 4),
        "rss_idle_mb": round(window.idle_rss_bytes / 2**20, 1),
        "rss_loaded_mb": round(window.rss_bytes / 2**20, 1),
        "rss_per_call_kb": round(window.rss_per_call_kb(calls), 1),
        "frames": legs,
        "lost_pct": round(100 * legs["lost"] / expected, 3),
        "late_pct": round(100 * legs["late"] / expected, 3),
        "concealed_pct": round(100 * legs["concealed"] / expected, 3),
        "udp_rcvbuf_errors_host": udp_errors,
        "event_loop_lag_ms": lag,
        "asr_send_delay_ms": send,
        "asr_requests_per_channel_s": rounded((send["observations"] or 0.0)
                                              / (calls * window.wall_s), 3),
        "triton_cpu_s_per_call_s": rounded(triton_cpu_s / (calls * window.wall_s), 5),
        "failure_report": load.failure_report() or None,
    }


def measure_pjsua(run: _Run, calls: int) -> dict[str, Any]:
    workdir = run.workdir / f"pjsua-{calls}"
    timeout_s = run.params.call_duration_s + run.params.idle_s + 60
    with PjsuaSink(workdir, timeout_s) as sink:
        idle = _idle(sink.pid, run.params.idle_s)
        # offered sendonly, pjsua answers recvonly: it sends no RTP, like the gateway
        load = LoadRun(_plan(run.params, calls, "sendonly"), f"127.0.0.1:{sink.port}",
                       run.media, workdir).start()
        started = time.monotonic()
        all_answered = _wait_answered(lambda: sink.count("answered"), calls,
                                      run.params.ramp_s + ANSWER_SLACK_S)
        time.sleep(SETTLE_S)
        window = _window(sink.pid, started + run.params.call_duration_s - END_MARGIN_S,
                            idle)
        load.join()
        _wait_answered(lambda: sink.count("ended"), calls, ENDED_TIMEOUT_S)
        frames = sink.frames_read()
    expected = int(calls * run.params.call_duration_s * FRAMES_PER_S)
    return {
        "calls": calls, "window_s": round(window.wall_s, 2),
        "all_answered_in_time": all_answered,
        "sipp_successful": load.successful(), "sipp_failed": load.failed(),
        "cpu_s_per_call_s": rounded(window.per_call_s(calls), 5),
        "cpu_s_per_call_s_net_of_idle": rounded(window.net_per_call_s(calls), 5),
        "idle_cpu_cores": rounded(window.idle_cpu_rate, 4),
        "host_busy_cores": rounded(window.host_busy_cores, 3),
        "rss_idle_mb": round(window.idle_rss_bytes / 2**20, 1),
        "rss_per_call_kb": round(window.rss_per_call_kb(calls), 1),
        "frames_read": frames, "frames_expected_approx": expected,
        "failure_report": load.failure_report() or None,
    }


def _headline(rows: list[dict[str, Any]], reference: dict[str, Any] | None
              ) -> dict[str, Any] | None:
    if reference is None:
        return None
    same = [r for r in rows if r["calls"] == reference["calls"]]
    if not same:
        return None
    gw = same[0]
    return {
        "calls": reference["calls"],
        "gateway_cpu_s_per_call_s": gw["cpu_s_per_call_s"],
        "pjsua_cpu_s_per_call_s": reference["cpu_s_per_call_s"],
        "gateway_over_pjsua": rounded(ratio(gw["cpu_s_per_call_s"],
                                            reference["cpu_s_per_call_s"]), 2),
        "gateway_over_pjsua_net_of_idle": rounded(ratio(
            gw["cpu_s_per_call_s_net_of_idle"], reference["cpu_s_per_call_s_net_of_idle"]), 2),
    }


TABLE_COLUMNS = ("calls", "cpu_ms_per_call_s", "vs_pjsua", "rss_per_call_kb", "lost_pct",
                 "late_pct", "concealed_pct", "lag_p99_ms", "send_p50_ms", "send_p99_ms",
                 "failed")


def table_rows(rows: list[dict[str, Any]], reference: dict[str, Any] | None
               ) -> list[dict[str, Any]]:
    pj = reference["cpu_s_per_call_s"] if reference else None
    out = []
    if reference is not None:
        out.append({"calls": f"pjsua {reference['calls']}",
                    "cpu_ms_per_call_s": 1000 * reference["cpu_s_per_call_s"],
                    "vs_pjsua": 1.0, "rss_per_call_kb": reference["rss_per_call_kb"],
                    "failed": reference["sipp_failed"]})
    for r in rows:
        out.append({"calls": r["calls"], "cpu_ms_per_call_s": 1000 * r["cpu_s_per_call_s"],
                    "vs_pjsua": rounded(ratio(r["cpu_s_per_call_s"], pj), 2),
                    "rss_per_call_kb": r["rss_per_call_kb"], "lost_pct": r["lost_pct"],
                    "late_pct": r["late_pct"], "concealed_pct": r["concealed_pct"],
                    "lag_p99_ms": r["event_loop_lag_ms"]["p99"],
                    "send_p50_ms": r["asr_send_delay_ms"]["p50"],
                    "send_p99_ms": r["asr_send_delay_ms"]["p99"],
                    "failed": r["sipp_failed"] + len(r["ended_other_than_remote_hangup"])})
    return out


def run(params: CapacityParams, workdir: Path, results_dir: Path) -> dict[str, Any]:
    started_at = report.now_iso()
    t0 = time.monotonic()
    media = looped_ulaw(workdir)
    with stack.triton(["asr_ack"], workdir / "triton") as server:
        assert server.pid is not None
        env = report.environment(server.http_url)
        ctx = _Run(params, server.grpc_url, server.pid, media, workdir)
        reference = (measure_pjsua(ctx, params.reference_calls)
                     if params.reference_calls else None)
        rows = [measure_gateway(ctx, n) for n in params.calls]
    document = {
        "benchmark": NAME, "started_at": started_at,
        "duration_s": round(time.monotonic() - t0, 1), "environment": env,
        "parameters": _params(params),
        "headline": _headline(rows, reference),
        "reference_pjsua": reference, "gateway": rows,
    }
    report.write_result(NAME, document, results_dir)
    report.show(f"capacity (asr_ack, {params.call_duration_s:g} s calls)",
                table_rows(rows, reference), TABLE_COLUMNS)
    return document


def _params(params: CapacityParams) -> dict[str, Any]:
    return {"calls": list(params.calls), "call_duration_s": params.call_duration_s,
            "ramp_s": params.ramp_s, "idle_s": params.idle_s,
            "reference_calls": params.reference_calls, "two_legs": params.two_legs,
            "chunk_ms": params.chunk_ms, "asr_model": "asr_ack"}
