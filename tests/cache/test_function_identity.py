"""The function part of a ``@cached`` key: a factory's closure and a script's path are part of it."""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.cache import Cache, cached
from tests.cache.conftest import PYTHON, subprocess_env


def test_a_factory_made_function_is_keyed_by_its_closure(cache: Cache) -> None:
    calls: list[tuple[int, int]] = []  # a closed-over call log: left out, so entries still hit

    def make(factor: int) -> Callable[[int], int]:
        @cached(cache=cache)
        def scale(x: int) -> int:
            calls.append((factor, x))
            return x * factor

        return scale

    assert (make(2)(3), make(10)(3)) == (6, 30)
    assert make(2)(3) == 6  # a second factory with the same settings shares the entry
    assert calls == [(2, 3), (10, 3)]


def test_a_closure_over_an_object_or_function_is_keyed_by_its_value(cache: Cache) -> None:
    class Options:
        def __init__(self, suffix: str) -> None:
            self.suffix = suffix

    def make(opts: Options, post: Callable[[str], str]) -> Callable[[str], str]:
        @cached(cache=cache)
        def fmt(s: str) -> str:
            return post(s) + opts.suffix

        return fmt

    assert make(Options("!"), str.upper)("a") == "A!"
    assert make(Options("?"), str.upper)("a") == "A?"
    assert make(Options("?"), str.lower)("A") == "a?"


def test_methods_of_a_class_built_in_a_factory_are_keyed_by_its_closure(cache: Cache) -> None:
    def make_cls(factor: int) -> type[Any]:
        class Scaler:
            @cached(cache=cache)
            def run(self, x: int) -> int:
                return x * factor

        return Scaler

    assert (make_cls(2)().run(3), make_cls(10)().run(3)) == (6, 30)


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def _run(script: Path, cwd: Path, *args: str) -> str:
    env = subprocess_env() | {"PERF_CACHE_BACKEND": "sqlite", "PERF_CACHE_PATH": str(cwd / "c.db")}
    env.pop("PERF_CONFIG", None)
    out = subprocess.run(
        [PYTHON, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_closures_are_keyed_alike_across_processes(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        "translate.py",
        """
        import sys
        from infra import cached

        def build(lang):
            suffix = {"en": "-en", "fr": "-fr"}[lang]

            @cached(namespace="api")
            def translate(text):
                print("computed", file=sys.stderr)
                return text + suffix
            return translate

        print(build(sys.argv[1])("hello"))
        """,
    )
    assert _run(script, tmp_path, "en") == "hello-en"
    assert _run(script, tmp_path, "fr") == "hello-fr"
    assert _run(script, tmp_path, "en") == "hello-en"


def test_scripts_run_as_main_do_not_share_entries(tmp_path: Path) -> None:
    body = """
        from infra import cached

        @cached
        def process(text):
            return text + "{tag}"

        print(process("x"))
        """
    a = _script(tmp_path, "worker_a/main.py", body.format(tag="-a"))
    b = _script(tmp_path, "worker_b/main.py", body.format(tag="-b"))
    assert _run(a, tmp_path) == "x-a"
    assert _run(b, tmp_path) == "x-b"
    assert _run(a, tmp_path) == "x-a"
