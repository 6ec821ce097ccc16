"""Single-flight: many concurrent callers of one missing key → one computation; errors reach every waiter."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable

import pytest

from infra.cache import Cache
from tests.cache.conftest import PYTHON, subprocess_env

MakeCache = Callable[..., Cache]


def test_64_threads_one_computation(cache: Cache) -> None:
    calls: list[int] = []
    barrier = threading.Barrier(64)
    results: list[object] = []

    def compute() -> str:
        calls.append(1)
        time.sleep(0.2)  # long enough that every thread arrives while it runs
        return "answer"

    def worker() -> None:
        barrier.wait()
        results.append(cache.get_or_compute("ns", "k", compute))

    threads = [threading.Thread(target=worker) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(calls) == 1
    assert results == ["answer"] * 64


async def test_64_tasks_one_computation(cache: Cache) -> None:
    calls: list[int] = []

    async def compute() -> str:
        calls.append(1)
        await asyncio.sleep(0.1)
        return "answer"

    results = await asyncio.gather(*(cache.aget_or_compute("ns", "k", compute) for _ in range(64)))
    assert len(calls) == 1
    assert results == ["answer"] * 64


def test_raising_computation_raises_in_every_thread(cache: Cache) -> None:
    calls: list[int] = []
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def compute() -> str:
        calls.append(1)
        time.sleep(0.1)
        raise RuntimeError("upstream failed")

    def worker() -> None:
        barrier.wait()
        try:
            cache.get_or_compute("ns", "k", compute)
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(calls) == 1
    assert len(errors) == 16 and all(str(e) == "upstream failed" for e in errors)


async def test_raising_computation_raises_in_every_task(cache: Cache) -> None:
    calls: list[int] = []

    async def compute() -> str:
        calls.append(1)
        await asyncio.sleep(0.05)
        raise KeyError("gone")

    results = await asyncio.gather(
        *(cache.aget_or_compute("ns", "k", compute) for _ in range(64)), return_exceptions=True
    )
    assert len(calls) == 1
    assert all(isinstance(r, KeyError) for r in results)


async def test_threads_and_tasks_share_one_flight(cache: Cache) -> None:
    calls: list[int] = []
    started = threading.Event()

    def compute() -> str:
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return "shared"

    thread_result: list[str] = []
    t = threading.Thread(target=lambda: thread_result.append(cache.get_or_compute("ns", "k", compute)))
    t.start()
    await asyncio.get_running_loop().run_in_executor(None, started.wait)
    results = await asyncio.gather(*(cache.aget_or_compute("ns", "k", compute) for _ in range(8)))
    t.join()
    assert results == ["shared"] * 8 and thread_result == ["shared"] and len(calls) == 1


async def test_cancelled_leader_does_not_fail_waiters(cache: Cache) -> None:
    calls: list[int] = []

    async def compute() -> str:
        calls.append(1)
        await asyncio.sleep(0.2 if len(calls) == 1 else 0)
        return "done"

    leader = asyncio.create_task(cache.aget_or_compute("ns", "k", compute))
    await asyncio.sleep(0.02)
    waiter = asyncio.create_task(cache.aget_or_compute("ns", "k", compute))
    await asyncio.sleep(0.02)
    leader.cancel()
    assert await waiter == "done"
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert len(calls) == 2


_LEASE_SCRIPT = r"""
import sys, time
from infra.cache import Cache, CacheConfig
c = Cache(CacheConfig(path=sys.argv[1]))
log = sys.argv[2]
def compute():
    with open(log, "a") as f:
        f.write("x\n")
    time.sleep(0.5)
    return "from-one-process"
start = float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
print(c.get_or_compute("ns", "shared-key", compute))
c.close()
"""


def test_processes_sharing_the_file_compute_once(cache_path: str, tmp_path: object) -> None:
    import os

    log = os.path.join(str(tmp_path), "computations.log")
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", _LEASE_SCRIPT, cache_path, log, str(start)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert [o.strip() for o, _ in outs] == ["from-one-process"] * 4
    with open(log) as f:
        assert f.read().count("x") == 1


def _racy_backend(path: str, before_acquire: Callable[[], None]) -> object:
    """An SQLite backend that runs ``before_acquire`` once, just before its first lease acquire: the moment
    another process's holder finishes (sets the value, releases the lease) after our L2 miss."""
    from infra.cache.backends.sqlite.store import SQLiteBackend

    class Racy(SQLiteBackend):
        fired = False

        def acquire_lease(self, namespace: str, key: str, owner: str, timeout: float) -> bool:
            if not self.fired:
                self.fired = True
                before_acquire()
            return super().acquire_lease(namespace, key, owner, timeout)

    return Racy(path)


def test_lease_won_after_the_holder_finished_rereads_l2_instead_of_computing(
    make_cache: MakeCache, cache_path: str
) -> None:
    """The holder sets and releases between our L2 miss and our acquire: we take the lease, find its value
    in L2 and return it (lease released); no second computation."""
    other = make_cache()
    ours = make_cache(backend_obj=_racy_backend(cache_path, lambda: other.set("ns", "k", "theirs")))
    calls: list[int] = []

    def compute() -> str:
        calls.append(1)
        return "ours"

    assert ours.get_or_compute("ns", "k", compute) == "theirs"
    assert calls == []
    assert ours.backend is not None and ours.backend.acquire_lease("ns", "k", "third", 5.0)  # released


async def test_async_lease_won_after_the_holder_finished_rereads_l2_instead_of_computing(
    make_cache: MakeCache, cache_path: str
) -> None:
    """The async twin of the lease re-read: no second computation either."""
    other = make_cache()
    ours = make_cache(backend_obj=_racy_backend(cache_path, lambda: other.set("ns", "k", "theirs")))
    calls: list[int] = []

    async def compute() -> str:
        calls.append(1)
        return "ours"

    assert await ours.aget_or_compute("ns", "k", compute) == "theirs"
    assert calls == []
    assert ours.backend is not None and ours.backend.acquire_lease("ns", "k", "third", 5.0)  # released
