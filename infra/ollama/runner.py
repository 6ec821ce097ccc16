"""Runner-option pinning and sampling profiles: what options a call really sends (no I/O).

Ollama reloads a loaded model whenever num_ctx, num_batch, num_thread, num_gpu, main_gpu or use_mmap differ
from the ones it was loaded with (server/sched.go ``needsReload``), and a request that leaves one out gets the
default, which is a difference too. A reload costs seconds. So the pinned values are sent with every call that
leaves them out. A call's own value always wins (it may change the output, e.g. num_ctx); when it differs from
the pinned one it is logged once, or with ``strict_runner`` raises :class:`OllamaRunnerError`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from infra.errors import OllamaRunnerError

log = logging.getLogger("infra.ollama")

__all__ = [
    "RELOAD_OPTIONS",
    "RUNNER_ONLY_OPTIONS",
    "OllamaRunnerError",
    "RunnerOptionWarning",
    "RunnerPolicy",
    "options_dict",
    "physical_cores",
    "resolve_runner",
]

#: Options whose change reloads the model in Ollama's scheduler.
RELOAD_OPTIONS: frozenset[str] = frozenset(
    {"num_ctx", "num_batch", "num_thread", "num_gpu", "main_gpu", "use_mmap"}
)

#: Options that affect where/how fast the model runs but not what it writes: kept out of cache keys.
#: (num_ctx is NOT here: a smaller context truncates the prompt and changes the output.)
RUNNER_ONLY_OPTIONS: frozenset[str] = frozenset(
    {
        "num_thread",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "use_mmap",
        "use_mlock",
        "numa",
        "low_vram",
        "f16_kv",
        "vocab_only",
        "embedding_only",
        "logits_all",
    }
)


def physical_cores() -> int:
    """Physical cores this process may use: psutil when installed, else Linux's /proc/cpuinfo (distinct
    (physical id, core id) pairs), capped by the CPU affinity; ``os.cpu_count()`` where neither tells."""
    import os

    try:
        logical = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        logical = os.cpu_count() or 1
    phys: int | None = None
    try:
        import psutil

        phys = psutil.cpu_count(logical=False)
    except Exception:
        try:
            pairs = set()
            pid = core = ""
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                for line in f:
                    name, _, value = line.partition(":")
                    name = name.strip()
                    if name == "physical id":
                        pid = value.strip()
                    elif name == "core id":
                        core = value.strip()
                        pairs.add((pid, core))
            phys = len(pairs) or None
        except OSError:
            phys = None
    return max(1, min(logical, phys or logical))


def resolve_runner(runner: Mapping[str, Any]) -> dict[str, Any]:
    """The configured runner options as sent: ``num_thread: "auto"`` (flat or under a model) becomes this
    machine's physical cores (what Ollama itself would pick), resolved once per client so every call sends
    the same value (a differing one reloads the model)."""
    out: dict[str, Any] = {}
    for k, v in runner.items():
        if isinstance(v, Mapping):
            out[k] = resolve_runner(v)
        elif k == "num_thread" and v == "auto":
            out[k] = physical_cores()
        else:
            out[k] = v
    return out


class RunnerOptionWarning(RuntimeWarning):
    """Kept for imports written against earlier versions; no longer emitted (a differing runner option is
    now sent as the caller gave it and logged once)."""


def options_dict(options: Any) -> dict[str, Any]:
    """Options as a plain dict without None values (accepts a mapping or an ``ollama.Options``)."""
    if options is None:
        return {}
    if isinstance(options, Mapping):
        return {k: v for k, v in options.items() if v is not None}
    dump = getattr(options, "model_dump", None)
    if dump is not None:
        return dict(dump(exclude_none=True))
    raise TypeError(f"options must be a mapping or ollama.Options, got {type(options).__name__}")


class RunnerPolicy:
    """Merges (pinned runner options, profile, call options) into what is sent; warns/raises on conflict."""

    def __init__(
        self, runner: Mapping[str, Any], profiles: Mapping[str, Mapping[str, Any]], *, strict: bool = False
    ) -> None:
        self._flat = {k: v for k, v in runner.items() if not isinstance(v, Mapping)}
        self._per_model = {k: dict(v) for k, v in runner.items() if isinstance(v, Mapping)}
        self._profiles = {k: dict(v) for k, v in profiles.items()}
        self.strict = strict
        self._base: dict[tuple[str, str | None, bool], dict[str, Any]] = {}
        self._warned: set[tuple[str, str, Any]] = set()
        self._lock = threading.Lock()

    def pinned(self, model: str, *, flat: bool = True) -> dict[str, Any]:
        """The runner options sent with every call for ``model``: the flat ones (``flat=False``: left
        out, as for embedding calls) then the model's own entry."""
        out = dict(self._flat) if flat else {}
        base = model.split(":", 1)[0]
        for name in (base, model):
            out.update(self._per_model.get(name, {}))
        return out

    def profile(self, name: str | None) -> dict[str, Any]:
        if name is None:
            return {}
        try:
            return self._profiles[name]
        except KeyError:
            known = ", ".join(sorted(self._profiles)) or "none configured"
            raise ValueError(f"unknown Ollama profile {name!r} (known: {known})") from None

    def merge(
        self, model: str, options: Any, profile: str | None = None, *, flat: bool = True
    ) -> dict[str, Any]:
        """Options to send: the profile's, then the call's own (which win), then each pinned runner option
        that neither set. The caller's value is never replaced: a differing runner option is sent as given
        and logged once (it reloads the model), or raises with ``strict``. ``flat=False`` pins only the
        model's own runner entry (embedding calls, see ``ClientCore.plan``). The result for (model,
        profile) without call options is computed once and shared: callers must not mutate it."""
        if options is None:
            key = (model, profile, flat)
            base = self._base.get(key)
            if base is None:
                base = {**self.profile(profile), **self.pinned(model, flat=flat)}
                self._base[key] = base
            return base
        call = options_dict(options)
        merged = {**self.profile(profile), **call}
        for name, value in self.pinned(model, flat=flat).items():
            asked = call.get(name)
            if asked is None:
                merged[name] = value
            elif asked != value:
                self._conflict(model, name, asked, value)
        return merged

    def _conflict(self, model: str, name: str, asked: Any, pinned: Any) -> None:
        msg = (
            f"{model}: the call's {name}={asked!r} differs from the pinned {name}={pinned!r}; sending the "
            f"call's value, which reloads the model if another caller sends {pinned!r}"
        )
        if self.strict:
            raise OllamaRunnerError(msg + " (strict_runner is on)")
        with self._lock:
            if (model, name, asked) in self._warned:
                return
            self._warned.add((model, name, asked))
        log.warning("infra.ollama: %s", msg)
