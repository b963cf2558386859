"""A small JSON Schema (draft 2020-12) validator for the subset the event schema uses.

The ``jsonschema`` package is not a dependency; this checks exactly the keywords that
``gateway.events.schema`` generates and the ASR result schema
(triton_models/common/asr_result.schema.json) uses, and refuses any other keyword, so a
generator change cannot slip past it unchecked. Annotations (``description``, ``title``,
``default``) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_ANNOTATIONS = {"$schema", "$id", "title", "description", "$defs", "default"}
_CHECKED = {"type", "const", "enum", "properties", "required", "additionalProperties",
            "items", "$ref", "oneOf", "anyOf", "minimum", "maximum"}


def _is_type(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if name == "string":
        return isinstance(value, str)
    if name == "array":
        return isinstance(value, list)
    if name == "object":
        return isinstance(value, dict)
    raise ValueError(f"unknown JSON Schema type {name!r}")


class Validator:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def errors(self, value: Any, schema: Mapping[str, Any] | None = None, path: str = "$"
               ) -> list[str]:
        schema = self.root if schema is None else schema
        unknown = set(schema) - _ANNOTATIONS - _CHECKED
        if unknown:
            raise ValueError(f"validator does not support keywords {sorted(unknown)}")
        out: list[str] = []
        if "$ref" in schema:
            out += self.errors(value, self._resolve(schema["$ref"]), path)
        if "type" in schema:
            names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(value, n) for n in names):
                return out + [f"{path}: {value!r} is not of type {'/'.join(names)}"]
        if "const" in schema and not _same(value, schema["const"]):
            out.append(f"{path}: {value!r} is not {schema['const']!r}")
        if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
            out.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
        if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
            out.append(f"{path}: {value!r} is below {schema['minimum']!r}")
        if "maximum" in schema and _is_type(value, "number") and value > schema["maximum"]:
            out.append(f"{path}: {value!r} is above {schema['maximum']!r}")
        if isinstance(value, list) and "items" in schema:
            for i, item in enumerate(value):
                out += self.errors(item, schema["items"], f"{path}[{i}]")
        if isinstance(value, dict):
            out += self._object(value, schema, path)
        if "anyOf" in schema:
            branches = [self.errors(value, s, path) for s in schema["anyOf"]]
            if all(branches):
                out.append(f"{path}: matches no anyOf branch: {min(branches, key=len)}")
        if "oneOf" in schema:
            out += self._one_of(value, schema["oneOf"], path)
        return out

    def _object(self, value: dict[str, Any], schema: Mapping[str, Any], path: str) -> list[str]:
        out: list[str] = []
        props: Mapping[str, Any] = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: missing required property {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in props:
                out += self.errors(item, props[key], f"{path}.{key}")
            elif extra is False:
                out.append(f"{path}: unexpected property {key!r}")
            elif isinstance(extra, Mapping):
                out += self.errors(item, extra, f"{path}.{key}")
        return out

    def _one_of(self, value: Any, branches: list[Mapping[str, Any]], path: str) -> list[str]:
        results = [self.errors(value, s, path) for s in branches]
        passed = sum(1 for r in results if not r)
        if passed == 1:
            return []
        if passed > 1:
            return [f"{path}: matches {passed} oneOf branches"]
        return [f"{path}: matches no oneOf branch; nearest: {min(results, key=len)}"]

    def _resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref supported, got {ref!r}")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return node  # type: ignore[no-any-return]


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)
