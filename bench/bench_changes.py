"""What counting changes costs a write, and how soon another process's L1 sees a change (issue 14, item 8).

    python bench/bench_changes.py            # SQLite, PostgreSQL (127.0.0.1:5432/test) and Redis (:6379/15)
    python bench/bench_changes.py --quick

* **set p50**: ``backend.set`` of a new key and of a key that exists (a replacing set counts a change and,
  on PostgreSQL / Redis, pushes it), against the raw driver write a user would otherwise send.
* **seen after**: a ``Cache`` holds a value in its L1; another ``Cache`` on the same store (its own
  connections, as another process has) deletes it; the time until the first one's ``get`` misses. The
  promise is ``cache.sync_interval`` (1 s by default); PostgreSQL / Redis push it, SQLite is polled.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from infra.cache import Cache, CacheConfig
from infra.cache._missing import MISSING
from infra.cache.backends.base import StoredEntry

PG = os.environ.get("INFRA_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = "redis://127.0.0.1:6379/15"


def _p50(fn: Callable[[int], Any], n: int) -> float:
    ts = []
    for i in range(n):
        t = time.perf_counter_ns()
        fn(i)
        ts.append((time.perf_counter_ns() - t) / 1000)
    return statistics.median(ts)


def _settings(kind: str, prefix: str, tmp: str) -> CacheConfig:
    if kind == "sqlite":
        return CacheConfig(path=f"{tmp}/c.db")
    if kind == "postgres":
        from infra.config.sections.cache import PostgresCacheConfig

        return CacheConfig(backend="postgres", dsn=PG, postgres=PostgresCacheConfig(table=prefix))
    from infra.config.sections.cache import RedisCacheConfig

    return CacheConfig(backend="redis", url=REDIS, redis=RedisCacheConfig(prefix=prefix))


def _raw_writer(kind: str, prefix: str) -> tuple[Callable[[str, bytes], None], Callable[[], None]]:
    if kind == "redis":
        import redis

        r = redis.Redis.from_url(REDIS)
        return (lambda k, v: r.set(f"{prefix}:raw:{k}", v, px=3_600_000)), r.close
    import asyncio

    import asyncpg

    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(PG))
    table = f'"{prefix}_raw"'
    loop.run_until_complete(conn.execute(f"CREATE TABLE {table} (k text PRIMARY KEY, v bytea)"))
    sql = f"INSERT INTO {table} VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"

    def close() -> None:
        loop.run_until_complete(conn.execute(f"DROP TABLE {table}"))
        loop.run_until_complete(conn.close())
        loop.close()

    return (lambda k, v: loop.run_until_complete(conn.execute(sql, k, v))), close


def _drop(kind: str, prefix: str) -> None:
    if kind == "postgres":
        import asyncio

        import asyncpg

        async def drop() -> None:
            c = await asyncpg.connect(PG)
            for t in ("entries", "generations", "leases", "changes"):
                await c.execute(f'DROP TABLE IF EXISTS "{prefix}_{t}"')
            await c.close()

        asyncio.run(drop())
    elif kind == "redis":
        import redis

        r = redis.Redis.from_url(REDIS)
        keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            r.delete(*keys)
        r.close()


def bench(kind: str, n: int, trials: int) -> list[tuple[str, float]]:
    prefix = "bc" + secrets.token_hex(4)
    tmp = tempfile.mkdtemp(prefix="bench_changes_")
    out: list[tuple[str, float]] = []
    reader = Cache(_settings(kind, prefix, tmp), signing_key=b"k")
    writer = Cache(_settings(kind, prefix, tmp), signing_key=b"k")
    try:
        b = writer.backend
        assert b is not None
        e = StoredEntry(b"x" * 500, 2, time.time() + 3600, 0.0)
        out.append(("set, new key", _p50(lambda i: b.set("bench", f"{i:064x}", e), n)))
        out.append(("set, replacing a live entry", _p50(lambda i: b.set("bench", f"{i % 50:064x}", e), n)))
        if kind != "sqlite":
            raw, close = _raw_writer(kind, prefix)
            out.append(("raw driver write (peer)", _p50(lambda i: raw(f"{i % 50:064x}", b"x" * 534), n)))
            close()
        delays = []
        for t in range(trials):
            key = f"seen{t}"
            reader.set("bench", key, "v")
            time.sleep(0.2)  # let both settle (listener, first poll)
            # the reader serving hits for a random while: the delete lands at a random phase of its tick
            until = time.perf_counter() + random.uniform(0.0, 0.3)
            while time.perf_counter() < until:
                reader.get("bench", key)
            t0 = time.perf_counter()
            writer.delete("bench", key)
            while reader.get("bench", key) is not MISSING:
                time.sleep(0.0005)
            delays.append((time.perf_counter() - t0) * 1000)
        out.append(("another Cache's delete seen by this L1, p50 (ms)", statistics.median(delays)))
        out.append(("same, max (ms)", max(delays)))
    finally:
        reader.close()
        writer.close()
        _drop(kind, prefix)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["sqlite", "postgres", "redis"])
    args = ap.parse_args()
    n, trials = (300, 5) if args.quick else (2000, 20)
    print("| backend | measure | value |\n|---|---|---:|")
    for kind in [args.only] if args.only else ["sqlite", "postgres", "redis"]:
        for name, v in bench(kind, n, trials):
            unit = "" if "(ms)" in name else " µs"
            print(f"| {kind} | {name} | {v:.1f}{unit} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
