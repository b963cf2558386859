"""The benchmark harness end to end with tiny parameters: ``python -m bench capacity`` with
2 calls of a few seconds (real Triton with asr_ack, real gateway, sipp, pjsua2 reference)
writes its JSON result with plausible figures and no failed call. Plus the harness's own
arithmetic (histogram quantiles, latency attribution) against hand-worked values."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.asr_latency import sentence_latencies
from bench.promtext import growth, parse_histogram, quantile
from bench.speechcalls import Spoken
from tests.integration.conftest import require_binary

REPO = Path(__file__).resolve().parents[2]
CALLS = 2
DURATION_S = 5.0
FRAMES_PER_S = 50
RUN_TIMEOUT_S = 150


def _run_capacity(results: Path, workdir: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench", "--results-dir", str(results), "--workdir",
           str(workdir), "capacity", "--calls", str(CALLS), "--duration-s", str(DURATION_S),
           "--idle-s", "1", "--reference-calls", str(CALLS)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          check=False)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "capacity" in done.stdout and "pjsua" in done.stdout, done.stdout
    document: dict[str, Any] = json.loads((results / "capacity.json").read_text())
    return document


@pytest.fixture(scope="module")
def capacity_result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    require_binary("sipp")
    require_binary("espeak-ng")
    tmp = tmp_path_factory.mktemp("bench")
    return _run_capacity(tmp / "results", tmp / "work")


@pytest.mark.slow
def test_capacity_result_names_the_host_and_versions(capacity_result: dict[str, Any]) -> None:
    env = capacity_result["environment"]
    assert env["cores"] == os.cpu_count()
    assert env["python"] == platform.python_version()
    assert env["gateway"] and env["triton"] and env["sipp"] and env["pjsua2"]
    assert capacity_result["parameters"]["calls"] == [CALLS]
    assert capacity_result["parameters"]["call_duration_s"] == DURATION_S


@pytest.mark.slow
def test_capacity_run_had_no_failed_call(capacity_result: dict[str, Any]) -> None:
    (row,) = capacity_result["gateway"]
    assert row["calls"] == CALLS and row["all_answered_in_time"]
    assert row["sipp_successful"] == CALLS and row["sipp_failed"] == 0
    assert row["calls_ended"] == CALLS and row["ended_other_than_remote_hangup"] == []
    reference = capacity_result["reference_pjsua"]
    assert reference["sipp_successful"] == CALLS and reference["sipp_failed"] == 0


@pytest.mark.slow
def test_capacity_figures_are_plausible(capacity_result: dict[str, Any]) -> None:
    (row,) = capacity_result["gateway"]
    sent = CALLS * DURATION_S * FRAMES_PER_S          # what sipp streams, from the parameters
    assert 0.8 * sent <= row["frames"]["expected"] <= 1.2 * sent
    assert row["frames"]["received"] >= 0.9 * row["frames"]["expected"]
    assert 0 < row["cpu_s_per_call_s"] < 1.0          # a call never needs a whole core
    assert row["rss_loaded_mb"] > 20 and row["window_s"] > 0
    assert row["event_loop_lag_ms"]["observations"] > 0
    assert row["asr_send_delay_ms"]["observations"] > 0   # audio did reach Triton
    assert row["asr_send_delay_ms"]["p50"] is not None
    reference = capacity_result["reference_pjsua"]
    assert 0.8 * sent <= reference["frames_read"] <= 1.2 * sent
    headline = capacity_result["headline"]
    assert headline["calls"] == CALLS
    assert headline["pjsua_cpu_s_per_call_s"] == reference["cpu_s_per_call_s"] >= 0
    if reference["cpu_s_per_call_s"] > 0:
        assert headline["gateway_over_pjsua"] > 0
    else:
        # two idle-ish pjsua calls over a few seconds can stay under one 10 ms CPU tick of
        # /proc/<pid>/stat: the ratio is then undefined, and reported as such
        assert headline["gateway_over_pjsua"] is None


_METRICS = """# TYPE lag histogram
lag_bucket{le="0.01"} 10.0
lag_bucket{le="0.1"} 20.0
lag_bucket{le="+Inf"} 20.0
lag_count 20.0
lag_sum 0.9
"""


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    before = parse_histogram(_METRICS.replace("20.0", "0.0").replace("10.0", "0.0"), "lag")
    grown = growth(parse_histogram(_METRICS, "lag"), before)
    # 20 observations: 10 in (0, 0.01], 10 in (0.01, 0.1]; the median is the 10th -> 0.01,
    # the 15th lies halfway through the second bucket -> 0.055
    assert quantile(grown, 0.5) == pytest.approx(0.01)
    assert quantile(grown, 0.75) == pytest.approx(0.055)
    assert quantile(before, 0.5) is None


def test_latencies_are_measured_from_the_senders_clock() -> None:
    spoken = [Spoken("one", 1.0, 3.0), Spoken("two", 5.0, 7.0)]
    wall0 = 1000.0
    finals = [{"end_s": 3.2, "ts": 1004.1, "latency_s": 0.8},
              {"end_s": 7.1, "ts": 1008.0, "latency_s": 0.9}]
    partials = [{"end_s": 2.0, "ts": 1002.5, "text": "on"},
                {"end_s": 6.0, "ts": 1006.2, "text": ""},
                {"end_s": 6.2, "ts": 1006.4, "text": "tw"}]
    first, second = sentence_latencies(spoken, wall0, finals, partials)
    assert first.final_s == pytest.approx(1.1) and first.partial_s == pytest.approx(1.5)
    assert second.final_s == pytest.approx(1.0) and second.partial_s == pytest.approx(1.4)
    assert second.gateway_final_s == pytest.approx(0.9)
