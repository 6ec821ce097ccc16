"""Values survive restarts, safely (issue 14, item 3): records written by one process are read back by a
fresh one without recomputing; a stored type name never makes a reader import code it doesn't trust."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.cache import Cache, CacheConfig
from infra.cache.backends.base import StoredEntry
from infra.cache.codecs import Codec, DecodeError, Signer, UnresolvedTypeError, register_type
from tests.cache.conftest import PYTHON, subprocess_env


def _process(db: str, out: Path) -> dict[str, Any]:
    subprocess.run(
        [PYTHON, "-m", "tests.cache._records", db, str(out)], env=subprocess_env(), check=True, timeout=120
    )
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_a_fresh_process_reads_records_another_wrote_without_recomputing(tmp_path: Path) -> None:
    """pydantic models (nested, with an enum field and an unset field), a frozen dataclass holding a
    NamedTuple, an enum, a NamedTuple, ollama's EmbedResponse / ChatResponse and LangChain's AIMessage."""
    db = str(tmp_path / "c" / "cache.db")
    first = _process(db, tmp_path / "first.json")
    assert first["runs"] == ["doc", "score", "color", "point", "embed", "chat", "ai"]
    second = _process(db, tmp_path / "second.json")
    assert second["runs"] == []  # every value came from the store
    assert second["errors"] == 0
    assert second["results"] == first["results"]  # same types, same fields, same set fields


def _write_secretive(db: str, marker: Path) -> None:
    code = (
        "import sys; from infra.cache import Cache, CacheConfig; "
        "from tests.cache._side_effect import Secretive; "
        "c = Cache(CacheConfig(path=sys.argv[1])); c.set('records', 'k', Secretive('x')); c.close()"
    )
    env = subprocess_env() | {"SIDE_EFFECT_MARKER": str(marker)}
    subprocess.run([PYTHON, "-c", code, db], env=env, check=True, timeout=60)


_READ = (
    "import sys, json, logging; logging.basicConfig(level=logging.WARNING); "
    "from infra.cache import Cache, CacheConfig; "
    "c = Cache(CacheConfig(path=sys.argv[1], trusted_modules=tuple(json.loads(sys.argv[2])))); "
    "v = c.get('records', 'k', None); s = c.namespace_stats('records'); "
    "print(json.dumps({'value': repr(v), 'misses': s['misses'], 'errors': s['errors'], "
    "'imported': 'tests.cache._side_effect' in sys.modules})); c.close()"
)


def _read(db: str, marker: Path, trusted: list[str]) -> tuple[dict[str, Any], str]:
    env = subprocess_env() | {"SIDE_EFFECT_MARKER": str(marker)}
    p = subprocess.run(
        [PYTHON, "-c", _READ, db, json.dumps(trusted)],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    )
    return json.loads(p.stdout), p.stderr


def test_an_untrusted_stored_type_is_a_counted_miss_and_nothing_is_imported(tmp_path: Path) -> None:
    db = str(tmp_path / "c" / "cache.db")
    marker = tmp_path / "marker"
    _write_secretive(db, marker)
    assert marker.read_text() == "imported\n"  # the writer imported it, once
    out, err = _read(db, marker, [])
    assert out == {"value": "None", "misses": 1, "errors": 1, "imported": False}
    assert marker.read_text() == "imported\n"  # the reader never ran the module
    lines = [ln for ln in err.splitlines() if "tests.cache._side_effect.Secretive" in ln]
    assert len(lines) == 1 and "cache.trusted_modules" in lines[0]
    # the user trusts the package: now it is imported and the value read
    out, _ = _read(db, marker, ["tests.cache"])
    assert out == {"value": "Secretive(payload='x')", "misses": 0, "errors": 0, "imported": True}


def test_a_signed_payload_may_name_a_module_to_import() -> None:
    """Codec level: the same bytes are refused unsigned and resolved signed (only a key holder wrote them)."""
    import sys

    sys.modules.pop("tests.cache._side_effect", None)
    body = b'{"$obj":["tests.cache._side_effect.Secretive",{"payload":"y"}]}'
    with pytest.raises(UnresolvedTypeError):
        Codec().decode(body, 4)
    assert "tests.cache._side_effect" not in sys.modules
    signer = Signer(b"k" * 32)
    codec = Codec(signer=signer, sign=True)
    signed = signer.sign(4 | 0x80, body)
    v = codec.decode(signed, 4 | 0x80)
    assert type(v).__qualname__ == "Secretive" and v.payload == "y"


def test_only_record_types_resolve_and_records_are_rebuilt_without_running_init() -> None:
    calls: list[Any] = []

    @dataclasses.dataclass
    class Loud:
        a: int

        def __post_init__(self) -> None:
            calls.append(self.a)

    register_type(Loud, name="test.Loud")
    codec = Codec()
    payload, cid = codec.encode(Loud(1))
    assert calls == [1]
    v = codec.decode(payload, cid)
    assert calls == [1]  # the decode ran no __post_init__
    assert v == Loud(1) and v is not None
    for name in ("os.system", "subprocess.Popen", "builtins.eval", "logging.Logger"):
        with pytest.raises(DecodeError):
            codec.decode(json.dumps({"$obj": [name, {}]}).encode(), 4)


def test_an_unresolved_type_never_raises_from_the_cache(tmp_path: Path, caplog: Any) -> None:
    c = Cache(CacheConfig(path=str(tmp_path / "c.db")))
    try:
        entry = StoredEntry(b'{"$obj":["no_such_pkg.Thing",{}]}', 4, None, 0.0)
        c.backend.set("records", "k", entry)  # type: ignore[union-attr]
        with caplog.at_level(logging.WARNING, logger="infra.cache"):
            assert c.get("records", "k", "default") == "default"
            assert c.get_or_compute("records", "k", lambda: 5) == 5
        assert c.namespace_stats("records")["errors"] >= 1
        assert sum("no_such_pkg.Thing" in r.getMessage() for r in caplog.records) == 1
    finally:
        c.close()
