"""One failure policy for perf_config.json, decided in infra.config (``_settle``), used by every reader.

* The emergency switch always works: ``PERF_ENABLED=0`` or a file that parses with top-level
  ``"enabled": false`` gives the layer off, and the file's other problems ONE warning, never an error.
* Problems only inside a part the file switched off (``"cache": {"enabled": false, ...}``): one warning.
* Any other problem: explicit entry points (``infra.enable()``, ``enable_caching_for_worker()``,
  ``load_config``, ``config check``) raise ConfigError with every problem; implicit readers (the cache
  behind ``@cached``, ``AsyncPerfClient()`` / ``PerfClient()``, ``OptimizedOllama()``) get the layer OFF
  (plain behaviour) and one warning, never the built-in defaults.

Each reproduction of the new-user trial (A, B, C) is a test here, with real files in tmp_path and a
FaultServer route that answers 503 once, then 200.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cache import cached, get_cache, reset_cache, set_cache
from infra.config import ConfigError, HttpConfig, get_config, load_config, reset_config
from infra.http import AsyncPerfClient, PerfClient
from infra.integrate import enable_caching_for_worker
from infra.integrate._enable import active_handle
from infra.testing.fault_server import FaultServer

_ENV = ("PERF_ENABLED", "PERF_CACHE_ENABLED", "PERF_HTTP_ENABLED", "PERF_OLLAMA_ENABLED", "PERF_CONFIG")


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as s:
        yield s


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no config/perf_config.json above: only the file a test writes
    prev = set_cache(None)
    reset_config()
    yield
    handle = active_handle()
    if handle is not None:
        handle.undo()
    reset_cache()
    set_cache(prev)
    reset_config()


def _write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str | dict[str, Any]) -> Path:
    path = tmp_path / "perf_config.json"
    path.write_text(text if isinstance(text, str) else json.dumps(text), encoding="utf-8")
    monkeypatch.setenv("PERF_CONFIG", str(path))
    return path


def _config_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "infra.config" and r.levelno == logging.WARNING
    ]


def _fail_once(server: FaultServer, key: str) -> str:
    return f"{server.url}/fail/{key}?n=1&code=503"


def _async_status(server: FaultServer, key: str, settings: HttpConfig | None = None) -> int:
    async def go() -> int:
        async with AsyncPerfClient(settings) as client:
            return (await client.get(_fail_once(server, key))).status_code

    return asyncio.run(go())


def _sync_status(server: FaultServer, key: str) -> int:
    with PerfClient() as client:
        return client.get(_fail_once(server, key)).status_code


# ----------------------------------------------------------------------------------- (A) no-argument clients
SWITCHED_OFF_HTTP = [
    ({"enabled": False}, {}),
    ({}, {"PERF_ENABLED": "0"}),
    ({"http": {"enabled": False}}, {}),
    ({"http": {"retry": {"attempts": 0}}}, {}),
    ({}, {"PERF_HTTP_ENABLED": "0"}),
]


@pytest.mark.parametrize(("data", "env"), SWITCHED_OFF_HTTP)
def test_no_argument_clients_obey_a_file_that_turns_retries_off(
    data: dict[str, Any],
    env: dict[str, str],
    server: FaultServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    _write(tmp_path, monkeypatch, data)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert _async_status(server, "a-async") == 503  # plain pooled client: the 503 comes back, no retry
    assert server.hits["fail/a-async"] == 1
    assert _sync_status(server, "a-sync") == 503
    assert server.hits["fail/a-sync"] == 1
    # the same as passing the loaded section, which behaved correctly before
    assert _async_status(server, "a-section", get_config().http) == 503
    assert server.hits["fail/a-section"] == 1


def test_no_argument_clients_retry_under_a_valid_file(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _write(tmp_path, monkeypatch, {"http": {"retry": {"attempts": 2}}})
    assert _async_status(server, "ok-async") == 200
    assert server.hits["fail/ok-async"] == 2
    assert _sync_status(server, "ok-sync") == 200
    assert server.hits["fail/ok-sync"] == 2


def test_an_explicit_http_config_wins_over_the_file(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _write(tmp_path, monkeypatch, {"http": {"enabled": False}})
    assert _async_status(server, "explicit", HttpConfig()) == 200  # the section given in code: retries
    assert server.hits["fail/explicit"] == 2


# --------------------------------------------------------------- (B) the emergency switch always works
BROKEN_BUT_OFF: list[tuple[str, dict[str, str], str]] = [
    ('{"enabled": true,,}', {"PERF_ENABLED": "0"}, ":1:"),  # syntax error: named by line:column
    ('{"enabled": true, "cache": {"max_bytes": "lots"}}', {"PERF_ENABLED": "0"}, "cache.max_bytes"),
    ('{"enabled": false, "cache": {"backnd": "sqlite"}}', {}, "cache.backnd"),
    (
        '{"enabled": false, "wrap": [{"target": "m:C", "methods": ["f"], "ttl": "30 dayz"}]}',
        {},
        "wrap[0].ttl",
    ),
]


@pytest.mark.parametrize(("text", "env", "named"), BROKEN_BUT_OFF)
def test_switched_off_broken_file_is_one_warning_and_plain_behaviour(
    text: str,
    env: dict[str, str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _write(tmp_path, monkeypatch, text)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    caplog.set_level(logging.WARNING)

    class Worker:
        pass

    classes = enable_caching_for_worker()  # the explicit entry point: no ConfigError
    assert classes == {} or all(c is not Worker for c in classes.values())
    assert get_config().enabled is False
    assert not get_cache().enabled
    warnings = _config_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert named in warnings[0] and "the layer is switched off" in warnings[0]
    assert load_config().enabled is False  # load_config obeys the switch too (its own warning)


def test_switched_off_file_keeps_plain_behaviour_for_the_client(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, monkeypatch, '{"enabled": true,,}')
    monkeypatch.setenv("PERF_ENABLED", "0")
    caplog.set_level(logging.WARNING)
    assert _async_status(server, "b-off") == 503
    assert server.hits["fail/b-off"] == 1
    assert len(_config_warnings(caplog)) == 1


# ------------------------------------------------- (C) one behaviour for one bad file: off, or the error
@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"cache": {"max_bytes": "lots"}}, "cache.max_bytes"),
        ({"cache": {"enabled": False}, "http": {"retri": {}}}, "http.retri"),
    ],
)
def test_unusable_file_explicit_raises_implicit_falls_back_to_off(
    data: dict[str, Any],
    named: str,
    server: FaultServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _write(tmp_path, monkeypatch, data)
    caplog.set_level(logging.WARNING)
    calls: list[int] = []

    @cached(ttl=60)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert square(3) == 9 and square(3) == 9
    assert calls == [3, 3]  # plain behaviour: nothing cached (the defaults would have cached)
    assert not get_cache().enabled
    assert not (tmp_path / ".perf_cache").exists()  # no store persisted
    assert _async_status(server, "c-client") == 503  # plain client: no retries
    assert server.hits["fail/c-client"] == 1
    warnings = _config_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert named in warnings[0] and "the layer is off" in warnings[0]
    assert not any("built-in defaults" in r.getMessage() for r in caplog.records)
    # the explicit entry points raise the same file's error, every problem listed
    with pytest.raises(ConfigError) as raised:
        enable_caching_for_worker()
    assert named in str(raised.value)
    with pytest.raises(ConfigError):
        load_config()
    with pytest.raises(ConfigError):
        get_config(strict=True)
    assert get_config().enabled is False  # and the implicit readers keep the layer off


def test_unusable_file_off_for_ollama(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("ollama")
    from infra.ollama import OptimizedOllama

    _write(tmp_path, monkeypatch, {"ollama": {"keep_alive": []}, "cache": {"max_bytes": "lots"}})
    client = OptimizedOllama()
    assert client.settings.enabled is False


def test_problems_only_inside_a_switched_off_part_are_one_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, monkeypatch, {"cache": {"enabled": False, "max_bytes": "lots"}})
    caplog.set_level(logging.WARNING)
    enable_caching_for_worker()
    config = get_config()
    assert config.enabled and not config.cache.enabled and config.http.enabled
    warnings = _config_warnings(caplog)
    assert (
        len(warnings) == 1 and "cache.max_bytes" in warnings[0] and "part that is switched off" in warnings[0]
    )


def test_missing_perf_config_file_is_off_for_implicit_readers_and_an_error_for_explicit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PERF_CONFIG", str(tmp_path / "nope.json"))
    caplog.set_level(logging.WARNING)
    assert not get_cache().enabled
    assert len(_config_warnings(caplog)) == 1
    with pytest.raises(ConfigError, match="no such config file"):
        enable_caching_for_worker()


def test_valid_file_unchanged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write(tmp_path, monkeypatch, {"cache": {"backend": "memory"}})
    caplog.set_level(logging.WARNING)
    calls: list[int] = []

    @cached(ttl=60)
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert double(4) == 8 and double(4) == 8
    assert calls == [4]  # cached
    assert get_config(strict=True).enabled
    assert _config_warnings(caplog) == []
