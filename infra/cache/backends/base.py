"""The storage interface behind the cache's L1: ``CacheBackend`` (SQLite here; PostgreSQL and Redis plug in).

What a backend stores is already encoded: ``Cache`` turns values into ``StoredEntry`` (payload bytes plus a
codec id, see ``infra.cache.codecs``) before calling the backend, and decodes what comes back. A backend
never sees Python objects, never pickles, and never decides freshness policy beyond honouring
``expires_at``; TTL choice, jitter, codecs, signing, L1, stats and single-flight all live in ``Cache``.

Contract every backend keeps (the SQLite backend is the reference implementation):

* **Keys** are ``(namespace, key)``: ``namespace`` a short name, ``key`` an opaque ``str`` (usually the 64-hex
  digest from ``make_key``). The same key in two namespaces is two entries.
* **Reads never write.** ``get`` / ``get_many`` return only live entries (not expired, current generation);
  a backend that keeps LRU access times records hits in memory and writes them later in batches (the SQLite
  backend's maintenance thread does), never on the read path.
* **Invalidation is O(1)**: ``invalidate(namespace)`` bumps the namespace's generation; entries of older
  generations are misses from then on and are removed later by ``purge``. Every process (every host, for
  shared backends) sees the new generation; ``generations()`` lets ``Cache`` notice invalidations made
  elsewhere and drop its L1 entries (it polls at most every ``GENERATION_POLL_INTERVAL`` seconds).
  A backend with push notification calls the callbacks given to ``on_invalidate`` (from its listener
  thread or loop) for every invalidation any process makes, and reports its listener through
  ``push_state()``; while that listener is connected ``Cache`` relies on the push and polls only every
  ``PUSH_POLL_INTERVAL`` seconds, as a safety net.
* **Caps**: the backend enforces ``max_bytes`` (total) and the per-namespace caps given at construction,
  evicting least-recently-used entries first; ``purge(limit)`` removes up to ``limit`` expired or stale rows
  and returns how many it removed.
* **Leases** give cross-process single-flight: ``acquire_lease`` is an atomic test-and-set with a timeout, so
  a dead holder blocks nobody past ``timeout`` seconds; ``release_lease`` only releases the owner's lease.
  An owner named ``host:pid:...`` (as ``Cache`` names itself) that is a process of this host no longer
  alive is taken over at once (``holder_is_dead`` below).
* **Time**: an operation on a cached call's path waits at most the store budget (``cache.store_budget``)
  on a hung, slow or locked store, then raises ``CacheError``; housekeeping may take longer.
* **Errors**: a backend raises ``infra.errors.CacheError`` (``CacheCorruptError`` when it had to
  quarantine the store), chained with ``raise ... from exc`` from the driver error. ``Cache`` catches
  these, counts them and fails open; a backend never needs to swallow errors itself.
* **Shared stores** (``shared = True``: reachable by other clients) get only signed payloads from ``Cache``;
  the backend has nothing to do for that beyond storing the codec id faithfully.
* **Sync and async**: the sync methods are abstract. The async twins default to calling the sync method
  inline (right for a local store whose operations take microseconds: no thread hop); a network backend
  overrides the async twins with native I/O and may implement the sync ones on a private loop or thread.
* ``close()`` is idempotent; after ``os.fork()`` a backend must not reuse the parent's connections.
"""

from __future__ import annotations

import abc
import dataclasses
import errno
import functools
import importlib
import logging
import os
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

from infra.errors import CacheError

__all__ = [
    "BIG_WRITE",
    "FORKS",
    "GENERATION_POLL_INTERVAL",
    "PUSH_POLL_INTERVAL",
    "BackendStats",
    "CacheBackend",
    "EntryInfo",
    "StoredEntry",
    "backend_kwargs",
    "check_identifier",
    "deliver_push",
    "entry_from_row",
    "holder_is_dead",
    "import_driver",
    "origin_of",
    "usage_stats",
]

log = logging.getLogger("infra.cache")

#: How often (seconds) ``Cache`` asks a backend for namespace generations changed by other processes.
GENERATION_POLL_INTERVAL = 0.1
#: How often ``Cache`` still polls generations while the backend's push listener is connected (a safety net
#: for a notification lost in flight; a listener that reconnects makes ``Cache`` poll at once).
PUSH_POLL_INTERVAL = 1.0


class StoredEntry(NamedTuple):
    """One encoded entry as a backend stores it (a NamedTuple: built on every L2 hit, so it must be cheap).

    ``payload``: codec output (possibly compressed / signed); ``codec``: codec id (``infra.cache.codecs``);
    ``expires_at``: Unix time or None for never; ``cost``: seconds the computation took (for the
    "compute time saved" statistic).
    """

    payload: bytes
    codec: int
    expires_at: float | None = None
    cost: float = 0.0

    @property
    def size(self) -> int:
        return len(self.payload)


#: A ``StoredEntry`` from a ``(payload, codec, expires_at, cost)`` row as a store read it: one C call (no
#: unpacking into arguments, no Python frame), on an L2 hit's path. The row must have the four fields.
entry_from_row: Callable[[Iterable[Any]], StoredEntry] = functools.partial(tuple.__new__, StoredEntry)


@dataclasses.dataclass(frozen=True, slots=True)
class EntryInfo:
    """One row as ``inspect`` shows it (no payload, only its size)."""

    namespace: str
    key: str
    codec: int
    size: int
    created_at: float | None
    accessed_at: float | None
    expires_at: float | None
    cost: float


@dataclasses.dataclass(frozen=True, slots=True)
class BackendStats:
    """Entry and byte counts of the store, total and per namespace (``{ns: (entries, bytes)}``)."""

    entries: int
    bytes: int
    by_namespace: Mapping[str, tuple[int, int]]
    extra: Mapping[str, object] = dataclasses.field(default_factory=dict)


def usage_stats(by_namespace: Mapping[str, tuple[int, int]], extra: Mapping[str, Any]) -> BackendStats:
    """``BackendStats`` whose totals are the sums of ``{ns: (entries, bytes)}``."""
    return BackendStats(
        entries=sum(n for n, _ in by_namespace.values()),
        bytes=sum(b for _, b in by_namespace.values()),
        by_namespace=by_namespace,
        extra=extra,
    )


class CacheBackend(abc.ABC):
    """Abstract L2 store. See the module docstring for the contract."""

    #: short name shown in stats and the CLI ("sqlite", "postgres", "redis", "memory")
    name: ClassVar[str] = "abstract"
    #: True when other clients can write the store: ``Cache`` then signs every payload
    shared: ClassVar[bool] = False

    # ------------------------------------------------------------------ reads
    @abc.abstractmethod
    def get(self, namespace: str, key: str) -> StoredEntry | None:
        """The live entry or None. Never writes."""

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, StoredEntry]:
        """Live entries among ``keys`` (only hits). Override with one round trip where the store allows."""
        out: dict[str, StoredEntry] = {}
        for k in keys:
            e = self.get(namespace, k)
            if e is not None:
                out[k] = e
        return out

    # ------------------------------------------------------------------ writes
    @abc.abstractmethod
    def set(self, namespace: str, key: str, entry: StoredEntry) -> None:
        """Store (replace) one entry in the namespace's current generation."""

    def set_many(self, namespace: str, items: Mapping[str, StoredEntry]) -> None:
        """Store many entries; override to do it in one transaction / round trip."""
        for k, e in items.items():
            self.set(namespace, k, e)

    @abc.abstractmethod
    def delete(self, namespace: str, key: str) -> bool:
        """Remove one entry; True if one was there."""

    @abc.abstractmethod
    def invalidate(self, namespace: str) -> int:
        """Bump the namespace's generation (O(1)); returns the new generation."""

    @abc.abstractmethod
    def generations(self) -> dict[str, int]:
        """Current generation of every namespace the store knows (cheap: polled by ``Cache``)."""

    def versions(self) -> dict[str, tuple[int, int]]:
        """``{namespace: (generation, changes)}`` in one read (polled by ``Cache`` instead of
        ``generations()``). ``changes`` counts the namespace's deletes, clears and sets that replaced a
        live entry, made by any process: ``Cache`` drops its L1 entries of a namespace whose count moved,
        so another process's ``delete`` / ``set`` / ``clear`` reaches every L1 (issue 14). A backend that
        keeps no count reports 0 (then only ``invalidate`` reaches other processes' L1)."""
        return {n: (g, 0) for n, g in self.generations().items()}

    def on_invalidate(self, callback: Callable[[str, int], None]) -> None:  # noqa: B027 - optional hook
        """Register a push callback ``(namespace, generation)`` for invalidations seen from elsewhere.

        The callback runs on the backend's listener thread or loop: it must be quick and thread-safe, and
        must not call the backend's sync API (that could wait on the very loop that runs it)."""

    def on_change(self, callback: Callable[[str, int], None]) -> None:  # noqa: B027 - optional hook
        """Register a push callback ``(namespace, change count)`` for deletes, clears and replacing sets made
        anywhere (the count ``versions()`` reports); same rules as ``on_invalidate``. Without it the
        counts still arrive by polling."""

    def push_state(self) -> int | None:
        """The push listener's epoch while it is connected (bumped on every (re)subscribe), else None.

        ``Cache`` polls ``generations()`` often while this is None, seldom while it holds still, and at
        once when it changes: invalidations made while the listener was away were never pushed."""
        return None

    @abc.abstractmethod
    def purge(self, limit: int = 1000) -> int:
        """Remove up to ``limit`` expired or stale-generation entries; return how many were removed."""

    @abc.abstractmethod
    def clear(self, namespace: str | None = None) -> int:
        """Delete every entry (of one namespace, or all); return how many were removed."""

    def vacuum(self) -> None:  # noqa: B027 - optional hook
        """Give free space back to the system where the store supports it."""

    # ------------------------------------------------------------------ single-flight across processes
    @abc.abstractmethod
    def acquire_lease(self, namespace: str, key: str, owner: str, timeout: float) -> bool:
        """Atomically take the computation lease for a key unless another live owner holds it."""

    @abc.abstractmethod
    def release_lease(self, namespace: str, key: str, owner: str) -> None:
        """Release the lease if ``owner`` holds it."""

    # ------------------------------------------------------------------ introspection
    @abc.abstractmethod
    def stats(self) -> BackendStats:
        """Entry and byte counts."""

    def inspect(self, namespace: str | None = None, limit: int = 20) -> list[EntryInfo]:
        """Most recently used entries first, without payloads. Default: none listed."""
        return []

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; idempotent."""

    # ------------------------------------------------------------------ async twins (inline by default)
    async def aget(self, namespace: str, key: str) -> StoredEntry | None:
        return self.get(namespace, key)

    async def aget_many(self, namespace: str, keys: Iterable[str]) -> dict[str, StoredEntry]:
        return self.get_many(namespace, keys)

    async def aset(self, namespace: str, key: str, entry: StoredEntry) -> None:
        self.set(namespace, key, entry)

    async def aset_many(self, namespace: str, items: Mapping[str, StoredEntry]) -> None:
        self.set_many(namespace, items)

    async def adelete(self, namespace: str, key: str) -> bool:
        return self.delete(namespace, key)

    async def ainvalidate(self, namespace: str) -> int:
        return self.invalidate(namespace)

    async def agenerations(self) -> dict[str, int]:
        return self.generations()

    async def aversions(self) -> dict[str, tuple[int, int]]:
        if type(self).versions is CacheBackend.versions:  # no counts: the (maybe awaited) generations
            return {n: (g, 0) for n, g in (await self.agenerations()).items()}
        return self.versions()

    async def aacquire_lease(self, namespace: str, key: str, owner: str, timeout: float) -> bool:
        return self.acquire_lease(namespace, key, owner, timeout)

    async def arelease_lease(self, namespace: str, key: str, owner: str) -> None:
        self.release_lease(namespace, key, owner)

    async def apurge(self, limit: int = 1000) -> int:
        return self.purge(limit)

    async def astats(self) -> BackendStats:
        return self.stats()

    async def arelease_loop(self) -> None:  # noqa: B027 - optional hook
        """Close what belongs to the running event loop (its connections, its client); the backend stays
        usable from other loops and from sync code. ``Cache.aclose`` calls this."""

    async def aclose(self) -> None:
        self.close()


# ---------------------------------------------------------------------- helpers every backend shares
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")

#: ``FORKS[0]`` counts the forks this process came out of: a backend notes it when it opens connections and
#: compares it on every call to spot that it now runs in a child (whose sockets are the parent's). One list
#: read, where ``os.getpid()`` is a system call (~0.1 µs, twice per hit).
FORKS = [0]


def _count_fork() -> None:
    FORKS[0] += 1


os.register_at_fork(after_in_child=_count_fork)

#: a write of more payload bytes than this may take the backend's ``op_timeout`` instead of the store budget:
#: 1 MiB in 50 ms is 20 MB/s, which a LAN link to a healthy server can fall short of, and a value that large
#: usually stands for far more work than the wait
BIG_WRITE = 1024**2


def backend_kwargs(settings: Any, options: Any, **kw: Any) -> dict[str, Any]:
    """Constructor arguments of a shared backend from ``CacheConfig``: its ``cache.<backend>`` options
    (field names are the constructor's), the byte caps, then ``kw`` (the dsn / url and overrides)."""
    return {
        **dataclasses.asdict(options),
        "max_bytes": settings.max_bytes or None,
        "budget": settings.store_budget,
        "namespace_max_bytes": {
            n: ns.max_bytes for n, ns in settings.namespaces.items() if ns.max_bytes is not None
        },
        **kw,
    }


def check_identifier(value: str, what: str) -> str:
    """A table / key prefix: lower-case letters, digits and ``_``, at most 40 characters (also quoted)."""
    if not isinstance(value, str) or not _IDENT.match(value):
        raise ValueError(f"{what} must match [a-z_][a-z0-9_]{{0,39}}, got {value!r}")
    return value


def origin_of(url: str | None) -> str:
    """``scheme://host:port`` of a DSN / URL: never the user, password, database or query string."""
    if not url:
        return "unset"
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "localhost"
        port = parts.port
    except ValueError:
        return "invalid-url"
    return f"{parts.scheme}://{host}:{port}" if port else f"{parts.scheme}://{host}"


_HOST = socket.gethostname()  # (a host renamed while running keeps taking over its own dead holders)


def holder_is_dead(owner: str) -> bool:
    """True when ``owner`` (``host:pid:...``, as ``Cache`` names itself) is a process of this host that no
    longer exists. Unknown forms, other hosts and live pids are not dead (a reused pid only delays a
    takeover until the lease times out: never two holders at once)."""
    host, sep, _ = owner.rpartition(":")
    host, sep2, pid_s = host.rpartition(":")
    if not (sep and sep2) or host != _HOST:
        return False
    try:
        pid = int(pid_s)
    except ValueError:
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError as exc:  # EPERM: it exists (another user's)
        return exc.errno == errno.ESRCH
    return False


def deliver_push(
    message: str,
    on_invalidate: Sequence[Callable[[str, int], None]],
    on_change: Sequence[Callable[[str, int], None]],
    heard: Callable[[str, int], None],
) -> None:
    """Act on one push message of a shared backend's channel (I/O-free; PostgreSQL NOTIFY and Redis
    PUBLISH carry the same text): ``"<generation>:<namespace>"`` (an invalidation: ``heard`` first, then the
    ``on_invalidate`` callbacks) or ``"c<count>:<namespace>"`` (a delete, clear or replacing set: the
    ``on_change`` callbacks). A malformed number is ignored; a failing callback is logged, not raised."""
    head, _, ns = message.partition(":")
    change = head.startswith("c")
    try:
        n = int(head[1:] if change else head)
    except ValueError:
        return
    if not change:
        heard(ns, n)
    for cb in list(on_change if change else on_invalidate):
        try:
            cb(ns, n)
        except Exception:
            log.exception("on_change callback failed" if change else "on_invalidate callback failed")


def import_driver(module: str, extra: str, package: str | None = None) -> Any:
    """The driver ``module`` of the ``extra`` backend, or ``CacheError`` naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise CacheError(
            f"the {extra} cache backend needs {package or module}: pip install 'perf-infra[{extra}]'"
        ) from exc
