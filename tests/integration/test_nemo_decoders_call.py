"""A real call through the gateway daemon to asr_streaming_nemo serving each decoder type
(issue 15): small checkpoints built from NeMo's cache-aware streaming configs (CTC, RNNT,
hybrid, EOU; tests/triton/nemo_repo.py) in one private Triton, each variant its own model of
one temporary repository (the hybrid export twice: decoder=rnnt and decoder=ctc), one
gateway per variant, the calls at once (raw SIP, paced PCMU).

The weights are random (calibrated on the call's speech), so the checks are on structure:
finals arrive, carry words whose times lie inside the call's audio, no asr.* warning or
error. The EOU model runs with silence endpointing out of reach (end_silence_ms 60 s, no
VAD), so its finals before the hang-up come from its <EOU> token; the RNNT model with the
same setting is the control: no final before the hang-up. Also: a model whose model_path
does not exist fails to load through Triton with a message naming the path.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from gateway.triton_launcher import TritonProcess
from tests.conftest import GatewayFactory
from tests.gateway_proc import GatewayProcess
from tests.integration.test_asr_model_version import Call
from tests.triton.fixtures import SAMPLE_RATE_HZ, Audio, private_triton
from tests.triton.nemo_repo import install_model, make_exports
from tests.triton.test_nemo_small import espeak, silence, write_wav

pytestmark = pytest.mark.slow
NO_SILENCE_RULE = {"end_silence_ms": "60000", "endpointing": "blank"}  # no VAD either
VARIANTS = {  # model name -> (export, parameters)
    "asr_call_ctc": ("ctc", {}),
    "asr_call_rnnt": ("rnnt", {}),
    "asr_call_hybrid_rnnt": ("hybrid", {"decoder": "rnnt"}),
    "asr_call_hybrid_ctc": ("hybrid", {"decoder": "ctc"}),
    "asr_call_eou": ("eou", NO_SILENCE_RULE),
    "asr_call_rnnt_no_silence": ("rnnt", NO_SILENCE_RULE),  # the control for EOU
}
MISSING_MODEL = "asr_call_missing"
MISSING_PATH = "/nonexistent/asr-test/nemo-export"
SENTENCES = ("please transfer me to the billing department",
             "my account number is four two seven nine one",
             "can you call me back tomorrow morning")
PHONE_RATE_HZ = 8000
SLACK_S = 1.0  # the conversation timeline starts at the answer, a little before the audio


@pytest.fixture(scope="module")
def speech() -> Audio:
    """Three sentences at 16 kHz over a telephone line, pauses between them."""
    parts: list[Audio] = [silence(0.3)]
    for sentence in SENTENCES:
        parts += [espeak(sentence), silence(0.8)]
    return np.concatenate(parts)


@pytest.fixture(scope="module")
def served(speech: Audio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """One private Triton serving every variant (and holding MISSING_MODEL, unloaded)."""
    out = tmp_path_factory.mktemp("nemo_exports")
    exports = make_exports(out, sorted({e for e, _ in VARIANTS.values()}),
                           write_wav(out / "calibration.wav", speech))
    repo = tmp_path_factory.mktemp("nemo_call_repo")
    for name, (export, params) in VARIANTS.items():
        install_model(repo, name, {"model_path": str(exports / export), **params})
    install_model(repo, MISSING_MODEL, {"model_path": MISSING_PATH})
    with private_triton(tmp_path_factory.mktemp("nemo_call_triton"), list(VARIANTS),
                        repository=repo) as server:
        yield server


def _gateway(factory: GatewayFactory, url: str, model: str) -> GatewayProcess:
    return factory({"triton": {"url": url, "asr_model": model, "buffer_s": 60.0},
                    "tts": {"enabled": False}})


def _phone_pcm(speech: Audio) -> np.ndarray[Any, Any]:
    narrow = np.asarray(soxr.resample(speech, SAMPLE_RATE_HZ, PHONE_RATE_HZ), np.float32)
    return (np.clip(narrow, -1.0, 1.0) * 32767).astype(np.int16)


def _structure_errors(name: str, finals: list[dict[str, Any]], audio_s: float) -> list[str]:
    said = [f for f in finals if f["text"]]
    if not said:
        return [f"{name}: no final with text"]
    errors = [f"{name}: final without words: {f}" for f in said if not f["words"]]
    words = [w for f in said for w in f["words"]]
    if any(not 0 <= w["start_s"] <= w["end_s"] <= audio_s + SLACK_S for w in words):
        errors.append(f"{name}: word times outside 0..{audio_s:.2f} s: {words}")
    if [w["start_s"] for w in words] != sorted(w["start_s"] for w in words):
        errors.append(f"{name}: words out of order: {words}")
    if any(f["channel"] != "customer" for f in said):
        errors.append(f"{name}: finals on other channels: {said}")
    return errors


def _asr_trouble(gw: GatewayProcess) -> list[str]:
    return [f"{line['event']}: {line}"[:300] for line in gw.lines
            if str(line.get("event", "")).startswith("asr.")
            and line.get("level") in ("warning", "error", "critical")]


def test_a_call_through_each_decoder_type_yields_finals(
        served: TritonProcess, gateway_factory: GatewayFactory, speech: Audio) -> None:
    gateways = {name: _gateway(gateway_factory, served.grpc_url, name) for name in VARIANTS}
    for gw in gateways.values():
        gw.wait_log("triton.ready", 60)
    pcm = _phone_pcm(speech)
    audio_s = pcm.size / PHONE_RATE_HZ
    calls = {name: Call(gw, name, [pcm], loops=1) for name, gw in gateways.items()}
    time.sleep(audio_s + 0.5)                      # every call has played its audio: no END yet
    before_end = {name: len([f for f in call.finals() if f["text"]])
                  for name, call in calls.items()}
    ended = {name: call.hang_up() for name, call in calls.items()}
    errors = [e for name, call in calls.items()
              for e in _structure_errors(name, call.finals(), audio_s)]
    errors += [f"{name}: finals not flushed: {e}" for name, e in ended.items()
               if e["asr_finals_flushed"] is not True]
    errors += [f"{name}: {t}" for name, gw in gateways.items() for t in _asr_trouble(gw)]
    assert not errors, "\n".join(errors)
    assert before_end["asr_call_eou"] >= 2, before_end   # ended by <EOU>, not by silence
    assert before_end["asr_call_rnnt_no_silence"] == 0, before_end  # nothing else ends one
    eou_text = " ".join(f["text"] for f in calls["asr_call_eou"].finals())
    assert "<EOU>" not in eou_text, eou_text


def test_each_variant_loaded_its_export_with_its_decoder(served: TritonProcess) -> None:
    """The runtime's load line per variant: its own export folder and the decoder asked."""
    log = served.log_path.read_text(errors="replace")
    loaded = set(re.findall(r"asr_streaming_nemo: (\S+) loaded in .*?decoder (\w+)", log))
    assert {(Path(folder).name, decoder) for folder, decoder in loaded} == {
        ("ctc", "ctc"), ("rnnt", "rnnt"), ("hybrid", "rnnt"), ("hybrid", "ctc"),
        ("eou", "rnnt")}, log[-3000:]


def test_a_missing_model_path_fails_the_load_naming_it(served: TritonProcess) -> None:
    client = grpcclient.InferenceServerClient(served.grpc_url)
    try:
        with pytest.raises(InferenceServerException) as failure:
            client.load_model(MISSING_MODEL)
        assert MISSING_PATH in str(failure.value), failure.value
        assert not client.is_model_ready(MISSING_MODEL)
    finally:
        client.close()

