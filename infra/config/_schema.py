"""JSON Schema (draft 2020-12) for perf_config.json, generated from the same specs the loader uses."""

from __future__ import annotations

from typing import Any

from infra.config._model import PerfConfig
from infra.config._spec import Spec, section_fields
from infra.config._units import DURATION_PATTERN

__all__ = ["json_schema"]

_DURATION = {
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": DURATION_PATTERN},  # the parser's grammar (infra/config/_units.py)
    ]
}
_SIZE = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "string", "pattern": r"^\s*([0-9]+(\.[0-9]+)?|\.[0-9]+)\s*([bB]|[kKmMgGtT][iI]?[bB])?\s*$"},
    ]
}


def _field_schema(spec: Spec) -> dict[str, Any]:
    kind = spec.kind
    schema: dict[str, Any]
    if kind == "bool":
        schema = {"type": "boolean"}
    elif kind in ("int", "port", "float"):
        schema = {"type": "number" if kind == "float" else "integer"}
        if spec.minimum is not None:
            schema["minimum"] = spec.minimum
        if spec.maximum is not None:
            schema["maximum"] = spec.maximum
    elif kind == "str":
        schema = {"type": "string"}
        if spec.choices:
            schema["enum"] = list(spec.choices)
        if spec.pattern:
            schema["pattern"] = spec.pattern
    elif kind == "duration":
        schema = dict(_DURATION)
    elif kind == "size":
        schema = dict(_SIZE)
    elif kind == "section":
        assert spec.section is not None
        schema = _section_schema(spec.section)
    elif kind == "section_map":
        assert spec.section is not None
        schema = {"type": "object", "additionalProperties": _section_schema(spec.section)}
    elif kind == "map":
        item: dict[str, Any] = (
            {"type": "object"} if spec.item == "options" else {"type": ["string", "number", "boolean"]}
        )
        schema = {"type": "object", "additionalProperties": item}
    elif kind == "list":
        if spec.item == "section":
            assert spec.section is not None
            items = _section_schema(spec.section)
        else:
            items = _field_schema(Spec(kind=spec.item or "str", description=""))
        schema = {"type": "array", "items": items}
    else:  # pragma: no cover - a bug in _model
        raise AssertionError(kind)
    if spec.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    schema["description"] = spec.description
    return schema


def _section_schema(cls: type) -> dict[str, Any]:
    fields = section_fields(cls)
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: _field_schema(spec) for name, spec in fields},
    }
    if cls.__name__ == "WrapEntry":
        schema["required"] = ["target", "methods"]
    return schema


def json_schema() -> dict[str, Any]:
    """The whole schema; ``config/perf_config.schema.json`` is this, pretty-printed."""
    root = _section_schema(PerfConfig)
    root["properties"] = {"$schema": {"type": "string"}, **root["properties"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://perf-infra.dev/perf_config.schema.json",
        "title": "perf-infra configuration (config/perf_config.json)",
        **root,
    }
