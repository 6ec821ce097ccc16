"""Finding, reading and overriding perf_config.json; the only I/O the config package does.

Lookup order: an explicit path, ``$PERF_CONFIG``, the nearest ``config/perf_config.json`` walking up from
the working directory, then walking up from the main script's folder (seed 004's layout: ``Leo/config/``
found from ``Leo/enrichment-worker/``), the built-in defaults. Environment variables then override the
common switches (table ``ENV_OVERRIDES``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.config._build import build_config, coerce, finalize
from infra.config._depth import depth_problem_in_text
from infra.config._model import PerfConfig
from infra.config._spec import Spec, section_fields
from infra.config.sections._base import loading
from infra.config.sections.wrap import WrapEntry
from infra.errors import ConfigError, ConfigProblem

__all__ = [
    "ENV_OVERRIDES",
    "ConfigDiagnosis",
    "diagnose_config",
    "find_config_file",
    "get_config",
    "load_config",
    "project_root",
    "reset_config",
    "set_config",
]

log = logging.getLogger("infra.config")

DEFAULT_LOCATION = Path("config") / "perf_config.json"

# Environment variable → JSON path. The value is read like the JSON field it overrides, except that
# booleans also take 1/0, yes/no, on/off.
ENV_OVERRIDES: dict[str, str] = {
    "PERF_ENABLED": "enabled",
    "PERF_CACHE_ENABLED": "cache.enabled",
    "PERF_CACHE_BACKEND": "cache.backend",
    "PERF_CACHE_PATH": "cache.path",
    "PERF_CACHE_DSN": "cache.dsn",
    "PERF_CACHE_URL": "cache.url",
    "PERF_CACHE_MAX_BYTES": "cache.max_bytes",
    "PERF_HTTP_ENABLED": "http.enabled",
    "PERF_OLLAMA_ENABLED": "ollama.enabled",
    "OLLAMA_HOST": "ollama.host",
    "PERF_METRICS_ENABLED": "metrics.enabled",
    "PERF_METRICS_SERVE": "metrics.serve",
    "PERF_METRICS_HOST": "metrics.host",
    "PERF_METRICS_PORT": "metrics.port",
    "PERF_DB_DSN": "db.dsn",
    "PERF_TORCH_THREADS": "torch.num_threads",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def find_config_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The file the lookup order picks, or None for the built-in defaults.

    An explicit path or ``$PERF_CONFIG`` that doesn't exist is an error (a typo shouldn't silently mean
    defaults); finding no config/perf_config.json above the working directory or the main script just
    means defaults.
    """
    if path is not None:
        candidate = Path(path)
        if not candidate.is_file():
            raise ConfigError([ConfigProblem(str(candidate), "no such config file")])
        return candidate
    env = os.environ.get("PERF_CONFIG")
    if env:
        candidate = Path(env)
        if not candidate.is_file():
            raise ConfigError([ConfigProblem(f"$PERF_CONFIG={env}", "no such config file")])
        return candidate
    for start in _search_starts():
        found = _nearest(start)
        if found is not None:
            return found
    return None


def project_root(config_file: str | os.PathLike[str]) -> Path:
    """The folder a config file's relative paths (``cache.path``) resolve against, absolute.

    A file inside a folder named ``config`` belongs to the project holding that folder (seed 004's
    ``Leo/config/perf_config.json`` → ``Leo``); any other file, to its own folder. Resolving against the
    file, not the working directory, is what makes ``cd enrichment-worker && python worker.py``,
    ``python enrichment-worker/worker.py`` and ``python -m infra cache clear`` from ``Leo`` share one store.
    """
    folder = Path(config_file).resolve().parent
    return folder.parent if folder.name == DEFAULT_LOCATION.parent.name else folder


def _resolve_cache_path(config: PerfConfig, file: Path | None, from_env: bool) -> PerfConfig:
    """A relative ``cache.path`` from a config file (its own value or the default it left in place) made
    absolute against ``project_root``; ``$PERF_CACHE_PATH`` is typed in a shell, so it keeps the working
    directory, as do the built-in defaults (no file)."""
    path = config.cache.path
    if file is None or from_env or Path(path).expanduser().is_absolute():
        return config
    resolved = str(project_root(file) / path)
    with loading():  # the loader's own sections, checked already
        return dataclasses.replace(config, cache=dataclasses.replace(config.cache, path=resolved))


def _search_starts() -> list[Path]:
    """The working directory, then the folder of the script Python was started with (``python worker.py``).

    A module run with ``-m`` or a console script inside the interpreter's prefix (``pytest``, ``pip``) is a
    tool, not the worker: its folder says nothing about where the worker's config lives."""
    starts = [Path.cwd()]
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    if script and getattr(main, "__spec__", None) is None:
        folder = Path(script).resolve().parent
        prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        if not any(folder == p or p in folder.parents for p in prefixes) and folder not in starts:
            starts.append(folder)
    return starts


def _nearest(start: Path) -> Path | None:
    """``config/perf_config.json`` in ``start`` or the closest folder above it."""
    for folder in (start, *start.parents):
        candidate = folder / DEFAULT_LOCATION
        if candidate.is_file():
            return candidate
    return None


def read_json(path: Path, problems: list[ConfigProblem] | None = None) -> Any:
    """Parse a JSON file; a syntax error names the file, line and column.

    A UTF-8 byte-order mark (Windows Notepad writes one) is skipped; positions count from the character
    after it. A key repeated in one object is a problem at ``file:line:column`` appended to ``problems``
    (raised alone when ``problems`` is None); the LAST value is kept, as ``json.loads`` keeps it, so the
    rest of the document is still checked and every problem comes at once."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), f"can't read: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(str(path), f"not UTF-8 text: {exc.reason}")]) from exc
    too_deep = depth_problem_in_text(text)  # before json.loads, which would raise RecursionError
    if too_deep is not None:
        raise ConfigError([too_deep], source=str(path))
    duplicates: list[str] = []

    def keep_last(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:  # json.loads would silently keep the last one; two "ttl"s are a mistake
                duplicates.append(key)
            seen[key] = value
        return seen

    try:
        data = json.loads(text, object_pairs_hook=keep_last)
    except json.JSONDecodeError as exc:
        where = f"{path}:{exc.lineno}:{exc.colno}"
        raise ConfigError([ConfigProblem(where, f"JSON syntax error: {exc.msg}")]) from exc
    found = _duplicate_problems(path, text, duplicates)
    if found and problems is None:
        raise ConfigError(found)
    if problems is not None:
        problems.extend(found)
    return data


def _duplicate_problems(path: Path, text: str, keys: list[str]) -> list[ConfigProblem]:
    """A problem at each repeated ``"key"`` (``keys``: what the parse saw repeated; empty skips the scan).

    ``text`` parsed, so a scan of its strings with a stack of the keys each open object holds places
    every repeat exactly, however often the key is used in other objects."""
    if not keys:
        return []
    found: list[ConfigProblem] = []
    stack: list[set[str] | None] = []  # one per open object (its keys so far) or array (None)
    i, end = 0, len(text)
    while i < end:
        ch = text[i]
        if ch == "{":
            stack.append(set())
        elif ch == "[":
            stack.append(None)
        elif ch in "}]":
            stack.pop()
        elif ch == '"':
            start = i
            i += 1
            while text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            after = i + 1
            while after < end and text[after] in " \t\r\n":
                after += 1
            keys_here = stack[-1] if stack else None
            if keys_here is not None and after < end and text[after] == ":":
                key = json.loads(text[start : i + 1])
                if key in keys_here:
                    line = text.count("\n", 0, start) + 1
                    col = start - (text.rfind("\n", 0, start) + 1) + 1
                    found.append(ConfigProblem(f"{path}:{line}:{col}", f"duplicate key {key!r}"))
                keys_here.add(key)
        i += 1
    return found


def _spec_at(path: str) -> Spec:
    cls: type = PerfConfig
    *heads, last = path.split(".")
    for head in heads:
        spec = dict(section_fields(cls))[head]
        assert spec.section is not None
        cls = spec.section
    return dict(section_fields(cls))[last]


def _env_value(spec: Spec, raw: str) -> Any:
    text = raw.strip()
    if spec.nullable and text.lower() in ("", "null", "none"):
        return None
    if spec.kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        return text  # coerce() reports it with the variable's name
    if spec.kind in ("int", "port"):
        try:
            return int(text)
        except ValueError:
            return text
    if spec.kind == "float":
        try:
            return float(text)
        except ValueError:
            return text
    return text


def apply_env(data: dict[str, Any], environ: Mapping[str, str], problems: list[ConfigProblem]) -> list[str]:
    """Write environment overrides into the raw JSON data (before it's built), checking each value;
    returns the variables applied."""
    applied: list[str] = []
    for var, path in ENV_OVERRIDES.items():
        raw = environ.get(var)
        if raw is None or not raw.strip():  # `VAR=${VAR}` in docker-compose with VAR unset gives ""
            continue
        spec = _spec_at(path)
        value = _env_value(spec, raw)
        before = len(problems)
        coerce(spec, value, f"${var} ({path})", problems)
        if len(problems) != before:
            continue
        node = data
        *heads, last = path.split(".")
        for head in heads:
            child = node.get(head)
            if not isinstance(child, dict):
                child = node[head] = {}
            node = child
        node[last] = value
        applied.append(var)
    return applied


def _db_checks(config: PerfConfig, problems: list[ConfigProblem]) -> None:
    """What asyncpg would refuse in a db section whose fields each passed (``DbConfig.problems()``, the
    check create_pool applies too), at ``db.<field>``. Skipped when a db field already has a problem: it
    was left at its default, so a combination check would report a value the file doesn't hold."""
    if any(p.where.startswith("db.") or "(db." in p.where for p in problems):
        return
    problems.extend(ConfigProblem(f"db.{field}", message) for field, message in config.db.problems())


def _cross_checks(config: PerfConfig, problems: list[ConfigProblem]) -> None:
    problems.extend(ConfigProblem(f"http.{field}", message) for field, message in config.http.problems())
    if (
        config.cache.enabled
        and config.cache.backend == "postgres"
        and not (config.cache.dsn or config.db.dsn)
    ):
        problems.append(ConfigProblem("cache.dsn", "required when cache.backend is postgres (or set db.dsn)"))
    if config.cache.enabled and config.cache.backend == "redis" and not config.cache.url:
        problems.append(ConfigProblem("cache.url", "required when cache.backend is redis"))


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    use_env: bool = True,
) -> PerfConfig:
    """Load the configuration (see the module docstring for the lookup order), under the one failure
    policy (``_settle``): a file that switches things off is obeyed, its other problems one warning.

    Raises ConfigError listing every problem found (syntax errors by file:line:column, bad values and
    unknown keys by JSON path, bad environment overrides by variable name) unless each lies where the
    file or the environment switched things off: the layer (``PERF_ENABLED=0``, top-level
    ``"enabled": false``) or the part holding it (``"cache": {"enabled": false, ...}``).
    """
    config, error = _settle(diagnose_config(path, environ=environ, use_env=use_env), environ)
    if error is not None:
        raise error
    return config


def env_says_off(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """The environment variable ``name`` is set to an off word ("0", "false", "no", "off", any case, spaces
    ignored); unset or empty is not off. The one reading of every on/off switch taken from the environment."""
    env = os.environ if environ is None else environ
    return env.get(name, "").strip().lower() in _FALSE


def _switched_off(environ: Mapping[str, str] | None) -> bool:
    """``PERF_ENABLED`` says off: the emergency switch, read even when the file can't be parsed."""
    return env_says_off("PERF_ENABLED", environ)


def _part_off(diagnosis: ConfigDiagnosis, problem: ConfigProblem) -> bool:
    """Whether ``problem`` lies inside a part that the file or the environment switched off
    (``cache.max_bytes`` under ``"cache": {"enabled": false}`` or ``PERF_CACHE_ENABLED=0``)."""
    return problem.where.split(".", 1)[0].split("[", 1)[0] in diagnosis.parts_off


def _with_parts_off(config: PerfConfig, parts: frozenset[str]) -> PerfConfig:
    """``config`` with ``parts`` switched off: a part with a bad field was left at its defaults by the
    builder, which would turn on what the file turned off."""
    with loading():
        off = {name: dataclasses.replace(getattr(config, name), enabled=False) for name in parts}
        return finalize(dataclasses.replace(config, **off), source=config.source)


def _settle(
    diagnosis: ConfigDiagnosis, environ: Mapping[str, str] | None
) -> tuple[PerfConfig, ConfigError | None]:
    """The one failure policy, for every reader: the configuration to run with, and the error an explicit
    entry point raises (None: nothing to raise).

    * No problems: the file's configuration.
    * The layer switched off (``PERF_ENABLED`` falsy, or a file that parses with top-level ``"enabled":
      false``): a disabled configuration and the file's problems as ONE warning; never an error, so the
      emergency switch always works.
    * Every problem inside a part the file switched off: the file's configuration (that part off), the
      problems as one warning.
    * Otherwise: the error, and beside it the configuration implicit readers fall back to: the layer OFF
      (plain behaviour), never the built-in defaults, which could turn on what the file turned off.
    """
    config = diagnosis.config
    problems = list(diagnosis.problems)
    if not problems and config is not None:
        return config, None
    error = diagnosis.error or ConfigError(problems, source=diagnosis.source)
    env_off = _switched_off(environ)
    if env_off or (config is not None and diagnosis.layer_off):
        off = config if config is not None and not config.enabled else _disabled(diagnosis.source, env_off)
        log.warning("perf config: %s; ignored: the layer is switched off", _describe(error))
        return off, None
    if config is not None and all(_part_off(diagnosis, p) for p in problems):
        log.warning("perf config: %s; ignored: each lies in a part that is switched off", _describe(error))
        return _with_parts_off(config, diagnosis.parts_off), None
    unusable = f"{diagnosis.source} (unusable: {len(error.problems)} problem(s), so the layer is off)"
    return _disabled(unusable, False), error


def _describe(error: ConfigError) -> str:
    problems = error.problems
    listed = "; ".join(f"{p.where}: {p.message}" for p in problems)
    source = f"{error.source}: " if error.source else ""
    return f"{source}{len(problems)} problem(s): {listed}"


def _disabled(source: str, by_env: bool) -> PerfConfig:
    """Every part a pass-through: what a switched-off or unusable file gives the implicit readers
    (``by_env``: ``PERF_ENABLED`` did it, which ``switched_off_by`` then names)."""
    config = build_config({"enabled": False}, [], source=source)
    if not by_env:
        return config
    with loading():
        return dataclasses.replace(config, env_overrides=("PERF_ENABLED",))


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class ConfigDiagnosis:
    """Everything ``config check`` and ``doctor`` report, gathered without raising.

    ``config`` is what the file builds to with each bad field left at its default (None when the file
    can't be found, read or parsed: ``error`` holds why); ``wrap`` holds the entries of the ``wrap`` list
    that built cleanly, with their index, so their targets can be checked even while other fields have
    problems."""

    source: str
    config: PerfConfig | None
    problems: tuple[ConfigProblem, ...]
    wrap: tuple[tuple[int, WrapEntry], ...]
    error: ConfigError | None = None
    layer_off: bool = False  # the parsed file (with the environment) says top-level "enabled": false
    parts_off: frozenset[str] = frozenset()  # the parts whose "enabled" the file (or environment) set false


def diagnose_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    use_env: bool = True,
) -> ConfigDiagnosis:
    """``load_config``'s work without raising: every problem at once and the partial result kept (see
    ConfigDiagnosis)."""
    from infra.config._build import build_section

    problems: list[ConfigProblem] = []
    try:
        file = find_config_file(path)
        data: Any = read_json(file, problems) if file is not None else {}
    except ConfigError as exc:
        return ConfigDiagnosis(
            source=exc.source or str(path or "config"),
            config=None,
            problems=tuple(exc.problems),
            wrap=(),
            error=exc,
        )
    source = str(file) if file is not None else "built-in defaults"
    repeated = len(problems)  # duplicate keys: their last values are real, so the cross checks still run
    env = os.environ if environ is None else environ
    applied = apply_env(data, env, problems) if use_env and isinstance(data, dict) else []
    config = build_config(data, problems, source=source)
    if applied:
        with loading():
            config = dataclasses.replace(config, env_overrides=tuple(applied))
    clean = len(problems) == repeated
    _db_checks(config, problems)
    if clean:
        _cross_checks(config, problems)
    config = _resolve_cache_path(config, file, "PERF_CACHE_PATH" in applied)
    wrap: list[tuple[int, WrapEntry]] = []
    raw = data.get("wrap") if isinstance(data, dict) else None
    if isinstance(raw, list) and len(raw) == len(config.wrap):
        wrap = list(enumerate(config.wrap))  # the list built: its own entries
    elif isinstance(raw, list):  # a bad field dropped the list: check the entries that build on their own
        for i, item in enumerate(raw):
            scratch: list[ConfigProblem] = []
            entry = build_section(WrapEntry, item, f"wrap[{i}]", scratch)
            if not scratch:
                wrap.append((i, entry))
    return ConfigDiagnosis(
        source=source,
        config=config,
        problems=tuple(problems),
        wrap=tuple(wrap),
        layer_off=isinstance(data, dict) and data.get("enabled") is False,
        parts_off=_parts_off(data),
    )


def _parts_off(data: Any) -> frozenset[str]:
    """The parts (sections with an ``enabled`` switch) whose raw object says ``"enabled": false``."""
    if not isinstance(data, dict):
        return frozenset()
    switchable = {
        name
        for name, spec in section_fields(PerfConfig)
        if spec.section is not None
        and spec.kind == "section"
        and "enabled" in dict(section_fields(spec.section))
    }
    return frozenset(
        k for k, v in data.items() if k in switchable and isinstance(v, dict) and v.get("enabled") is False
    )


_current: PerfConfig | None = None
_current_error: ConfigError | None = None
_lock = threading.Lock()


def get_config(*, strict: bool = False) -> PerfConfig:
    """The process-wide configuration, loaded on first use (thread-safe), under ``load_config``'s policy.

    Implicit readers (the cache behind ``@cached``, ``AsyncPerfClient()``, ``OptimizedOllama()``) call it
    plain: an unusable file gives the layer OFF (plain behaviour) and one logged warning, never an
    exception and never the built-in defaults. Explicit entry points (``infra.enable()``) pass
    ``strict=True``: the same file raises its ConfigError there, every problem listed."""
    global _current, _current_error
    config = _current
    if config is None:
        with _lock:
            if _current is None:
                _current, _current_error = _settle(diagnose_config(), None)
                if _current_error is not None:
                    log.warning(
                        "perf config: %s; the layer is off (plain behaviour) until the file is fixed; "
                        "infra.enable() and `python -m infra config check` raise this error",
                        _describe(_current_error),
                    )
            config = _current
    if strict and _current_error is not None:
        raise _current_error
    return config


def set_config(config: PerfConfig) -> None:
    """Replace the process-wide configuration (infra.enable() and tests use this)."""
    global _current, _current_error
    with _lock:
        _current, _current_error = config, None


def reset_config() -> None:
    """Forget the process-wide configuration; the next get_config() reads it again."""
    global _current, _current_error
    with _lock:
        _current, _current_error = None, None
