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

from infra.cache import Cache, CacheConfig
from infra.cache.backends.base import CacheBackend


def make_cache(args: dict[str, Any]) -> Cache:
    backend: CacheBackend
    if args["kind"] == "postgres":
        from infra.cache.backends.postgres import PostgresBackend

        # (a store budget with margin for a loaded 2-core box: these tests are about sharing, not speed)
        backend = PostgresBackend(dsn=args["dsn"], table=args["prefix"], budget=1.0)
    else:
        from infra.cache.backends.redis import RedisBackend

        backend = RedisBackend(url=args["url"], prefix=args["prefix"], budget=1.0)
    settings = CacheConfig(backend=args["kind"], lease_timeout=30.0)
    intervals = {k: args[k] for k in ("poll_interval", "push_poll_interval") if k in args}
    key = args.get("key", "k").encode()
    return Cache(settings, signing_key=key, backend=backend, export_metrics=False, **intervals)


def emit(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


def l1_watch(cache: Cache, args: dict[str, Any]) -> None:
    """Round after round: hold a value in L1, say so, and report when (and how) it stopped being served.

    The test gives this cache poll intervals far longer than the test, and every generation poll is
    counted: an invalidation seen with no poll in between was delivered by the backend's push.
    """
    ns, key = args["ns"], args["key_name"]
    b: Any = cache.backend
    polls = [0]
    sync_gens, async_gens = b.generations, b.agenerations

    def counted() -> dict[str, int]:
        polls[0] += 1
        return sync_gens()  # type: ignore[no-any-return]

    async def acounted() -> dict[str, int]:
        polls[0] += 1
        return await async_gens()  # type: ignore[no-any-return]

    b.generations, b.agenerations = counted, acounted
    deadline = time.time() + 10
    while b.push_state() is None and time.time() < deadline:
        cache.get(ns, key)  # connects; the listener subscribes in the background
        time.sleep(0.01)
    time.sleep(0.2)  # the subscription is in effect on the server
    for i in range(args["rounds"]):
        value = f"value-{i}"
        cache.set(ns, key, value)
        assert cache.get(ns, key) == value and (ns, key) in cache.l1
        polls[0] = 0
        emit(ready=i, push_state=b.push_state())
        seen = None
        stop = time.time() + args.get("timeout", 10.0)
        while time.time() < stop:
            if cache.get(ns, key, default=None) != value:
                seen = time.time()
                break
            time.sleep(0.001)
        emit(seen=seen, polls=polls[0], l1_dropped=(ns, key) not in cache.l1)


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
        elif mode == "l1watch":
            l1_watch(cache, args)
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
