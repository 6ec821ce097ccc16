"""The I/O-free core shared by OptimizedOllama and AsyncOptimizedOllama: options, keys, cache values, metrics.

The sync and async clients repeat only the thin I/O path (calling the official client, sleeping, locking);
every decision - what to send, whether to look up or store, what a cache value looks like, what to count - is
made here once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from ._writer import WriteBehind
from .keys import is_deterministic, request_digest
from .runner import RunnerPolicy, options_dict
from .settings import DEFAULT_HOST, OllamaSettings

__all__ = [
    "RELOAD_THRESHOLD_S",
    "ClientCore",
    "Flight",
    "Handles",
    "as_found",
    "call_options",
    "is_embedding_model",
    "keep_alive_seconds",
    "settings_from",
    "with_pending",
]

log = logging.getLogger("infra.ollama")

#: A load_duration above this, on a model this client already saw loaded, counts as an unexpected reload.
#: (A warm Ollama reports a few milliseconds of load_duration on every call.)
RELOAD_THRESHOLD_S = 0.25
_RELOAD_NS = int(RELOAD_THRESHOLD_S * 1e9)
_STORABLE = ("stop", "length")
_RETRY_STATUS = frozenset({429, 502, 503, 504})


class _Noop:
    """Stands in for a metric child when the metrics layer fails (fail open)."""

    def inc(self, amount: float = 1.0) -> None: ...
    def observe(self, value: float) -> None: ...
    def set(self, value: float) -> None: ...


class Handles:
    """Metric children for one (model, operation), resolved once and kept off the hot path."""

    __slots__ = (
        "coalesced",
        "duration_hit",
        "duration_miss",
        "errors",
        "hits",
        "load",
        "misses",
        "n_coalesced",
        "n_hits",
        "n_misses",
        "reloads",
        "retries",
        "tps",
        "ttft",
    )

    def __init__(self, model: str, op: str, namespace: str) -> None:
        self.n_hits = 0
        self.n_misses = 0
        self.n_coalesced = 0
        try:
            from infra.metrics import get_metrics

            m = get_metrics()
            dur = m.histogram(
                "infra_ollama_request_duration_seconds",
                "Client-measured Ollama call latency, by model, operation and cache result.",
                labelnames=("model", "operation", "cache"),
            )
            self.duration_hit: Any = dur.labels(model, op, "hit")
            self.duration_miss: Any = dur.labels(model, op, "miss")
            self.ttft: Any = m.histogram(
                "infra_ollama_time_to_first_token_seconds",
                "Client-measured time to the first streamed chunk.",
                labelnames=("model", "operation"),
            ).labels(model, op)
            self.tps: Any = m.histogram(
                "infra_ollama_tokens_per_second",
                "Generation speed reported by Ollama (eval_count / eval_duration).",
                labelnames=("model",),
            ).labels(model)
            self.load: Any = m.histogram(
                "infra_ollama_load_duration_seconds",
                "load_duration reported by Ollama.",
                labelnames=("model",),
            ).labels(model)
            self.reloads: Any = m.counter(
                "infra_ollama_unexpected_reloads_total",
                "Calls where a model this client saw loaded was loaded again.",
                labelnames=("model",),
            ).labels(model)
            self.hits: Any = m.counter(
                "infra_ollama_cache_hits_total",
                "Ollama responses served from the cache.",
                labelnames=("namespace", "operation"),
            ).labels(namespace, op)
            self.misses: Any = m.counter(
                "infra_ollama_cache_misses_total",
                "Cacheable Ollama calls not found in the cache.",
                labelnames=("namespace", "operation"),
            ).labels(namespace, op)
            self.retries: Any = m.counter(
                "infra_ollama_retries_total",
                "Retries before the first token.",
                labelnames=("model", "operation"),
            ).labels(model, op)
            self.errors: Any = m.counter(
                "infra_ollama_errors_total", "Ollama calls that raised.", labelnames=("model", "operation")
            ).labels(model, op)
            self.coalesced: Any = m.counter(
                "infra_ollama_coalesced_total",
                "Identical concurrent calls served by one request in flight (single-flight).",
                labelnames=("namespace", "operation"),
            ).labels(namespace, op)
        except Exception:  # metrics must never break a call
            noop = _Noop()
            self.duration_hit = self.duration_miss = self.ttft = self.tps = self.load = noop
            self.reloads = self.hits = self.misses = self.retries = self.errors = self.coalesced = noop

    def hit(self, n: int = 1) -> None:
        self.n_hits += n
        self.hits.inc(n)

    def miss(self, n: int = 1) -> None:
        self.n_misses += n
        self.misses.inc(n)

    def coalesce(self) -> None:
        self.n_coalesced += 1
        self.coalesced.inc()


class Flight:
    """One non-streamed call in flight, shared by identical concurrent callers (single-flight).

    The leader stores the reply's cache value in ``value`` (None when it failed or wasn't storable) and
    then sets ``done``; followers rebuild their own response object from it, or call for themselves.
    """

    __slots__ = ("done", "value")

    def __init__(self, done: Any) -> None:
        self.done = done  # threading.Event or asyncio.Future
        self.value: dict[str, Any] | None = None


class ClientCore:
    """State and decisions shared by the sync and async clients."""

    def __init__(self, settings: OllamaSettings, cache: Any = None) -> None:
        self.settings = settings
        self.policy = RunnerPolicy(settings.runner, settings.profiles, strict=settings.strict_runner)
        self._cache = cache
        self._cache_failed = False
        self._handles: dict[tuple[str, str], Handles] = {}
        self.digests: dict[str, str] | None = None if settings.resolve_digests else {}
        self._warm: set[str] = set()
        self._logged: set[str] = set()
        self._lock = threading.Lock()
        self.writer: WriteBehind | None = None
        if settings.write_behind:
            self.writer = WriteBehind(lambda exc: self.failure("cache", exc))
        cs = settings.cache
        self.enabled_for = {
            "generate": cs.generate,
            "chat": cs.chat,
            "embed": cs.embed,
            "embeddings": cs.embed,
        }

    # -- configuration -------------------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return os.environ.get("OLLAMA_HOST") or self.settings.host or DEFAULT_HOST

    def httpx_timeout(self) -> Any:
        import httpx

        t = self.settings.timeout
        if t is None:
            return None
        return httpx.Timeout(t, connect=min(t, self.settings.connect_timeout))

    def keep_alive(self, value: Any) -> Any:
        return self.settings.keep_alive if value is None else value

    def handles(self, model: str, op: str) -> Handles:
        h = self._handles.get((model, op))
        if h is None:
            ns = (
                self.settings.cache.embed_namespace
                if op in ("embed", "embeddings")
                else self.settings.cache.namespace
            )
            h = self._handles[(model, op)] = Handles(model, op, ns)
        return h

    def cache_stats(self) -> dict[str, dict[str, int]]:
        """Cache hits and misses per operation seen by this client (embed counts items, not calls)."""
        out: dict[str, dict[str, int]] = {}
        for (_, op), h in list(self._handles.items()):
            d = out.setdefault(op, {"hits": 0, "misses": 0, "coalesced": 0})
            d["hits"] += h.n_hits
            d["misses"] += h.n_misses
            d["coalesced"] += h.n_coalesced
        return out

    # -- fail-open helpers ----------------------------------------------------------------------------------

    def failure(self, what: str, exc: BaseException) -> None:
        """Count and log (once per kind) a failure of the layer itself; the call goes on."""
        try:
            from infra.metrics import get_metrics

            get_metrics().counter(
                "infra_ollama_layer_errors_total",
                "Failures of the Ollama layer itself (cache, metrics), absorbed so calls go on.",
                labelnames=("component",),
            ).labels(what).inc()
        except Exception:
            pass
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

    # -- keys -----------------------------------------------------------------------------------------------

    def digest(self, model: str) -> str | None:
        d = self.digests
        if not d:
            return None
        return d.get(model) or d.get(model if ":" in model else f"{model}:latest")

    def set_digests(self, listing: Any) -> None:
        out: dict[str, str] = {}
        for m in getattr(listing, "models", ()) or ():
            name, dig = getattr(m, "model", None), getattr(m, "digest", None)
            if name and dig:
                out[name] = dig
        self.digests = out

    def key(
        self,
        endpoint: str,
        model: str,
        fields: Mapping[str, Any],
        options: Mapping[str, Any],
        use_cache: bool | None,
    ) -> str | None:
        """The cache key, or None when this call must not touch the cache."""
        if use_cache is False or not (use_cache or self.enabled_for[endpoint]):
            return None
        if self.settings.cache.only_deterministic and not is_deterministic(options):
            return None
        try:
            return request_digest(
                endpoint, model, self.digest(model), fields, options, self.namespace(endpoint)
            )
        except Exception as exc:
            self.failure("key", exc)
            return None

    def namespace(self, endpoint: str) -> str:
        cs = self.settings.cache
        return cs.embed_namespace if endpoint in ("embed", "embeddings") else cs.namespace

    # -- cache values ---------------------------------------------------------------------------------------

    @staticmethod
    def dump(resp: Any) -> dict[str, Any]:
        return resp.model_dump(exclude_unset=True)  # type: ignore[no-any-return]

    @staticmethod
    def storable(final: Any) -> bool:
        """Only complete replies: done with stop or length. Errors, aborts and load/unload never."""
        return bool(getattr(final, "done", False)) and getattr(final, "done_reason", None) in _STORABLE

    @staticmethod
    def full_value(resp: Any) -> dict[str, Any]:
        return {"v": 1, "full": ClientCore.dump(resp)}

    @staticmethod
    def decode_full(cls: Any, value: Any) -> Any:
        """A stored non-streamed reply, or None if the value has another shape (then it's a miss)."""
        if type(value) is dict and "full" in value:
            return cls.model_validate(value["full"])
        return None

    @staticmethod
    def decode_stream(value: Any) -> tuple[list[dict[str, Any]], list[float]] | None:
        if type(value) is dict and "chunks" in value and "t" in value:
            return value["chunks"], value["t"]
        return None

    # -- metrics from replies -------------------------------------------------------------------------------

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

    # -- retries --------------------------------------------------------------------------------------------

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

    def flight_wait(self) -> float | None:
        """How long a coalesced caller waits for the call in flight: as long as that call may take."""
        t = self.settings.timeout
        if t is None:
            return None
        return t * (self.settings.retries + 1) + 2.0 * (self.settings.retries + 1)

    def backoff(self, attempt: int) -> float:
        return float(min(2.0, self.settings.retry_backoff * (2**attempt)))


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_seconds(value: Any, default: float = 300.0) -> float:
    """Seconds for an Ollama keep_alive (a number of seconds or "30m", "1h30m"); negative: forever (inf)."""
    import math
    import re

    if value is None or value == "":
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        s = float(value)
    else:
        text = str(value).strip()
        try:
            s = float(text)
        except ValueError:
            parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text.lstrip("+-"))
            if not parts:
                raise ValueError(f"invalid keep_alive {value!r}") from None
            s = sum(float(n) * _UNITS[u] for n, u in parts) * (-1 if text.startswith("-") else 1)
    return math.inf if s < 0 else s


def is_embedding_model(model: str) -> bool:
    """Name heuristic for warmup: embedding models can't /api/chat (Ollama answers 400 "does not support")."""
    base = model.split(":", 1)[0].lower()
    return any(t in base for t in ("embed", "minilm", "bge", "e5-", "gte-", "mxbai", "arctic-embed"))


def call_options(options: Any) -> dict[str, Any]:
    return options_dict(options)


def with_pending(core: ClientCore, ns: str, keys: list[str], found: Mapping[str, Any]) -> Mapping[str, Any]:
    """Entries still queued by write-behind count as found (a client reads its own writes)."""
    w = core.writer
    if w is None or not w.pending:
        return found
    out = dict(found)
    for k in keys:
        if k not in out:
            v = w.get(ns, k)
            if v is not None:
                out[k] = v
    return out


def as_found(keys: list[str], got: Any) -> Mapping[str, Any]:
    """``get_many`` may return {key: value} for found keys, or a list aligned with ``keys``."""
    if isinstance(got, Mapping):
        return got
    out = {}
    for k, v in zip(keys, got or (), strict=False):
        if v is not None and type(v).__name__ != "_Missing":
            out[k] = v
    return out


def settings_from(config: Any) -> OllamaSettings:
    if config is None:
        from infra.config import get_config

        config = get_config()
    s = OllamaSettings.from_config(config.ollama)
    if not getattr(config, "enabled", True):
        import dataclasses

        s = dataclasses.replace(s, enabled=False)
    return s
