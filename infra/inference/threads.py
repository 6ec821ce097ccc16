"""A CPU thread budget shared by torch and a local Ollama.

torch defaults to one intra-op thread per core, and Ollama's runner takes ``num_thread`` more; on
a small box both together oversubscribe the cores and each slows the other (context switches,
cache thrash, OpenMP spin-waits). ``plan_thread_budget`` divides the cores (a pure function);
``apply_thread_budget`` sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` (read by OpenMP/MKL when they
start, so call it early) and, when torch is installed, ``torch.set_num_threads`` and
``torch.set_num_interop_threads``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra.config.sections.runtime import TorchConfig

if TYPE_CHECKING:
    from infra.config import PerfConfig

__all__ = ["ThreadBudget", "apply_thread_budget", "available_cores", "plan_thread_budget"]

log = logging.getLogger("infra.inference")

_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else ``os.cpu_count()``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS / Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadBudget:
    """The decided split: ``torch_threads`` intra-op, ``interop_threads``, ``ollama_threads`` reserved."""

    cores: int
    torch_threads: int
    interop_threads: int
    ollama_threads: int
    env: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    applied: tuple[str, ...] = ()  # what apply_thread_budget actually changed

    def to_dict(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "notes": list(self.notes), "applied": list(self.applied)}


def plan_thread_budget(
    *,
    cores: int,
    num_threads: int | None = None,
    interop_threads: int = 1,
    ollama_threads: int | None = None,
    reserve_for_ollama: bool = True,
) -> ThreadBudget:
    """Split ``cores`` between torch and Ollama (no side effects).

    An explicit ``num_threads`` wins. Otherwise torch gets the cores left after reserving
    ``ollama_threads`` (when ``reserve_for_ollama``), at least one.
    """
    if cores < 1:
        raise ValueError(f"cores must be >= 1, not {cores!r}")
    if interop_threads < 1:
        raise ValueError(f"interop_threads must be >= 1, not {interop_threads!r}")
    notes: list[str] = []
    reserved = ollama_threads if (reserve_for_ollama and ollama_threads) else 0
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, not {num_threads!r}")
        torch_threads = num_threads
    else:
        torch_threads = max(1, cores - reserved)
    if reserved and reserved >= cores:
        notes.append(
            f"ollama.runner.num_thread={reserved} uses every core ({cores}); torch gets 1 thread and the two "
            f"still overlap: lower num_thread to at most {max(1, cores - 1)}"
        )
    if torch_threads + reserved > cores and num_threads is not None:
        notes.append(
            f"torch {torch_threads} + ollama {reserved} threads exceed {cores} cores (oversubscribed)"
        )
    env = {name: str(torch_threads) for name in _ENV_VARS}
    return ThreadBudget(
        cores=cores,
        torch_threads=torch_threads,
        interop_threads=interop_threads,
        ollama_threads=reserved,
        env=env,
        notes=tuple(notes),
    )


def _pinned_ollama_threads(runner: Mapping[str, Any]) -> int | None:
    """Ollama's ``num_thread`` runner option when pinned to a count; "auto" (Ollama's own default, the
    physical cores) reserves nothing."""
    value = runner.get("num_thread")
    return int(value) if value is not None and value != "auto" else None


def apply_thread_budget(
    config: PerfConfig | None = None,
    *,
    num_threads: int | None = None,
    interop_threads: int | None = None,
    ollama_threads: int | None = None,
    reserve_for_ollama: bool | None = None,
    cores: int | None = None,
    set_env: bool = True,
    import_torch: bool = True,
) -> ThreadBudget:
    """Plan the split from ``config`` (a ``PerfConfig``: its ``torch`` section and
    ``ollama.runner.num_thread``; default: ``get_config()``), keywords overriding, and apply it.

    Environment variables already set by the user are left alone (theirs wins). torch's inter-op
    pool can be sized only before its first parallel work; if that has happened the plan says so
    in ``notes`` instead of raising. Returns the plan with ``applied`` listing what changed.
    """
    if config is None:
        try:
            from infra.config import get_config

            config = get_config()
        except Exception as exc:  # fail open: defaults
            log.debug("apply_thread_budget: no config (%s); using defaults", exc)
    torch_cfg = config.torch if config is not None else TorchConfig()
    if num_threads is None:
        num_threads = torch_cfg.num_threads
    if interop_threads is None:
        interop_threads = torch_cfg.interop_threads
    if reserve_for_ollama is None:
        reserve_for_ollama = torch_cfg.reserve_for_ollama
    if ollama_threads is None and config is not None:
        ollama_threads = _pinned_ollama_threads(config.ollama.runner)
    plan = plan_thread_budget(
        cores=cores if cores is not None else available_cores(),
        num_threads=num_threads,
        interop_threads=interop_threads,
        ollama_threads=ollama_threads,
        reserve_for_ollama=reserve_for_ollama,
    )
    applied: list[str] = []
    notes = list(plan.notes)
    if set_env:
        for name, value in plan.env.items():
            if name not in os.environ:
                os.environ[name] = value
                applied.append(f"{name}={value}")
    torch = sys.modules.get("torch")
    if torch is None and import_torch:
        try:
            import torch
        except ImportError:
            torch = None
    if torch is not None:
        if torch.get_num_threads() != plan.torch_threads:
            torch.set_num_threads(plan.torch_threads)
            applied.append(f"torch.set_num_threads({plan.torch_threads})")
        if torch.get_num_interop_threads() != plan.interop_threads:
            try:
                torch.set_num_interop_threads(plan.interop_threads)
                applied.append(f"torch.set_num_interop_threads({plan.interop_threads})")
            except RuntimeError as exc:  # torch allows it only before inter-op work has started
                notes.append(f"inter-op threads stay {torch.get_num_interop_threads()}: {exc}")
    for note in notes:
        log.warning("thread budget: %s", note)
    return dataclasses.replace(plan, notes=tuple(notes), applied=tuple(applied))
