"""bench/batch.py's pure pieces: Triton's Prometheus counters per model, and what Triton
batched between two snapshots of its statistics."""

from __future__ import annotations

from typing import Any

import pytest

from bench.batch import COUNTERS, batching, job_copies, prometheus_counters

METRICS = """\
# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="asr_cpu_default",version="1"} 480
nv_inference_count{model="asr_ack",version="1"} 7
nv_inference_exec_count{model="asr_cpu_default",version="1"} 31
nv_inference_exec_count{model="asr_cpu_default",version="2"} 1
nv_inference_request_success{model="asr_cpu_default",version="1"} 480
nv_inference_request_failure{model="asr_cpu_default",version="1"} 3
"""


def test_counters_of_one_model_summed_over_versions() -> None:
    assert prometheus_counters(METRICS, "asr_cpu_default") == {
        "nv_inference_count": 480.0, "nv_inference_exec_count": 32.0,
        "nv_inference_request_success": 480.0}
    assert prometheus_counters(METRICS, "asr_ack")["nv_inference_count"] == 7.0
    assert prometheus_counters(METRICS, "asr_ack")["nv_inference_exec_count"] == 0.0


def _snapshot(inferences: int, executions: int, sizes: dict[int, int],
              prom: tuple[float, float, float]) -> dict[str, Any]:
    return {"inferences": inferences, "executions": executions, "batch_sizes": sizes,
            "prometheus": dict(zip(COUNTERS, prom, strict=True))}


def test_batching_is_the_growth_between_snapshots() -> None:
    before = _snapshot(100, 50, {1: 40, 2: 5}, (100.0, 50.0, 100.0))
    after = _snapshot(580, 81, {1: 40, 2: 5, 13: 1, 3: 1, 16: 29}, (580.0, 81.0, 580.0))
    got = batching(before, after)
    assert got["inferences"] == 480 and got["executions"] == 31
    assert got["mean_batch"] == pytest.approx(480 / 31, abs=0.01)
    assert got["executions_by_batch_size"] == {"3": 1, "13": 1, "16": 29}   # sorted, no zeros
    assert got["prometheus_delta"] == {"nv_inference_count": 480.0,
                                       "nv_inference_exec_count": 31.0,
                                       "nv_inference_request_success": 480.0}
    assert got["prometheus_mean_batch"] == pytest.approx(15.48, abs=0.01)


def test_batching_with_nothing_executed_has_no_mean() -> None:
    same = _snapshot(10, 5, {2: 5}, (10.0, 5.0, 10.0))
    got = batching(same, same)
    assert got["mean_batch"] is None and got["prometheus_mean_batch"] is None
    assert got["executions_by_batch_size"] == {}


@pytest.mark.parametrize(("audio_s", "speed", "window_s", "outlasts", "expected"), [
    (240.0, 40.0, 25.0, 2.0, 9),       # 2 x 25 s at 40x real time = 2000 s of audio
    (240.0, 1.0, 25.0, 2.0, 1),        # slower than the window: one copy is enough
    (10.0, 1000.0, 60.0, 2.0, 100),    # bounded
    (240.0, None, 25.0, 2.0, 100),     # no speed measured: the most
    (0.0, 40.0, 25.0, 2.0, 100),
])
def test_job_copies_outlast_the_live_window(audio_s: float, speed: float | None,
                                            window_s: float, outlasts: float,
                                            expected: int) -> None:
    assert job_copies(audio_s, speed, window_s, outlasts) == expected
