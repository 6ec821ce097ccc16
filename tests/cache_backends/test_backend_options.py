"""The typed overrides of ``from_settings`` / ``create_backend`` name exactly the constructors' keywords."""

from __future__ import annotations

import inspect
import typing

from infra.cache.backends.options import PostgresOverrides, RedisOverrides, SharedBackendOverrides
from infra.cache.backends.postgres import PostgresBackend
from infra.cache.backends.redis import RedisBackend


def _keywords(cls: type) -> set[str]:
    return {name for name in inspect.signature(cls.__init__).parameters if name != "self"}


def test_each_overrides_dict_names_its_constructors_keywords() -> None:
    assert set(typing.get_type_hints(PostgresOverrides)) == _keywords(PostgresBackend)
    assert set(typing.get_type_hints(RedisOverrides)) == _keywords(RedisBackend)


def test_create_backend_takes_the_keywords_both_backends_take() -> None:
    assert set(typing.get_type_hints(SharedBackendOverrides)) == _keywords(PostgresBackend) & _keywords(
        RedisBackend
    )
