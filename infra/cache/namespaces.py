"""A namespace at run time: its codec, TTL, generation, change count and counters.

``Cache`` keeps one ``Namespace`` per name it has seen (``Cache._namespace`` creates them from the
``cache.namespaces`` settings). What depends only on the namespace lives here: when an entry written now
expires, how a value is encoded for the store (an encode failure counted, not raised), and what the L1
keeps for a value (see ``infra.cache.values``).
"""

from __future__ import annotations

import functools
import logging
import random
from typing import Any

from infra.cache.backends.base import CacheBackend
from infra.cache.codecs import Codec, EncodeError, Signer
from infra.cache.l1 import L1Entry
from infra.cache.stats import NamespaceStats, NullStats
from infra.cache.values import freeze_encoded
from infra.config.sections.cache import CacheConfig

__all__ = ["Namespace", "build_namespace"]

log = logging.getLogger("infra.cache")

#: TTL jitter draws from its own generator: the layer must not advance the caller's ``random`` sequence.
_JITTER = random.Random()


class Namespace:
    """Runtime state of one namespace: its codec, TTL, generation and stats."""

    __slots__ = ("changes", "codec", "count_hit", "gen", "jitter", "name", "plain_text", "stats", "ttl")

    def __init__(
        self,
        name: str,
        codec: Codec,
        ttl: float,
        jitter: float,
        gen: int,
        export: bool,
        count: bool,
        changes: int = 0,
    ) -> None:
        self.name, self.codec, self.ttl, self.jitter = name, codec, ttl, jitter
        self.gen = gen
        self.changes = changes  # the store's count of deletes / clears / overwrites, as last polled
        self.stats = NamespaceStats(name, export=export) if count else NullStats(name, export=False)
        # a hit, counted: the stats' pending list's bound append (the list is never replaced), or None
        self.count_hit = self.stats.hit_costs.append if count else None
        self.plain_text = not codec.signs  # STR payloads are the raw UTF-8 text: decode without the codec

    def expires_at(self, ttl: float | None, now: float) -> float | None:
        """When an entry written at ``now`` with ``ttl`` (None: the namespace's) expires; None: never."""
        t = self.ttl if ttl is None else ttl
        if t <= 0 or t == float("inf"):
            return None  # a TTL of 0 (or inf) means "never expires"
        if self.jitter:
            t *= 1.0 + _JITTER.random() * self.jitter
        return now + t

    def encode(self, value: Any) -> tuple[bytes, int] | None:
        """``(payload, codec)`` for the store, or None (counted: uncacheable, or an encoder failure)."""
        try:
            return self.codec.encode(value)
        except EncodeError as exc:
            self.stats.mark_uncacheable()
            self.stats.error("encode", exc)
            return None
        except Exception as exc:
            self.stats.error("encode", exc)
            return None

    def l1_entry(
        self, value: Any, payload: bytes, codec: int, expires: float | None, gen: int, cost: float
    ) -> L1Entry:
        """What the L1 keeps for ``value`` (stored as ``payload``): see ``infra.cache.values``."""
        if type(value) is str:
            return L1Entry(value, expires, gen, cost, len(payload), None)
        stored, thaw = freeze_encoded(
            value, codec & 0x3F, payload, functools.partial(self.codec.decode, codec=codec)
        )
        return L1Entry(stored, expires, gen, cost, len(payload), thaw)


def build_namespace(
    name: str,
    settings: CacheConfig,
    backend: CacheBackend | None,
    *,
    signer: Signer | None,
    shared: bool,
    export: bool,
    count: bool,
) -> Namespace:
    """The namespace ``name`` as ``settings`` describe it, at ``backend``'s generation and change count (0
    without one, or if the store fails: counted). ``shared``: the store is shared, so values are signed."""
    versions, failure = (0, 0), None
    if backend is not None:
        try:
            versions = backend.versions().get(name, (0, 0))
        except Exception as exc:
            failure = exc
    nss = settings.namespace(name)
    codec = Codec(
        signer=signer,
        pickle=nss.codec == "pickle",
        sign=bool(shared and signer is not None),
        compress_threshold=settings.compress_threshold,
        max_decoded=nss.max_bytes or settings.max_bytes or None,  # the store's own limit bounds inflation
        trusted_modules=settings.trusted_modules,
    )
    if nss.codec == "pickle" and signer is None:
        log.warning(
            "cache namespace %r opts into pickle but %s is unset: only safe-codec values are cached",
            name,
            settings.signing_key_env,
        )
    gen, changes = versions
    ns = Namespace(name, codec, settings.ttl_for(name), settings.ttl_jitter, gen, export, count, changes)
    if failure is not None:
        ns.stats.error("read", failure)
    return ns
