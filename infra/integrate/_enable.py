"""``enable()``: apply perf_config once (cache, metrics, /metrics, torch thread budget, warmup, ``wrap``) and
hand back an ``IntegrationHandle`` that reports what it did and undoes it.

Order matters and is deliberate:

1. every ``wrap`` entry is resolved and checked first (imports, methods), so a bad entry raises
   ``WrapError`` naming it before anything in the process has changed;
2. then the config becomes the process-wide one, the process-wide cache is rebuilt from it, /metrics is
   served if asked, the thread budget applied, warmup started;
3. each of those fails open: it's recorded (``infra_integrate_failures_total{part}``, logged once, listed in
   ``report()``) and the worker goes on.

``enable()`` is idempotent and thread-safe: a second call (with no config, or an equal one) returns the
same handle; a call with a different config undoes the first and applies the new one.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypedDict

from infra.errors import WrapError
from infra.integrate._check import resolve_wrap
from infra.integrate._failures import record_failure
from infra.integrate._targets import MethodPlan, describe_entry
from infra.integrate._wrap import (
    FunctionPatch,
    MethodSettings,
    PatchRecord,
    cache_function_in_place,
    entry_settings,
    patch_class_in_place,
)
from infra.integrate._wrapped import Wrapped, WrappedClasses

if TYPE_CHECKING:
    from infra.config import PerfConfig

#: What ``enable()`` takes: a ``PerfConfig``, a path to a perf_config.json, or None (the process-wide config).
ConfigSource: TypeAlias = "PerfConfig | str | os.PathLike[str] | None"

__all__ = [
    "IntegrationHandle",
    "IntegrationReport",
    "WrappedClasses",
    "active_handle",
    "enable",
    "enable_caching_for_worker",
    "patch",
]

log = logging.getLogger("infra.integrate")
_lock = threading.RLock()
_active: IntegrationHandle | None = None


@dataclass
class _Target:
    """One class named by ``wrap`` (several entries may name the same class with different methods)."""

    target: str
    cls: type
    entries: list[int] = field(default_factory=list)
    items: list[tuple[MethodPlan, MethodSettings]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(describe_entry(i, self.target) for i in self.entries)


@dataclass
class _FunctionTarget:
    """A module-level function named by ``wrap``: cached as a whole, replaced in its module."""

    target: str
    function: Any
    index: int
    settings: MethodSettings | None
    cached: Any = None  # the wrapper once patched

    @property
    def label(self) -> str:
        return describe_entry(self.index, self.target)


def _resolve_targets(config: Any) -> tuple[list[_Target], list[_FunctionTarget], list[str]]:
    """Import and check every ``wrap`` entry (``resolve_wrap``). With the layer on, any problem is a
    ``WrapError`` listing them all by JSON path and naming the config file; with it off (``enabled`` or
    ``cache.enabled`` false) each is a logged warning and the entries that import are handed back as they
    are: a worker with the layer switched off must run whatever its wrap list says."""
    resolved, problems = resolve_wrap(config)
    source = str(config.source or "a config given in code")
    if problems and config.enabled and config.cache.enabled:
        raise WrapError(f"{'; '.join(map(str, problems))} (config: {source})")
    ignored = [f"{p} (config: {source}; ignored, the layer is off)" for p in problems]
    for line in ignored:
        log.warning("perf-infra: wrap entry problem: %s", line)
    targets: dict[str, _Target] = {}
    functions: list[_FunctionTarget] = []
    for r in resolved:
        if r.function is not None:
            functions.append(_FunctionTarget(r.entry.target, r.function, r.index, entry_settings(r.entry)))
            continue
        if r.cls is None:
            continue
        t = targets.setdefault(r.entry.target, _Target(r.entry.target, r.cls))
        t.entries.append(r.index)
        settings = entry_settings(r.entry)
        if settings is not None:
            t.items.extend((plan, settings) for plan in r.plans)
    return list(targets.values()), functions, ignored


def _resolve_config(config: ConfigSource) -> PerfConfig:
    from infra.config import PerfConfig, get_config, load_config

    if config is None:
        # strict: an unusable file raises here (the explicit entry point), where @cached and the
        # no-argument clients fall back to the layer off (infra.config's one failure policy)
        return _active.config if _active is not None else get_config(strict=True)
    if isinstance(config, PerfConfig):
        return config
    if isinstance(config, str | os.PathLike):
        return load_config(config)
    raise TypeError(
        "enable(config=...) takes a PerfConfig, a path to perf_config.json or None, "
        f"got {type(config).__name__}"
    )


class IntegrationReport(TypedDict):
    """``IntegrationHandle.as_dict()``: what ``enable()`` did, ready for ``json.dumps``."""

    enabled: bool
    config: str | None  # the config file in use (None: built-in defaults or a config given in code)
    actions: list[str]
    failures: list[str]
    metrics_url: str | None  # the /metrics server's URL, when enable() started one
    wrapped: list[str]  # the "wrap" targets, classes then functions
    patched: list[str]  # the patches in place (not undone)
    undone: bool


class IntegrationHandle:
    """What ``enable()`` did: ``report()`` (text), ``as_dict()``, ``undo()``; cached classes, patches."""

    def __init__(
        self, config: PerfConfig, targets: list[_Target], functions: list[_FunctionTarget] | None = None
    ) -> None:
        self.config = config
        self.targets = targets
        self.functions = list(functions or ())
        self.cache: Any = None
        self.metrics_server: Any = None
        self.thread_budget: Any = None
        self.failures: list[str] = []
        self.actions: list[str] = []
        self.patches: list[PatchRecord | FunctionPatch] = []
        self.undone = False
        self._classes: WrappedClasses | None = None
        self._prev_config: Any = None
        self._prev_cache: Any = None
        self._env_set: dict[str, str | None] = {}
        self._warmup: Any = None

    # ------------------------------------------------------------------ state
    @property
    def config_label(self) -> str:
        """The config file in use, ``built-in defaults``, or ``a config given in code``."""
        return str(self.config.source or "a config given in code")

    @property
    def layer_on(self) -> bool:
        """True when wrappers cache: the master switch and the cache are both on."""
        return bool(self.config.enabled and self.config.cache.enabled)

    def _fail(self, part: str, message: str, exc: BaseException | None = None) -> None:
        self.failures.append(f"{part}: {message}" + (f" ({exc})" if exc is not None else ""))
        record_failure(part, message, exc)

    # ------------------------------------------------------------------ apply
    def _apply(self) -> None:
        from infra.config import _loader, set_config

        cfg = self.config
        self._prev_config = getattr(_loader, "_current", None)
        set_config(cfg)
        self.actions.append(f"config: {self.config_label} (enabled: {str(cfg.enabled).lower()})")
        self._apply_cache()
        if not cfg.enabled:
            self.actions.append(
                f"layer off ({cfg.switched_off_by()}): wrappers are the original classes, nothing served"
            )
            return
        self._apply_metrics()
        self._apply_threads()
        self._apply_warmup()

    def _apply_cache(self) -> None:
        from infra.cache import Cache, CacheConfig, set_cache

        cfg = self.config
        try:
            cache = Cache(cfg.cache)  # (the loader applied the top-level switch)
        except Exception as exc:
            self._fail("cache", "cache could not be built; wrapped calls run uncached", exc)
            cache = Cache(CacheConfig(enabled=False))
        self.cache = cache
        self._prev_cache = set_cache(cache)
        if not cache.enabled:
            self.actions.append("cache: off (calls pass through)")
            return
        where = cfg.cache.path if cfg.cache.backend == "sqlite" else cfg.cache.backend
        backend_error = getattr(cache, "_backend_error", None)
        if cache.backend is not None:
            try:
                cache.backend.stats()  # opens the store now, so a bad directory shows here, not mid-call
            except Exception as exc:
                backend_error = str(exc)
        if backend_error:
            self._fail(
                "cache",
                f"cache store {cfg.cache.backend} at {where} unavailable; using the in-process L1 only",
                Exception(backend_error),
            )
        else:
            self.actions.append(f"cache: {cfg.cache.backend} at {where}, L1 {cfg.cache.memory_items} items")

    def _apply_metrics(self) -> None:
        m = self.config.metrics
        if not m.enabled:
            self.actions.append("metrics: off")
            return
        if not m.serve:
            self.actions.append("metrics: recording; /metrics not served (metrics.serve: false)")
            return
        try:
            from infra.server import serve_metrics_from_config

            self.metrics_server = serve_metrics_from_config(m)
        except OSError as exc:
            self._fail("metrics_server", f"/metrics could not bind {m.host}:{m.port}; not served", exc)
            return
        except Exception as exc:
            self._fail("metrics_server", "/metrics could not start; not served", exc)
            return
        self.actions.append(f"metrics: serving {self.metrics_server.url}")

    def _apply_threads(self) -> None:
        t = self.config.torch
        if not t.enabled:
            self.actions.append("torch thread budget: off")
            return
        before = {
            k: os.environ.get(k)
            for k in (
                "OMP_NUM_THREADS",
                "MKL_NUM_THREADS",
                "OPENBLAS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS",
                "NUMEXPR_NUM_THREADS",
            )
        }
        try:
            from infra.inference import apply_thread_budget

            # import_torch=False: a worker that never uses torch shouldn't pay seconds to import it; the
            # environment variables set here reach torch when it loads later.
            self.thread_budget = apply_thread_budget(self.config, import_torch="torch" in sys.modules)
        except Exception as exc:
            self._fail("torch", "thread budget not applied", exc)
            return
        self._env_set = {k: v for k, v in before.items() if os.environ.get(k) != v}
        b = self.thread_budget
        self.actions.append(
            f"threads: torch {b.torch_threads} intra-op / {b.interop_threads} inter-op, "
            f"{b.ollama_threads} reserved for Ollama of {b.cores} cores"
            + (f"; set {', '.join(b.applied)}" if b.applied else "; nothing to change")
        )

    def _apply_warmup(self) -> None:
        cfg = self.config
        w = cfg.warmup
        if not (w.enabled and w.models and cfg.ollama.enabled):
            return
        config = cfg

        def run() -> None:
            try:
                from infra.ollama import OptimizedOllama

                OptimizedOllama(config.ollama).warmup(
                    list(w.models), system_prompt=w.system_prompt, background=False
                )
            except Exception as exc:
                record_failure("warmup", "Ollama warmup failed", exc)

        timer = threading.Timer(w.delay, run)
        timer.daemon = True
        timer.name = "infra-warmup"
        timer.start()
        self._warmup = timer
        self.actions.append(f"ollama: warming {', '.join(w.models)} in {w.delay:g}s")

    # ------------------------------------------------------------------ wrap
    def cached_classes(self) -> WrappedClasses:
        """The ``wrap`` classes themselves, their listed methods cached in place (the originals, untouched,
        when the layer is off); built once per handle.

        In place, like ``patch()``: every reference to the class sees the cache, wherever it was reached
        (imported before or after ``enable_caching_for_worker()``, inside a function, ``from x import Y``
        elsewhere), and ``cached_classes["Name"]`` is that same class, so seed 004's name replacement keeps
        working."""
        with _lock:
            if self._classes is None:
                if self.layer_on:
                    self.patch()
                by_name: dict[str, Wrapped] = {}
                by_target: dict[str, Wrapped] = {}
                seen: dict[str, list[str]] = {}
                for t in self.targets:
                    by_target[t.target] = t.cls
                    seen.setdefault(t.cls.__name__, []).append(t.target)
                    by_name.setdefault(t.cls.__name__, t.cls)
                wrappers: list[tuple[Callable[..., object], Callable[..., object]]] = []
                for f in self.functions:  # the cached wrapper (the original with the layer off)
                    fn = f.cached if f.cached is not None else f.function
                    wrappers.append((f.function, fn))
                    name = f.target.partition(":")[2]
                    by_target[f.target] = fn
                    seen.setdefault(name, []).append(f.target)
                    by_name.setdefault(name, fn)
                ambiguous = {n: ts for n, ts in seen.items() if len(ts) > 1}
                for n in ambiguous:
                    by_name.pop(n, None)
                self._classes = WrappedClasses(
                    by_name,
                    by_target,
                    ambiguous,
                    source=self.config_label,
                    layer_off=None if self.layer_on else self._switched_off(),
                    unresolved=self._unresolved(by_target),
                    wrappers=wrappers,
                )
                state = "cached in place" if self.layer_on else "original (layer off)"
                for t in self.targets:
                    self.actions.append(
                        f"wrap: {t.label}: {', '.join(p.name for p, _ in t.items)} -> {state}"
                    )
                for f in self.functions:
                    self.actions.append(f"wrap: {f.label}: function -> {state}")
            return self._classes

    def _switched_off(self) -> str:
        return self.config.switched_off_by() or self.config.switched_off_by("cache") or "the layer is off"

    def _unresolved(self, by_target: dict[str, Wrapped]) -> dict[str, list[str]]:
        """The ``wrap`` entries whose target didn't import (the layer off: ``enable()`` only warned), by
        the name and the target a lookup may use, each with the warnings of its entry."""
        out: dict[str, list[str]] = {}
        for i, entry in enumerate(self.config.wrap):
            if entry.target in by_target:
                continue
            prefix = f"wrap: wrap[{i}]."
            warned = [a[len("wrap: ") :] for a in self.actions if a.startswith(prefix)]
            for key in (entry.target, entry.target.partition(":")[2].rpartition(".")[2]):
                out.setdefault(key, []).extend(warned)
        return out

    def patch(self) -> IntegrationHandle:
        """Cache the ``wrap`` methods on the classes themselves (idempotent; ``undo()`` restores them)."""
        with _lock:
            if self.patches or not self.layer_on:
                if not self.layer_on and not any(a.startswith("patch:") for a in self.actions):
                    self.actions.append("patch: layer off, nothing patched")
                return self
            for t in self.targets:
                rec = patch_class_in_place(t.cls, t.items, label=t.label)
                self.patches.append(rec)
                self.actions.append(f"patch: {t.target}.{{{', '.join(rec.methods)}}} cached in place")
            for f in self.functions:
                if f.settings is None:
                    continue
                f.cached, frec = cache_function_in_place(f.target, f.function, f.settings, label=f.label)
                self.patches.append(frec)
                self.actions.append(f"patch: {f.target} cached in its module")
            return self

    # ------------------------------------------------------------------ report and undo
    def as_dict(self) -> IntegrationReport:
        """JSON-ready account of what enable() did."""
        return {
            "enabled": bool(self.config.enabled),
            "config": self.config.source,
            "actions": list(self.actions),
            "failures": list(self.failures),
            "metrics_url": self.metrics_server.url if self.metrics_server is not None else None,
            "wrapped": [t.target for t in self.targets] + [f.target for f in self.functions],
            "patched": [r.label for r in self.patches if not r.undone],
            "undone": self.undone,
        }

    def report(self) -> str:
        """What enable() did, one line per part; failures (the parts running without) last."""
        if self.undone:
            head = "perf-infra integration undone"
        elif not self.config.enabled:
            head = f"perf-infra OFF: {self.config.switched_off_by()}; every part passes calls through"
        else:
            head = "perf-infra enabled"
        lines = [head]
        lines += [f"  - {a}" for a in self.actions]
        lines += [f"  ! {f}" for f in self.failures]
        return "\n".join(lines)

    def __repr__(self) -> str:
        state = "undone" if self.undone else ("on" if self.config.enabled else "off")
        return f"<IntegrationHandle {state} config={self.config.source!r} wrapped={len(self.targets)}>"

    def undo(self) -> None:
        """Revert what enable() did: patches, /metrics, the process-wide cache and config, thread env vars.

        Cached classes already handed out keep working (they use whatever cache is process-wide). torch's
        own thread settings, once changed, stay (torch can't take back its inter-op setting)."""
        global _active
        from infra.cache import set_cache
        from infra.config import reset_config, set_config

        with _lock:
            if self.undone:
                return
            for rec in reversed(self.patches):
                rec.undo()
            if self._warmup is not None:
                self._warmup.cancel()
            if self.metrics_server is not None:
                try:
                    self.metrics_server.close()
                except Exception as exc:
                    record_failure("metrics_server", "closing /metrics failed", exc)
            ours = set_cache(self._prev_cache)
            if ours is not None and ours is self.cache:
                ours.close()
            for name, value in self._env_set.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            if self._prev_config is not None:
                set_config(self._prev_config)
            else:
                reset_config()
            self.undone = True
            self.actions.append("undone")
            if _active is self:
                _active = None


def enable(config: ConfigSource = None) -> IntegrationHandle:
    """Apply perf_config once and return the handle (see the module docstring).

    ``config``: a ``PerfConfig``, a path to a perf_config.json, or None (the process-wide config:
    ``$PERF_CONFIG``, then the nearest config/perf_config.json above the working directory or the main
    script, then defaults). With the layer on, raises ``WrapError`` (every problem by JSON path, and the
    config file) for a ``wrap`` entry whose target doesn't import, whose method doesn't exist or whose
    ttl isn't positive; with it off those are logged warnings. ``ConfigError`` for a bad file; everything
    else fails open.
    """
    global _active
    with _lock:
        cfg = _resolve_config(config)
        if _active is not None:
            if cfg == _active.config:
                return _active
            _active.undo()
        targets, functions, ignored = _resolve_targets(cfg)
        handle = IntegrationHandle(cfg, targets, functions)
        handle._apply()
        handle.actions.extend(f"wrap: {line}" for line in ignored)
        _active = handle
        return handle


def active_handle() -> IntegrationHandle | None:
    """The handle of the current ``enable()``, or None."""
    return _active


def enable_caching_for_worker(config: ConfigSource = None) -> WrappedClasses:
    """``enable(config)``, then cache the methods the ``wrap`` list of perf_config names on the classes
    themselves, in place; returns those classes by name (see ``WrappedClasses``). The worker's change::

        from infra.enrichment_helpers import enable_caching_for_worker
        cached_classes = enable_caching_for_worker()

    and every reference to a listed class sees the cache. ``cached_classes.get_class(HybridScorer)`` is
    ``HybridScorer`` itself, typed, checked to be cached. Seed 004's third line,
    ``HybridScorer = cached_classes["HybridScorer"]``, still works (the same class) but isn't needed.

    With ``enabled: false`` nothing is patched and a bad ``wrap`` entry is a logged warning, never an error
    here; only looking up by name a class whose entry didn't import raises (``KeyError``, saying so).
    """
    return enable(config).cached_classes()


def patch(config: ConfigSource = None) -> IntegrationHandle:
    """``enable(config)``, then cache the ``wrap`` methods on the original classes in place, for workers
    that can't change their imports (call it before the worker runs). ``handle.undo()`` restores them."""
    return enable(config).patch()
