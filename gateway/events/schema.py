"""JSON Schema (draft 2020-12) of every gateway event, generated from the event dataclasses.

Layer: pure core (``main`` only writes the committed file when asked).

``python -m gateway.events.schema --write`` regenerates ``events.schema.json`` next to this
module; a unit test fails while the committed file differs from what the classes say.
Each event is one flat object: the envelope keys (``v``, ``type``, ``ts``, ``seq``,
``call_id``) and the event's fields, all of them present (``null`` where optional),
nothing else. The supported field types are the ones events use: str, int, float, bool,
None, unions, ``tuple[X, ...]``, ``Mapping[str, X]``, ``Any`` and nested dataclasses.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Mapping, Sequence
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from gateway.events.types import EVENT_CLASSES, SCHEMA_VERSION, Doc, GatewayEvent, wire_fields

SCHEMA_PATH = Path(__file__).with_name("events.schema.json")
DIALECT = "https://json-schema.org/draft/2020-12/schema"
_SCALARS: Mapping[Any, str] = {str: "string", bool: "boolean", int: "integer",
                               float: "number", type(None): "null"}


class _Defs:
    """Named definitions ($defs) collected while walking the classes."""

    def __init__(self) -> None:
        self.defs: dict[str, dict[str, Any]] = {}

    def ref(self, cls: type) -> dict[str, Any]:
        if cls.__name__ not in self.defs:
            self.defs[cls.__name__] = {}          # placeholder: recursion stops here
            self.defs[cls.__name__] = self.object_schema(cls, {})
        return {"$ref": f"#/$defs/{cls.__name__}"}

    def object_schema(self, cls: type, head: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
        hints = get_type_hints(cls, include_extras=True)
        props: dict[str, dict[str, Any]] = dict(head)
        for attr, wire in wire_fields(cls):
            if wire not in head:
                props[wire] = self.field_schema(hints[attr])
        out: dict[str, Any] = {"type": "object"}
        if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):
            out["description"] = cls.__doc__.strip().splitlines()[0]
        out.update(properties=props, required=list(props), additionalProperties=False)
        return out

    def field_schema(self, hint: Any) -> dict[str, Any]:
        described = [m.text for m in getattr(hint, "__metadata__", ()) if isinstance(m, Doc)]
        schema = self.type_schema(hint.__origin__ if hasattr(hint, "__metadata__") else hint)
        return {**schema, "description": described[0]} if described else schema

    def type_schema(self, hint: Any) -> dict[str, Any]:
        origin, args = get_origin(hint), get_args(hint)
        if hint is Any:
            return {}
        if hint in _SCALARS:
            return {"type": _SCALARS[hint]}
        if origin in (Union, types.UnionType):
            return _union([self.type_schema(a) for a in args])
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": self.type_schema(args[0])}
        if origin in (list, Sequence):
            return {"type": "array", "items": self.type_schema(args[0])}
        if origin in (dict, Mapping) and args and args[0] is str:
            values = self.type_schema(args[1])
            return {"type": "object", **({"additionalProperties": values} if values else {})}
        if isinstance(hint, type) and is_dataclass(hint):
            return self.ref(hint)
        raise TypeError(f"no JSON Schema for field type {hint!r}")


def _union(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if all(set(p) == {"type"} and isinstance(p["type"], str) for p in parts):
        return {"type": [p["type"] for p in parts]}
    return {"anyOf": parts}


def event_schema(defs: _Defs, cls: type[GatewayEvent]) -> dict[str, Any]:
    hints = get_type_hints(cls, include_extras=True)
    head: dict[str, dict[str, Any]] = {
        "v": {"const": SCHEMA_VERSION},
        "type": {"const": cls.TYPE},
        "ts": {"type": "number", "description": "Unix time the bus stamped the event"},
        "seq": {"type": "integer", "minimum": 1,
                "description": "increasing per gateway process, in delivery order"},
        "call_id": defs.field_schema(hints["call_id"])}
    return defs.object_schema(cls, head)


def build_schema(classes: Sequence[type[GatewayEvent]] = EVENT_CLASSES) -> dict[str, Any]:
    defs = _Defs()
    events = {cls.__name__: event_schema(defs, cls) for cls in classes}
    return {
        "$schema": DIALECT,
        "title": "asr-gateway events",
        "description": f"Every event the gateway emits, envelope version {SCHEMA_VERSION}. "
                       "Generated from gateway/events/types.py: do not edit.",
        "oneOf": [{"$ref": f"#/$defs/{name}"} for name in events],
        "$defs": {**events, **dict(sorted(defs.defs.items()))},
    }


def render(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help=f"write {SCHEMA_PATH.name}")
    args = parser.parse_args(argv)
    text = render(build_schema())
    if args.write:
        SCHEMA_PATH.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
