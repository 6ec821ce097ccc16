"""Sections built in code are checked as the loader checks a file: one ConfigError naming every problem by
JSON path, units read from strings, nested dicts built into their sections; loaded sections pass as built."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from infra.config import (
    CacheConfig,
    HttpConfig,
    MetricsConfig,
    OllamaConfig,
    PerfConfig,
    load_config,
    reset_config,
    set_config,
)
from infra.config.sections.cache import NamespaceConfig
from infra.config.sections.http import RetryConfig, TimeoutConfig
from infra.config.sections.runtime import BatchingConfig, DbConfig, TorchConfig, WarmupConfig
from infra.config.sections.wrap import WrapEntry
from infra.errors import ConfigError


def _wheres(build: Callable[[], object]) -> set[str]:
    with pytest.raises(ConfigError) as info:
        build()
    return {p.where for p in info.value.problems}


@pytest.mark.parametrize(
    ("build", "where"),
    [
        (lambda: HttpConfig(max_connections=0), "http.max_connections"),
        (lambda: HttpConfig(backend="aiohtp"), "http.backend"),
        (lambda: HttpConfig(keepalive_expiry="soon"), "http.keepalive_expiry"),
        (lambda: HttpConfig(timeout="30s"), "http.timeout"),
        (lambda: HttpConfig(timeout={"connect": "x"}), "http.timeout.connect"),
        (lambda: TimeoutConfig(total=-1), "http.timeout.total"),
        (lambda: RetryConfig(backoff=("fast",)), "http.retry.backoff[0]"),
        (lambda: HttpConfig(max_per_host=20, max_connections=10), "http.max_per_host"),
        (lambda: CacheConfig(max_bytes=-1), "cache.max_bytes"),
        (lambda: CacheConfig(backend="sqlit"), "cache.backend"),
        (lambda: CacheConfig(default_ttl="forever"), "cache.default_ttl"),
        (lambda: CacheConfig(namespaces={"x": {"ttl": "zz"}}), "cache.namespaces.x.ttl"),
        (lambda: CacheConfig(namespaces={"x": {"tll": "1h"}}), "cache.namespaces.x.tll"),
        (lambda: CacheConfig(namespaces={"x": 5}), "cache.namespaces.x"),
        (lambda: NamespaceConfig(codec="json"), "cache.namespaces.<name>.codec"),
        (lambda: OllamaConfig(retries=99), "ollama.retries"),
        (lambda: OllamaConfig(cache={"replay": "slow"}), "ollama.cache.replay"),
        (lambda: DbConfig(min_size=5, max_size=2), "db.min_size"),
        (lambda: DbConfig(max_size=0), "db.max_size"),
        (lambda: DbConfig(command_timeout=0), "db.command_timeout"),
        (lambda: MetricsConfig(port=70000), "metrics.port"),
        (lambda: TorchConfig(num_threads=0), "torch.num_threads"),
        (lambda: BatchingConfig(max_batch_size=0), "batching.max_batch_size"),
        (lambda: WarmupConfig(delay="later"), "warmup.delay"),
        (lambda: WrapEntry(target="no colon"), "wrap[<i>].target"),
        (lambda: PerfConfig(enabled="yes"), "enabled"),
    ],
)
def test_a_bad_value_built_in_code_is_named_by_its_json_path(build: Callable[[], object], where: str) -> None:
    assert where in _wheres(build)


def test_every_problem_is_named_at_once_and_is_a_value_error() -> None:
    def build() -> CacheConfig:
        return CacheConfig(max_bytes=-1, backend="sqlit", default_ttl="30x", namespaces={"x": {"ttl": "1y"}})

    assert _wheres(build) == {
        "cache.max_bytes",
        "cache.backend",
        "cache.default_ttl",
        "cache.namespaces.x.ttl",
    }
    with pytest.raises(ValueError, match=r"did you mean 'sqlite'"):  # `except ValueError` callers still work
        build()


def test_db_rules_between_fields_run_with_the_field_checks() -> None:
    wheres = _wheres(lambda: DbConfig(min_size=5, max_size=2, statement_cache_size=-1, command_timeout=0))
    assert wheres == {"db.min_size", "db.statement_cache_size", "db.command_timeout"}


def test_units_convert_as_the_loader_converts_them() -> None:
    cache = CacheConfig(default_ttl="30d", max_bytes="1GiB", memory_bytes="64MB", compress_threshold=8192.0)
    assert cache.default_ttl == 30 * 86400.0 and cache.max_bytes == 1024**3
    assert cache.memory_bytes == 64 * 1024**2 and type(cache.compress_threshold) is int
    http = HttpConfig(keepalive_expiry="30s", timeout={"connect": "500ms"}, retry={"backoff": ["100ms", 1]})
    assert http.keepalive_expiry == 30.0 and http.timeout == TimeoutConfig(connect=0.5)
    assert http.retry.backoff == (0.1, 1.0)
    assert OllamaConfig(keep_alive="30m").keep_alive == 1800.0
    assert DbConfig(command_timeout="2s", server_settings={"a": "b"}).command_timeout == 2.0
    assert DbConfig(command_timeout=None).pool_kwargs()["command_timeout"] is None
    assert HttpConfig(http2_hosts=["a:443"]).http2_hosts == ("a:443",)  # lists become tuples
    assert isinstance(DbConfig(server_settings={"a": "b"}).server_settings, Mapping)
    with pytest.raises(TypeError):  # maps frozen
        DbConfig(server_settings={"a": "b"}).server_settings["a"] = "c"  # type: ignore[index]


def test_a_nested_namespace_dict_becomes_its_section() -> None:
    cache = CacheConfig(namespaces={"x": {"ttl": "1h", "max_bytes": "1MB"}, "y": NamespaceConfig(ttl=5)})
    assert cache.namespaces["x"] == NamespaceConfig(ttl=3600.0, max_bytes=1024**2)
    assert cache.ttl_for("x") == 3600.0 and cache.ttl_for("y") == 5.0
    assert cache.namespace("x").max_bytes == 1024**2  # what the backend reads: a section, not a dict


def test_the_loaders_sections_pass_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "perf_config.json"
    path.write_text(
        json.dumps(
            {
                "cache": {"default_ttl": "2h", "namespaces": {"x": {"ttl": "1h"}}},
                "http": {"timeout": {"connect": "2s"}},
            }
        )
    )
    config = load_config(path, use_env=False)
    assert config.cache.default_ttl == 7200.0 and config.cache.namespaces["x"].ttl == 3600.0
    for name in ("cache", "http", "ollama", "metrics", "db", "torch", "batching", "warmup"):
        section = getattr(config, name)
        assert dataclasses.replace(section) == section  # rebuilt in code: passes, same values
    assert dataclasses.replace(config) == config


def test_a_partial_config_with_a_rule_broken_is_diagnosed_not_raised(tmp_path: Path) -> None:
    from infra.config import diagnose_config

    path = tmp_path / "perf_config.json"
    path.write_text(json.dumps({"db": {"min_size": 5, "max_size": 2}, "http": {"max_per_host": 40}}))
    diagnosis = diagnose_config(path, use_env=False)
    assert {p.where for p in diagnosis.problems} == {"db.min_size", "http.max_per_host"}
    assert diagnosis.config is not None and diagnosis.config.db.min_size == 5


def test_metrics_off_turns_off_the_http_metrics_in_the_loader() -> None:
    off = load_config(environ={"PERF_METRICS_ENABLED": "0"})
    assert off.metrics.enabled is False and off.http.metrics is False
    assert load_config(environ={}).http.metrics is True


async def test_metrics_off_means_no_http_series_from_a_client() -> None:
    from infra.http import AsyncPerfClient
    from infra.metrics import get_metrics
    from infra.metrics.exposition import render_text
    from infra.testing.fault_server import FaultServer

    set_config(load_config(environ={"PERF_METRICS_ENABLED": "0"}))
    try:
        from infra.config import get_config

        with FaultServer() as server:
            for client in (AsyncPerfClient(get_config().http), AsyncPerfClient()):
                async with client:
                    response = await client.get(f"{server.url}/echo/{uuid.uuid4().hex}")
                    assert response.status == 200
            assert f'origin="{server.origin}"' not in render_text(get_metrics())
            async with AsyncPerfClient(HttpConfig()) as control:  # the check can see a series
                await control.get(f"{server.url}/echo/{uuid.uuid4().hex}")
            assert f'origin="{server.origin}"' in render_text(get_metrics())
    finally:
        reset_config()
