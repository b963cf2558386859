"""bench asr_latency's pure pieces: the silence-suppressing sender's packets, the last
sentence after RTP stopped, the endpointing comparison, and the model-variant configs."""

from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.asr_latency import (
    after_rtp_stop,
    chunk_comparison,
    endpointing_comparison,
    parameter_comparison,
    resampler_comparison,
)
from bench.modelrepo import (
    Variation,
    config_parameter,
    configured,
    parameter_variants,
    variant_name,
    with_parameter,
)
from bench.rtpcall import FRAME_SAMPLES, talkspurt_packets
from bench.speechcalls import (
    CallOutcome,
    CallScript,
    Spoken,
    _wait_finals,
    heard_last,
    talkspurts,
)

CONFIG = '''name: "asr_cpu_default"
backend: "python"
parameters [
  { key: "endpointing", value: { string_value: "vad" } },
  { key: "end_silence_ms", value: { string_value: "600" } }
]
'''


def _header(packet: bytes) -> tuple[int, int, int]:
    _b0, b1, seq, ts, _ssrc = struct.unpack("!BBHII", packet[:12])
    return b1 >> 7, seq, ts


def test_talkspurt_packets_send_only_speech_with_continuous_sequence_numbers() -> None:
    pcm = np.zeros(10 * FRAME_SAMPLES, np.int16)
    packets, silent = talkspurt_packets(pcm, ssrc=0x1000, talk=[(1, 3), (6, 8)])
    assert len(packets) == 8                       # nothing after the last talkspurt
    assert silent == {0, 3, 4, 5}
    sent = [_header(packets[i]) for i in (1, 2, 6, 7)]
    markers, seqs, stamps = zip(*sent, strict=True)
    assert markers == (1, 0, 1, 0)                 # each talkspurt starts with the marker
    assert [s - seqs[0] for s in seqs] == [0, 1, 2, 3]   # no gap: not loss
    assert [t - stamps[0] for t in stamps] == [0, 160, 800, 960]   # the clock jumps
    assert all(len(packets[i]) == 12 + FRAME_SAMPLES for i in (1, 2, 6, 7))


def test_talkspurts_cover_each_sentence_to_the_end_of_its_speech() -> None:
    spoken = [Spoken("a", 0.51, 1.0), Spoken("b", 2.0, 2.73)]
    assert talkspurts(spoken) == [(25, 50), (100, 137)]


def _outcome(spoken: list[Spoken], finals: list[dict[str, Any]], hung_up_at: float
             ) -> CallOutcome:
    script = CallScript(np.zeros(8000, np.int16), tuple(spoken), talk_only=True)
    return CallOutcome(script, "c1", 1000.0, tuple(finals), (), {"legs": []}, hung_up_at)


def test_after_rtp_stop_sorts_the_last_finals_by_when_they_came() -> None:
    spoken = [Spoken("one", 1.0, 2.0), Spoken("two", 4.0, 5.0)]
    in_time = _outcome(spoken, [{"end_s": 2.1, "ts": 1002.5}, {"end_s": 5.1, "ts": 1005.4}],
                       hung_up_at=1010.0)
    late = _outcome(spoken, [{"end_s": 5.2, "ts": 1008.0}], hung_up_at=1010.0)
    at_bye = _outcome(spoken, [{"end_s": 5.2, "ts": 1011.0}], hung_up_at=1010.0)
    none = _outcome(spoken, [{"end_s": 2.1, "ts": 1002.5}], hung_up_at=1010.0)
    got = after_rtp_stop([in_time, late, at_bye, none], bound_s=2.0)
    assert got["last_sentences"] == 4 and got["finals_within_bound"] == 1
    assert got["finals_later"] == 1 and got["finals_after_hangup"] == 1
    assert got["final_after_speech_end_s"]["p50"] == pytest.approx(0.4)
    assert heard_last(spoken, in_time.finals) and not heard_last(spoken, none.finals)


def _row(endpointing: str, calls: int, p50: float, p95: float | None) -> dict[str, Any]:
    return {"model": "asr_cpu_default", "endpointing": endpointing, "rtp": "continuous",
            "varied": {"endpointing": endpointing},
            "calls": calls, "final_after_speech_end_s": {"p50": p50, "p95": p95}}


def test_endpointing_comparison_is_over_the_first_value_of_the_same_condition() -> None:
    rows = [_row("energy", 1, 1.0, 2.0), _row("vad", 1, 0.5, 1.0), _row("energy", 10, 2.0, 4.0),
            _row("vad", 10, 1.0, None), {**_row("x", 1, 1, 1), "varied": None},
            {**_row("vad", 1, 0.3, 0.3), "varied": {"att_context_size": "70,1"}}]
    got = endpointing_comparison(rows)
    assert [(c["calls"], c["baseline"], c["endpointing"]) for c in got] == [
        (1, "energy", "vad"), (10, "energy", "vad")]
    assert got[0]["final_p50_ratio"] == 0.5 and got[0]["final_p95_ratio"] == 0.5
    assert got[1]["final_p95_ratio"] is None
    # a value alone in its condition is compared with nothing
    assert [c["parameter"] for c in parameter_comparison(rows)] == ["endpointing"] * 2
    pair = rows[-1:] + [{**rows[-1], "varied": {"att_context_size": "70,13"}}]
    (lookahead,) = parameter_comparison(pair)
    assert (lookahead["baseline"], lookahead["value"]) == ("70,1", "70,13")
    assert lookahead["final_p50_ratio"] == 1.0


def test_parameter_variants_link_the_models_and_rewrite_one_config(tmp_path: Path) -> None:
    ep = configured("asr_cpu_default", "endpointing")
    ctx = configured("asr_streaming_nemo", "att_context_size")
    assert ep is not None and ctx is not None
    other_ep = "energy" if ep != "energy" else "vad"
    got = parameter_variants(
        ["asr_cpu_default", "asr_streaming_nemo", "asr_ack"],
        [Variation("endpointing", (other_ep, ep), ("asr_cpu_default",)),
         Variation("att_context_size", (ctx, "70,0"), ("asr_streaming_nemo",))], tmp_path)
    assert got.repository == tmp_path
    assert got.served("asr_cpu_default") == [
        (f"asr_cpu_default_ep_{other_ep}", ("endpointing", other_ep)),
        ("asr_cpu_default", ("endpointing", ep))]
    assert got.served("asr_streaming_nemo")[1] == (
        "asr_streaming_nemo_att_context_size_70_0", ("att_context_size", "70,0"))
    assert got.served("asr_ack") == [("asr_ack", None)]
    variant = tmp_path / f"asr_cpu_default_ep_{other_ep}"
    config = (variant / "config.pbtxt").read_text()
    assert config_parameter(config, "endpointing") == other_ep
    assert f'name: "asr_cpu_default_ep_{other_ep}"' in config
    assert (variant / "1" / "model.py").is_symlink()
    assert (tmp_path / "common").is_symlink() and (tmp_path / "asr_ack").is_symlink()
    assert configured("asr_cpu_default", "endpointing") == ep    # triton_models/ untouched


def test_variant_config_is_renamed_with_one_parameter_changed() -> None:
    assert config_parameter(CONFIG, "endpointing") == "vad"
    assert config_parameter(CONFIG, "missing") is None
    name = variant_name("asr_cpu_default", "endpointing", "energy")
    assert name == "asr_cpu_default_ep_energy"
    changed = with_parameter(CONFIG, name, "endpointing", "energy")
    assert changed.startswith('name: "asr_cpu_default_ep_energy"\n')
    assert config_parameter(changed, "endpointing") == "energy"
    assert config_parameter(changed, "end_silence_ms") == "600"
    with pytest.raises(ValueError, match="no parameter"):
        with_parameter(CONFIG, name, "missing", "x")


class _FakeGateway:
    """Finals appear as the test's clock says: (seconds after the start, event)."""

    def __init__(self, timeline: list[tuple[float, dict[str, Any]]]) -> None:
        self.timeline, self.t0 = timeline, time.monotonic()

    def events(self, type_: str) -> list[dict[str, Any]]:
        now = time.monotonic() - self.t0
        return [e for at, e in self.timeline if at <= now and type_ == "transcript.final"]


def test_wait_for_the_last_sentence_settles_before_the_hangup() -> None:
    spoken = (Spoken("one", 1.0, 2.0), Spoken("two", 4.0, 5.0))
    script = CallScript(np.zeros(8000, np.int16), spoken, talk_only=True)
    gw = _FakeGateway([(0.0, {"call_id": "c", "end_s": 2.0}),
                       (0.0, {"call_id": "c", "end_s": 4.5}),     # the last, in two finals
                       (0.4, {"call_id": "c", "end_s": 5.0})])
    t0 = time.monotonic()
    _wait_finals(gw, [(None, "c")], [script], 5.0, True,  # type: ignore[arg-type,list-item]
                 settle_s=0.5)
    assert 0.85 <= time.monotonic() - t0 < 2.0       # 0.4 s for the second part, then 0.5 s


def test_chunk_comparison_and_parameter_groups_keep_chunk_sizes_apart() -> None:
    def row(value: str, chunk_ms: int, p50: float) -> dict[str, Any]:
        return {"model": "asr_streaming_nemo", "rtp": "continuous", "calls": 1,
                "varied": {"vad_flush": value}, "chunk_ms": chunk_ms,
                "final_after_speech_end_s": {"p50": p50, "p95": 2 * p50}}
    rows = [row("off", 160, 0.8), row("off", 80, 0.6), row("on", 160, 0.4), row("on", 80, 0.3)]
    got = chunk_comparison(rows)
    assert [(c["varied"], c["baseline_chunk_ms"], c["chunk_ms"], c["final_p50_ratio"])
            for c in got] == [("vad_flush=off", 160, 80, 0.75), ("vad_flush=on", 160, 80, 0.75)]
    pairs = parameter_comparison(rows)
    assert [(c.get("chunk_ms", 160), c["final_p50_ratio"]) for c in pairs] == [
        (160, 0.5), (80, 0.5)]


def test_resampler_comparison_is_over_the_first_resampler_of_the_same_condition() -> None:
    def row(model: str, resampler: str | None, calls: int, p50: float,
            wer: float) -> dict[str, Any]:
        return {"model": model, "rtp": "continuous", "calls": calls, "chunk_ms": 160,
                "resampler": resampler, "wer_mean": wer,
                "final_after_speech_end_s": {"p50": p50, "p95": 2 * p50}}
    rows = [row("asr_streaming_nemo", "soxr", 1, 0.4, 0.1),
            row("asr_streaming_nemo", "lowdelay", 1, 0.3, 0.1),
            row("asr_streaming_nemo", "soxr", 10, 0.5, 0.2),
            row("asr_streaming_nemo", "lowdelay", 10, 0.45, 0.15),
            row("asr_cpu_default", None, 1, 0.5, 0.0)]            # a row of an older run
    got = resampler_comparison(rows)
    assert [(c["calls"], c["baseline_resampler"], c["resampler"], c["final_p50_ratio"],
             c["final_p95_ratio"], c["baseline_wer_mean"], c["wer_mean"]) for c in got] == [
        (1, "soxr", "lowdelay", 0.75, 0.75, 0.1, 0.1),
        (10, "soxr", "lowdelay", 0.9, 0.9, 0.2, 0.15)]
    assert chunk_comparison(rows) == []           # one chunk_ms: nothing to compare there


def test_resampler_option_runs_every_condition_per_value() -> None:
    from bench.asr_latency import LatencyParams, _conditions
    from bench.modelrepo import Variants

    params = LatencyParams(models=("asr_cpu_default",), concurrency=(1, 10),
                           rtp_modes=("continuous",), resamplers=("soxr", "lowdelay"))
    conds = _conditions(params, Variants(None))
    assert [(c.calls, c.resampler) for c in conds] == [
        (1, "soxr"), (1, "lowdelay"), (10, "soxr"), (10, "lowdelay")]


def test_vary_option_parses_model_key_values() -> None:
    from bench.cli import _variation

    assert _variation("asr_streaming_nemo:vad_flush=off,on") == (
        "asr_streaming_nemo", "vad_flush", ("off", "on"))
    with pytest.raises(argparse.ArgumentTypeError):
        _variation("asr_streaming_nemo=off")
