"""enable(): applies the config once, reports what it did, fails open, undoes cleanly; wrap entries checked
up front; patch() in place; the seed 004 helper import path."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from typing import Any

import pytest

from infra.errors import WrapError


def _wrap(sample: Any, cls: str = "Scorer", methods: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"target": f"{sample.__name__}:{cls}", "methods": methods or ["score"], **extra}


def test_enable_is_idempotent_and_thread_safe(sample: Any, make_config: Any) -> None:
    """16 threads calling enable() with one config get one handle; the config is applied once."""
    from infra.config import get_config
    from infra.integrate import enable

    cfg = make_config({"wrap": [_wrap(sample)]})
    handles: list[Any] = []
    barrier = threading.Barrier(16)

    def call() -> None:
        barrier.wait()
        handles.append(enable(cfg))

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(handles) == 16 and all(h is handles[0] for h in handles)
    assert enable() is handles[0]
    assert get_config() is cfg
    assert sum(a.startswith("cache:") for a in handles[0].actions) == 1


def test_enable_with_another_config_undoes_the_first(sample: Any, make_config: Any) -> None:
    from infra.integrate import enable

    first = enable(make_config({"wrap": [_wrap(sample)]}))
    second = enable(make_config({"enabled": False, "wrap": [_wrap(sample)]}))
    assert first.undone and not second.undone and second is not first


def test_enable_takes_a_path_to_a_config_file(tmp_path: Any) -> None:
    from infra.integrate import enable

    path = tmp_path / "perf.json"
    path.write_text(json.dumps({"cache": {"path": str(tmp_path / "c.db")}, "torch": {"enabled": False}}))
    handle = enable(str(path))
    assert handle.config.source == str(path)


def test_enable_rejects_other_config_types() -> None:
    from infra.integrate import enable

    with pytest.raises(TypeError, match="takes a PerfConfig"):
        enable(42)


def test_cached_classes_are_keyed_by_class_name_and_by_target(sample: Any, make_config: Any) -> None:
    """enable_caching_for_worker() returns {"Scorer": cached Scorer, ...}; "module:Class" works too; the
    same class objects come back on every call."""
    from infra.integrate import enable_caching_for_worker

    cfg = make_config({"wrap": [_wrap(sample), _wrap(sample, "Slotted", ["get"])]})
    classes = enable_caching_for_worker(cfg)
    assert set(classes) == {"Scorer", "Slotted"}
    assert classes[f"{sample.__name__}:Scorer"] is classes["Scorer"]
    assert issubclass(classes["Scorer"], sample.Scorer)
    assert enable_caching_for_worker()["Scorer"] is classes["Scorer"]
    with pytest.raises(KeyError, match="not wrapped"):
        classes["Nope"]


def test_two_entries_may_cache_different_methods_of_one_class(sample: Any, make_config: Any) -> None:
    from infra.cache import get_cache
    from infra.integrate import enable_caching_for_worker

    cfg = make_config(
        {"wrap": [_wrap(sample, namespace="a"), _wrap(sample, methods=["plain"], namespace="b")]}
    )
    S = enable_caching_for_worker(cfg)["Scorer"]
    s = S()
    s.score("x"), s.score("x"), s.plain(1), s.plain(1)
    assert get_cache().namespace_stats("a")["hits"] == 1
    assert get_cache().namespace_stats("b")["hits"] == 1


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"target": "no_such_pkg.mod:Cls", "methods": ["x"]},
            r"wrap\[0\]\.target: module 'no_such_pkg\.mod' does not import.*\(config: .*perf_config_",
        ),
        (
            {"target": "{mod}:Scorr", "methods": ["score"]},
            r"wrap\[0\]\.target: '.*' has no attribute 'Scorr' \(did you mean 'Scorer'\?\)",
        ),
        ({"target": "{mod}:CALLS", "methods": ["score"]}, r"wrap\[0\]\.target: .*is a list, not a class"),
        (
            {"target": "{mod}:Scorer", "methods": ["scroe"]},
            r"wrap\[0\]\.methods\[0\]: .*:Scorer: no method 'scroe' \(did you mean 'score'\?\)",
        ),
        ({"target": "{mod}:Scorer", "methods": []}, r"wrap\[0\]\.methods: is empty"),
    ],
)
def test_bad_wrap_entries_fail_at_enable_time_naming_the_entry(
    sample: Any, make_config: Any, entry: dict[str, Any], message: str
) -> None:
    from infra.integrate import enable

    entry = {**entry, "target": entry["target"].format(mod=sample.__name__)}
    with pytest.raises(WrapError, match=message):
        enable(make_config({"wrap": [entry]}))


def test_the_failing_entry_is_named_by_its_index(sample: Any, make_config: Any) -> None:
    from infra.integrate import enable

    with pytest.raises(WrapError, match=r"^wrap\[1\]\.methods\[0\]: "):
        enable(make_config({"wrap": [_wrap(sample), _wrap(sample, "Impl", ["runn"])]}))


def test_a_method_listed_by_two_entries_is_an_error(sample: Any, make_config: Any) -> None:
    from infra.integrate import enable

    with pytest.raises(WrapError, match=r"wrap\[1\]\.methods\[0\]: .*already cached by wrap\[0\]"):
        enable(make_config({"wrap": [_wrap(sample), _wrap(sample)]}))


def test_a_bad_wrap_entry_changes_nothing(sample: Any, make_config: Any) -> None:
    """WrapError is raised before the config, cache or anything else is touched."""
    from infra.cache import get_cache
    from infra.config import get_config
    from infra.integrate import active_handle, enable

    cache_before, config_before = get_cache(), get_config()
    with pytest.raises(WrapError):
        enable(make_config({"wrap": [_wrap(sample, methods=["nope"])]}))
    assert get_cache() is cache_before and get_config() is config_before and active_handle() is None


def test_undo_restores_config_cache_and_environment(sample: Any, make_config: Any, monkeypatch: Any) -> None:
    from infra.cache import get_cache
    from infra.config import get_config
    from infra.integrate import enable

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cache_before, config_before = get_cache(), get_config()
    cfg = make_config({"torch": {"enabled": True, "num_threads": 1}, "wrap": [_wrap(sample)]})
    handle = enable(cfg)
    assert get_config() is cfg and get_cache() is handle.cache
    assert any(a.startswith("threads:") for a in handle.actions)
    handle.undo()
    assert get_cache() is cache_before and get_config() is config_before
    assert "OMP_NUM_THREADS" not in __import__("os").environ
    assert handle.undone and "undone" in handle.report()
    handle.undo()  # idempotent


def test_patch_caches_in_place_and_undo_restores_the_class_exactly(sample: Any, make_config: Any) -> None:
    """patch(): instances made before and after see cached methods; undo() restores __dict__ exactly,
    including methods that were inherited (removed again) and static / class methods."""
    from infra.integrate import patch

    early = sample.Impl()
    before = {c: dict(c.__dict__) for c in (sample.Scorer, sample.Impl)}
    handle = patch(
        make_config(
            {
                "wrap": [
                    _wrap(sample, methods=["score", "double", "make"]),
                    _wrap(sample, "Impl", ["inherited"], include_self=True),
                ]
            }
        )
    )
    assert early.inherited(1) == sample.Impl().inherited(1) == 2
    assert sample.Scorer().score("a") == sample.Scorer().score("a")
    assert sample.Scorer.double(2) == sample.Scorer.double(2) == 4
    assert sample.CALLS == [("inherited", 1), ("score", "a", 1), ("double", 2)]
    assert patch() is handle  # idempotent: no second layer of wrapping
    handle.undo()
    assert {c: dict(c.__dict__) for c in (sample.Scorer, sample.Impl)} == before
    sample.Scorer().score("a")
    assert sample.CALLS[-1] == ("score", "a", 1)


def test_enabled_false_returns_the_originals_and_patches_nothing(sample: Any, make_config: Any) -> None:
    from infra.cache import get_cache
    from infra.integrate import enable_caching_for_worker, patch

    cfg = make_config({"enabled": False, "wrap": [_wrap(sample)]})
    assert enable_caching_for_worker(cfg)["Scorer"] is sample.Scorer
    before = dict(sample.Scorer.__dict__)
    handle = patch(cfg)
    assert dict(sample.Scorer.__dict__) == before and handle.patches == []
    assert get_cache().enabled is False
    assert "layer off" in handle.report()


def test_unwritable_cache_directory_fails_open(sample: Any, make_config: Any, tmp_path: Any) -> None:
    """The cache dir can't be created: enable() reports and counts it; cached methods still return the
    real results (served from the in-process L1)."""
    from infra.integrate import enable_caching_for_worker
    from infra.integrate._enable import active_handle

    blocker = tmp_path / "file"
    blocker.write_text("x")
    S = enable_caching_for_worker(
        make_config({"cache": {"path": str(blocker / "d" / "c.db")}, "wrap": [_wrap(sample)]})
    )["Scorer"]
    handle = active_handle()
    assert handle is not None and [f.split(":")[0] for f in handle.failures] == ["cache"]
    assert S(2.0).score("abc") == S(2.0).score("abc") == {"text": "abc", "value": 6.0}
    assert len(sample.CALLS) == 1


def test_metrics_served_when_asked_and_a_taken_port_fails_open(make_config: Any) -> None:
    """metrics.serve: /metrics answers on the configured port; on a taken port enable() goes on without it."""
    from infra.integrate import enable

    handle = enable(make_config({"metrics": {"serve": True, "port": 0}}))
    assert handle.metrics_server is not None
    with urllib.request.urlopen(handle.metrics_server.url, timeout=5) as r:
        assert r.status == 200
    handle.undo()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        handle = enable(make_config({"metrics": {"serve": True, "port": taken.getsockname()[1]}}))
        assert handle.metrics_server is None
        assert [f.split(":")[0] for f in handle.failures] == ["metrics_server"]
        assert "could not bind" in handle.report()
    finally:
        taken.close()


def test_report_and_as_dict_say_what_was_done(sample: Any, make_config: Any) -> None:
    from infra.integrate import enable

    handle = enable(make_config({"wrap": [_wrap(sample)]}))
    handle.cached_classes()
    text = handle.report()
    assert text.startswith("perf-infra enabled")
    assert "cache: sqlite at" in text and f"wrap[0] ({sample.__name__}:Scorer): score -> cached" in text
    d = handle.as_dict()
    assert d["enabled"] is True and d["wrapped"] == [f"{sample.__name__}:Scorer"] and d["failures"] == []
    json.dumps(d)


def test_wrapped_methods_are_timed_as_class_dot_method(sample: Any, make_config: Any) -> None:
    from infra.integrate import enable_caching_for_worker
    from infra.metrics import get_metrics

    S = enable_caching_for_worker(make_config({"wrap": [_wrap(sample)]}))["Scorer"]
    S().score("t")
    S().score("t")
    assert get_metrics().get_stats()["Scorer.score"]["count"] >= 2


def test_seed_004_import_path_is_the_same_function() -> None:
    from infra.enrichment_helpers import enable_caching_for_worker as a
    from infra.integrate import enable_caching_for_worker as b

    assert a is b


def test_front_door_reexports_when_the_lead_has_added_them() -> None:
    """infra.enable / enable_caching_for_worker / cached_class / patch are the integrate functions."""
    import infra
    import infra.integrate as integrate

    names = ("enable", "enable_caching_for_worker", "cached_class", "patch")
    if not all(n in infra.__all__ for n in names):
        pytest.skip("infra/__init__.py does not re-export the integration names yet (asked of the lead)")
    for n in names:
        assert getattr(infra, n) is getattr(integrate, n)
