"""``bench soak``: N simultaneous calls placed continuously for T minutes (sipp keeps N up,
each call lasting ``call_duration_s``); the gateway's RSS and CPU are sampled every few
seconds and their trend (least-squares slope) reported, over the whole run and over its
second half (after warm-up)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procstat, promtext, report, stack
from bench.audio import looped_ulaw
from bench.figures import median, rounded, slope
from bench.sippload import LoadPlan, LoadRun
from tests.gateway_proc import GatewayProcess

NAME = "soak"
ENDED_SLACK_S = 30.0


@dataclass(frozen=True, slots=True)
class SoakParams:
    minutes: float = 2.0
    calls: int = 20
    call_duration_s: float = 30.0
    sample_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Sample:
    t_s: float               # since the load started
    rss_mb: float
    cpu_cores: float         # over the interval ending here
    active_calls: float
    lag_p99_ms: float | None  # over the interval ending here


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return math.nan


def _scrape(gw: GatewayProcess) -> str:
    status, body = gw.http("/metrics")
    return body.decode() if status == 200 else ""


def _lag_p99_ms(before: str, after: str) -> float | None:
    if not before or not after:
        return None
    name = "gateway_event_loop_lag_seconds"
    grown = promtext.growth(promtext.parse_histogram(after, name),
                            promtext.parse_histogram(before, name))
    value = promtext.quantile(grown, 0.99)
    return None if value is None else round(value * 1000, 2)


def _sample_loop(gw: GatewayProcess, pid: int, params: SoakParams) -> list[Sample]:
    t0 = time.monotonic()
    prev, prev_text = procstat.sample(pid), _scrape(gw)
    samples: list[Sample] = []
    end = t0 + params.minutes * 60
    while time.monotonic() < end:
        time.sleep(min(params.sample_s, max(0.0, end - time.monotonic())))
        cur, text = procstat.sample(pid), _scrape(gw)
        cores = (cur.cpu_s - prev.cpu_s) / max(cur.at_s - prev.at_s, 1e-6)
        samples.append(Sample(round(cur.at_s - t0, 2), round(cur.rss_bytes / 2**20, 2),
                              round(cores, 4), _gauge(text, "gateway_active_calls"),
                              _lag_p99_ms(prev_text, text)))
        prev, prev_text = cur, text
    return samples


def trend(samples: Sequence[Sample]) -> dict[str, float | None]:
    """Slopes per minute over all samples and over the second half (pure)."""
    half = samples[len(samples) // 2:]
    def per_min(points: Sequence[Sample], field: str) -> float | None:
        value = slope([p.t_s / 60 for p in points], [getattr(p, field) for p in points])
        return rounded(value, 4)
    return {"rss_mb_per_min": per_min(samples, "rss_mb"),
            "rss_mb_per_min_second_half": per_min(half, "rss_mb"),
            "cpu_cores_per_min": per_min(samples, "cpu_cores"),
            "cpu_cores_per_min_second_half": per_min(half, "cpu_cores")}


def measure(url: str, params: SoakParams, workdir: Path, media: Path) -> dict[str, Any]:
    rounds = math.ceil(params.minutes * 60 / params.call_duration_s)
    plan = LoadPlan(calls=params.calls, call_duration_s=params.call_duration_s,
                    total_calls=params.calls * rounds, conversation="soak")
    with stack.gateway(workdir / "gw-soak", url, max_calls=params.calls + 10) as gw:
        assert gw.proc is not None
        pid = gw.proc.pid
        rss_idle = procstat.rss_bytes(pid)
        load = LoadRun(plan, f"127.0.0.1:{gw.sip_port}", media, workdir).start()
        samples = _sample_loop(gw, pid, params)
        load.join()
        ended = gw.events("call.ended")
        rss_after = procstat.rss_bytes(pid)
    return {"samples": [_sample_dict(s) for s in samples],
            "trend": trend(samples), "rss_idle_mb": round(rss_idle / 2**20, 1),
            "rss_after_load_mb": round(rss_after / 2**20, 1),
            "cpu_cores_median": rounded(median([s.cpu_cores for s in samples]), 4),
            "calls_placed": load.successful() + load.failed(),
            "calls_ended": len(ended), "sipp_failed": load.failed(),
            "ended_other_than_remote_hangup": [e.get("reason") for e in ended
                                               if e.get("reason") != "remote hangup"],
            "failure_report": load.failure_report() or None}


def _sample_dict(s: Sample) -> dict[str, Any]:
    return {"t_s": s.t_s, "rss_mb": s.rss_mb, "cpu_cores": s.cpu_cores,
            "active_calls": s.active_calls, "lag_p99_ms": s.lag_p99_ms}


def run(params: SoakParams, workdir: Path, results_dir: Path) -> dict[str, Any]:
    started_at, t0 = report.now_iso(), time.monotonic()
    media = looped_ulaw(workdir)
    with stack.triton(["asr_ack"], workdir / "triton") as server:
        env = report.environment(server.http_url)
        result = measure(server.grpc_url, params, workdir, media)
    document = {
        "benchmark": NAME, "started_at": started_at,
        "duration_s": round(time.monotonic() - t0, 1), "environment": env,
        "parameters": {"minutes": params.minutes, "calls": params.calls,
                       "call_duration_s": params.call_duration_s,
                       "sample_s": params.sample_s, "asr_model": "asr_ack"},
        "results": result,
    }
    report.write_result(NAME, document, results_dir)
    t = result["trend"]
    report.show(f"soak ({params.calls} calls for {params.minutes:g} min)", [{
        "rss_idle_mb": result["rss_idle_mb"], "rss_after_mb": result["rss_after_load_mb"],
        "rss_mb_per_min": t["rss_mb_per_min"],
        "rss_mb_per_min_2nd_half": t["rss_mb_per_min_second_half"],
        "cpu_cores_median": result["cpu_cores_median"],
        "calls_ended": result["calls_ended"], "failed": result["sipp_failed"]}],
        ("rss_idle_mb", "rss_after_mb", "rss_mb_per_min", "rss_mb_per_min_2nd_half",
         "cpu_cores_median", "calls_ended", "failed"))
    return document
