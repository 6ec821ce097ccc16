"""A second "host" for the multi-process tests: ``python _worker.py '<json>'`` prints one JSON line per event.

Each run builds its own ``Cache`` in front of a shared backend (same table / key prefix as the test).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.cache import Cache, CacheSettings
from infra.cache.backend import CacheBackend


def make_cache(args: dict[str, Any]) -> Cache:
    backend: CacheBackend
    if args["kind"] == "postgres":
        from infra.cache.backends.postgres import PostgresBackend

        backend = PostgresBackend(dsn=args["dsn"], table=args["prefix"])
    else:
        from infra.cache.backends.redis import RedisBackend

        backend = RedisBackend(url=args["url"], prefix=args["prefix"])
    settings = CacheSettings(
        backend=args["kind"], signing_key=args.get("key", "k").encode(), lease_timeout=30.0
    )
    return Cache(settings, backend=backend, export_metrics=False)


def emit(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


def main() -> None:
    args = json.loads(sys.argv[1])
    cache = make_cache(args)
    ns, key = args["ns"], args["key_name"]
    mode = args["mode"]
    try:
        if mode == "write":
            cache.set(ns, key, args["value"])
            emit(done=True)
        elif mode == "read":
            v = cache.get(ns, key, default=None)
            emit(value=repr(v), stats=cache.namespace_stats(ns))
        elif mode == "compute":
            counter = args["counter"]

            def compute() -> str:
                with open(counter, "a") as f:
                    f.write(f"{os.getpid()}\n")
                time.sleep(args.get("work", 0.5))
                return "computed-once"

            results: list[Any] = []
            start_at = args["start_at"]

            def caller() -> None:
                time.sleep(max(0.0, start_at - time.time()))
                results.append(cache.get_or_compute(ns, key, compute))

            threads = [threading.Thread(target=caller) for _ in range(args["threads"])]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            emit(results=results)
        elif mode == "watch":
            first = cache.get(ns, key, default=None)
            emit(ready=True, value=first)
            deadline = time.time() + args.get("timeout", 10.0)
            while time.time() < deadline:
                v = cache.get(ns, key, default=None)
                if v != first:
                    emit(seen=time.time(), value=v)
                    break
                time.sleep(0.002)
            else:
                emit(seen=None)
        elif mode == "callback":
            got = threading.Event()
            seen: list[float] = []

            def cb(namespace: str, generation: int) -> None:
                if namespace == ns:
                    seen.append(time.time())
                    got.set()

            assert cache.backend is not None
            cache.backend.on_invalidate(cb)
            cache.get(ns, key)  # connect, start the listener
            deadline = time.time() + 10
            while time.time() < deadline and not cache.backend.stats().extra.get("listening"):
                time.sleep(0.01)
            emit(ready=True)
            got.wait(args.get("timeout", 10.0))
            emit(seen=seen[0] if seen else None)
    finally:
        cache.close()


if __name__ == "__main__":
    main()
