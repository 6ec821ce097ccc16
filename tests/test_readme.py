"""README.md, run for real: its examples execute, and every name, field and command it mentions exists.

The project promises that README.md stays true. This file holds it to that, as a doctest for markdown:

* every ```python block runs (the blocks of one section in order, in one namespace, in a fresh process)
  with ``OLLAMA_HOST`` pointed at the project's Ollama API test server, ``TTS_URL`` (the service of the
  HTTP example) at the loopback fault server, and a temporary working directory for cache files; a
  traceback names the README line that failed (tests/docs/run_python_blocks.py); where README promises an
  effect, the test checks it (SECTION_SETUP, AFTER_RUN, RUN_TWICE: the wrapped class hits, the HTTP call
  retried exactly once, the framework recipe's second run sends nothing, the dashboard page is served);
* every ```bash block runs from the repository root with its cache in a temporary directory, unless it is
  listed in SKIPPED below with its reason; a listed skip that matches no block fails, so the list can't rot;
* the Quick start's main job (``python -m infra demo`` on embedded defaults, no Ollama answering) runs;
* a ```json block parses; a plain ``` block starting with ``$ `` is a transcript: the command runs and its
  output must match;
* a block README marks ``<!-- not-run: reason -->`` (the line just before its fence) is illustrative: a
  python one still compiles and its imports still run, a bash one still has its commands checked;
* every ``infra.*`` name, bare ``*Config`` / ``*Error`` class and the keywords of a call README writes
  out, config field and quoted JSON key (``python -m infra config schema``), CLI command and flag (the
  parser's ``--help``), environment variable, module run with ``-m`` and linked file or heading that
  README names exists; the settings classes README says are gone are gone; the environment overrides it
  lists are exactly the ones infra reads. Failures give README line numbers.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import infra
from infra.cli import build_parser
from infra.config import ENV_OVERRIDES
from infra.testing.fault_server import FaultServer
from infra.testing.ollama_server import OllamaTestServer
from tests.docs.readme import (
    BLOCKS,
    HOMES,
    PROSE,
    README,
    ROOT,
    SPAN,
    Block,
    Prose,
    call_parts,
    find_home,
    heading_slugs,
    migration_table,
    parse,
    resolves,
    schema_words,
    spans,
    where,
)

RUNNER = ROOT / "tests" / "docs" / "run_python_blocks.py"
TIMEOUT = 60

#: Blocks that are not run, keyed by "<section heading> #<n>" (the n-th fenced block under that heading),
#: each with why. Their `python -m infra` commands are still checked against the CLI's parser.
SKIPPED: dict[str, str] = {
    "Quick start #1": (
        "sets up a fresh virtual environment (pip install) and runs the whole test suite; "
        "test_quick_start_runs_the_main_job runs its `python -m infra demo`"
    ),
    "Dashboard #1": (
        "both commands serve until Ctrl-C (`dashboard` with nothing running, `demo --keep-serving`)"
    ),
}

#: Files a transcript block's command reads, by the block's anchor: the reader's own input, which README
#: shows only through the command's output.
TRANSCRIPT_FILES: dict[str, dict[str, str]] = {
    "Configuration #1": {
        "my.json": json.dumps({"cache": {"namespaces": {"inference": {"ttl": -5}}, "backnd": "sqlite"}}),
    },
}


#: Repository-looking paths README names that are another project's files, with whose.
NOT_OURS = {"tests/test_client.py": "ollama-python's own suite, run by infra.testing.ollama_upstream"}

_REPO_DIRS = r"tests|infra|config|examples|grafana|bench|\.vscode|\.ci"
_SECTIONS = ("enabled", "cache", "http", "ollama", "metrics", "db", "torch", "batching", "warmup", "wrap")
_FILE = re.compile(r"\.(?:db|json|py|md|txt)$")  # `cache.db` is a file name, not the field cache.db
_FIELD = re.compile(rf"^(?:{'|'.join(_SECTIONS)})(?:\.[a-z_0-9]+)+(?::\s.*)?$")


PY_SECTIONS = list(dict.fromkeys(b.section for b in BLOCKS if b.lang == "python"))
RUN_BASH = [b for b in BLOCKS if b.lang in ("bash", "sh") and b.anchor not in SKIPPED and not b.not_run]


# -- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ollama_server() -> Iterator[OllamaTestServer]:
    with OllamaTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def ollama_url(ollama_server: OllamaTestServer) -> str:
    return ollama_server.url


@pytest.fixture(scope="module")
def fault_server() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


def base_env(ollama_host: str) -> dict[str, str]:
    """The environment of a reader's shell, with the project's environment activated: `python` is this
    interpreter, no perf-infra settings of ours, Ollama at the given host."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERF_", "INFRA_METRICS"))}
    env["OLLAMA_HOST"] = ollama_host
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", "")))
    return env


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- every block is accounted for ---------------------------------------------------------------------------


def test_every_block_is_run_or_skipped_with_a_reason() -> None:
    anchors = {b.anchor: b for b in BLOCKS}
    stale = [a for a in SKIPPED if a not in anchors]
    assert not stale, f"SKIPPED names blocks README no longer has (update the list): {stale}"
    double = [where(anchors[a], a) for a in SKIPPED if anchors[a].not_run]
    assert not double, f"blocks both in SKIPPED and marked not-run in README (keep one): {double}"
    kinds = {"python", "bash", "sh", "json", "text"}
    odd = [where(b, f"```{b.lang}") for b in BLOCKS if b.lang not in kinds and not b.not_run]
    assert not odd, f"blocks of a kind this test can't run (mark them <!-- not-run: why -->): {odd}"
    texts = [b for b in BLOCKS if b.lang == "text" and not b.not_run]
    loose = [where(b, b.anchor) for b in texts if not b.code.startswith("$ ")]
    assert not loose, f"plain blocks that are no `$ command` transcript (mark them not-run): {loose}"
    unfed = [a for a in TRANSCRIPT_FILES if a not in anchors or anchors[a].lang != "text"]
    assert not unfed, f"TRANSCRIPT_FILES names blocks that are no transcript: {unfed}"


# -- python -------------------------------------------------------------------------------------------------


WORKER_SECTION = "Add it to a worker: two lines"


def _worker_project(tmp_path: Path) -> tuple[Path, str]:
    """A worker project for "two lines": the section's `wrap` JSON as its config, and the class it names."""
    (fragment,) = [b for b in BLOCKS if b.section == WORKER_SECTION and b.lang == "json"]
    config = json.loads("{" + fragment.code + "}")
    (entry,) = config["wrap"]
    module, cls = entry["target"].split(":")
    folder = tmp_path.joinpath(*module.split(".")[:-1])
    folder.mkdir(parents=True)
    folder.joinpath(module.split(".")[-1] + ".py").write_text(
        f"class {cls}:\n"
        "    computed = 0\n\n"
        "    def __init__(self, weight=1.0):\n"
        "        self.weight = weight\n\n"
        f"    def {entry['methods'][0]}(self, text):\n"
        f"        {cls}.computed += 1\n"
        "        return {'text': text, 'score': len(text) * self.weight}\n"
    )
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "perf_config.json").write_text(json.dumps(config))
    call = f"{cls}(weight=2.0).{entry['methods'][0]}('calm river')"
    epilogue = (  # README: the classes are cached in place, so every import of them sees the cache
        f"import {module}\n"
        f"assert cached_classes.get_class({cls}) is {cls} is {module}.{cls}\n"
        f"assert cached_classes[{cls!r}] is {cls}  # seed 004's third line: the same class\n"
        f"assert {call} == {{'text': 'calm river', 'score': 20.0}}\n"
        f"assert {call} == {{'text': 'calm river', 'score': 20.0}}\n"
        f"assert {cls}.computed == 1, {cls}.computed  # the second call, by another instance, was a hit\n"
    )
    return tmp_path, epilogue


_DASHBOARD_SERVED = """
import asyncio
from wsgiref.util import setup_testing_defaults

from aiohttp.test_utils import TestClient as AiohttpClient, TestServer
from starlette.testclient import TestClient

with TestClient(app) as client:
    page = client.get("/dashboard/")
    assert page.status_code == 200 and "<html" in page.text, page.status_code


async def from_aiohttp():
    async with AiohttpClient(TestServer(aiohttp_app)) as client:
        page = await client.get("/dashboard")
        assert page.status == 200 and "<html" in await page.text(), page.status


asyncio.run(from_aiohttp())
environ = {"SCRIPT_NAME": "/dashboard", "PATH_INFO": "/"}
setup_testing_defaults(environ)
statuses = []
body = b"".join(wsgi_dashboard(environ, lambda status, headers, *exc: statuses.append(status)))
assert statuses == ["200 OK"] and b"<html" in body, statuses
"""


#: A section whose blocks need a place to run other than an empty folder: (cwd, epilogue the test adds).
SECTION_SETUP: dict[str, Callable[[Path], tuple[Path, str]]] = {
    WORKER_SECTION: _worker_project,
    # the three mounts serve the page: FastAPI, aiohttp and WSGI each answer /dashboard/ with it
    "Dashboard": lambda tmp_path: (tmp_path, _DASHBOARD_SERVED),
}


#: Sections whose code README says answers a second run from the cache ("run it twice: the second answer
#: is a cache hit"): run twice in one folder, the second run must send the test server nothing.
RUN_TWICE = {"LangChain and LlamaIndex"}


def _tts_call_retried_once(done: subprocess.CompletedProcess[str], fault: FaultServer, key: str) -> None:
    """README's HTTP example, pointed at a service that fails once: the server saw exactly the two tries
    the response's history reports (README: "a server receives exactly the tries in a call's history")."""
    assert "200 2 [(1, 503), (2, 200)]" in done.stdout, done.stdout
    assert fault.hits[key] == 2, fault.hits[key]


#: Checks after a section's blocks ran: (the run, the loopback HTTP server, TTS_URL's counter there).
AFTER_RUN: dict[str, Callable[[subprocess.CompletedProcess[str], FaultServer, str], None]] = {
    "HTTP, Ollama and the hot path": _tts_call_retried_once,
}


@pytest.mark.parametrize("section", PY_SECTIONS)
def test_python_blocks_run(
    section: str, tmp_path: Path, ollama_server: OllamaTestServer, fault_server: FaultServer
) -> None:
    blocks = [b for b in BLOCKS if b.section == section and b.lang == "python"]
    cwd, epilogue = SECTION_SETUP[section](tmp_path) if section in SECTION_SETUP else (tmp_path, "")
    spec = {
        "blocks": [{"line": b.line, "code": b.code, "imports_only": bool(b.not_run)} for b in blocks],
        "epilogue": epilogue,
    }
    (tmp_path / "blocks.json").write_text(json.dumps(spec))
    # The runner sits in the working directory, as a reader's worker.py would: its folder is on sys.path
    # and is where config discovery looks after the working directory (not this repository's config/).
    script = cwd / "readme_blocks.py"
    script.write_text(RUNNER.read_text(encoding="utf-8"))
    command = [sys.executable, str(script), str(tmp_path / "blocks.json")]
    # $TTS_URL, the service README's HTTP example calls: the loopback fault server, failing the first try.
    key = f"fail/{tmp_path.name}"
    env = base_env(ollama_server.url) | {"TTS_URL": f"{fault_server.url}/{key}?n=1"}
    done = run(command, cwd, env)
    lines = ", ".join(str(b.line) for b in blocks)
    assert done.returncode == 0, f"README.md python blocks at lines {lines}:\n{done.stdout}{done.stderr}"
    if section in AFTER_RUN:
        AFTER_RUN[section](done, fault_server, key)
    if section in RUN_TWICE:
        sent = json.dumps(ollama_server.stats()["requests"], sort_keys=True)
        again = run(command, cwd, env)
        assert again.returncode == 0, f"second run of README.md lines {lines}:\n{again.stdout}{again.stderr}"
        assert again.stdout == done.stdout
        assert json.dumps(ollama_server.stats()["requests"], sort_keys=True) == sent, (
            f"README.md lines {lines}: the second run sent requests; README says the cache answers it"
        )


def test_worker_config_passes_config_check(tmp_path: Path, ollama_url: str) -> None:
    cwd, _ = _worker_project(tmp_path)
    done = run([sys.executable, "-m", "infra", "config", "check"], cwd, base_env(ollama_url))
    assert done.returncode == 0, done.stdout + done.stderr


# -- shell --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", RUN_BASH, ids=lambda b: b.anchor)
def test_bash_blocks_run(block: Block, tmp_path: Path, ollama_url: str) -> None:
    env = base_env(ollama_url) | {"PERF_CACHE_PATH": str(tmp_path / "cache.db")}
    done = run(["bash", "-eo", "pipefail", "-c", block.code], ROOT, env)
    assert done.returncode == 0, where(block, f"{block.anchor} failed:\n{done.stdout}{done.stderr}")
    assert done.stdout.strip(), where(block, f"{block.anchor} printed nothing")


def test_quick_start_runs_the_main_job(tmp_path: Path) -> None:
    (quick,) = [b for b in BLOCKS if b.section == "Quick start"]
    assert "&& python -m infra demo\n" in quick.code, where(quick, "Quick start lost its main job")
    # A fresh machine: no config file, no Ollama answering; the demo starts its own test server.
    env = base_env(f"http://127.0.0.1:{closed_port()}")
    done = run([sys.executable, "-m", "infra", "demo"], tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "in-process Ollama test server" in done.stdout, done.stdout
    assert "config:  built-in defaults" in done.stdout, done.stdout
    assert re.search(r"wall time: .* -> +[\d,.]+x faster", done.stdout), done.stdout


TRANSCRIPTS = [b for b in BLOCKS if b.lang == "text" and not b.not_run]


@pytest.mark.parametrize("block", TRANSCRIPTS, ids=lambda b: b.anchor)
def test_transcripts_match(block: Block, tmp_path: Path, ollama_url: str) -> None:
    command, *expected = block.code.rstrip("\n").split("\n")
    for name, content in TRANSCRIPT_FILES.get(block.anchor, {}).items():
        (tmp_path / name).write_text(content)
    done = run(["bash", "-c", command.removeprefix("$ ")], tmp_path, base_env(ollama_url))
    got = (done.stdout + done.stderr).rstrip("\n").split("\n")
    assert got == expected, where(block, f"`{command}` printed:\n" + "\n".join(got))


def test_not_run_marker_is_read_from_the_line_before_a_fence() -> None:
    """README has no illustrative block today; the marker must still work when one is added."""
    text = "## A\n\n<!-- not-run: why -->\n```python\nx\n```\n```python\ny\n```\n"
    (marked, plain), _ = parse(text)
    assert (marked.anchor, marked.not_run, marked.line) == ("A #1", "why", 5)
    assert (plain.anchor, plain.not_run, plain.code) == ("A #2", None, "y\n")


def test_json_blocks_parse() -> None:
    for b in (b for b in BLOCKS if b.lang == "json" and not b.not_run):
        text = b.code.strip()
        try:
            json.loads(text if text.startswith(("{", "[")) else "{" + text + "}")
        except json.JSONDecodeError as exc:
            pytest.fail(where(b, f"not JSON (nor a JSON member list): {exc}"))


# -- names, fields and commands README mentions -------------------------------------------------------------


def test_migration_table_old_names_are_gone_and_new_ones_exist() -> None:
    rows = migration_table()
    assert len(rows) >= 6, "README's before/now table of settings classes is gone or changed shape"
    problems = []
    for p, before, now in rows:
        for name in re.findall(r"\b(?:infra(?:\.\w+)+|[A-Z][A-Za-z]+(?=[`(]))", before):
            found = find_home(name) if "." not in name else resolves(name)
            if found is not None and name != "X":
                problems.append(where(p, f"`{name}` is listed as gone but still exists"))
        for name in re.findall(r"\b[A-Z][A-Za-z]+(?=[`(])", now):
            if find_home(name) is None:
                problems.append(where(p, f"`{name}` does not exist in {', '.join(HOMES)}"))
    assert not problems, "\n".join(problems)


def test_infra_names_classes_and_keywords_exist() -> None:
    now = {p.line: SPAN.findall(cell) for p, _, cell in migration_table()}
    problems = []
    for p, span in spans():
        if p.line in now and span not in now[p.line]:
            continue  # the "before" column names what is gone; checked above
        for dotted in re.findall(r"\binfra(?:\.[A-Za-z_]\w*)+", span):
            if resolves(dotted) is None:
                problems.append(where(p, f"`{dotted}` does not exist"))
        imported = re.fullmatch(r"from (infra[\w.]*) import ([\w, ]+)", span)
        for name in imported[2].split(",") if imported else ():
            if resolves(f"{imported[1]}.{name.strip()}") is None:
                problems.append(where(p, f"`{span}`: {imported[1]} has no `{name.strip()}`"))
        bare = re.fullmatch(r"([A-Z]\w*(?:Config|Error|TooLong))(?:\(.*\))?", span)
        if bare and find_home(bare[1]) is None:
            problems.append(where(p, f"`{bare[1]}` exists in none of {', '.join(HOMES)}"))
        if bare and bare[1].endswith("Config") and not hasattr(infra, bare[1]):
            problems.append(
                where(p, f"`{bare[1]}`: README says every settings section is exported from infra")
            )
        call = call_parts(span)
        if call is None:
            continue
        name, args = call
        target = resolves(name) if name.startswith("infra.") else find_home(name)
        if target is None or not callable(target):
            continue
        params = inspect.signature(target).parameters
        if any(x.kind is inspect.Parameter.VAR_KEYWORD for x in params.values()):
            continue
        depth, top = 0, ""
        for ch in args:  # keywords of this call only, not of calls nested in its arguments
            depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(ch, 0)
            top += ch if depth == 0 else ""
        for keyword in re.findall(r"(?<![\w.])(\w+)=", top):
            if keyword not in params:
                problems.append(where(p, f"`{name}` takes no keyword `{keyword}`"))
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "infra", "config", "schema"],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT,
        env=base_env("http://127.0.0.1:11434"),
    ).stdout
    loaded: dict[str, Any] = json.loads(out)
    return loaded


def test_config_keys_in_json_and_the_section_table_exist(schema: dict[str, Any]) -> None:
    """`"codec": "pickle"` in prose names a real key; `trusted_modules`, `sqlite` in the section table's
    description column are keys or values of that section."""
    problems, seen = [], 0
    everywhere = set(schema_words(schema))
    for p, span in spans():
        key = re.match(r'^"(\w+)":', span)
        if key:
            seen += 1
            if key[1] not in everywhere:
                problems.append(where(p, f"`{span}`: no key `{key[1]}` in `infra config schema`"))
    for p in PROSE:
        cells = p.text.strip("|").split("|")
        names = SPAN.findall(cells[0])
        if len(cells) < 2 or not names or not all(n in schema["properties"] for n in names):
            continue
        inside = set().union(*(schema_words(schema["properties"][n]) for n in names))
        for word in SPAN.findall("|".join(cells[1:])):
            if re.fullmatch(r"[a-z][a-z0-9_]*", word) and word not in ("true", "false"):
                seen += 1
                if word not in inside:
                    problems.append(where(p, f"`{word}`: neither a key nor a value under {', '.join(names)}"))
    assert seen > 8, "README's config keys no longer found: this check would pass vacuously"
    assert not problems, "\n".join(problems)


def test_config_fields_exist(schema: dict[str, Any]) -> None:
    problems = []
    fields = [(p, s) for p, s in spans() if _FIELD.match(s) and not _FILE.search(s)]
    in_table = False
    for p in PROSE:  # the first column of the section table
        if re.match(r"^\|\s*section\s*\|", p.text):
            in_table = True
        elif in_table and p.text.startswith("| `"):
            fields += [(p, name) for name in SPAN.findall(p.text.split("|")[1])]
        else:
            in_table = False
    assert len(fields) > 15, "README's config fields no longer found: this check would pass vacuously"
    for p, field in fields:
        node: dict[str, Any] = schema
        for key in field.split(":")[0].split("."):
            props = node.get("properties", {})
            extra = node.get("additionalProperties")
            if key in props:
                node = props[key]
            elif isinstance(extra, dict):
                node = extra
            elif key in node.get("items", {}).get("properties", {}):  # a list of objects (wrap)
                node = node["items"]["properties"][key]
            else:
                problems.append(where(p, f"config field `{field}`: no `{key}` in `infra config schema`"))
                break
    assert not problems, "\n".join(problems)


def _commands() -> Iterator[tuple[Prose | Block, str]]:
    """Every `python -m infra ...` README writes: in prose, in the command table, in shell blocks."""
    for p, span in spans():
        if span.startswith("python -m infra "):
            yield p, span.removeprefix("python -m infra ")
    for p in PROSE:  # the command table's first column: `a` / `b` per row
        if p.section == "Command line" and p.text.startswith("| `"):
            for span in SPAN.findall(p.text.split("|")[1]):
                yield p, span
    for b in BLOCKS:
        if b.lang in ("bash", "sh", "text"):
            for offset, line in enumerate(b.code.split("\n")):
                for command in re.findall(r"python -m infra ([^#|&;\n]*)", line):
                    yield Prose(b.line + offset, b.section, line), command


def _help(parser: Any) -> str:
    return str(parser.format_help())


def test_cli_commands_and_flags_exist() -> None:
    top = build_parser()
    problems, seen = [], 0
    for p, command in _commands():
        words = shlex.split(command.replace("[", " ").replace("]", " "))
        parser, path = top, []
        for word in words:
            groups = getattr(parser, "subcommand_actions", [])
            choices = {k: v for action in groups for k, v in action.choices.items()}
            if word in choices:
                parser, path = choices[word], [*path, word]
            elif choices and not word.startswith("-"):
                problems.append(where(p, f"`python -m infra {' '.join([*path, word])}`: no such command"))
                break
            else:
                break
        else:
            if getattr(parser, "subcommand_actions", []):
                problems.append(where(p, f"`python -m infra {command}` names a group, not a command"))
        text = _help(parser)
        for flag in (w.split("=")[0] for w in words if w.startswith("--")):
            if not re.search(rf"{re.escape(flag)}\b", text):
                problems.append(where(p, f"`python -m infra {' '.join(path)}` has no `{flag}`"))
        seen += 1
    assert seen > 15, "README's commands no longer found: this check would pass vacuously"
    assert not problems, "\n".join(problems)


def test_environment_variables_exist() -> None:
    source = "\n".join(f.read_text(encoding="utf-8") for f in (ROOT / "infra").rglob("*.py"))
    names = [(p, s) for p, s in spans() if re.fullmatch(r"(?:PERF|OLLAMA|INFRA)_[A-Z0-9_]+", s)]
    assert len(names) > 10
    problems = [where(p, f"`{name}`: infra never reads it") for p, name in names if f'"{name}"' not in source]
    assert not problems, "\n".join(problems)


def test_environment_overrides_are_all_listed() -> None:
    first = next(i for i, p in enumerate(PROSE) if p.text.startswith("Environment overrides:"))
    listed: dict[str, Prose] = {}
    for p in PROSE[first:]:
        if not p.text.strip():
            break
        listed |= dict.fromkeys(SPAN.findall(p.text), p)
    missing = sorted(set(ENV_OVERRIDES) - set(listed))
    assert not missing, where(PROSE[first], f"overrides infra reads that README doesn't list: {missing}")
    extra = [where(p, name) for name, p in listed.items() if name not in ENV_OVERRIDES]
    assert not extra, f"listed as environment overrides but not in infra.config.ENV_OVERRIDES: {extra}"


def test_modules_files_and_links_exist() -> None:
    problems = []
    texts: list[tuple[Prose | Block, str]] = [(p, p.text) for p in PROSE]
    texts += [(b, b.code) for b in BLOCKS]
    for where_, text in texts:
        for module in re.findall(r"python -m ((?:infra|examples)\.[\w.]+)", text):
            path = ROOT.joinpath(*module.split("."))
            if not (path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()):
                problems.append(where(where_, f"`python -m {module}`: no such module"))
    for p in PROSE:
        for target in re.findall(r"\]\(([^)\s]+)\)", p.text):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            path = ROOT / file if file else README
            if not path.exists():
                problems.append(where(p, f"link to `{file}`: no such file"))
            elif anchor and anchor not in heading_slugs(path):
                problems.append(where(p, f"link to `{target}`: no such heading in {path.name}"))
        for span in SPAN.findall(p.text):
            for file in re.findall(rf"(?:^|\s)((?:{_REPO_DIRS})/[\w./-]+)", span):
                if not (ROOT / file).exists() and file not in NOT_OURS:
                    problems.append(where(p, f"`{file}`: no such file in the repository"))
    assert not problems, "\n".join(problems)


def test_not_run_python_blocks_still_compile() -> None:
    for b in (b for b in BLOCKS if b.lang == "python" and b.not_run):
        try:
            ast.parse("\n" * (b.line - 1) + b.code, "README.md")
        except SyntaxError as exc:
            pytest.fail(f"README.md:{exc.lineno}: not-run block does not compile: {exc.msg}")
