"""``doctor``: is this machine set up for the layer? Config, cache dir, extras, Ollama, /metrics port."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from infra.cli._output import emit_json, table
from infra.cli._shared import command
from infra.config import PerfConfig, diagnose_config

__all__ = ["register"]

_EXTRAS = {
    "aiohttp": "http / ollama",
    "httpx": "http (sync, HTTP/2)",
    "h2": "http (HTTP/2)",
    "ollama": "ollama",
    "asyncpg": "postgres",
    "redis": "redis",
    "websockets": "hotpath",
    "torch": "torch",
    "numpy": "torch",
}


def register(sub: Any) -> None:
    command(sub, "doctor", _doctor, "check the config, the cache directory, the extras and the services")


def _check(name: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"check": name, "status": {True: "ok", False: "FAIL", None: "warn"}[ok], "detail": detail}


def _config_check_command(path: str | None) -> str:
    """The ``config check`` command that reads the file this doctor run read."""
    return "python -m infra config check" + (f" --config {shlex.quote(path)}" if path else "")


def _doctor(args: argparse.Namespace) -> int:
    checks: list[dict[str, Any]] = []
    diagnosis = diagnose_config(args.config)
    config = diagnosis.config
    if not diagnosis.problems and config is not None:
        checks.append(_check("config", True, f"{config.source}; layer {'on' if config.enabled else 'OFF'}"))
    else:
        first = diagnosis.problems[0]
        checks.append(
            _check(
                "config",
                False,
                f"{diagnosis.source}: {len(diagnosis.problems)} problem(s); first: {first}"
                f" (run `{_config_check_command(args.config)}` for all)",
            )
        )
    # the other checks go on after a config failure: bad fields are left at their defaults (an
    # unreadable file: the built-in defaults), so the cache, Ollama and the port still get looked at
    usable = config if config is not None else PerfConfig()
    checks.append(_wrap(usable, diagnosis.wrap))
    checks.append(
        _cache_dir(usable.cache.path)
        if usable.cache.backend == "sqlite"
        else _check("cache backend", None, f"{usable.cache.backend}: see `python -m infra cache stats`")
    )
    checks.append(_ollama(usable.ollama.host))
    checks.append(_port(usable.metrics.host, usable.metrics.port))
    for module, extra in _EXTRAS.items():
        found = importlib.util.find_spec(module) is not None
        checks.append(
            _check(
                f"extra {module}",
                True if found else None,
                "installed" if found else f"missing: pip install 'perf-infra[{extra.split()[0]}]'",
            )
        )
    failed = any(c["status"] == "FAIL" for c in checks)
    if args.json:
        emit_json({"ok": not failed, "checks": checks})
    else:
        print(table(["check", "status", "detail"], [[c["check"], c["status"], c["detail"]] for c in checks]))
    return 1 if failed else 0


def _wrap(config: Any, entries: Any) -> dict[str, Any]:
    """The ``wrap`` list, checked as ``config check`` does: a failure with the layer on (enable() would
    raise), a warning with it off (enable() logs and goes on)."""
    from infra.integrate._check import check_wrap

    problems = check_wrap(config, entries)
    if not problems:
        n = len(entries)
        return _check(
            "wrap", True, f"{n} entr{'y' if n == 1 else 'ies'} import and resolve ({config.source})"
        )
    layer_on = config.enabled and config.cache.enabled
    detail = f"{config.source}: {len(problems)} problem(s): " + "; ".join(map(str, problems))
    return _check("wrap", False if layer_on else None, detail)


def _cache_dir(path: str) -> dict[str, Any]:
    directory = Path(path).expanduser().resolve().parent
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK):
        return _check("cache directory", True, f"{directory} writable")
    return _check(
        "cache directory", False, f"{directory} not writable: the cache will fail open (calls run uncached)"
    )


def _ollama(host: str) -> dict[str, Any]:
    base = host if "://" in host else f"http://{host}"
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/api/version", timeout=1.5) as response:
            return _check(
                "ollama", True, f"{base} answers: {response.read(200).decode(errors='replace').strip()}"
            )
    except (urllib.error.URLError, OSError) as exc:
        return _check(
            "ollama",
            None,
            f"{base} doesn't answer ({getattr(exc, 'reason', exc)}); the demo uses its test server",
        )


def _port(host: str, port: int) -> dict[str, Any]:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return _check(
                "metrics port", None, f"{host}:{port} is taken ({exc.strerror}); /metrics would fail open"
            )
    return _check("metrics port", True, f"{host}:{port} free")
