"""The ASR result format, both sides: the Triton models' result builder
(triton_models/common/asr_contract.py, ``AsrResult.to_json``) fed through the gateway's
parser (gateway/asr/contract.py, ``parse_result``), also through Triton's BYTES tensor
framing (``serialize_byte_tensor``, what the Python backend's RESULT output goes out as)
and the gateway's ``split_bytes_tensor``.

The two sides use different names for the same thing (``AsrResult.type`` is
``Hypothesis.is_final``, ``Word.as_dict`` is ``Word.to_dict``); the wire names must agree.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tritonclient.utils import serialize_byte_tensor

from gateway.asr.contract import Hypothesis, parse_result, split_bytes_tensor
from gateway.asr.contract import Word as GatewayWord
from triton_models.common.asr_contract import AsrResult, Word

# What the gateway's parser reads: every name the Triton side writes must be among them.
GATEWAY_RESULT_KEYS = {"type", "segment", "text", "start_s", "end_s", "words", "audio_s"}
GATEWAY_WORD_KEYS = {"word", "start_s", "end_s", "confidence"}

WORDS = (Word("hello", 0.12, 0.48, 0.97), Word("world", 0.52, 0.9049, 0.8))


def wire_bytes(payload: np.ndarray) -> bytes:
    """A BYTES tensor's raw contents (4-byte little-endian length, then the bytes, each)."""
    raw = serialize_byte_tensor(payload)
    assert raw is not None
    data = raw.item()
    assert isinstance(data, bytes)
    return data


def through_the_wire(result: AsrResult) -> Hypothesis:
    """Triton's RESULT tensor ([1, 1] BYTES) as the gateway receives and parses it."""
    payload = np.array([[result.to_json().encode("utf-8")]], dtype=np.object_)
    items = split_bytes_tensor(wire_bytes(payload))
    assert len(items) == 1
    return parse_result(items[0])


def test_the_wire_names_agree() -> None:
    obj = json.loads(AsrResult("final", 2, "hello world", 0.1, 0.9, 1.0, WORDS).to_json())
    assert set(obj) == GATEWAY_RESULT_KEYS
    assert all(set(w) == GATEWAY_WORD_KEYS for w in obj["words"])


def test_a_partial_without_words() -> None:
    hyp = through_the_wire(AsrResult("partial", 0, "hello", 0.0, 0.64, 0.8))
    assert hyp == Hypothesis(False, 0, "hello", 0.0, 0.64, (), 0.8)


def test_a_final_with_word_times_and_confidences() -> None:
    hyp = through_the_wire(AsrResult("final", 3, "hello world", 0.12, 0.9049, 1.2, WORDS))
    assert hyp.is_final and hyp.segment == 3 and hyp.text == "hello world"
    assert (hyp.start_s, hyp.end_s, hyp.audio_s) == (0.12, 0.905, 1.2)   # 3 decimals
    assert hyp.words == (GatewayWord("hello", 0.12, 0.48, 0.97),
                         GatewayWord("world", 0.52, 0.905, 0.8))
    # the gateway's word dict is the Triton side's word dict (rounded times)
    assert [w.to_dict() for w in hyp.words] == [w.as_dict() for w in WORDS]


def test_the_empty_final_that_ends_a_sequence() -> None:
    # what asr_cpu_default and the Whisper decoder send on END with nothing to say
    hyp = through_the_wire(AsrResult("final", 4, "", 7.5, 7.5, 7.5))
    assert hyp == Hypothesis(True, 4, "", 7.5, 7.5, (), 7.5)


def test_the_ack_models_final_is_a_number_as_text() -> None:
    hyp = through_the_wire(AsrResult("final", 0, "16000", 0.0, 1.0, 1.0))
    assert hyp.is_final and hyp.text == "16000" and int(hyp.text) == 16000


def test_non_ascii_text_survives_both_sides() -> None:
    text = "Grüße, señor: 東京 ✓"
    hyp = through_the_wire(AsrResult("final", 1, text, 0.0, 1.0, 1.0,
                                     (Word("Grüße", 0.0, 0.4, 0.9),)))
    assert hyp.text == text and hyp.words[0].word == "Grüße"


def test_non_finite_times_from_a_model_arrive_as_zero() -> None:
    hyp = through_the_wire(AsrResult("partial", 0, "x", math.nan, math.inf, -math.inf,
                                     (Word("x", math.nan, 0.1, math.nan),)))
    assert (hyp.start_s, hyp.end_s, hyp.audio_s) == (0.0, 0.0, 0.0)
    assert hyp.words == (GatewayWord("x", 0.0, 0.1, 0.0),)


def test_surrounding_whitespace_is_the_gateways_to_strip() -> None:
    # Whisper-style " hello" text: the Triton side sends it as is, the gateway strips it
    assert json.loads(AsrResult("partial", 0, " hello ", 0, 1, 1).to_json())["text"] == " hello "
    assert through_the_wire(AsrResult("partial", 0, " hello ", 0, 1, 1)).text == "hello"


@pytest.mark.parametrize("kind", ["partial", "final"])
def test_several_results_in_one_tensor_are_split_in_order(kind: str) -> None:
    results = [AsrResult("final" if kind == "final" else "partial", i, f"t{i}", 0.0,
                         float(i), float(i)) for i in range(3)]
    payload = np.array([r.to_json().encode() for r in results], dtype=np.object_)
    hyps = [parse_result(item) for item in split_bytes_tensor(wire_bytes(payload))]
    assert [(h.segment, h.text, h.is_final) for h in hyps] == [
        (i, f"t{i}", kind == "final") for i in range(3)]
