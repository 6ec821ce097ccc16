"""The house rules of ARCHITECTURE.md ("The target house"), checked on the source as text.

A newcomer reads any module in one sitting and finds collaborators talking through named methods, not
through each other's private attributes. These limits keep it that way: a module over 600 lines, a
function over 80 lines that is not a listed hot path with a reference twin, or a new read of another
object's private attribute fails here, naming the place. Each allowed exception says why it exists.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
TESTS = ROOT / "tests"

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

#: Written-out hot paths allowed past MAX_FUNCTION_LINES: (file, function) -> the plain reference twin
#: (file, function) that a test compares them with.
HOT_PATHS: dict[tuple[str, str], tuple[str, str]] = {
    # The async client's logical call with its attempt inlined (one coroutine frame a request instead of
    # two, no generator); tests/http/test_http_hot_path.py holds it to the plain steps-over-_once twin.
    ("infra/http/_async_client.py", "_run"): ("infra/http/_async_client.py", "_run_reference"),
}

#: Reads of another object's private attribute that infra/ keeps, each a seam with its reason:
#: (file, the expression as written) -> why.
INFRA_SEAMS: dict[tuple[str, str], str] = {
    ("infra/cache/backends/postgres/backend.py", "asyncio._get_running_loop"): (
        "the sync hot path asks 'is a loop running here?' on every hit; the public get_running_loop "
        "raises and catches when none is, ~1 us a hit"
    ),
    ("infra/cache/backends/postgres/conns.py", "conn._protocol"): (
        "asyncpg exposes no count of statements started; the stuck-connection watchdog needs it"
    ),
    ("infra/http/_aiohttp_pool.py", "connector._acquired"): (
        "aiohttp's connector has no public count of connections handed out (the pool gauges)"
    ),
    ("infra/http/_aiohttp_pool.py", "connector._conns"): (
        "aiohttp's connector has no public count of idle pooled connections (the pool gauges)"
    ),
    ("infra/http/_routing.py", "conn._h2_state"): (
        "httpcore lets go of an HTTP/2 stream without RST_STREAM (a response left unread, a body or a send "
        "given up: the stream stays open at the server and in h2's count until 100 wedge the connection): "
        "the stream is reset in its h2 state"
    ),
    ("infra/http/_routing.py", "conn._write_outgoing_data"): (
        "that reset's frame sent under httpcore's own write lock (unread_h2_stream, areset_abandoned)"
    ),
    ("infra/http/_timer.py", "self._cm._do_enter"): (
        "Python 3.10 only: async_timeout's reschedulable timer has no public enter without a context"
    ),
    ("infra/http/_timer.py", "self._cm._do_exit"): "Python 3.10 only: the exit twin of _do_enter",
}

#: The same for tests/: a test reaching a seam it must (a fault injected, an upstream internal).
TEST_SEAMS: dict[tuple[str, str], str] = {
    ("tests/cache_backends/test_push.py", "cache._check_generations"): (
        "the cache's generation tick driven with a synthetic clock, to count polls per interval"
    ),
    ("tests/http/test_http_backends.py", "PyreqwestBackend._request"): (
        "the one place a pyreqwest request is built: wrapped so its send loses a cancel, as pyreqwest does"
    ),
    ("tests/http/test_http_hot_path.py", "plain._run_reference"): (
        "the async client's plain reference twin, run in place of its written-out hot path to compare them"
    ),
    ("tests/http/test_http_hot_path.py", "plain._run"): "where the reference twin is put in its place",
    ("tests/integrate/test_call_identity.py", "qwen._calls"): "the seed worker's own call counter",
    ("tests/metrics/test_registry.py", "h._local"): "one thread's shard, to show it stays bounded",
    ("tests/metrics/test_threads.py", "c._set"): "the shard lists: a write lands in the thread's shard",
    ("tests/metrics/test_threads.py", "h._set"): "the shard lists: a write lands in the thread's shard",
    ("tests/metrics/test_threads.py", "child._set"): "a lock held across fork: the shard list",
    ("tests/metrics/test_threads.py", "gauge._lock"): "a lock held across fork must be fresh in the child",
    ("tests/metrics/test_threads.py", "registry._lock"): "a lock held across fork must be fresh in the child",
    ("tests/metrics/test_timed.py", "reg._timed"): "the per-name cache of timed(): one entry per name",
    ("tests/ollama/test_ollama_server.py", "srv.state._pending"): (
        "the test server's queue of held requests: no public reading of it is worth adding for one test"
    ),
}

#: Underscore names that are public API: namedtuple's methods, os._exit, sys._getframe.
PUBLIC_UNDERSCORE = {"_replace", "_asdict", "_fields", "_make", "_field_defaults", "_exit", "_getframe"}


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _rel(path: Path, base: Path = ROOT) -> str:
    return path.relative_to(base).as_posix()


def _own_names(tree: ast.AST) -> set[str]:
    """Names a module defines itself: its functions, classes, attributes it assigns, slots it declares.
    A read of ``other._name`` where the module defines ``_name`` is the module's own business (two
    objects of one class, a class and its private helper in the same file)."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            own.add(node.target.id)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            own.update(
                c.value
                for c in ast.walk(node.value)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            )
    return own


def private_reads(root: Path, *, skip_own: bool, base: Path = ROOT) -> set[tuple[str, str]]:
    """``(file, expression)`` for each read of a private attribute of something other than self/cls."""
    found: set[tuple[str, str]] = set()
    for path in _python_files(root):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = _own_names(tree) if skip_own else set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            name = node.attr
            if not name.startswith("_") or name.startswith("__") or name in PUBLIC_UNDERSCORE:
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if name in own:
                continue
            found.add((_rel(path, base), ast.unparse(node)))
    return found


def test_no_module_is_over_the_line_limit() -> None:
    big = {
        _rel(p): n
        for p in _python_files(INFRA)
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not big, f"modules over {MAX_MODULE_LINES} lines (split them by concept): {big}"


def test_no_function_is_over_the_line_limit_outside_a_listed_hot_path() -> None:
    long: dict[tuple[str, str], int] = {}
    defined: set[tuple[str, str]] = set()
    for path in _python_files(INFRA):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                defined.add((_rel(path), node.name))
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                if size > MAX_FUNCTION_LINES:
                    long[(_rel(path), node.name)] = size
    unlisted = {k: v for k, v in long.items() if k not in HOT_PATHS}
    assert not unlisted, f"functions over {MAX_FUNCTION_LINES} lines: {unlisted}"
    for hot, twin in HOT_PATHS.items():
        assert hot in long, (
            f"{hot} is listed as a long hot path but is no longer long: drop it from HOT_PATHS"
        )
        assert twin in defined, f"the reference twin {twin} of {hot} is gone"


def test_infra_reads_no_private_attribute_of_another_object_except_named_seams() -> None:
    reads = private_reads(INFRA, skip_own=True)
    new = sorted(reads - INFRA_SEAMS.keys())
    assert not new, f"reads of another object's private attribute (use a named method or property): {new}"
    stale = sorted(INFRA_SEAMS.keys() - reads)
    assert not stale, f"INFRA_SEAMS lists reads that are gone: {stale}"
    assert len(INFRA_SEAMS) <= 10


def test_tests_reach_private_attributes_only_at_named_seams() -> None:
    reads = private_reads(TESTS, skip_own=False) - {
        (f, e) for f, e in private_reads(TESTS, skip_own=False) if f == "tests/test_house.py"
    }
    new = sorted(reads - TEST_SEAMS.keys())
    assert not new, f"tests reading private attributes (pin behaviour through the public API): {new}"
    stale = sorted(TEST_SEAMS.keys() - reads)
    assert not stale, f"TEST_SEAMS lists reads that are gone: {stale}"
    assert len(TEST_SEAMS) <= 20


def test_the_private_read_finder_finds_what_it_should(tmp_path: Path) -> None:
    """The rules above are only as good as the finder: it must see a cross-object read and skip self,
    the module's own names and namedtuple's public underscore methods."""
    (tmp_path / "m.py").write_text(
        "class A:\n"
        "    def __init__(self):\n"
        "        self._mine = 1\n"
        "    def f(self, other, peer, row):\n"
        "        return self._mine, peer._mine, other._theirs, row._replace(a=1)\n"
    )
    assert private_reads(tmp_path, skip_own=True, base=tmp_path) == {("m.py", "other._theirs")}
    assert private_reads(tmp_path, skip_own=False, base=tmp_path) == {
        ("m.py", "peer._mine"),
        ("m.py", "other._theirs"),
    }
