"""asr_streaming_nemo serving RNNT, hybrid (RNNT and CTC head) and EOU exports through a real
Triton and the streaming ASR contract.

The session builds small checkpoints from NeMo's cache-aware streaming configs and exports
them (tests/nemo/make_test_models.py in .venv-nemo, about 20 s), installs each as its own
model (asr_streaming_nemo's config.pbtxt and model.py, parameters model_path / decoder /
att_context_size) in a private repository, and streams espeak speech through a telephone
line. The weights are random (their token-for-token agreement with NeMo is
tests/nemo/test_streaming_reference.py), so the checks are on the contract: finals with
words, timing, per-sequence state under batching, and EOU finals without a silence rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.triton.fixtures import SAMPLE_RATE_HZ, AsrStream, Audio, private_triton
from tests.triton.nemo_repo import install_model, make_exports
from tests.triton.test_asr_contract import check_sequence
from tests.triton.test_nemo_small import espeak, silence, write_wav

SERVED = {  # model name -> (export, parameters)
    "asr_nemo_rnnt": ("rnnt", {"att_context_size": "70,1"}),
    "asr_nemo_hybrid": ("hybrid", {"att_context_size": "70,6"}),
    "asr_nemo_hybrid_ctc": ("hybrid", {"decoder": "ctc", "att_context_size": "70,13"}),
    "asr_nemo_eou": ("eou", {"att_context_size": "70,1", "end_silence_ms": "60000"}),
}
SENTENCES = ("please transfer me to the billing department",
             "my account number is four two seven nine one",
             "can you call me back tomorrow morning")
Result = dict[str, Any]


@pytest.fixture(scope="module")
def nemo_exports(tmp_path_factory: pytest.TempPathFactory, speech: Audio) -> Path:
    out = tmp_path_factory.mktemp("nemo_exports")
    wav = write_wav(out / "calibration.wav", speech)
    return make_exports(out, ("rnnt", "hybrid", "eou"), wav)


@pytest.fixture(scope="module")
def served(nemo_exports: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Triton serving the four models; its gRPC URL."""
    repo = tmp_path_factory.mktemp("nemo_repo")
    for name, (export, params) in SERVED.items():
        install_model(repo, name, {"model_path": str(nemo_exports / export), **params})
    with private_triton(tmp_path_factory.mktemp("nemo_triton"), list(SERVED),
                        repository=repo) as server:
        yield server.grpc_url


@pytest.fixture(scope="module")
def speech() -> Audio:
    parts: list[Audio] = [silence(0.3)]
    for sentence in SENTENCES:
        parts += [espeak(sentence), silence(0.7)]
    return np.concatenate(parts)


def stream(url: str, model: str, audios: list[Audio]) -> list[list[Result]]:
    """The audios as concurrent sequences (160 ms requests interleaved: batched together)."""
    client = AsrStream(url, model)
    try:
        corrids = list(range(7001, 7001 + len(audios)))
        longest = max(a.size for a in audios)
        last: dict[int, str] = {}
        for start in range(0, longest, 2560):
            for corrid, audio in zip(corrids, audios, strict=True):
                if start < audio.size:
                    last[corrid] = client.send(corrid, audio[start:start + 2560],
                                               start=start == 0,
                                               end=start + 2560 >= audio.size)
        for request_id in last.values():
            client.wait_closed(request_id)
        return [client.results(c) for c in corrids]
    finally:
        client.close()


def finals(results: list[Result]) -> list[Result]:
    return [r for r in results if r["type"] == "final" and r["text"]]


@pytest.mark.parametrize("model", ["asr_nemo_rnnt", "asr_nemo_hybrid", "asr_nemo_hybrid_ctc"])
def test_each_decoder_streams_finals_with_words(served: str, speech: Audio, model: str) -> None:
    together = stream(served, model, [speech, speech[: speech.size // 2]])
    alone = stream(served, model, [speech])[0]
    total_s = speech.size / SAMPLE_RATE_HZ
    last = check_sequence(alone, total_s)
    said = finals(alone)
    assert said and all(r["words"] for r in said), alone
    starts = [w["start_s"] for r in said for w in r["words"]]
    assert starts == sorted(starts) and starts[-1] <= total_s
    assert [r["segment"] for r in said] == sorted({r["segment"] for r in said})
    assert last["segment"] >= said[-1]["segment"]
    # batching with another sequence changes nothing in a sequence's own results
    assert [(r["type"], r["text"], r["words"]) for r in together[0]] == [
        (r["type"], r["text"], r["words"]) for r in alone]
    check_sequence(together[1], speech[: speech.size // 2].size / SAMPLE_RATE_HZ)


def test_hybrid_heads_differ(served: str, speech: Audio) -> None:
    """decoder=ctc really runs the CTC head of the same export (another text than RNNT's)."""
    rnnt = " ".join(r["text"] for r in finals(stream(served, "asr_nemo_hybrid", [speech])[0]))
    ctc = " ".join(r["text"] for r in finals(stream(served, "asr_nemo_hybrid_ctc",
                                                    [speech])[0]))
    assert rnnt and ctc and rnnt != ctc


def test_eou_token_sends_finals_before_end(served: str, speech: Audio) -> None:
    """With silence endpointing out of reach (end_silence_ms 60 s), the EOU model's finals
    before END come from its <EOU> token; the token is never in the text."""
    results = stream(served, "asr_nemo_eou", [speech])[0]
    check_sequence(results, speech.size / SAMPLE_RATE_HZ)
    said = finals(results)
    before_end = [r for r in said if r is not results[-1]]
    assert len(before_end) >= 2, said
    assert all("<EOU>" not in r["text"] for r in said), said
    assert all(r["end_s"] < results[-1]["audio_s"] for r in before_end)
    assert json.dumps(said)  # plain JSON all the way
