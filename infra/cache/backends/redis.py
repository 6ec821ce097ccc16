"""Redis cache backend (redis-py): one store shared by every host that reaches the server.

::

    from infra.cache.backends.redis import RedisBackend
    backend = RedisBackend(url="redis://cache:6379/0")

Layout (``{p}`` is the key prefix, ``perf_cache`` by default; ``{ns}`` the namespace with ``%`` and ``:``
escaped):

* ``{p}:e:{ns}:{key}`` → a 34-byte header (format version, codec id, generation, expires_at, cost,
  created_at) followed by the payload, stored with ``SET .. PX`` so Redis expires it on time.
* ``{p}:g:{ns}`` → the namespace generation (``INCR``); ``{p}:gens`` mirrors every generation in one hash
  so ``generations()`` is one ``HGETALL``. Both are changed by one Lua script that also PUBLISHes
  ``"<generation>:<namespace>"`` on ``{p}:invalidate``.
* ``{p}:changes`` → per namespace, how many deletes, clears and sets that replaced a live entry it has seen
  (issue 14): sets and deletes are Lua scripts that count in the same step; ``versions()`` reads both
  hashes in one pipeline, and ``Cache`` drops its L1 entries of a namespace whose count moved.
* ``{p}:l:{ns}:{key}`` → a single-flight lease: set-if-absent with PX and the owner's token (a Lua script, so
  the same owner may take it again and extend it), released by a Lua script only when the token still
  matches (a lease that outlived its timeout and was taken over is never released by its first owner).
  A dead holder blocks nobody past the timeout: Redis expires the key.

A read is one ``MGET {p}:g:{ns} {p}:e:{ns}:{key}``: one command, one round trip, and the entry's header
generation is compared with the namespace's current one right there, so an invalidation is honoured by the
next read on every host. A write stamps the generation this process last saw for the namespace (every read
refreshes it, as do invalidations and the pub/sub listener); if that is stale the entry is simply invisible,
which is also the right answer for a value computed before an invalidation. Batches are one ``MGET`` (reads)
or one pipeline (writes).

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
import contextlib
import logging
import math
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from infra.cache import fleet_stats as _fleet
from infra.cache.backend import BackendStats, CacheBackend, EntryInfo, StoredEntry
from infra.cache.backends._common import (
    BIG_WRITE,
    FORKS,
    ReconnectGate,
    backend_kwargs,
    check_identifier,
    holder_is_dead,
    origin_of,
)
from infra.config.sections.cache import DEFAULT_STORE_BUDGET
from infra.errors import CacheError

if TYPE_CHECKING:
    from infra.config.sections.cache import CacheConfig

__all__ = ["HEADER", "RedisBackend", "from_settings", "pack", "unpack"]

log = logging.getLogger("infra.cache")

_INSTALL_HINT = "the redis cache backend needs redis-py: pip install 'perf-infra[redis]'"
#: entry header: format version, codec, generation, expires_at (NaN: never), cost, created_at
HEADER = struct.Struct("!BBqddd")
_VERSION = 1
_NAN = float("nan")
_SCAN_BATCH = 500

_INVALIDATE_LUA = """
local g = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], g)
redis.call('PUBLISH', ARGV[2], g .. ':' .. ARGV[1])
return g
"""
# A set that replaces an entry (one Redis still holds: not expired) counts a change of its namespace, so
# other processes drop their L1 copies (issue 14), and pushes the new count ("c<count>:<namespace>") on the
# invalidation channel; ARGV: payload, PX ms or '' (never expires), namespace, channel.
_SET_LUA = """
local existed = redis.call('EXISTS', KEYS[1])
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if existed == 1 then
  local n = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  redis.call('PUBLISH', ARGV[4], 'c' .. n .. ':' .. ARGV[3])
end
return existed
"""
# A delete that removed an entry counts (and pushes) a change of its namespace; ARGV: namespace, channel.
_DELETE_LUA = """
local n = redis.call('DEL', KEYS[1])
if n > 0 then
  local c = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  redis.call('PUBLISH', ARGV[2], 'c' .. c .. ':' .. ARGV[1])
end
return n
"""
# re-entrant for the same owner (as the contract and the PostgreSQL lease table are): the owner extends it;
# when another owner holds it, its name comes back (a dead process of this host is taken over at once)
_ACQUIRE_LUA = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return v
"""
# take the lease from a holder known dead, only if that holder still has it
_TAKEOVER_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _redis() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise CacheError(_INSTALL_HINT) from exc
    return redis


def _quote_ns(ns: str) -> str:
    return ns.replace("%", "%25").replace(":", "%3A")


def _unquote_ns(q: str) -> str:
    return q.replace("%3A", ":").replace("%25", "%")


def _glob_escape(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


def pack(entry: StoredEntry, generation: int, now: float) -> bytes:
    """Header + payload as stored under an entry key (I/O-free; shared by the sync and async paths)."""
    exp = _NAN if entry.expires_at is None else entry.expires_at
    return HEADER.pack(_VERSION, entry.codec, generation, exp, entry.cost, now) + entry.payload


def unpack(value: bytes, generation: int, now: float) -> StoredEntry | None:
    """The entry if ``value`` is well-formed, of ``generation`` and not expired; else None (a miss)."""
    if len(value) < HEADER.size:
        return None
    version, codec, gen, exp, cost, _created = HEADER.unpack_from(value)
    if version != _VERSION or gen != generation:
        return None
    if exp != exp:  # NaN: never expires
        return StoredEntry(value[HEADER.size :], codec, None, cost)
    if exp <= now:
        return None
    return StoredEntry(value[HEADER.size :], codec, exp, cost)


def _dead_holder(reply: Any) -> str | None:
    """The holder named by ``_ACQUIRE_LUA``'s reply if it is a dead process of this host, else None."""
    if not isinstance(reply, bytes):
        return None
    holder = reply.decode("utf-8", "replace")
    return holder if holder_is_dead(holder) else None


def _px(entry: StoredEntry, now: float) -> int | None:
    """Milliseconds to live for SET PX (None: no expiry); at least 1 so an entry due now still expires."""
    if entry.expires_at is None:
        return None
    return max(1, math.ceil((entry.expires_at - now) * 1000))


class RedisBackend(CacheBackend):
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
    def from_settings(cls, settings: CacheConfig, **overrides: Any) -> RedisBackend:
        """Build from ``CacheConfig`` (url, ``cache.redis`` options, total and per-namespace byte caps);
        ``overrides`` win."""
        return cls(**backend_kwargs(settings, settings.redis, **{"url": settings.url, **overrides}))

    def __repr__(self) -> str:
        return f"RedisBackend(origin={self.origin!r}, prefix={self.prefix!r})"

    # ================================================================== plumbing
    def _keys(self, ns: str) -> tuple[str, str, str]:
        """(generation key, entry key prefix, lease key prefix) of a namespace, memoised."""
        k = self._ns_keys.get(ns)
        if k is None:
            q = _quote_ns(ns)
            k = (f"{self.prefix}:g:{q}", f"{self.prefix}:e:{q}:", f"{self.prefix}:l:{q}:")
            if len(self._ns_keys) < 10_000:
                self._ns_keys[ns] = k
        return k

    def _client_kwargs(self, *, asynchronous: bool = False, admin: bool = False) -> dict[str, Any]:
        _redis()
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
                    redis = _redis()
                    client = redis.Redis.from_url(self._url, **self._client_kwargs())
                    self._release = client.register_script(_RELEASE_LUA)
                    self._acquire = client.register_script(_ACQUIRE_LUA)
                    self._invalidate_script = client.register_script(_INVALIDATE_LUA)
                    self._set_script = client.register_script(_SET_LUA)
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
                    self._admin = _redis().Redis.from_url(self._url, **self._client_kwargs(admin=True))
                c = self._admin
        return c

    def _probe(self) -> None:
        """The gate's background probe: a PING on a fresh connection, bounded by the long timeouts."""
        client = _redis().Redis.from_url(self._url, **self._client_kwargs(admin=True))
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
        redis = _redis()
        conn = isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError))
        return self.gate.failed(exc, connection=conn)

    def _call(self, fn: Callable[..., Any], *args: Any, admin: bool = False) -> Any:
        self.gate.check()
        client = self._admin_client() if admin else self._sync_client()
        try:
            out = fn(client, *args)
        except CacheError:
            raise
        except Exception as exc:
            raise self._fail(exc) from exc
        self.gate.ok()
        return out

    async def _acall(self, fn: Callable[..., Any], *args: Any, admin: bool = False) -> Any:
        self.gate.check()
        client = self._async_client(admin)
        try:
            out = await fn(client, *args)
        except CacheError:
            raise
        except Exception as exc:
            raise self._fail(exc) from exc
        self.gate.ok()
        return out

    def _seen(self, ns: str, raw: Any) -> int:
        gen = int(raw) if raw is not None else 0
        if self._known.get(ns) != gen:
            self._known[ns] = gen
        return gen

    # ================================================================== background: pub/sub + housekeeping
    def _start_thread(self) -> None:
        if self._thread is not None or self._closed:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._background, name="infra-cache-redis", daemon=True)
            self._thread.start()

    def _background(self) -> None:
        redis = _redis()
        delay = 0.05
        next_maint = time.monotonic() + self._interval
        pubsub: Any = None
        while not self._stop.is_set():
            try:
                if self._listen_wanted and pubsub is None:
                    pubsub = self._admin_client().pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(self._channel)
                    self._listen_epoch += 1
                    self._listening = True
                    delay = 0.05
                if pubsub is not None:
                    msg = pubsub.get_message(timeout=0.5)
                    if msg is not None and msg.get("type") == "message":
                        self._on_message(msg["data"])
                else:
                    self._stop.wait(0.5)
                if time.monotonic() >= next_maint:
                    next_maint = time.monotonic() + self._interval
                    if self._max_bytes or self._ns_caps:
                        with contextlib.suppress(CacheError):
                            self.maintain()
            except (redis.RedisError, OSError, CacheError, ValueError) as exc:
                log.debug("redis cache listener: %s", exc)
                self._listening = False
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
                    pubsub = None
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
        if pubsub is not None:
            with contextlib.suppress(Exception):
                pubsub.close()

    def _on_message(self, data: bytes) -> None:
        gen_s, _, ns = data.decode("utf-8", "replace").partition(":")
        if gen_s.startswith("c"):  # a change count (delete, clear, replacing set), not a generation
            _call_each(self._change_callbacks, ns, gen_s[1:])
            return
        try:
            gen = int(gen_s)
        except ValueError:
            return
        if gen > self._known.get(ns, -1):
            self._known[ns] = gen
        for cb in list(self._callbacks):
            try:
                cb(ns, gen)
            except Exception:
                log.exception("on_invalidate callback failed")

    # ================================================================== reads
    def get(self, namespace: str, key: str) -> StoredEntry | None:
        # the hit path, inlined: every call layer here costs ~0.3 µs of a ~40 µs round trip
        keys = self._ns_keys.get(namespace) or self._keys(namespace)
        gate = self.gate
        if gate._down_until:
            gate.check()
        client = self._client
        if client is None or self._fork != FORKS[0]:
            client = self._sync_client()
        try:
            # execute_command directly: Redis.mget's argument handling costs ~2 µs, 5% of a hit
            raw_gen, value = client.execute_command("MGET", keys[0], keys[1] + key)
        except Exception as exc:
            raise self._fail(exc) from exc
        if gate._delay:
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
        px = _px(entry, now)
        return [pack(entry, gen, now), "" if px is None else px, namespace, self._channel]

    def set(self, namespace: str, key: str, entry: StoredEntry) -> None:
        def op(c: Any) -> None:
            now = time.time()
            gen = self._generation_for_write(c, namespace)
            keys = [self._keys(namespace)[1] + key, self._changes_key]
            _eval(c, _SET_LUA, keys, self._set_args(namespace, entry, gen, now))

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
            await _aeval(c, _SET_LUA, keys, self._set_args(namespace, entry, gen, now))

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
                    p.eval(_SET_LUA, 2, ep + k, self._changes_key, *self._set_args(namespace, e, gen, now))
                await p.execute()

        await self._acall(op, admin=sum(len(e.payload) for e in items.values()) > BIG_WRITE)

    def delete(self, namespace: str, key: str) -> bool:
        keys = [self._keys(namespace)[1] + key, self._changes_key]
        args = [namespace, self._channel]
        return bool(self._call(lambda c: _eval(c, _DELETE_LUA, keys, args)))

    async def adelete(self, namespace: str, key: str) -> bool:
        keys = [self._keys(namespace)[1] + key, self._changes_key]
        args = [namespace, self._channel]
        return bool(await self._acall(lambda c: _aeval(c, _DELETE_LUA, keys, args)))

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
                    _INVALIDATE_LUA, 2, self._keys(namespace)[0], self._gens_key, namespace, self._channel
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

    def on_invalidate(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(namespace, generation)`` (on the backend's listener thread) for every invalidation
        any host makes, this one included."""
        self._callbacks.append(callback)
        with contextlib.suppress(CacheError):
            self._sync_client()

    def on_change(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(namespace, change count)`` (on the listener thread) for every delete, clear and
        replacing set any host makes, this one included."""
        self._change_callbacks.append(callback)

    def push_state(self) -> int | None:
        if self._fork != FORKS[0]:
            # a forked child whose Cache answers from L1 might never call us otherwise: start its listener
            # now (Cache asks every 0.1 s)
            if self._callbacks and not self._closed:
                with contextlib.suppress(CacheError):
                    self._sync_client()
            return None
        return self._listen_epoch if self._listening else None

    # ================================================================== leases
    def acquire_lease(self, namespace: str, key: str, owner: str, timeout: float) -> bool:
        lk = self._keys(namespace)[2] + key
        ms = max(1, int(timeout * 1000))
        got = self._call(lambda c: self._acquire(keys=[lk], args=[owner, ms], client=c))
        if got == 1:
            return True
        holder = _dead_holder(got)
        if holder is None:
            return False
        return bool(self._call(lambda c: c.eval(_TAKEOVER_LUA, 1, lk, holder, owner, ms)))

    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        lk = self._keys(namespace)[2] + key
        self._call(lambda c: self._release(keys=[lk], args=[owner], client=c))

    async def aacquire_lease(self, namespace: str, key: str, owner: str, timeout: float) -> bool:
        lk = self._keys(namespace)[2] + key
        ms = max(1, int(timeout * 1000))
        got = await self._acall(lambda c: c.eval(_ACQUIRE_LUA, 1, lk, owner, ms))
        if got == 1:
            return True
        holder = _dead_holder(got)
        if holder is None:
            return False
        return bool(await self._acall(lambda c: c.eval(_TAKEOVER_LUA, 1, lk, holder, owner, ms)))

    async def arelease_lease(self, namespace: str, key: str, owner: str) -> None:
        lk = self._keys(namespace)[2] + key
        await self._acall(lambda c: c.eval(_RELEASE_LUA, 1, lk, owner))

    # ================================================================== housekeeping (SCAN based, bounded)
    def _scan_entries(self, c: Any, ns: str | None) -> Iterable[list[bytes]]:
        pattern = (
            f"{self.prefix}:e:{_glob_escape(_quote_ns(ns))}:*" if ns is not None else f"{self.prefix}:e:*"
        )
        batch: list[bytes] = []
        for k in c.scan_iter(match=pattern, count=_SCAN_BATCH):
            batch.append(k)
            if len(batch) >= _SCAN_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    def _split(self, raw_key: bytes) -> tuple[str, str]:
        rest = raw_key.decode("utf-8", "replace")[len(self.prefix) + 3 :]
        q, _, key = rest.partition(":")
        return _unquote_ns(q), key

    def purge(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` entries of an older generation (Redis expires the timed-out ones itself)."""

        def op(c: Any) -> int:
            gens = {k.decode(): int(v) for k, v in c.hgetall(self._gens_key).items()}
            removed = 0
            for batch in self._scan_entries(c, None):
                with c.pipeline(transaction=False) as p:
                    for k in batch:
                        p.getrange(k, 0, 9)
                    heads = p.execute()
                stale = []
                for k, h in zip(batch, heads, strict=False):
                    if len(h) >= 10 and struct.unpack_from("!q", h, 2)[0] != gens.get(self._split(k)[0], 0):
                        stale.append(k)
                stale = stale[: limit - removed]
                if stale:
                    removed += int(c.unlink(*stale))
                if removed >= limit:
                    break
            return removed

        return int(self._call(op, admin=True))

    def clear(self, namespace: str | None = None) -> int:
        def op(c: Any) -> int:
            n = 0
            touched = {namespace} if namespace is not None else set(self._known)
            for batch in self._scan_entries(c, namespace):
                if namespace is None:
                    touched.update(self._split(k)[0] for k in batch)
                n += int(c.unlink(*batch))
            if namespace is None:
                touched.update(k.decode() for k in c.hkeys(self._gens_key))
                touched.update(k.decode() for k in c.hkeys(self._changes_key))
            names = sorted(touched)
            with c.pipeline(transaction=False) as p:  # count the change: every L1 drops the namespace
                for ns in names:
                    p.hincrby(self._changes_key, ns, 1)
                counts = p.execute()
            with c.pipeline(transaction=False) as p:
                for ns, count in zip(names, counts, strict=True):
                    p.publish(self._channel, f"c{count}:{ns}")
                p.execute()
            return n

        return int(self._call(op, admin=True))

    def _usage(self, c: Any, ns: str | None = None) -> list[tuple[bytes, int, int]]:
        """(raw key, payload bytes, idle seconds) of every entry (of one namespace)."""
        out: list[tuple[bytes, int, int]] = []
        for batch in self._scan_entries(c, ns):
            with c.pipeline(transaction=False) as p:
                for k in batch:
                    p.strlen(k)
                    p.object("idletime", k)
                res = p.execute(raise_on_error=False)
            for i, k in enumerate(batch):
                size, idle = res[2 * i], res[2 * i + 1]
                if isinstance(size, int) and size > 0:
                    out.append((k, max(0, size - HEADER.size), idle if isinstance(idle, int) else 0))
        return out

    # -- fleet-wide counters (infra.cache.fleet_stats): hash {prefix}:fleet, <= 2 MULTIs a second;
    # housekeeping, so on the admin client (long timeouts, not the cached call's budget)
    def fleet_add(self, deltas: Mapping[str, _fleet.FleetCounts]) -> None:
        self._call(_fleet.redis_add, f"{self.prefix}:fleet", deltas, admin=True)

    def fleet_read(self) -> dict[str, _fleet.FleetCounts]:
        return dict(self._call(_fleet.redis_read, f"{self.prefix}:fleet", admin=True))

    def fleet_reset(self, namespace: str | None = None) -> None:
        self._call(_fleet.redis_reset, f"{self.prefix}:fleet", namespace, admin=True)

    def stats(self) -> BackendStats:
        def op(c: Any) -> BackendStats:
            by_ns: dict[str, tuple[int, int]] = {}
            for k, size, _idle in self._usage(c):
                ns = self._split(k)[0]
                n, b = by_ns.get(ns, (0, 0))
                by_ns[ns] = (n + 1, b + size)
            return BackendStats(
                entries=sum(v[0] for v in by_ns.values()),
                bytes=sum(v[1] for v in by_ns.values()),
                by_namespace=by_ns,
                extra={
                    "backend": "redis",
                    "server": self.origin,
                    "prefix": self.prefix,
                    "listening": self._listening,
                },
            )

        return self._call(op, admin=True)  # type: ignore[no-any-return]

    def inspect(self, namespace: str | None = None, limit: int = 20) -> list[EntryInfo]:
        def op(c: Any) -> list[EntryInfo]:
            rows = sorted(self._usage(c, namespace), key=lambda r: r[2])[:limit]
            now = time.time()
            with c.pipeline(transaction=False) as p:
                for k, _s, _i in rows:
                    p.getrange(k, 0, HEADER.size - 1)
                heads = p.execute()
            out = []
            for (k, size, idle), h in zip(rows, heads, strict=False):
                if len(h) < HEADER.size:
                    continue
                _v, codec, _g, exp, cost, created = HEADER.unpack(h)
                ns, key = self._split(k)
                out.append(
                    EntryInfo(ns, key, codec, size, created, now - idle, None if exp != exp else exp, cost)
                )
            return out

        return self._call(op, admin=True)  # type: ignore[no-any-return]

    def maintain(self) -> int:
        """Enforce the byte caps now (normally periodic, on the background thread); returns #evicted."""

        def op(c: Any) -> int:
            evicted = 0
            rows = self._usage(c)
            by_ns: dict[str, list[tuple[bytes, int, int]]] = {}
            for r in rows:
                by_ns.setdefault(self._split(r[0])[0], []).append(r)
            doomed: list[bytes] = []
            for ns, cap in self._ns_caps.items():
                items = sorted(by_ns.get(ns, []), key=lambda r: -r[2])  # most idle first
                used = sum(r[1] for r in items)
                while items and used > cap:
                    k, size, _ = items.pop(0)
                    doomed.append(k)
                    used -= size
                by_ns[ns] = items
            if self._max_bytes:
                rest = sorted((r for v in by_ns.values() for r in v), key=lambda r: -r[2])
                total = sum(r[1] for r in rest)
                for k, size, _ in rest:
                    if total <= self._max_bytes:
                        break
                    doomed.append(k)
                    total -= size
            for i in range(0, len(doomed), _SCAN_BATCH):
                evicted += int(c.unlink(*doomed[i : i + _SCAN_BATCH]))
            return evicted

        return int(self._call(op, admin=True))

    # ================================================================== closing
    async def arelease_loop(self) -> None:
        """Close this loop's clients only; the backend stays usable (sync, and from other loops)."""
        loop = asyncio.get_running_loop()
        for admin in (False, True):
            c = self._aclients.pop((loop, admin), None)
            if c is not None:
                await _aclose_client(c)

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
                asyncio.run_coroutine_threadsafe(_aclose_client(ac), loop)
        self._aclients.clear()


_SHA: dict[str, str] = {}


def _call_each(callbacks: list[Callable[[str, int], None]], ns: str, count_s: str) -> None:
    """Run the change callbacks for a pushed ``c<count>:<namespace>`` (a malformed count is ignored)."""
    try:
        count = int(count_s)
    except ValueError:
        return
    for cb in list(callbacks):
        try:
            cb(ns, count)
        except Exception:
            log.exception("on_change callback failed")


def _sha(script: str) -> str:
    sha = _SHA.get(script)
    if sha is None:
        import hashlib

        sha = _SHA[script] = hashlib.sha1(script.encode()).hexdigest()  # Redis names scripts by SHA-1
    return sha


def _eval(client: Any, script: str, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA, loading the script on the first NOSCRIPT. Called directly: redis-py's ``Script`` object
    costs ~9 µs of Python per call, a fifth of a set's round trip."""
    from redis.exceptions import NoScriptError

    sha = _sha(script)
    try:
        return client.evalsha(sha, len(keys), *keys, *args)
    except NoScriptError:
        client.script_load(script)
        return client.evalsha(sha, len(keys), *keys, *args)


async def _aeval(client: Any, script: str, keys: list[str], args: list[Any]) -> Any:
    """``_eval`` for a ``redis.asyncio`` client."""
    from redis.exceptions import NoScriptError

    sha = _sha(script)
    try:
        return await client.evalsha(sha, len(keys), *keys, *args)
    except NoScriptError:
        await client.script_load(script)
        return await client.evalsha(sha, len(keys), *keys, *args)


async def _aclose_client(client: Any) -> None:
    """Close a ``redis.asyncio`` client: ``aclose()`` from redis-py 5.0.1 on, ``close()`` in 5.0.0 (the
    oldest the extra allows; 5.0.1 deprecated it)."""
    close = getattr(client, "aclose", None)
    await (close() if close is not None else client.close())


#: per-process state left behind at fork (see ``RedisBackend._sync_client``)
_FORK_GRAVEYARD: list[Any] = []


def from_settings(settings: CacheConfig) -> RedisBackend:
    """The factory ``infra.cache.core.make_backend`` calls for ``"backend": "redis"``."""
    return RedisBackend.from_settings(settings)
