"""ollama-python's own tests and examples, run through the layer (issue 15)::

    python -m infra.testing.ollama_upstream tests       # tests/test_client.py: off, cache, shipped
    python -m infra.testing.ollama_upstream examples    # examples/: plain, routed, routed again (cached)

The sdist of the installed ``ollama`` version is fetched with ``pip download ollama==<version> --no-deps
--no-binary :all:`` into ``--dir`` (reused when already there). Exit status 0 only if every check holds.

``tests`` replaces ``ollama._client.Client`` / ``AsyncClient`` with ``OptimizedOllama`` /
``AsyncOptimizedOllama`` (a conftest written next to the suite) and runs it three times: with the layer off
(``PERF_ENABLED=0``), with caching on and tuning off (no runner options, no keep_alive) - both must pass
entirely - and with the shipped config, where each failure must be one of :data:`SHIPPED_DIFFERENCES`
(the body then carries the filled-in options and keep_alive, which those tests compare byte for byte).

``examples`` starts ``python -m infra.testing.ollama_server`` and runs every example (but
:data:`SKIPPED_EXAMPLES`) unchanged, as ``python examples/X.py`` and through ``route_official()``,
twice; outputs must be equal, and the second routed run must send no generate/chat/embed request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["SHIPPED_DIFFERENCES", "SKIPPED_EXAMPLES", "fetch_sdist", "main", "run_examples", "run_tests"]

ROOT = Path(__file__).resolve().parents[2]

_FILLED = (
    "the /api/generate or /api/chat body gains options {num_thread, num_ctx} and keep_alive, filled in "
    "because the call sent none (the test compares the body byte for byte)"
)

#: test_client.py tests that fail with the shipped tuning, and the request difference that makes them fail
#: (intended: the layer fills in what the call left out; the same tests pass in the ``cache`` mode, whose
#: only difference is no runner options and no keep_alive). Everything else must pass.
SHIPPED_DIFFERENCES: dict[str, str] = {
    "test_async_client_chat": _FILLED,
    "test_async_client_chat_format_json": _FILLED,
    "test_async_client_chat_format_pydantic": _FILLED,
    "test_async_client_chat_images": _FILLED,
    "test_async_client_chat_stream": _FILLED,
    "test_async_client_generate": _FILLED,
    "test_async_client_generate_format_json": _FILLED,
    "test_async_client_generate_format_pydantic": _FILLED,
    "test_async_client_generate_image": _FILLED,
    "test_async_client_generate_images": _FILLED,
    "test_async_client_generate_stream": _FILLED,
    "test_client_chat": _FILLED,
    "test_client_chat_format_json": _FILLED,
    "test_client_chat_format_pydantic": _FILLED,
    "test_client_chat_images[bytes-dict]": _FILLED,
    "test_client_chat_images[bytes-pydantic_model]": _FILLED,
    "test_client_chat_images[path-dict]": _FILLED,
    "test_client_chat_images[path-pydantic_model]": _FILLED,
    "test_client_chat_stream": _FILLED,
    "test_client_chat_with_logprobs": _FILLED,
    "test_client_chat_with_think_level": _FILLED,
    "test_client_generate": _FILLED,
    "test_client_generate_format_json": _FILLED,
    "test_client_generate_format_pydantic": _FILLED,
    "test_client_generate_image": _FILLED,
    "test_client_generate_image_stream": _FILLED,
    "test_client_generate_images": _FILLED,
    "test_client_generate_stream": _FILLED,
    "test_client_generate_with_image_type": _FILLED,
    "test_client_generate_with_logprobs": _FILLED,
}

#: Examples not run, and why (each needs something the test server can't stand in for).
SKIPPED_EXAMPLES: dict[str, str] = {
    "web-search.py": "internet: ollama.com's web search API with an OLLAMA_API_KEY",
    "web-search-gpt-oss.py": "internet: ollama.com's web search/fetch API with an OLLAMA_API_KEY",
    "web-search-mcp.py": "an MCP client/server (and the internet behind it)",
    "web_search_gpt_oss_helper.py": "a helper module imported by web-search-gpt-oss.py, not an example",
    "multimodal-generate.py": "internet: downloads an xkcd comic (httpx.get('https://xkcd.com/...'))",
    "chat-with-history.py": "interactive: a chat loop reading input()",
    "multimodal-chat.py": "interactive: asks for an image path with input()",
    "structured-outputs-image.py": "interactive: asks for an image path with input()",
}

_CONFTEST = '''\
# Written by infra.testing.ollama_upstream: the official classes replaced by the layer's.
import sys

import ollama._client  # noqa: F401  (the package's ``_client`` attribute is its default client instance)

from infra.ollama import AsyncOptimizedOllama, OptimizedOllama

_official = sys.modules["ollama._client"]

_official.Client = OptimizedOllama
_official.AsyncClient = AsyncOptimizedOllama

import pytest


@pytest.fixture(autouse=True)
def _each_test_its_own_cache():
    """Each upstream test mocks its own server: an entry another test stored must not answer it."""
    yield
    from infra.cache import get_cache
    from infra.ollama._writer import flush_all

    flush_all()
    get_cache().clear()
'''


def installed_version() -> str:
    from importlib.metadata import version

    return version("ollama")


def fetch_sdist(directory: Path) -> Path:
    """The extracted sdist of the installed ollama version under ``directory`` (downloaded once)."""
    ver = installed_version()
    out = directory / f"ollama-{ver}"
    if (out / "tests" / "test_client.py").exists():
        return out
    directory.mkdir(parents=True, exist_ok=True)
    tarball = directory / f"ollama-{ver}.tar.gz"
    if not tarball.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", f"ollama=={ver}", "--no-deps", "--no-binary", ":all:",
             "-d", str(directory), "-q"],
            check=True,
        )  # fmt: skip
    with tarfile.open(tarball) as tf:
        tf.extractall(directory, filter="data")
    return out


def _config(directory: Path, mode: str) -> dict[str, str]:
    """Environment for one mode: its config file, a fresh cache, this tree on the path."""
    shipped = json.loads((ROOT / "config" / "perf_config.json").read_text())
    # a directory of its own: the cache refuses a 0755 folder shared with other files (sqlite/guard.py)
    env = {"PYTHONPATH": str(ROOT), "PERF_CACHE_PATH": str(directory / f"cache-{mode}" / "cache.db")}
    if mode == "off":
        env["PERF_ENABLED"] = "0"
    elif mode == "cache":
        shipped["ollama"]["runner"] = {}
        shipped["ollama"]["keep_alive"] = None
    shipped["$schema"] = str(ROOT / "config" / "perf_config.schema.json")
    path = directory / f"perf_config-{mode}.json"
    path.write_text(json.dumps(shipped))
    env["PERF_CONFIG"] = str(path)
    return env


def _failures(junit: Path) -> list[str]:
    out = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            out.append(case.get("name", "?"))
    return out


def run_tests(directory: Path, modes: list[str]) -> bool:
    sdist = fetch_sdist(directory)
    (sdist / "tests" / "conftest.py").write_text(_CONFTEST)
    ok = True
    for mode in modes:
        junit = directory / f"junit-{mode}.xml"
        env = {**os.environ, **_config(directory, mode)}
        for stale in Path(env["PERF_CACHE_PATH"]).parent.glob("cache.db*"):
            stale.unlink()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
             f"--junitxml={junit}", "tests/test_client.py"],
            cwd=sdist, env=env, capture_output=True, text=True,
        )  # fmt: skip
        failed = _failures(junit) if junit.exists() else ["<no junit: pytest crashed>"]
        total = sum(1 for _ in ET.parse(junit).getroot().iter("testcase")) if junit.exists() else 0
        allowed = set(SHIPPED_DIFFERENCES) if mode == "shipped" else set()
        unexpected = [f for f in failed if f not in allowed]
        print(f"[{mode}] {total - len(failed)}/{total} passed; failed: {failed or 'none'}")
        if unexpected:
            ok = False
            print(f"[{mode}] UNEXPECTED failures: {unexpected}\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}")
    return ok


# ---------------------------------------------------------------------------------------------- examples

#: The models the examples name, pulled through the server's /api/pull first (as a user runs
#: ``ollama pull`` before an example); ``pull.py`` and ``create.py`` exercise the rest of model management.
EXAMPLE_MODELS = (
    "gemma4",
    "llama3.1",
    "llama3.1:8b",
    "llama3.2",
    "deepseek-r1",
    "qwen3",
    "gpt-oss:20b",
    "codellama:7b-code",
    "llava",
    "x/z-image-turbo",
    "nimble",
)

#: Output that changes from run to run on any Ollama (wall-clock timestamps, measured durations, the temp
#: dir): normalized before plain and routed outputs are compared.
_VOLATILE = (
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"(duration\S*[=:]\s*)\d+"), r"\1<ns>"),
)


def normalized(text: str) -> str:
    for pattern, repl in _VOLATILE:
        text = pattern.sub(repl, text)
    return text


# Both runs go through the same launcher: ``random`` seeded (gpt-oss-tools*.py draw their tools' results with
# random.choice, which would differ between any two runs), then the example run as __main__, unchanged.
_LAUNCH = (
    "import random, runpy, sys; random.seed(15); path = sys.argv[1]; sys.argv = [path]; r = None\n"
    "if {routed}:\n    import infra.ollama as o; r = o.route_official()\n"
    "runpy.run_path(path, run_name='__main__')\n"
    "if r is not None: r.undo()"
)
_INFERENCE = ("generate", "chat", "embed", "embeddings")


def _run_example(path: Path, env: dict[str, str], routed: bool) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", _LAUNCH.format(routed=routed), str(path)]
    return subprocess.run(cmd, cwd=path.parent, env=env, capture_output=True, text=True, timeout=120)


def _diff(a: str, b: str) -> str:
    import difflib

    lines = difflib.unified_diff(
        normalized(a).splitlines(), normalized(b).splitlines(), "plain", "routed", n=1
    )
    return "\n".join(list(lines)[:40])


def run_examples(directory: Path, only: list[str] | None = None) -> bool:
    from infra.testing.ollama_server import OllamaTestServer, ServerSettings

    sdist = fetch_sdist(directory)
    names = sorted(p.name for p in (sdist / "examples").glob("*.py"))
    todo = [n for n in names if n not in SKIPPED_EXAMPLES and (not only or n in only)]
    ok = True
    passed = 0
    with OllamaTestServer(ServerSettings(min_tokens=8, max_tokens=24)) as srv:
        import ollama

        puller = ollama.Client(srv.url)
        for model in EXAMPLE_MODELS:
            puller.pull(model)
        puller.close()  # type: ignore[no-untyped-call]
        for name in todo:
            path = sdist / "examples" / name
            cache = Path(tempfile.mkdtemp(prefix="ex-", dir=directory)) / "cache.db"
            env = {
                **os.environ,
                "OLLAMA_HOST": srv.url,
                "PYTHONPATH": str(ROOT),
                "PERF_CACHE_PATH": str(cache),
            }
            env.pop("PERF_ENABLED", None)
            plain = _run_example(path, env, routed=False)
            routed = _run_example(path, env, routed=True)
            before = {k: srv.stats()["requests"].get(k, 0) for k in _INFERENCE}
            again = _run_example(path, env, routed=True)
            after = {k: srv.stats()["requests"].get(k, 0) for k in _INFERENCE}
            sent = {k: after[k] - before[k] for k in _INFERENCE if after[k] != before[k]}
            problems = []
            for label, proc in (("plain", plain), ("routed", routed), ("routed again", again)):
                if proc.returncode != 0:
                    problems.append(f"{label} exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
            if not problems:
                for label, proc in (("routed", routed), ("second routed", again)):
                    if normalized(proc.stdout) != normalized(plain.stdout):
                        problems.append(f"{label} output differs:\n" + _diff(plain.stdout, proc.stdout))
                if sent:
                    problems.append(f"second routed run still sent inference requests: {sent}")
            if problems:
                ok = False
                print(f"FAIL {name}:\n  " + "\n  ".join(problems))
            else:
                passed += 1
                print(f"ok   {name}")
    print(f"{passed}/{len(todo)} examples pass plain and routed (skipped: {', '.join(SKIPPED_EXAMPLES)})")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m infra.testing.ollama_upstream", description=__doc__.split("\n")[0]
    )
    ap.add_argument("what", choices=("tests", "examples", "all"))
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "ollama-upstream"), type=Path)
    ap.add_argument(
        "--mode", action="append", choices=("off", "cache", "shipped"), help="tests: modes to run"
    )
    ap.add_argument("--example", action="append", help="examples: only these files")
    args = ap.parse_args(argv)
    ok = True
    if args.what in ("tests", "all"):
        ok = run_tests(args.dir, args.mode or ["off", "cache", "shipped"]) and ok
    if args.what in ("examples", "all"):
        ok = run_examples(args.dir, args.example) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
