"""The I/O-free planning core shared by OptimizedOllama and AsyncOptimizedOllama.

The official client serializes each call's body; :meth:`ClientCore.plan` decides, from that body alone, what
is sent (options and keep_alive filled in where the call left them out), the cache key(s), the namespace and
the metric handles. The cache values' shapes, the digest tags, what may be stored, what is retried and how
long a coalesced caller waits are decided here too. The sync and async clients repeat only the I/O: calling
the official ``_request``, reading and writing the cache, sleeping, locking.
"""

from __future__ import annotations

import contextvars
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from infra.config.sections.ollama import OllamaConfig

from ._handles import Handles
from ._helpers import PRIMITIVE as _PRIMITIVE
from ._helpers import detacher, is_embedding_model, keep_alive_seconds, official_signature
from ._values import decode_full
from ._writer import WriteBehind
from .keys import NOT_KEYED, is_deterministic, request_digest
from .runner import RunnerPolicy, resolve_runner

__all__ = [
    "ENDPOINTS",
    "EXTRAS",
    "MEMO",
    "MODEL_CHANGING",
    "RELOAD_THRESHOLD_S",
    "Attempts",
    "ClientCore",
    "Flight",
    "Handles",
    "MemoEntry",
    "Plan",
    "Scope",
    "is_embedding_model",
    "keep_alive_seconds",
    "official_signature",
]

log = logging.getLogger("infra.ollama")

#: The paths the layer plans (tunes, keys, caches), by operation name.
ENDPOINTS = {
    "/api/generate": "generate",
    "/api/chat": "chat",
    "/api/embed": "embed",
    "/api/embeddings": "embeddings",
}
#: Calls after which a host's model digests are read again.
MODEL_CHANGING = frozenset({"/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete"})

#: The layer's per-call keywords (``profile``, ``cache``), carried from the public method to ``_request``.
EXTRAS: contextvars.ContextVar[tuple[str | None, bool | None] | None] = contextvars.ContextVar(
    "infra_ollama_extras", default=None
)

#: The key memo's slot for the call being planned: (memo key) set by a public method whose arguments can be
#: memoized, read by ``_request`` once the plan has a key (see ``ClientCore.memo``).
MEMO: contextvars.ContextVar[tuple[Any, ...] | None] = contextvars.ContextVar(
    "infra_ollama_memo", default=None
)
_MEMO_MAX = 4096

#: A load_duration above this, on a model this client already saw loaded, counts as an unexpected reload.
#: (A warm Ollama reports a few milliseconds of load_duration on every call.)
RELOAD_THRESHOLD_S = 0.25
_RELOAD_NS = int(RELOAD_THRESHOLD_S * 1e9)
_RETRY_STATUS = frozenset({429, 502, 503, 504})


class Plan:
    """What one planned call sends and how it meets the cache.

    ``key`` is the cache key of a generate/chat/embeddings call (None: not cached). For embed, ``items``
    pairs each distinct input text with its key and ``texts`` keeps the caller's order (repeats included).
    """

    __slots__ = ("body", "fetched", "h", "items", "key", "looked_up", "meta", "model", "ns", "op", "texts")

    def __init__(self, op: str, model: str, body: dict[str, Any], ns: str, h: Handles) -> None:
        self.op = op
        self.model = model
        self.body = body
        self.ns = ns
        self.h = h
        self.key: str | None = None
        self.items: list[tuple[str, str]] | None = None
        self.texts: list[str] = []
        self.looked_up = False  # the key memo already looked this key up (and missed)
        self.meta: dict[str, dict[str, Any]] = {}  # embed: the reply fields recorded with each text's entry
        self.fetched: list[str] = []  # embed: the texts this call sent to the server

    def embed_body(self, texts: list[str]) -> dict[str, Any]:
        """The body with ``input`` narrowed to the texts the cache did not have."""
        return {**self.body, "input": texts}


class Scope:
    """One public call's layer state on its way from the public method to ``_request`` (no I/O): as a
    context manager, the context variables that carry ``profile``, ``cache``, the memo key and whether the
    memo already looked the key up (a miss must not be looked up and counted twice)."""

    __slots__ = ("cache", "looked_up", "mk", "profile", "tokens")

    def __init__(self, mk: Any, looked_up: bool, profile: str | None, cache: bool | None) -> None:
        self.mk = mk
        self.looked_up = looked_up
        self.profile = profile
        self.cache = cache
        self.tokens: tuple[Any, Any] | None = None

    def __enter__(self) -> Scope:
        if self.profile is not None or self.cache is not None or self.mk is not None:
            memo = (self.mk, self.looked_up) if self.mk is not None else None
            self.tokens = (EXTRAS.set((self.profile, self.cache)), MEMO.set(memo))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tokens is not None:
            EXTRAS.reset(self.tokens[0])
            MEMO.reset(self.tokens[1])


class MemoEntry:
    """What a memoized call's plan decided: enough to serve a hit without building the body again."""

    __slots__ = ("cls", "h", "key", "model", "ns")

    def __init__(self, plan: Plan, key: str, cls: Any) -> None:
        self.key = key
        self.ns = plan.ns
        self.model = plan.model
        self.h = plan.h
        self.cls = cls


class Flight:
    """One non-streamed call in flight, shared by identical concurrent callers (single-flight).

    The leader stores the reply's cache value in ``value`` (None when it failed or wasn't storable) and
    then sets ``done``; followers rebuild their own response object from it, or call for themselves.
    """

    __slots__ = ("done", "value")

    def __init__(self, done: Any) -> None:
        self.done = done  # threading.Event or asyncio.Future
        self.value: dict[str, Any] | None = None


#: ``OllamaConfig().host``: the host of a section that names none.
DEFAULT_HOST: str = OllamaConfig().host


def resolve_host(configured: str, environ: Mapping[str, str]) -> str:
    """The Ollama server when the caller passed no ``host``: the section's host when it names one (set in
    code, or read from the file, where the loader has already let ``$OLLAMA_HOST`` override it), else
    ``$OLLAMA_HOST``, else the default. An explicit ``host`` argument beats all of these, as in
    ``ollama.Client``. A section whose host equals the default counts as naming none."""
    if configured != DEFAULT_HOST:
        return configured
    return environ.get("OLLAMA_HOST") or configured


class ClientCore:
    """State and decisions shared by the sync and async clients."""

    def __init__(self, settings: OllamaConfig, cache: Any = None) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.policy = RunnerPolicy(
            resolve_runner(settings.runner), settings.profiles, strict=settings.strict_runner
        )
        self._cache = cache
        self._cache_failed = False
        self._handles: dict[tuple[str, str], Handles] = {}
        self._warm: set[str] = set()
        self._logged: set[str] = set()
        self._lock = threading.Lock()
        self.writer: WriteBehind | None = None
        if settings.write_behind:
            self.writer = WriteBehind(lambda exc: self.failure("cache", exc))
        #: key memo (issue 18): (op, profile, keyword names, argument values) of calls whose arguments are all
        #: str/int/float/bool/None (chat: messages as dicts of those) -> the plan's key. Sound because the
        #: official body is a pure function of such arguments (no file paths or images, which are read at
        #: call time, no callables) and the settings are frozen.
        self.memo: dict[tuple[Any, ...], MemoEntry] = {}
        #: the response last built from each cached value, reused (as a copy) while the cache hands back the
        #: same value object: no re-validation of a reply the layer already built
        self._built: dict[str, tuple[Any, Any]] = {}
        cs = settings.cache
        self.enabled_for = {
            "generate": cs.generate,
            "chat": cs.chat,
            "embed": cs.embed,
            "embeddings": cs.embed,
        }

    # -- configuration ---------------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The server when the caller named none: see :func:`resolve_host`."""
        return resolve_host(self.settings.host, os.environ)

    def httpx_timeout(self) -> Any:
        import httpx

        t = self.settings.timeout
        return httpx.Timeout(t, connect=min(t, self.settings.connect_timeout))

    def handles(self, model: str, op: str) -> Handles:
        h = self._handles.get((model, op))
        if h is None:
            h = self._handles[(model, op)] = Handles(model, op, self.namespace(op))
        return h

    def namespace(self, op: str) -> str:
        cs = self.settings.cache
        return cs.embed_namespace if op in ("embed", "embeddings") else cs.namespace

    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Cache hits and misses per operation seen by this client (embed counts items, not calls)."""
        out: dict[str, dict[str, int]] = {}
        for (_, op), h in list(self._handles.items()):
            d = out.setdefault(op, {"hits": 0, "misses": 0, "coalesced": 0})
            d["hits"] += h.n_hits
            d["misses"] += h.n_misses
            d["coalesced"] += h.n_coalesced
        return out

    # -- planning --------------------------------------------------------------------------------------------

    def plan(self, path: str, body: Any, stream: bool) -> Plan | None:
        """The plan for a call to ``path`` with the official client's ``body``; None: send it unchanged."""
        op = ENDPOINTS.get(path)
        if op is None or type(body) is not dict:
            return None
        extras = EXTRAS.get()
        profile, use_cache = extras if extras is not None else (None, None)
        model = body.get("model") or ""
        # Embedding calls get the model's own runner entry only, not the flat options meant for chat and
        # generate models: num_ctx=4096 sent to an embedding model that plain clients load with its
        # default would make Ollama reload it on every switch between them (issue 16 trial, item 6).
        embedding = op in ("embed", "embeddings")
        opts = self.policy.merge(model, body.get("options"), profile, flat=not embedding)
        send = dict(body)
        if opts:
            send["options"] = opts
        ka = self.settings.keep_alive
        if ka is not None and send.get("keep_alive") is None:
            send["keep_alive"] = ka
        ns = self.namespace(op)
        p = Plan(op, model, send, ns, self.handles(model, op))
        if use_cache is False or not (use_cache or self.enabled_for[op]) or not _has_input(op, send):
            return p
        if self.settings.cache.only_deterministic and not is_deterministic(opts):
            return p
        try:
            if op == "embed":
                inp = send.get("input")
                texts = [inp] if isinstance(inp, str) else list(inp or ())
                if not all(isinstance(t, str) for t in texts):
                    return p
                rest = {k: v for k, v in send.items() if k not in NOT_KEYED and k != "input"}
                p.texts = texts
                p.items = [
                    (t, request_digest(op, model, {**rest, "input": t}, opts, ns))
                    for t in dict.fromkeys(texts)
                ]
            else:
                fields = {k: v for k, v in send.items() if k not in NOT_KEYED}
                p.key = request_digest(op, model, fields, opts, ns)
        except Exception as exc:
            self.failure("key", exc)
        return p

    # -- the key memo ----------------------------------------------------------------------------------------

    def memo_key(self, op: str, profile: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The memo key of a non-streamed call whose arguments are primitives (or, for chat, a list of
        message dicts of primitives), else None."""
        if not self.enabled or kwargs.get("stream"):
            return None
        prim = _PRIMITIVE
        for v in args:  # the common case first: primitives only, the arguments are the key as they are
            if type(v) not in prim:
                break
        else:
            if not kwargs:
                return (op, profile, args)
            for v in kwargs.values():
                if type(v) not in prim:
                    break
            else:
                return (op, profile, args, tuple(kwargs.items()))
        frozen: list[Any] = []
        for v in (*args, *kwargs.values()):
            t = type(v)
            if t in prim:
                frozen.append(v)
            elif t is list:
                msgs = []
                for m in v:
                    if type(m) is not dict:
                        return None
                    for x in m.values():
                        if type(x) not in prim:
                            return None
                    msgs.append(tuple(m.items()))
                frozen.append(tuple(msgs))
            else:
                return None
        return (op, profile, tuple(kwargs), tuple(frozen), None)  # (5 items: never equal to the above)

    def prepare(
        self, host: str, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any], stream: bool
    ) -> Plan | None:
        """``_request``'s decision: the plan (remembered by the key memo when the public method asked),
        or None to send the call unchanged (a model-changing call first forgets the host's digests)."""
        path = args[1] if len(args) > 1 else ""
        if not self.enabled:
            extras = EXTRAS.get()
            body = kwargs.get("json")
            if extras is not None and extras[0] is not None and path in ENDPOINTS and type(body) is dict:
                # layer off: a profile still means its sampling options (the call's own win), nothing else
                kwargs["json"] = {
                    **body,
                    "options": {**self.policy.profile(extras[0]), **(body.get("options") or {})},
                }
            return None
        plan = self.plan(path, kwargs.get("json"), stream)
        if plan is None:
            if path in MODEL_CHANGING:
                from .digests import BOOK

                BOOK.forget(host)
            return None
        memo = MEMO.get()
        if memo is not None and plan.key is not None and not stream:
            self.remember(memo[0], plan, cls)
            plan.looked_up = memo[1]
        return plan

    def pending_many(self, ns: str, keys: list[str]) -> tuple[dict[str, Any], list[str]]:
        """Embed: the values still queued by write-behind (counted as hits) and the keys to ask the cache."""
        found: dict[str, Any] = {}
        rest: list[str] = []
        for k in keys:
            v = self.pending(ns, k)
            if v is None:
                rest.append(k)
            else:
                found[k] = v
        return found, rest

    def remember(self, mk: Any, plan: Plan, cls: Any) -> None:
        if len(self.memo) >= _MEMO_MAX:
            self.memo.clear()
        if plan.key is not None:
            self.memo[mk] = MemoEntry(plan, plan.key, cls)

    def rebuild(self, cls: Any, key: str, value: Any) -> Any:
        """The response for a stored value: a copy of the one built from this very value object before,
        else built (validated) as the official client builds it; None for another shape."""
        prior = self._built.get(key)
        if prior is not None and prior[0] is value:
            return prior[1]()
        resp = decode_full(cls, value)
        if resp is not None:
            if len(self._built) >= _MEMO_MAX:
                self._built.clear()
            copier = detacher(resp)
            self._built[key] = (value, copier)
            return copier()
        return None

    # -- fail-open helpers -----------------------------------------------------------------------------------

    def failure(self, what: str, exc: BaseException) -> None:
        """Count and log (once per kind) a failure of the layer itself; the call goes on."""
        from infra.config._switch import metrics_enabled
        from infra.metrics import count_failure

        if metrics_enabled():
            count_failure(
                "infra_ollama_layer_errors_total",
                "Failures of the Ollama layer itself (cache, metrics), absorbed so calls go on.",
                "component",
                what,
            )
        if what not in self._logged:
            self._logged.add(what)
            log.warning(
                "infra.ollama: %s failed, continuing without it: %s: %s", what, type(exc).__name__, exc
            )

    @property
    def cache(self) -> Any:
        if self._cache is None and not self._cache_failed:
            try:
                from infra.cache import get_cache

                self._cache = get_cache()
            except Exception as exc:
                self._cache_failed = True
                self.failure("cache", exc)
        return self._cache

    def pending(self, ns: str, key: str) -> Any:
        """A value still queued by write-behind (a client reads its own writes), counted as the cache's hit
        (with the compute time it saves) through the cache's public ``record_hit``; else None."""
        w = self.writer
        if w is None or not w.pending:
            return None
        got = w.get(ns, key)
        if got is None:
            return None
        value, cost = got
        record = getattr(self._cache, "record_hit", None)
        if record is not None:
            try:
                record(ns, cost)
            except Exception as exc:
                self.failure("cache", exc)
        return value

    # -- where a cache read or write goes (the clients ask here, then do the I/O) ----------------------------

    def source(self, ns: str, key: str) -> tuple[Any, Any]:
        """Where a read of ``key`` is answered: ``(value, None)`` from write-behind's queue, else ``(None,
        cache)``: the cache to ask (None without one)."""
        v = self.pending(ns, key)
        return (v, None) if v is not None else (None, self.cache)

    def source_many(self, ns: str, keys: list[str]) -> tuple[dict[str, Any], list[str], Any]:
        """Embed: the values found in write-behind's queue, the keys left, and the cache to ask for them
        (None: nothing left to ask, or no cache)."""
        found, rest = self.pending_many(ns, keys)
        return found, rest, (self.cache if rest else None)

    def direct_store(self, ns: str, items: dict[str, Any], cost: float) -> Any:
        """The cache to write ``items`` to now; None when there is nothing left to do (no cache, no items,
        or write-behind has queued them)."""
        c = self.cache
        if c is None or not items:
            return None
        if self.writer is not None:
            self.writer.put(c, ns, items, cost)
            return None
        return c

    def served(self, e: MemoEntry, value: Any, t0: float) -> Any:
        """A memoized call's hit from a fresh ``value``: the reply rebuilt (and counted), or None."""
        hit = self.rebuild(e.cls, e.key, value)
        if hit is not None:
            e.h.hit()
            e.h.duration_hit.observe(time.perf_counter() - t0)
        return hit

    # -- metrics from replies --------------------------------------------------------------------------------

    def observe_final(self, h: Handles, model: str, final: Any) -> None:
        try:
            ec, ed = getattr(final, "eval_count", None), getattr(final, "eval_duration", None)
            if ec and ed:
                h.tps.observe(ec / (ed / 1e9))
            ld = getattr(final, "load_duration", None)
            if ld:
                h.load.observe(ld / 1e9)
                if ld > _RELOAD_NS and model in self._warm:
                    h.reloads.inc()
                    if f"reload:{model}" not in self._logged:
                        self._logged.add(f"reload:{model}")
                        log.warning(
                            "infra.ollama: %s was loaded again (load_duration %.2fs); check keep_alive "
                            "and that every caller sends the same runner options",
                            model,
                            ld / 1e9,
                        )
            self._warm.add(model)
        except Exception as exc:
            self.failure("metrics", exc)

    # -- retries ---------------------------------------------------------------------------------------------

    def retryable(self, exc: BaseException) -> bool:
        """Failures that happen before any token: connection refused/reset, server busy. Never a read timeout
        (the model may be generating) and never after the first chunk."""
        import httpx
        from ollama import ResponseError

        if isinstance(exc, ResponseError):
            return exc.status_code in _RETRY_STATUS
        if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout)):
            return False
        return isinstance(
            exc,
            (
                ConnectionError,
                httpx.ConnectError,
                httpx.ConnectTimeout,
                httpx.PoolTimeout,
                httpx.RemoteProtocolError,
            ),
        )

    def flight_wait(self) -> float:
        """How long a coalesced caller waits for the call in flight: as long as that call may take."""
        return (self.settings.timeout + 2.0) * (self.settings.retries + 1)

    def backoff(self, attempt: int) -> float:
        return float(min(2.0, self.settings.retry_backoff * (2**attempt)))


class Attempts:
    """The attempts of one call before its first byte/token: ``delay(exc)`` after a failed one is the sleep
    before the next (a retry, counted), or re-raises ``exc`` (counted as an error) when it can't be retried
    or none is left."""

    __slots__ = ("core", "h", "n")

    def __init__(self, core: ClientCore, h: Handles) -> None:
        self.core = core
        self.h = h
        self.n = 0

    def delay(self, exc: Exception) -> float:
        core = self.core
        if self.n < core.settings.retries and core.retryable(exc):
            self.h.retries.inc()
            self.n += 1
            return core.backoff(self.n - 1)
        self.h.errors.inc()
        raise exc


def _has_input(op: str, body: Mapping[str, Any]) -> bool:
    """An empty generate prompt is Ollama's load/unload request and an empty input has nothing to cache."""
    if op == "generate":
        return bool(body.get("prompt") or body.get("images"))
    if op == "chat":
        return bool(body.get("messages"))
    if op == "embed":
        return bool(body.get("input"))
    return bool(body.get("prompt"))
