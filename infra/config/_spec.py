"""Declarative field specs: one description per config field drives parsing, validation and the JSON Schema.

Each section of PerfConfig is a frozen dataclass whose fields carry a :class:`Spec` in their metadata. The
loader (``_build``) and the schema generator (``_schema``) both read these specs, so the shipped JSON Schema
can never drift from what the loader accepts (a test compares the committed schema with the generated one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar

__all__ = ["Spec", "field", "freeze", "section_fields", "subsection"]

S = TypeVar("S")


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one config field is read.

    kind: bool, int, float, str, duration, size, port, section, section_map, map, list
    item: for list / map, the kind of each item ("str", "float", "duration", "scalar", "section")
    section: for section / section_map / list of sections, the dataclass type
    """

    kind: str
    description: str
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    item: str | None = None
    section: type | None = None
    secret: bool = False


def field(
    kind: str,
    default: Any,
    description: str,
    **spec: Any,
) -> Any:
    """A dataclass field with its Spec; mutable defaults (maps, sections) become factories."""
    meta = {"spec": Spec(kind=kind, description=description, **spec)}
    if isinstance(default, Mapping):
        frozen = freeze(default)
        return dataclasses.field(default_factory=lambda: frozen, metadata=meta)
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    if callable(default) and not isinstance(default, (bool, int, float, str, tuple)):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def subsection(section: type[S], description: str) -> S:
    """A field holding one ``section`` (a section dataclass), by default with that section's defaults."""
    made: S = field("section", section, description, section=section)
    return made


_FIELDS: dict[type, tuple[tuple[str, Spec], ...]] = {}


def section_fields(cls: type) -> tuple[tuple[str, Spec], ...]:
    """The (name, Spec) pairs of a section dataclass, in declaration order (bookkeeping fields left out);
    read once per class (every section built in code is checked through them)."""
    found = _FIELDS.get(cls)
    if found is None:
        found = tuple((f.name, f.metadata["spec"]) for f in dataclasses.fields(cls) if f.metadata.get("spec"))
        _FIELDS[cls] = found
    return found


def freeze(value: Any) -> Any:
    """Read-only deep copy of JSON data: dicts become MappingProxyType, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value
