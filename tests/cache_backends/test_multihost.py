"""Several processes standing for several hosts, through the real ``Cache`` in front of each backend."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.cache import Cache

from .conftest import unique_prefix

pytestmark = pytest.mark.services

WORKER = str(Path(__file__).with_name("_worker.py"))
NS = "inference"


@pytest.fixture(params=["postgres", "redis"])
def host(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Connection details of one shared store on a fresh prefix; dropped / deleted afterwards."""
    kind = request.param
    args: dict[str, Any] = {"kind": kind, "prefix": unique_prefix(), "key": "shared-signing-key"}
    if kind == "postgres":
        args["dsn"] = request.getfixturevalue("pg_cache_dsn")
    else:
        args["url"] = request.getfixturevalue("redis_url")
    yield args
    if kind == "redis":
        import redis

        r = redis.Redis.from_url(args["url"])
        keys = list(r.scan_iter(match=f"{args['prefix']}:*", count=1000))
        if keys:
            r.delete(*keys)
        r.close()


def local_cache(args: dict[str, Any], key: str | None = None) -> Cache:
    from ._worker import make_cache  # the same construction as the workers

    return make_cache({**args, "key": key or args["key"]})


def spawn(args: dict[str, Any], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WORKER, json.dumps({**args, **kw})],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(p: subprocess.Popen[str], timeout: float = 60) -> list[dict[str, Any]]:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_two_hosts_share_entries(host: dict[str, Any]) -> None:
    w = spawn(host, mode="write", ns=NS, key_name="k1", value={"answer": [1, 2.5, "three"]})
    finish(w)
    cache = local_cache(host)
    try:
        assert cache.get(NS, "k1") == {"answer": [1, 2.5, "three"]}
        cache.set(NS, "k2", ("tuple", b"bytes"))
    finally:
        cache.close()
    r = finish(spawn(host, mode="read", ns=NS, key_name="k2"))
    assert r[0]["value"] == repr(("tuple", b"bytes"))  # exact round trip across hosts
    assert r[0]["stats"]["hits"] == 1


def test_32_concurrent_misses_over_4_processes_compute_once(host: dict[str, Any], tmp_path: Path) -> None:
    counter = tmp_path / "computations"
    counter.touch()
    start_at = time.time() + 2.0  # all four processes imported and connected by then
    procs = [
        spawn(
            host,
            mode="compute",
            ns=NS,
            key_name="hot",
            threads=8,
            counter=str(counter),
            start_at=start_at,
            work=0.5,
        )
        for _ in range(4)
    ]
    results = [r for p in procs for r in finish(p)[0]["results"]]
    assert len(results) == 32
    assert set(results) == {"computed-once"}
    assert len(counter.read_text().split()) == 1


def test_invalidation_in_one_process_is_seen_by_the_other(host: dict[str, Any]) -> None:
    """The watcher holds the value in its L1; after our invalidation it stops serving it. The latency is
    printed (the issue asks for ≤ 100 ms; bench/bench_backends.py reports it, pass/fail has no timing)."""
    cache = local_cache(host)
    try:
        cache.set(NS, "k", "before")
        w = spawn(host, mode="watch", ns=NS, key_name="k", timeout=10.0)
        assert w.stdout is not None
        ready = json.loads(w.stdout.readline())
        assert ready == {"ready": True, "value": "before"}
        time.sleep(0.3)  # the watcher is now serving from its L1
        t0 = time.time()
        cache.invalidate(NS)
        rest = finish(w)
    finally:
        cache.close()
    assert rest[0]["seen"] is not None and rest[0]["value"] is None
    print(
        f"\n{host['kind']}: invalidation seen by the other process after "
        f"{(rest[0]['seen'] - t0) * 1000:.1f} ms"
    )


def test_invalidation_is_pushed_into_the_other_processes_l1_within_100ms(host: dict[str, Any]) -> None:
    """Issue 8's "an invalidation in one process is seen by the other within 100 ms", through ``Cache``:
    the watcher holds the value in its L1 with generation polling pushed out to 60 s, so only the backend's
    push (NOTIFY / pub-sub -> ``on_invalidate`` -> generation set, L1 dropped) can deliver it. Each round
    is timed from the return of our ``invalidate``; no poll may have run, the L1 entry must be gone, and
    the median round must be within 100 ms (a median, so one scheduling hiccup on a loaded machine does
    not decide it; every round must still come well before the 60 s poll)."""
    rounds = 5
    w = spawn(
        host, mode="l1watch", ns=NS, key_name="k", rounds=rounds, poll_interval=60.0, push_poll_interval=60.0
    )
    assert w.stdout is not None
    cache = local_cache(host)
    latencies: list[float] = []
    try:
        cache.get(NS, "warm")  # connected before any clock starts
        for i in range(rounds):
            ready = json.loads(w.stdout.readline())
            assert ready["ready"] == i and ready["push_state"] is not None, ready
            time.sleep(0.05)  # the watcher is serving the value from its L1
            cache.invalidate(NS)
            t0 = time.time()  # from the invalidating call's return
            seen = json.loads(w.stdout.readline())
            assert seen["seen"] is not None, seen
            assert seen["polls"] == 0, seen  # the push delivered it, not the poll
            assert seen["l1_dropped"], seen
            latencies.append(seen["seen"] - t0)
        finish(w)
    finally:
        if w.poll() is None:
            w.kill()
            w.communicate()
        cache.close()
    latencies.sort()
    print(f"\n{host['kind']}: pushed into the other L1 after {[round(x * 1000, 1) for x in latencies]} ms")
    assert latencies[rounds // 2] < 0.1
    assert latencies[-1] < 5.0


def test_invalidation_is_pushed_to_other_hosts_callbacks(host: dict[str, Any]) -> None:
    w = spawn(host, mode="callback", ns=NS, key_name="k", timeout=10.0)
    assert w.stdout is not None
    assert json.loads(w.stdout.readline()) == {"ready": True}
    cache = local_cache(host)
    try:
        cache.get(NS, "warm")  # connected before the clock starts
        t0 = time.time()
        cache.invalidate(NS)
        rest = finish(w)
    finally:
        cache.close()
    assert rest[0]["seen"] is not None
    print(f"\n{host['kind']}: NOTIFY / pub-sub callback after {(rest[0]['seen'] - t0) * 1000:.1f} ms")


def test_value_written_without_the_signing_key_is_never_decoded(host: dict[str, Any], tmp_path: Path) -> None:
    """Rows put there by another client: unsigned, signed with another key, and an unsigned pickle whose
    __reduce__ would create a marker file. All are misses (counted as errors); nothing is unpickled."""
    import pickle

    from infra.cache.backends.base import StoredEntry
    from infra.cache.codecs import FLAG_SIGNED, PICKLE, STR

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    cache = local_cache(host)
    other = local_cache(host, key="someone-elses-key")
    try:
        assert cache.backend is not None
        raw = cache.backend
        raw.set(NS, "unsigned", StoredEntry(b"plain text", STR))
        raw.set(NS, "pickle", StoredEntry(pickle.dumps(Evil()), PICKLE))
        raw.set(NS, "forged-flag", StoredEntry(b"\x00" * 32 + pickle.dumps(Evil()), PICKLE | FLAG_SIGNED))
        other.set(NS, "other-key", "written with another key")
        for k in ("unsigned", "pickle", "forged-flag", "other-key"):
            assert cache.get(NS, k, default="MISS") == "MISS", k
        assert cache.namespace_stats(NS)["errors"] >= 4
        assert not marker.exists()
        cache.set(NS, "good", "signed by us")  # and our own signed values do come back
        fresh = local_cache(host)
        try:
            assert fresh.get(NS, "good") == "signed by us"
        finally:
            fresh.close()
    finally:
        cache.close()
        other.close()
