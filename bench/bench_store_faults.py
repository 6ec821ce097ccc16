"""How long a cached call waits on a store gone wrong (issue 17 items 6 and 7), measured as the issue does.

    python bench/bench_store_faults.py            # every scenario (~1 minute)
    python bench/bench_store_faults.py --rounds 3 # repeat each scenario, report the worst

Scenarios, each with the default store budget (``cache.store_budget`` = 50 ms) and no L1 (every call goes to
the store), worst per-call latency over the calls made while the fault lasts:

* ``pg_hung_midrun`` / ``redis_hung_midrun``: a warm cache, then the server is SIGSTOPped (PostgreSQL: a
  forwarder process in front of the shared server, which clients can't tell from the server itself; Redis:
  a redis-server of the bench's own); 40 ``get_or_compute`` calls, half would-be hits.
* ``pg_hung_startup`` / ``redis_hung_startup``: the server is SIGSTOPped before the backend is built.
* ``pg_recovery_s`` / ``redis_recovery_s``: after SIGCONT, seconds until the store serves again (the
  background probe's backoff).
* ``sqlite_locked_miss``: another program holds SQLite's write lock (``BEGIN IMMEDIATE`` in a sqlite3
  connection of its own): 10 misses, worst.
* ``sqlite_dead_holder_takeover``: a process dies holding a key's lease (30 s lease); how long the next
  ``get_or_compute`` of that key takes.

Needs PostgreSQL on 127.0.0.1:5432 (``$PERF_BENCH_PG_DSN``) and ``redis-server`` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from infra.cache import Cache, CacheConfig  # noqa: E402
from infra.cache.backends.base import CacheBackend  # noqa: E402
from tests.cache_backends._servers import ProxyProcess, RedisServer, hung  # noqa: E402

DSN = os.environ.get("PERF_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
NS = "bench"


def cache_on(backend: CacheBackend) -> Cache:
    return Cache(
        CacheConfig(backend=backend.name, memory_items=0),
        signing_key=b"k" * 32,
        backend=backend,
        export_metrics=False,
    )


def worst_of(cache: Cache, keys: range) -> float:
    worst = 0.0
    for k in keys:
        t0 = time.perf_counter()
        value = f"v{k}"
        assert cache.get_or_compute(NS, f"k{k}", functools.partial(str, value)) == value
        worst = max(worst, time.perf_counter() - t0)
    return worst


def recovery(backend: CacheBackend) -> float:
    from infra.cache.backends.base import StoredEntry

    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 60:
        try:
            backend.set(NS, "probe", StoredEntry(b"p", 2))
            if backend.get(NS, "probe") is not None:
                return time.perf_counter() - t0
        except Exception:
            pass
        time.sleep(0.01)
    return float("inf")


def shared_scenarios(kind: str, make: Callable[[], CacheBackend], pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    backend = make()
    cache = cache_on(backend)
    try:
        worst_of(cache, range(20))
        recovery(backend)  # warm: connected
        worst_of(cache, range(20))
        with hung(pid):
            out[f"{kind}_hung_midrun_ms"] = worst_of(cache, range(40)) * 1000
        out[f"{kind}_recovery_s"] = recovery(backend)
    finally:
        cache.close()
    with hung(pid):
        backend = make()
        cache = cache_on(backend)
        out[f"{kind}_hung_startup_ms"] = worst_of(cache, range(40)) * 1000
    cache.close()
    return out


_HOLD = (
    "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.read()\n"
)
_DIE = (
    "import os, sys\nfrom infra.cache import Cache, CacheConfig\n"
    "c = Cache(CacheConfig(path=sys.argv[1]))\n"
    "def f():\n    os._exit(9)\n"
    "c.get_or_compute('ns', 'k', f)\n"
)


def sqlite_scenarios(tmp: str) -> dict[str, float]:
    out: dict[str, float] = {}
    path = os.path.join(tmp, "locked", "cache.db")
    cache = Cache(CacheConfig(path=path), export_metrics=False)
    cache.set("ns", "warm", 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    try:
        out["sqlite_locked_miss_ms"] = worst_of(cache, range(10)) * 1000
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
        holder.stdout.close()
        cache.close()
    path = os.path.join(tmp, "dead", "cache.db")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", _DIE, path], env=env, check=False)
    cache = Cache(CacheConfig(path=path), export_metrics=False)
    try:
        t0 = time.perf_counter()
        cache.get_or_compute("ns", "k", lambda: "computed")
        out["sqlite_dead_holder_takeover_ms"] = (time.perf_counter() - t0) * 1000
    finally:
        cache.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    from infra.cache.backends.postgres import PostgresBackend
    from infra.cache.backends.redis import RedisBackend

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp))
        redis.start()
        proxy = ProxyProcess("127.0.0.1", int(DSN.rsplit(":", 1)[1].split("/")[0]))
        pg_dsn = DSN.replace(DSN.rsplit("@", 1)[1].split("/")[0], f"127.0.0.1:{proxy.port}")
        try:
            for _ in range(args.rounds):
                table, prefix = "b" + secrets.token_hex(4), "b" + secrets.token_hex(4)
                assert redis.proc is not None
                rounds = [
                    shared_scenarios(
                        "pg", functools.partial(PostgresBackend, dsn=pg_dsn, table=table), proxy.pid
                    ),
                    shared_scenarios(
                        "redis", functools.partial(RedisBackend, url=redis.url, prefix=prefix), redis.proc.pid
                    ),
                    sqlite_scenarios(tmp),
                ]
                for r in rounds:
                    for k, v in r.items():
                        results[k] = max(results.get(k, 0.0), v)
                asyncio.run(_drop_tables(DSN, table))
        finally:
            proxy.close()
            redis.stop()
    print(
        json.dumps({k: round(v, 1 if k.endswith("_ms") else 2) for k, v in sorted(results.items())}, indent=1)
    )


async def _drop_tables(dsn: str, table: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        for t in ("entries", "generations", "leases"):
            await conn.execute(f'DROP TABLE IF EXISTS "{table}_{t}"')
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
