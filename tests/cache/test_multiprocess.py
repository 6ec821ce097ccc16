"""Several processes on one SQLite file: no error surfaces, no committed entry lost, kill -9 harmless."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import time

import pytest

from infra.cache import Cache, CacheConfig
from tests.cache.conftest import PYTHON, subprocess_env

_WORKER = r"""
import random, sys, threading
from infra.cache import MISSING, Cache, CacheConfig
path, proc, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
# no L1: every read goes to the file; a budget with 10x margin for a loaded 2-core box (this test is about
# losing nothing; under the default 50 ms budget an overloaded machine may skip a write, by design)
c = Cache(CacheConfig(path=path, memory_items=0, store_budget=1.0))
failures = []
def work(t):
    rnd = random.Random(proc * 100 + t)
    for i in range(n):
        c.set("ns", f"p{proc}-t{t}-{i}", {"p": proc, "t": t, "i": i, "pad": "x" * rnd.randint(100, 1000)})
        # read back our own committed entry, and a random one of anybody's
        v = c.get("ns", f"p{proc}-t{t}-{i}")
        if v is MISSING or v["i"] != i:
            failures.append(("own", i, v))
        other = c.get("ns", f"p{rnd.randrange(4)}-t{rnd.randrange(2)}-{rnd.randrange(n)}")
        if other is not MISSING and not isinstance(other, dict):
            failures.append(("other", other))
        if i % 10 == 0:
            c.get_or_compute("shared", f"g{i}", lambda: i)
threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
for th in threads: th.start()
for th in threads: th.join()
errors = sum(c.namespace_stats(ns)["errors"] for ns in ("ns", "shared"))
print(len(failures), errors)
c.close()
"""


def test_four_processes_two_threads_each_lose_nothing(cache_path: str) -> None:
    n = 150
    Cache(CacheConfig(path=cache_path)).close()  # create the file first, like a running app would
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", _WORKER, cache_path, str(p), str(n)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.split() == ["0", "0"], (out, err)  # no failed read-back, no counted error
    c = Cache(CacheConfig(path=cache_path, memory_items=0))
    try:
        got = c.get_many("ns", [f"p{p}-t{t}-{i}" for p in range(4) for t in range(2) for i in range(n)])
        assert len(got) == 4 * 2 * n
        assert all(v["i"] == int(k.rsplit("-", 1)[1]) for k, v in got.items())
    finally:
        c.close()


_WRITER = r"""
import os, sys
from infra.cache import Cache, CacheConfig
c = Cache(CacheConfig(path=sys.argv[1], memory_items=0))
r = int(sys.argv[2])
c.set("ns", f"r{r}-first", r)
print("ready", flush=True)
i = 0
while True:
    c.set("ns", f"r{r}-{i}", os.urandom(200).hex())
    if i % 7 == 0:
        c.set_many("ns", {f"r{r}-b{i}-{j}": j for j in range(20)})
    if i % 50 == 0:
        c.invalidate("other")
    i += 1
"""


@pytest.mark.slow
def test_kill_minus_9_of_a_writer_twenty_times_leaves_a_sound_file(cache_path: str) -> None:
    rnd = random.Random(7)
    for r in range(20):
        p = subprocess.Popen(
            [PYTHON, "-c", _WRITER, cache_path, str(r)],
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.05 + rnd.random() * 0.15)  # mid-stream
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        p.stdout.close()
    with contextlib.closing(sqlite3.connect(cache_path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        recount = conn.execute(
            "SELECT n.name, COUNT(e.id), COALESCE(SUM(e.size), 0) FROM namespaces n "
            "LEFT JOIN entries e ON e.ns = n.id GROUP BY n.id"
        ).fetchall()
    c = Cache(CacheConfig(path=cache_path))
    try:
        # every round's first entry was committed before "ready": none is lost
        assert all(c.get("ns", f"r{r}-first") == r for r in range(20))
        assert c.backend is not None and not c.backend.quarantined  # type: ignore[attr-defined]
        # the entry and byte totals survived the kills exactly (stored totals plus the unfolded tail)
        assert c.backend.stats().by_namespace == {name: (n, b) for name, n, b in recount}
        c.set("ns", "after", 1)
        assert c.get("ns", "after") == 1
    finally:
        c.close()
