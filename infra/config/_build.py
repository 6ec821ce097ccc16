"""Turn parsed JSON into PerfConfig, collecting every problem with its JSON path (no I/O here)."""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar

from infra.config._depth import depth_problem_in_data
from infra.config._model import PerfConfig
from infra.config._spec import Spec, freeze, section_fields
from infra.config._units import parse_duration, parse_size
from infra.config.sections._base import Section, loading
from infra.errors import ConfigError, ConfigProblem

__all__ = ["build_config", "build_section", "check_section", "coerce"]

T = TypeVar("T")

_KIND_WORDS = {
    "bool": "true or false",
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "port": "a port number",
    "section": "an object",
    "section_map": "an object",
    "map": "an object",
    "list": "a list",
}


def _show(value: Any) -> str:
    return (
        json.dumps(value)
        if not isinstance(value, (dict, list))
        else ("an object" if isinstance(value, dict) else "a list")
    )


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def coerce(spec: Spec, value: Any, path: str, problems: list[ConfigProblem]) -> Any:
    """One field's JSON value → its Python value, or a problem recorded at ``path`` (returns None then)."""
    if value is None:
        if spec.nullable:
            return None
        problems.append(ConfigProblem(path, f"expected {_expected(spec)}, got null"))
        return None
    kind = spec.kind
    try:
        if kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"expected true or false, got {_show(value)}")
            return value
        if kind in ("int", "port"):
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise ValueError(f"expected {_expected(spec)}, got {_show(value)}")
            _check_range(spec, value)
            return value
        if kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"expected a number, got {_show(value)}")
            _check_range(spec, value)
            return float(value)
        if kind == "str":
            if not isinstance(value, str):
                raise ValueError(f"expected a string, got {_show(value)}")
            if spec.choices and value not in spec.choices:
                hint = _did_you_mean(value, spec.choices)
                raise ValueError(f"expected one of {', '.join(spec.choices)}, got {_show(value)}{hint}")
            if spec.pattern and not re.match(spec.pattern, value):
                raise ValueError(f"{_show(value)} doesn't have the expected form ({spec.description})")
            return value
        if kind == "duration":
            seconds = parse_duration(value)
            _check_range(spec, seconds)
            return seconds
        if kind == "size":
            return parse_size(value)
        if kind == "section":
            assert spec.section is not None
            return build_section(spec.section, value, path, problems)
        if kind == "section_map":
            assert spec.section is not None
            if not isinstance(value, Mapping):
                raise ValueError(f"expected an object, got {_show(value)}")
            return freeze(
                {k: build_section(spec.section, v, _join(path, k), problems) for k, v in value.items()}
            )
        if kind == "map":
            if not isinstance(value, Mapping):
                raise ValueError(f"expected an object, got {_show(value)}")
            return freeze({k: _map_item(spec, v, _join(path, k), problems) for k, v in value.items()})
        if kind == "list":
            if not isinstance(value, list):
                raise ValueError(f"expected a list, got {_show(value)}")
            return tuple(_list_item(spec, v, _join(path, i), problems) for i, v in enumerate(value))
    except ValueError as exc:
        problems.append(ConfigProblem(path, str(exc)))
        return None
    raise AssertionError(f"unknown field kind {kind!r}")  # a bug in _model, never user input


def _expected(spec: Spec) -> str:
    if spec.kind == "duration":
        return "a duration"
    if spec.kind == "size":
        return "a size"
    if spec.kind == "port":
        return f"a port number {int(spec.minimum or 0)}-{int(spec.maximum or 65535)}"
    return _KIND_WORDS.get(spec.kind, spec.kind)


def _check_range(spec: Spec, value: float) -> None:
    low, high = spec.minimum, spec.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        if spec.kind == "port":
            raise ValueError(f"expected {_expected(spec)}, got {value}")
        if low is not None and high is not None:
            raise ValueError(f"expected a value from {_num(low)} to {_num(high)}, got {value}")
        if low is not None:
            raise ValueError(f"expected a value ≥ {_num(low)}, got {value}")
        raise ValueError(f"expected a value ≤ {_num(high)}, got {value}")


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def _map_item(spec: Spec, value: Any, path: str, problems: list[ConfigProblem]) -> Any:
    if spec.item == "str" and not isinstance(value, (str, int, float, bool)):
        problems.append(ConfigProblem(path, f"expected a string, got {_show(value)}"))
    elif spec.item == "scalar" and (value is None or isinstance(value, (dict, list))):
        problems.append(ConfigProblem(path, f"expected a number, string or boolean, got {_show(value)}"))
    elif spec.item == "options" and not isinstance(value, Mapping):
        problems.append(ConfigProblem(path, f"expected an object of options, got {_show(value)}"))
    return value


def _list_item(spec: Spec, value: Any, path: str, problems: list[ConfigProblem]) -> Any:
    if spec.item == "section":
        assert spec.section is not None
        return build_section(spec.section, value, path, problems)
    item_spec = Spec(kind=spec.item or "str", description=spec.description)
    return coerce(item_spec, value, path, problems)


def _did_you_mean(word: str, options: Any) -> str:
    names = list(options)
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    if not close:  # "ttl" for "default_ttl": a close match by containment rather than by spelling
        close = [n for n in names if len(word) >= 3 and word.lower() in n.lower()][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def build_section(cls: type[T], data: Any, path: str, problems: list[ConfigProblem]) -> T:
    """A section object from its JSON object; unknown keys and bad values become problems."""
    if not isinstance(data, Mapping):
        problems.append(ConfigProblem(path or "(top level)", f"expected an object, got {_show(data)}"))
        return cls()
    fields = dict(section_fields(cls))
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "$schema" and cls is PerfConfig:
            continue
        spec = fields.get(key)
        if spec is None:
            hint = _did_you_mean(key, fields)
            problems.append(ConfigProblem(_join(path, key), f"unknown key{hint}"))
            continue
        before = len(problems)
        coerced = coerce(spec, value, _join(path, key), problems)
        if len(problems) == before:
            kwargs[key] = coerced
    with loading():  # every value checked above: the section's own check would only repeat it
        return cls(**kwargs)


# ------------------------------------------------------------------------------------ sections built in code
def check_section(section: Section) -> None:
    """Check and normalise a section built in code by its fields' Specs, as ``build_section`` reads a file
    (durations and sizes from strings, lists to tuples, maps frozen, nested dicts built into their
    sections), then its cross-field ``problems()``; raise one ConfigError naming every problem by JSON
    path. Runs from ``Section.__post_init__``; sections the loader builds skip it (``loading()``)."""
    path = _home(type(section))
    problems: list[ConfigProblem] = []
    for name, spec in section_fields(type(section)):
        value = getattr(section, name)
        before = len(problems)
        checked = _from_code(spec, value, _join(path, name), problems)
        if checked is not value and len(problems) == before:
            object.__setattr__(section, name, checked)  # frozen: normalised once, before anyone sees it
    if not problems:
        problems.extend(ConfigProblem(_join(path, f), m) for f, m in section.problems())
    else:  # the rules between fields too, where they can be judged, so one error names every problem
        seen = {p.where for p in problems}
        try:
            cross = section.problems()
        except (TypeError, ValueError):  # a field left as given (a string where a number goes)
            cross = []
        problems.extend(ConfigProblem(_join(path, f), m) for f, m in cross if _join(path, f) not in seen)
    if problems:
        raise ConfigError(problems)


def _from_code(spec: Spec, value: Any, path: str, problems: list[ConfigProblem]) -> Any:
    """One field's value as given in code → its normalised value (problems recorded at ``path``)."""
    kind, cls = spec.kind, spec.section
    if kind == "section" and cls is not None:
        return value if isinstance(value, cls) else _nested(cls, value, path, problems)
    if kind == "section_map" and cls is not None and isinstance(value, Mapping):
        if isinstance(value, MappingProxyType) and all(isinstance(v, cls) for v in value.values()):
            return value  # the loader's (or the default's) frozen map of sections
        return freeze(
            {
                k: v if isinstance(v, cls) else _nested(cls, v, _join(path, k), problems)
                for k, v in value.items()
            }
        )
    if kind == "list" and isinstance(value, (tuple, list)):
        if spec.item == "section" and cls is not None:
            return tuple(
                v if isinstance(v, cls) else _nested(cls, v, _join(path, i), problems)
                for i, v in enumerate(value)
            )
        value = list(value)
    elif kind == "map" and isinstance(value, Mapping):
        # frozen first, as the loader freezes JSON (a nested map, e.g. a per-model runner entry, stays valid)
        value = freeze(value)
    elif _normal(spec, value):
        return value  # in its final form and in bounds: the common case, kept cheap
    return coerce(spec, value, path, problems)


def _normal(spec: Spec, value: Any) -> bool:
    """Whether ``value`` is already what ``coerce`` would make of it (so it can be kept as it is)."""
    kind, t = spec.kind, type(value)
    if value is None:
        return spec.nullable
    if t is bool:
        return kind == "bool"
    if t is str:
        return kind == "str" and not spec.choices and not spec.pattern
    if t is int:
        if kind not in ("int", "port", "size") or (kind == "size" and value < 0):
            return False
    elif t is float:
        finite = math.isfinite(value)
        if kind not in ("float", "duration") or not finite or (kind == "duration" and value < 0):
            return False
    else:
        return False
    low, high = spec.minimum, spec.maximum
    return (low is None or value >= low) and (high is None or value <= high)


def _nested(cls: type[T], value: Any, path: str, problems: list[ConfigProblem]) -> T:
    """A nested section given as a dict in code: built as the loader builds it, then its own rules."""
    before = len(problems)
    built = build_section(cls, value, path, problems)
    if len(problems) == before and isinstance(built, Section):
        problems.extend(ConfigProblem(_join(path, f), m) for f, m in built.problems())
    return built


_HOMES: dict[type, str] = {}


def _home(cls: type) -> str:
    """The JSON path of a section class in perf_config.json (``http.timeout``; ``cache.namespaces.<name>``
    for a map entry, ``wrap[<i>]`` for a list entry), found once by walking PerfConfig's Specs."""
    if not _HOMES:
        homes: dict[type, str] = {PerfConfig: ""}
        todo: list[tuple[type, str]] = [(PerfConfig, "")]
        while todo:
            owner, at = todo.pop()
            for name, spec in section_fields(owner):
                if spec.section is None or spec.section in homes:
                    continue
                where = _join(at, name)
                if spec.kind == "section_map":
                    where += ".<name>"
                elif spec.kind == "list":
                    where += "[<i>]"
                homes[spec.section] = where
                todo.append((spec.section, where))
        _HOMES.update(homes)
    return _HOMES.get(cls, cls.__name__)


def build_config(data: Any, problems: list[ConfigProblem], *, source: str | None = None) -> PerfConfig:
    """PerfConfig from parsed JSON. A top-level ``enabled: false`` switches every part off."""
    too_deep = depth_problem_in_data(data)  # the builders below recurse: never hand them a RecursionError
    if too_deep is not None:
        problems.append(too_deep)
        return finalize(PerfConfig(), source=source)
    config = build_section(PerfConfig, data, "", problems)
    return finalize(config, source=source)


def finalize(config: PerfConfig, *, source: str | None) -> PerfConfig:
    """Apply the master switches (``enabled: false`` turns every part off; ``metrics.enabled: false`` turns
    off the parts' own metrics: ``http.metrics``; the other parts read it through ``infra.config._switch``),
    and the source path for messages."""
    import dataclasses

    with loading():
        if not config.enabled:
            off = {
                name: dataclasses.replace(getattr(config, name), enabled=False)
                for name in ("cache", "http", "ollama", "metrics", "torch", "batching", "warmup")
            }
            config = dataclasses.replace(config, **off)
        if not config.metrics.enabled and config.http.metrics:
            config = dataclasses.replace(config, http=dataclasses.replace(config.http, metrics=False))
        return dataclasses.replace(config, source=source)
