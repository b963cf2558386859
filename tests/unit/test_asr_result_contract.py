"""The ASR result format, both sides: the Triton models' result builder
(triton_models/common/asr_contract.py, ``AsrResult.to_json``) fed through the gateway's
parser (gateway/asr/contract.py, ``parse_result``), also through Triton's BYTES tensor
framing (``serialize_byte_tensor``, what the Python backend's RESULT output goes out as)
and the gateway's ``split_bytes_tensor``.

Both sides are held to the one wire spec, triton_models/common/asr_result.schema.json: what
each side writes validates against it, the keys each side writes and reads are its
properties, the defaults of both sides' classes and of the parser are its defaults, and both
sides' classes have the same names, fields and methods. A change on one side without the
other (a renamed key, a new field, a different default, stripping on one side only) fails here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tritonclient.utils import serialize_byte_tensor

from gateway.asr import contract as gateway_side
from gateway.asr.contract import Hypothesis, parse_result, split_bytes_tensor
from gateway.asr.contract import Word as GatewayWord
from tests.json_schema import Validator
from triton_models.common import asr_contract as triton_side
from triton_models.common.asr_contract import AsrResult, Word

SCHEMA_PATH = Path(triton_side.__file__).with_name("asr_result.schema.json")
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = Validator(SCHEMA)
WORD_SCHEMA: dict[str, Any] = SCHEMA["$defs"]["word"]

# The wire names, from the spec: every name either side writes or reads must be among them.
GATEWAY_RESULT_KEYS = set(SCHEMA["properties"])
GATEWAY_WORD_KEYS = set(WORD_SCHEMA["properties"])

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
    assert hyp == Hypothesis("partial", 0, "hello", 0.0, 0.64, 0.8, ())


def test_a_final_with_word_times_and_confidences() -> None:
    hyp = through_the_wire(AsrResult("final", 3, "hello world", 0.12, 0.9049, 1.2, WORDS))
    assert hyp.is_final and hyp.segment == 3 and hyp.text == "hello world"
    assert (hyp.start_s, hyp.end_s, hyp.audio_s) == (0.12, 0.905, 1.2)   # 3 decimals
    assert hyp.words == (GatewayWord("hello", 0.12, 0.48, 0.97),
                         GatewayWord("world", 0.52, 0.905, 0.8))
    # the gateway's word dict is the Triton side's word dict (rounded times)
    assert [w.to_dict() for w in hyp.words] == [w.to_dict() for w in WORDS]


def test_the_empty_final_that_ends_a_sequence() -> None:
    # what asr_cpu_default and the Whisper decoder send on END with nothing to say
    hyp = through_the_wire(AsrResult("final", 4, "", 7.5, 7.5, 7.5))
    assert hyp == Hypothesis("final", 4, "", 7.5, 7.5, 7.5, ())


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


def test_surrounding_whitespace_is_stripped_on_both_sides() -> None:
    # Whisper-style " hello" text: the Triton side sends it stripped; the gateway strips what
    # another model may send, so both agree either way
    sent = AsrResult("partial", 0, " hello ", 0, 1, 1, (Word(" hello", 0.0, 1.0, 0.9),))
    assert json.loads(sent.to_json())["text"] == "hello"
    assert json.loads(sent.to_json())["words"][0]["word"] == "hello"
    hyp = through_the_wire(sent)
    assert hyp.text == "hello" and hyp.words[0].word == "hello"
    foreign = (b'{"type": "final", "text": " hi ", '
               b'"words": [{"word": " hi", "start_s": 0, "end_s": 1}]}')
    parsed = parse_result(foreign)
    assert parsed.text == "hi" and parsed.words[0].word == "hi"
    assert parsed.to_dict() == AsrResult("final", 0, " hi ", 0, 0, 0,
                                         (Word(" hi", 0, 1),)).to_dict()


@pytest.mark.parametrize("kind", ["partial", "final"])
def test_several_results_in_one_tensor_are_split_in_order(kind: str) -> None:
    results = [AsrResult("final" if kind == "final" else "partial", i, f"t{i}", 0.0,
                         float(i), float(i)) for i in range(3)]
    payload = np.array([r.to_json().encode() for r in results], dtype=np.object_)
    hyps = [parse_result(item) for item in split_bytes_tensor(wire_bytes(payload))]
    assert [(h.segment, h.text, h.is_final) for h in hyps] == [
        (i, f"t{i}", kind == "final") for i in range(3)]


# --- the one wire spec ------------------------------------------------------------------

def _errors(obj: Any) -> list[str]:
    return VALIDATOR.errors(obj)


EXAMPLES = [
    AsrResult("partial", 0, "", 0.0, 0.16, 0.16),
    AsrResult("final", 3, "hello world", 0.12, 0.9049, 1.2, WORDS),
    AsrResult("final", 4, "", 7.5, 7.5, 7.5),
    AsrResult("partial", 1, " Grüße ", math.nan, 0.5, math.inf, (Word(" Grüße", 0.0, 0.4),)),
]


@pytest.mark.parametrize("result", EXAMPLES)
def test_what_the_triton_side_writes_is_the_spec(result: AsrResult) -> None:
    obj = json.loads(result.to_json())
    assert _errors(obj) == []
    assert list(obj) == SCHEMA["required"]                   # every property, in spec order
    assert all(list(w) == WORD_SCHEMA["required"] for w in obj["words"])


@pytest.mark.parametrize("result", EXAMPLES)
def test_what_the_gateway_parses_it_to_writes_the_same_again(result: AsrResult) -> None:
    hyp = through_the_wire(result)
    assert hyp.to_dict() == result.to_dict()                 # the same document both ways
    assert _errors(hyp.to_dict()) == []
    assert json.loads(hyp.to_json()) == json.loads(result.to_json())
    assert hyp.is_final is result.is_final and hyp.type == result.type


def test_the_validator_catches_what_breaks_the_spec() -> None:
    good = json.loads(EXAMPLES[1].to_json())
    for broken in ({**good, "kind": "final"}, {k: v for k, v in good.items() if k != "text"},
                   {**good, "type": "interim"}, {**good, "segment": -1},
                   {**good, "words": [{**good["words"][0], "confidence": 1.5}]},
                   {**good, "words": [{"text": "x", "start_s": 0, "end_s": 1,
                                       "confidence": 1}]}):
        assert _errors(broken), broken


def _fields(cls: type) -> list[tuple[str, Any]]:
    return [(f.name, f.default) for f in dataclasses.fields(cls)]


def test_both_sides_have_the_same_classes_fields_defaults_and_methods() -> None:
    for name in ("AsrResult", "Word", "ContractError"):
        assert hasattr(gateway_side, name) and hasattr(triton_side, name), name
    assert _fields(gateway_side.AsrResult) == _fields(triton_side.AsrResult)
    assert _fields(gateway_side.Word) == _fields(triton_side.Word)
    for gateway_cls, triton_cls in ((gateway_side.AsrResult, triton_side.AsrResult),
                                    (gateway_side.Word, triton_side.Word)):
        triton_api = {n for n in vars(triton_cls) if not n.startswith("_")}
        gateway_api = {n for n in vars(gateway_cls) if not n.startswith("_")}
        assert triton_api <= gateway_api, triton_api - gateway_api   # the gateway adds parsing
    # and those fields are the spec's properties, in its order
    assert [n for n, _ in _fields(triton_side.AsrResult)] == SCHEMA["required"]
    assert [n for n, _ in _fields(triton_side.Word)] == WORD_SCHEMA["required"]


def _default(schema: dict[str, Any]) -> Any:
    value = schema["default"]
    return tuple(value) if isinstance(value, list) else value


def test_the_defaults_are_the_specs_on_both_sides_and_in_the_parser() -> None:
    for cls in (gateway_side.AsrResult, triton_side.AsrResult):
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                assert f.default == _default(SCHEMA["properties"][f.name]), (cls, f.name)
    for wcls in (gateway_side.Word, triton_side.Word):
        for f in dataclasses.fields(wcls):
            if f.default is not dataclasses.MISSING:
                assert f.default == _default(WORD_SCHEMA["properties"][f.name]), (wcls, f.name)
    # a model that leaves out what the spec gives a default for
    bare = parse_result(b'{"type": "final", "words": [{"word": "x"}]}')
    expected = {k: v["default"] for k, v in SCHEMA["properties"].items() if "default" in v}
    expected["words"] = [{k: v["default"] for k, v in WORD_SCHEMA["properties"].items()
                          if "default" in v} | {"word": "x"}]
    assert bare.to_dict() == {"type": "final", **expected}
