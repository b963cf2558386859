"""The event schema: generated from the dataclasses, committed, and what events look like."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, get_args, get_origin, get_type_hints

import pytest

from gateway.events import schema as gen
from gateway.events.types import (
    EVENT_CLASSES,
    EVENT_TYPES,
    CallOffered,
    CallRejected,
    Envelope,
    GatewayEvent,
    TranscriptFinal,
    TranscriptWord,
)
from tests.json_schema import Validator

SCHEMA = gen.build_schema()
VALIDATOR = Validator(SCHEMA)


def _example(hint: Any) -> Any:
    """A value of a field type (the first union member that is not None)."""
    hint = getattr(hint, "__origin__", hint) if hasattr(hint, "__metadata__") else hint
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return {"anything": [1, "x"]}
    if hint in (str, int, float, bool):
        return {str: "x", int: 7, float: 0.25, bool: True}[hint]
    if hint is type(None):
        return None
    if origin is tuple:
        return (_example(args[0]), _example(args[0]))
    if origin is Mapping or origin is dict:
        return {"k": _example(args[1])}
    if args:                                              # a union
        return _example(next(a for a in args if a is not type(None)))
    if is_dataclass(hint):
        return _instance(hint)
    raise TypeError(hint)


def _instance(cls: Any) -> Any:
    hints = get_type_hints(cls, include_extras=True)
    return cls(**{f.name: _example(hints[f.name]) for f in fields(cls)})


def _wire(event: GatewayEvent) -> dict[str, Any]:
    return Envelope(event, ts=1700000000.5, seq=42).to_dict()


def test_committed_schema_is_the_generated_one() -> None:
    committed = gen.SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == gen.render(SCHEMA), (
        "gateway/events/events.schema.json is stale: run "
        "`.venv/bin/python -m gateway.events.schema --write` and commit it")


def test_schema_declares_draft_2020_12_and_every_type_once() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    consts = [SCHEMA["$defs"][ref["$ref"].split("/")[-1]]["properties"]["type"]["const"]
              for ref in SCHEMA["oneOf"]]
    assert sorted(consts) == sorted(EVENT_TYPES) and len(consts) == len(set(consts))
    assert len(EVENT_TYPES) == len(EVENT_CLASSES)


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.TYPE)
def test_every_event_type_serialises_to_a_valid_object(cls: type[GatewayEvent]) -> None:
    wire = _wire(_instance(cls))
    assert VALIDATOR.errors(json.loads(json.dumps(wire))) == []
    assert list(wire)[:5] == ["v", "type", "ts", "seq", "call_id"] and wire["v"] == 1
    assert wire["type"] == cls.TYPE


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.TYPE)
def test_missing_extra_and_mistyped_fields_are_invalid(cls: type[GatewayEvent]) -> None:
    wire = _wire(_instance(cls))
    last = list(wire)[-1]
    missing = {k: v for k, v in wire.items() if k != last}
    assert any("missing required property" in e for e in VALIDATOR.errors(missing))
    assert any("unexpected property 'bogus'" in e
               for e in VALIDATOR.errors({**wire, "bogus": 1}))
    assert VALIDATOR.errors({**wire, "seq": "42"})
    assert VALIDATOR.errors({**wire, "v": 2})
    assert VALIDATOR.errors({**wire, "type": "no.such"})


def test_wire_names_envelope_and_nested_parts() -> None:
    offered = _instance(CallOffered)
    wire = _wire(offered)
    assert wire["from"] == offered.from_uri and "from_uri" not in wire and "to_uri" not in wire
    final = TranscriptFinal(call_id="c1", channel="customer", participant=None,
                            conversation_id="k", text="hello", segment=3, start_s=0.5,
                            end_s=1.25, words=(TranscriptWord(word="hello", start_s=0.5,
                                                              end_s=1.25, confidence=0.9),),
                            latency_s=None)
    assert _wire(final) == {
        "v": 1, "type": "transcript.final", "ts": 1700000000.5, "seq": 42, "call_id": "c1",
        "channel": "customer", "participant": None, "conversation_id": "k", "text": "hello",
        "segment": 3, "start_s": 0.5, "end_s": 1.25,
        "words": [{"word": "hello", "start_s": 0.5, "end_s": 1.25, "confidence": 0.9}],
        "latency_s": None, "redaction": None}
    rejected = _wire(CallRejected(status=486, reason="Busy Here", source="127.0.0.1:5"))
    assert rejected["call_id"] is None and VALIDATOR.errors(rejected) == []


def test_wrong_value_types_inside_an_event_are_caught() -> None:
    final = _instance(TranscriptFinal)
    assert VALIDATOR.errors(_wire(replace(final, segment=1.5))) != []     # float for int
    assert VALIDATOR.errors(_wire(replace(final, text=None))) != []
    assert VALIDATOR.errors(_wire(replace(final, segment=True))) != []    # bool is no integer
    assert VALIDATOR.errors(_wire(replace(final, start_s=2))) == []       # int is a number


def test_the_validator_refuses_keywords_it_does_not_check() -> None:
    with pytest.raises(ValueError, match="pattern"):
        Validator({"type": "string", "pattern": "^a"}).errors("a")


def test_an_unsupported_field_type_is_refused_by_the_generator() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Odd(GatewayEvent):
        TYPE = "odd.happened"
        call_id: str
        when: complex

    with pytest.raises(TypeError, match="complex"):
        gen.build_schema((Odd,))
