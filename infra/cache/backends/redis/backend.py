"""Redis cache backend (redis-py): one store shared by every host that reaches the server.

::

    from infra.cache.backends.redis import RedisBackend
    backend = RedisBackend(url="redis://cache:6379/0")

The key layout (entries, generations, change counts, leases) and why a read is one ``MGET``: see
``layout``.

Sync calls use the thread-safe sync client (no event loop, no thread hop: that is the faster hit path,
see bench/bench_backends.py); the async twins use a ``redis.asyncio`` client per event loop (a client's
connections belong to the loop that opened them: call ``await backend.aclose()`` before closing a loop).
A daemon thread listens for invalidations (reconnecting with backoff) and runs the housekeeping.

Time bounds (issue 17 item 6): calls on a cached call's path (reads, writes, leases, generations) use a
client whose connect and socket timeouts are the store budget (``cache.store_budget``, 50 ms); a hung, slow
or refusing server costs a call at most that once, then the gate skips the store while a background thread
PINGs it with backoff until it answers. Housekeeping (SCANs, stats, purge, clear), the listener and writes of
more than ``BIG_WRITE`` bytes use a second client bounded by ``op_timeout``.

Byte caps: Redis evicts by itself when the server has ``maxmemory`` with an LRU policy, which is the
recommended setting for a shared cache. ``max_bytes`` / per-namespace caps are also enforced here
approximately, by a periodic SCAN that drops the most idle entries (``OBJECT IDLETIME``) of a namespace over
its cap: O(entries) per pass, run off the hot path.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from infra.cache.backends.base import (
    BIG_WRITE,
    FORKS,
    CacheBackend,
    StoredEntry,
    backend_kwargs,
    check_identifier,
    origin_of,
)
from infra.cache.backends.gate import ReconnectGate
from infra.cache.backends.redis.layout import (
    ACQUIRE_LUA,
    DELETE_LUA,
    HEADER,
    INVALIDATE_LUA,
    RELEASE_LUA,
    SET_LUA,
    TAKEOVER_LUA,
    aclose_client,
    aeval_script,
    dead_holder,
    eval_script,
    pack,
    px_of,
    quote_ns,
    redis_module,
    unpack,
)
from infra.cache.backends.redis.listener import RedisListener
from infra.config.sections.cache import DEFAULT_STORE_BUDGET
from infra.errors import CacheError

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from infra.cache.backends.options import RedisOverrides
    from infra.config.sections.cache import CacheConfig

__all__ = ["HEADER", "RedisBackend", "from_settings", "pack", "unpack"]


class _Answered:
    """Around one operation on the server: an answer closes the gate; a driver's exception becomes the
    gate's ``CacheError`` (``fail`` tells a connection failure, which opens it, from another); a
    ``CacheError`` or a ``BaseException`` (cancellation) passes as it is. A class, not a generator-based
    context manager: it runs on every write, and this costs two plain calls."""

    __slots__ = ("fail", "gate")

    def __init__(self, gate: ReconnectGate, fail: Callable[[Exception], CacheError]) -> None:
        self.gate = gate
        self.fail = fail

    def __enter__(self) -> None:
        return None

    def __exit__(self, tp: object, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.gate.ok()
        elif isinstance(exc, Exception) and not isinstance(exc, CacheError):
            raise self.fail(exc) from exc


class RedisBackend(RedisListener, CacheBackend):
    """The ``"redis"`` backend. See the module docstring for the layout and its reasons."""

    name: ClassVar[str] = "redis"
    shared: ClassVar[bool] = True

    def __init__(
        self,
        *,
        url: str,
        prefix: str = "perf_cache",
        max_bytes: int | None = None,
        namespace_max_bytes: Mapping[str, int] | None = None,
        connect_timeout: float = 1.0,
        op_timeout: float = 2.0,
        maintenance_interval: float = 30.0,
        listen: bool = True,
        budget: float = DEFAULT_STORE_BUDGET,
    ) -> None:
        if not url:
            raise ValueError("the redis cache backend needs a url (cache.url in perf_config.json)")
        if not budget > 0:
            raise ValueError(f"budget must be > 0 seconds, got {budget!r}")
        self._budget = budget
        self._url = url
        self.prefix = check_identifier(prefix, "redis cache key prefix")
        self.origin = origin_of(url)
        self._max_bytes = max_bytes
        self._ns_caps = dict(namespace_max_bytes or {})
        self._connect_timeout = connect_timeout
        self._op_timeout = op_timeout
        self._interval = maintenance_interval
        self._listen_wanted = listen
        self.gate = ReconnectGate("redis", self.origin, probe=self._probe)
        self._answered = _Answered(self.gate, self._fail)
        self._callbacks: list[Callable[[str, int], None]] = []
        self._change_callbacks: list[Callable[[str, int], None]] = []
        self._lock = threading.Lock()
        self._channel = f"{self.prefix}:invalidate"
        self._gens_key = f"{self.prefix}:gens"
        self._changes_key = f"{self.prefix}:changes"
        self._ns_keys: dict[str, tuple[str, str, str]] = {}
        self._listen_epoch = 0  # never reset (not even at fork): Cache compares it to spot a resubscribe
        self._reset_state()

    def _reset_state(self) -> None:
        self._fork = FORKS[0]
        self._client: Any = None  # bounded by the budget: the cached call's path
        self._admin: Any = None  # bounded by op_timeout: housekeeping, the listener, big writes
        self._aclients: dict[tuple[asyncio.AbstractEventLoop, bool], Any] = {}
        self._known: dict[str, int] = {}  # generation last seen per namespace
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = False

    @classmethod
    def from_settings(cls, settings: CacheConfig, **overrides: Unpack[RedisOverrides]) -> RedisBackend:
        """Build from ``CacheConfig`` (url, ``cache.redis`` options, total and per-namespace byte caps);
        ``overrides`` win."""
        return cls(**backend_kwargs(settings, settings.redis, **{"url": settings.url, **overrides}))

    def __repr__(self) -> str:
        return f"RedisBackend(origin={self.origin!r}, prefix={self.prefix!r})"

    @property
    def op_timeout(self) -> float:
        """How long housekeeping, the listener and big writes may take (a cached call waits the budget)."""
        return self._op_timeout

    # ================================================================== plumbing
    def _keys(self, ns: str) -> tuple[str, str, str]:
        """(generation key, entry key prefix, lease key prefix) of a namespace, memoised."""
        k = self._ns_keys.get(ns)
        if k is None:
            q = quote_ns(ns)
            k = (f"{self.prefix}:g:{q}", f"{self.prefix}:e:{q}:", f"{self.prefix}:l:{q}:")
            if len(self._ns_keys) < 10_000:
                self._ns_keys[ns] = k
        return k

    def _client_kwargs(self, *, asynchronous: bool = False, admin: bool = False) -> dict[str, Any]:
        redis_module()
        from redis.backoff import NoBackoff

        # redis.asyncio clients take the asyncio Retry (redis-py 8.2 warns on the sync one; both exist
        # from 4.2 on, so every redis-py the extra allows gets the matching class).
        if asynchronous:
            from redis.asyncio.retry import Retry
        else:
            from redis.retry import Retry  # type: ignore[assignment]

        timeout = self._op_timeout if admin else self._budget
        return {
            "socket_connect_timeout": min(self._connect_timeout, timeout),
            "socket_timeout": timeout,
            # no driver retries: a failure is reported at once and the gate backs off (fail-open)
            "retry": Retry(NoBackoff(), 0),
            "retry_on_error": [],
            "client_name": "infra-cache",
        }

    def _sync_client(self) -> Any:
        if self._fork != FORKS[0]:
            # redis-py pools re-open after fork by themselves; our listener thread must be restarted too.
            # The parent's clients are kept referenced so no finalizer ever touches the shared sockets.
            _FORK_GRAVEYARD.append((self._client, self._admin, self._aclients))
            self._reset_state()
        c = self._client
        if c is None:
            with self._lock:
                if self._closed:
                    raise CacheError("redis cache backend is closed")
                if self._client is None:
                    redis = redis_module()
                    client = redis.Redis.from_url(self._url, **self._client_kwargs())
                    self._release = client.register_script(RELEASE_LUA)
                    self._acquire = client.register_script(ACQUIRE_LUA)
                    self._invalidate_script = client.register_script(INVALIDATE_LUA)
                    self._set_script = client.register_script(SET_LUA)
                    self._client = client
                c = self._client
            self._start_thread()
        return c

    def _admin_client(self) -> Any:
        """The client bounded by ``op_timeout`` (housekeeping, the listener, big writes)."""
        self._sync_client()  # (fork check, closed check, listener)
        c = self._admin
        if c is None:
            with self._lock:
                if self._admin is None:
                    self._admin = redis_module().Redis.from_url(self._url, **self._client_kwargs(admin=True))
                c = self._admin
        return c

    def _probe(self) -> None:
        """The gate's background probe: a PING on a fresh connection, bounded by the long timeouts."""
        client = redis_module().Redis.from_url(self._url, **self._client_kwargs(admin=True))
        try:
            client.ping()
        finally:
            client.close()

    def _async_client(self, admin: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        c = self._aclients.get((loop, admin))
        if c is None:
            if self._closed:
                raise CacheError("redis cache backend is closed")
            import redis.asyncio as aredis

            with self._lock:
                for old in [k for k in self._aclients if k[0].is_closed()]:
                    del self._aclients[old]
                c = aredis.Redis.from_url(self._url, **self._client_kwargs(asynchronous=True, admin=admin))
                self._aclients[loop, admin] = c
            self._start_thread()
        return c

    def _fail(self, exc: Exception) -> CacheError:
        redis = redis_module()
        conn = isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError))
        return self.gate.failed(exc, connection=conn)

    # Every verb but the written-out get / aget: the client's operation inside ``_Answered`` (one rule for
    # both twins, which differ only in the client and the awaiting).
    def _call(self, fn: Callable[..., Any], *args: Any, admin: bool = False) -> Any:
        self.gate.check()
        client = self._admin_client() if admin else self._sync_client()
        with self._answered:
            return fn(client, *args)

    async def _acall(self, fn: Callable[..., Any], *args: Any, admin: bool = False) -> Any:
        self.gate.check()
        client = self._async_client(admin)
        with self._answered:
            return await fn(client, *args)

    def _seen(self, ns: str, raw: Any) -> int:
        gen = int(raw) if raw is not None else 0
        if self._known.get(ns) != gen:
            self._known[ns] = gen
        return gen

    # ================================================================== reads
    def get(self, namespace: str, key: str) -> StoredEntry | None:
        # the hit path, inlined: every call layer here costs ~0.3 µs of a ~40 µs round trip
        keys = self._ns_keys.get(namespace) or self._keys(namespace)
        gate = self.gate
        if gate.down_until:
            gate.check()
        client = self._client
        if client is None or self._fork != FORKS[0]:
            client = self._sync_client()
        try:
            # execute_command directly: Redis.mget's argument handling costs ~2 µs, 5% of a hit
            raw_gen, value = client.execute_command("MGET", keys[0], keys[1] + key)
        except Exception as exc:
            raise self._fail(exc) from exc
        if gate.delay:
            gate.ok()
        gen = 0 if raw_gen is None else int(raw_gen)
        if self._known.get(namespace) != gen:
            self._known[namespace] = gen
        return None if value is None else unpack(value, gen, time.time())

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, StoredEntry]:
        keys = list(keys)
        if not keys:
            return {}
        gk, ep, _ = self._keys(namespace)
        values = self._call(lambda c: c.mget(gk, *[ep + k for k in keys]))
        return self._many(namespace, keys, values)

    def _many(self, ns: str, keys: list[str], values: list[Any]) -> dict[str, StoredEntry]:
        gen = self._seen(ns, values[0])
        now = time.time()
        out: dict[str, StoredEntry] = {}
        for k, v in zip(keys, values[1:], strict=False):
            if v is not None:
                e = unpack(v, gen, now)
                if e is not None:
                    out[k] = e
        return out

    async def aget(self, namespace: str, key: str) -> StoredEntry | None:
        gk, ep, _ = self._keys(namespace)
        self.gate.check()
        client = self._aclients.get((asyncio.get_running_loop(), False)) or self._async_client()
        try:
            raw_gen, value = await client.execute_command("MGET", gk, ep + key)
        except Exception as exc:
            raise self._fail(exc) from exc
        self.gate.ok()
        gen = self._seen(namespace, raw_gen)
        return None if value is None else unpack(value, gen, time.time())

    async def aget_many(self, namespace: str, keys: Iterable[str]) -> dict[str, StoredEntry]:
        keys = list(keys)
        if not keys:
            return {}
        gk, ep, _ = self._keys(namespace)
        values = await self._acall(lambda c: c.mget(gk, *[ep + k for k in keys]))
        return self._many(namespace, keys, values)

    # ================================================================== writes
    def _generation_for_write(self, client: Any, ns: str) -> int:
        gen = self._known.get(ns)
        if gen is None:
            gen = self._seen(ns, client.get(self._keys(ns)[0]))
        return gen

    async def _agen_for_write(self, client: Any, ns: str) -> int:
        gen = self._known.get(ns)
        if gen is None:
            gen = self._seen(ns, await client.get(self._keys(ns)[0]))
        return gen

    def _set_args(self, namespace: str, entry: StoredEntry, gen: int, now: float) -> list[Any]:
        px = px_of(entry, now)
        return [pack(entry, gen, now), "" if px is None else px, namespace, self._channel]

    def set(self, namespace: str, key: str, entry: StoredEntry) -> None:
        def op(c: Any) -> None:
            now = time.time()
            gen = self._generation_for_write(c, namespace)
            keys = [self._keys(namespace)[1] + key, self._changes_key]
            eval_script(c, SET_LUA, keys, self._set_args(namespace, entry, gen, now))

        self._call(op, admin=len(entry.payload) > BIG_WRITE)

    def set_many(self, namespace: str, items: Mapping[str, StoredEntry]) -> None:
        if not items:
            return

        def op(c: Any) -> None:
            now = time.time()
            gen = self._generation_for_write(c, namespace)
            ep = self._keys(namespace)[1]
            with c.pipeline(transaction=False) as p:
                for k, e in items.items():
                    self._set_script(
                        keys=[ep + k, self._changes_key],
                        args=self._set_args(namespace, e, gen, now),
                        client=p,
                    )
                p.execute()

        self._call(op, admin=sum(len(e.payload) for e in items.values()) > BIG_WRITE)

    async def aset(self, namespace: str, key: str, entry: StoredEntry) -> None:
        async def op(c: Any) -> None:
            now = time.time()
            gen = await self._agen_for_write(c, namespace)
            keys = [self._keys(namespace)[1] + key, self._changes_key]
            await aeval_script(c, SET_LUA, keys, self._set_args(namespace, entry, gen, now))

        await self._acall(op, admin=len(entry.payload) > BIG_WRITE)

    async def aset_many(self, namespace: str, items: Mapping[str, StoredEntry]) -> None:
        if not items:
            return

        async def op(c: Any) -> None:
            now = time.time()
            gen = await self._agen_for_write(c, namespace)
            ep = self._keys(namespace)[1]
            async with c.pipeline(transaction=False) as p:  # (EVAL: a batch sends the script text per item)
                for k, e in items.items():
                    p.eval(SET_LUA, 2, ep + k, self._changes_key, *self._set_args(namespace, e, gen, now))
                await p.execute()

        await self._acall(op, admin=sum(len(e.payload) for e in items.values()) > BIG_WRITE)

    def delete(self, namespace: str, key: str) -> bool:
        keys = [self._keys(namespace)[1] + key, self._changes_key]
        args = [namespace, self._channel]
        return bool(self._call(lambda c: eval_script(c, DELETE_LUA, keys, args)))

    async def adelete(self, namespace: str, key: str) -> bool:
        keys = [self._keys(namespace)[1] + key, self._changes_key]
        args = [namespace, self._channel]
        return bool(await self._acall(lambda c: aeval_script(c, DELETE_LUA, keys, args)))

    def invalidate(self, namespace: str) -> int:
        def op(c: Any) -> int:
            return int(
                self._invalidate_script(
                    keys=[self._keys(namespace)[0], self._gens_key], args=[namespace, self._channel], client=c
                )
            )

        gen = self._call(op)
        self._known[namespace] = gen
        return gen  # type: ignore[no-any-return]

    async def ainvalidate(self, namespace: str) -> int:
        async def op(c: Any) -> int:
            return int(
                await c.eval(
                    INVALIDATE_LUA, 2, self._keys(namespace)[0], self._gens_key, namespace, self._channel
                )
            )

        gen = await self._acall(op)
        self._known[namespace] = gen
        return gen  # type: ignore[no-any-return]

    def generations(self) -> dict[str, int]:
        raw = self._call(lambda c: c.hgetall(self._gens_key))
        gens = {k.decode(): int(v) for k, v in raw.items()}
        self._known.update(gens)
        return gens

    async def agenerations(self) -> dict[str, int]:
        raw = await self._acall(lambda c: c.hgetall(self._gens_key))
        gens = {k.decode(): int(v) for k, v in raw.items()}
        self._known.update(gens)
        return gens

    def _versions(self, gens_raw: Any, changes_raw: Any) -> dict[str, tuple[int, int]]:
        gens = {k.decode(): int(v) for k, v in gens_raw.items()}
        self._known.update(gens)
        changes = {k.decode(): int(v) for k, v in changes_raw.items()}
        return {n: (gens.get(n, 0), changes.get(n, 0)) for n in gens.keys() | changes.keys()}

    def versions(self) -> dict[str, tuple[int, int]]:
        def op(c: Any) -> Any:
            with c.pipeline(transaction=False) as p:
                p.hgetall(self._gens_key)
                p.hgetall(self._changes_key)
                return p.execute()

        return self._versions(*self._call(op))

    async def aversions(self) -> dict[str, tuple[int, int]]:
        async def op(c: Any) -> Any:
            async with c.pipeline(transaction=False) as p:
                p.hgetall(self._gens_key)
                p.hgetall(self._changes_key)
                return await p.execute()

        return self._versions(*(await self._acall(op)))

    # ================================================================== leases
    def acquire_lease(self, namespace: str, key: str, owner: str, timeout: float) -> bool:
        lk = self._keys(namespace)[2] + key
        ms = max(1, int(timeout * 1000))
        got = self._call(lambda c: self._acquire(keys=[lk], args=[owner, ms], client=c))
        if got == 1:
            return True
        holder = dead_holder(got)
        if holder is None:
            return False
        return bool(self._call(lambda c: c.eval(TAKEOVER_LUA, 1, lk, holder, owner, ms)))

    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        lk = self._keys(namespace)[2] + key
        self._call(lambda c: self._release(keys=[lk], args=[owner], client=c))

    async def aacquire_lease(self, namespace: str, key: str, owner: str, timeout: float) -> bool:
        lk = self._keys(namespace)[2] + key
        ms = max(1, int(timeout * 1000))
        got = await self._acall(lambda c: c.eval(ACQUIRE_LUA, 1, lk, owner, ms))
        if got == 1:
            return True
        holder = dead_holder(got)
        if holder is None:
            return False
        return bool(await self._acall(lambda c: c.eval(TAKEOVER_LUA, 1, lk, holder, owner, ms)))

    async def arelease_lease(self, namespace: str, key: str, owner: str) -> None:
        lk = self._keys(namespace)[2] + key
        await self._acall(lambda c: c.eval(RELEASE_LUA, 1, lk, owner))

    # ================================================================== closing
    async def arelease_loop(self) -> None:
        """Close this loop's clients only; the backend stays usable (sync, and from other loops)."""
        loop = asyncio.get_running_loop()
        for admin in (False, True):
            c = self._aclients.pop((loop, admin), None)
            if c is not None:
                await aclose_client(c)

    async def aclose(self) -> None:
        """Close this loop's client, then everything else (``close``)."""
        await self.arelease_loop()
        self.close()

    def close(self) -> None:
        """Stop the listener thread and close the sync client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self.gate.close()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(2.0)
        for c in (self._client, self._admin):
            if c is not None:
                c.close()
        self._client = self._admin = None
        for (loop, _admin), ac in list(self._aclients.items()):
            if not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(aclose_client(ac), loop)
        self._aclients.clear()


#: per-process state left behind at fork (see ``RedisBackend._sync_client``)
_FORK_GRAVEYARD: list[Any] = []


def from_settings(settings: CacheConfig) -> RedisBackend:
    """The factory ``infra.cache.core.make_backend`` calls for ``"backend": "redis"``."""
    return RedisBackend.from_settings(settings)
