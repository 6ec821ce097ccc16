"""``python -m infra warm``: fill a cache namespace ahead of time from a file of phrases (seed 001, PERF-001).

::

    python -m infra warm --file phrases.txt --namespace tts --call myapp.tts:synthesize

Each non-blank line of the file (``#`` starts a comment; ``-`` reads stdin) is one item. For every item
not cached yet, the function is called with the item and its result stored under the key
``cached(namespace=NS)(function)`` computes for ``function(item)``: a worker calling the function
through ``@cached(namespace=NS)`` (or through a ``wrap`` entry naming it) hits what was warmed. A
function already decorated with ``@cached`` keys (and namespaces) as its decorator says. The function
comes from ``--call module:function``, else from a ``wrap`` entry of perf_config whose ``namespace``
matches and whose target is a function (its ``version`` keys the entries as the worker's wrapper does).
Sync and async functions both work. A progress bar goes to stderr (tqdm when installed, else a plain
one).

Exit status: 0 every item cached, 1 some items failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from infra.cli._shared import json_and_config, positive_int

__all__ = ["cmd_warm", "register"]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``warm`` command to an argparse subparsers object."""
    common = json_and_config()
    p: argparse.ArgumentParser = subparsers.add_parser(
        "warm",
        help="fill a cache namespace from a file of phrases, with a progress bar",
        description="Fill a cache namespace ahead of time from a file of phrases (one item per line).",
        parents=[common],
    )
    p.add_argument("--file", "-f", required=True, metavar="PATH", help="one item per line; '-' reads stdin")
    p.add_argument("--namespace", "-n", required=True, metavar="NS", help="cache namespace, e.g. tts")
    p.add_argument(
        "--call",
        metavar="MODULE:FUNCTION",
        help="function computing each value (default: a wrap entry for NS)",
    )
    p.add_argument("--concurrency", "-c", type=positive_int, default=4, metavar="N", help="calls at once (4)")
    p.add_argument(
        "--ttl",
        type=_ttl,
        default=None,
        metavar="DURATION",
        help='TTL: seconds or "90s", "30m", "1h", "1h30m", "30 days"; 0 never expires (namespace default)',
    )
    p.add_argument("--force", action="store_true", help="recompute items that are already cached")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_warm, handler=cmd_warm)
    return p


def _ttl(text: str) -> float | None:
    """``--ttl`` as the cache reads every TTL (``infra.cache.ttl.parse_ttl``): one rule, one message."""
    from infra.cache.ttl import parse_ttl

    try:
        return parse_ttl(text, what="--ttl")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


def _read_items(path: str) -> list[str]:
    try:
        if path == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
    except OSError as exc:
        raise _UsageError(f"cannot read --file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _UsageError(f"--file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    items = [line.strip() for line in lines]
    return list(dict.fromkeys(i for i in items if i and not i.startswith("#")))


def _resolve(target: str, what: str) -> Callable[[Any], Any]:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise _UsageError(f"{what} must look like module:function, got {target!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise _UsageError(f"{what} {target!r}: cannot import {module_name!r} ({exc})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise _UsageError(f"{what} {target!r}: {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj) or isinstance(obj, type):
        raise _UsageError(f"{what} {target!r} is not a function")
    return obj  # type: ignore[no-any-return]


def _open_cache(args: argparse.Namespace) -> tuple[Any, Any]:
    """(cache, config or None); the store is opened even when the config switches caching off."""
    from infra.cache.core import Cache
    from infra.config.sections.cache import CacheConfig

    try:
        from infra.config import load_config
    except ImportError:  # pragma: no cover - the config package ships with infra
        return Cache(CacheConfig(), export_metrics=False), None
    cfg = load_config(getattr(args, "config", None))
    settings = dataclasses.replace(cfg.cache, enabled=True)
    return Cache(settings, export_metrics=False), cfg


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What warm calls (the plain function), under which namespace, and the key of each item."""

    fn: Callable[[Any], Any]
    namespace: str
    key: Callable[[str], str]


def _plan(fn: Callable[[Any], Any], namespace: str, version: Any, cache: Any) -> _Plan:
    """Keys exactly as the decorator makes them for ``fn(item)``: an ``@cached`` function by its own
    decorator, a plain one as ``cached(namespace=NS, version=...)`` would wrap it."""
    import inspect

    from infra.cache import cached

    if callable(getattr(fn, "cache_key", None)) and hasattr(fn, "__wrapped__"):
        plain, decorated, ns = fn.__wrapped__, fn, str(getattr(fn, "cache_namespace", namespace))
    else:
        plain, decorated, ns = fn, cached(namespace=namespace, version=version, cache=cache)(fn), namespace
    if inspect.isgeneratorfunction(plain) or inspect.isasyncgenfunction(plain):
        raise _UsageError(
            f"{getattr(plain, '__qualname__', plain)!r} streams (a generator): warm fills plain results only"
        )
    return _Plan(fn=plain, namespace=ns, key=decorated.cache_key)  # type: ignore[attr-defined]


def _function_for(args: argparse.Namespace, cfg: Any) -> tuple[Callable[[Any], Any], Any]:
    """(function, version) from ``--call`` or the wrap entry for the namespace."""
    if args.call:
        return _resolve(args.call, "--call"), None
    for entry in getattr(cfg, "wrap", ()) or ():
        if entry.namespace == args.namespace and not entry.methods:
            return _resolve(entry.target, f"wrap entry for namespace {args.namespace!r}"), entry.version
    raise _UsageError(
        f"nothing to call for namespace {args.namespace!r}: pass --call module:function, "
        "or add a perf_config wrap entry with this namespace whose target is a function"
    )


class _Bar:
    """A progress bar on stderr: tqdm when installed, else a plain ``[#####.....] 5/10`` line."""

    def __init__(self, total: int, label: str, enabled: bool, stream: TextIO | None = None) -> None:
        self.total = total
        self.enabled = enabled and total > 0
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self._tqdm: Any = None
        self._last = -1
        if not self.enabled:
            return
        try:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, desc=label, unit="item", file=self.stream, leave=True)
        except ImportError:
            self._tqdm = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.update(done - self._tqdm.n)
            return
        if done == self._last:
            return
        self._last = done
        width = 30
        filled = int(width * done / total) if total else width
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
        self.stream.flush()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()


def cmd_warm(args: argparse.Namespace) -> int:
    """Handler of ``python -m infra warm``."""
    from infra.cli._output import emit_json
    from infra.hotpath.warm import WarmStats, warm_cache

    try:
        items = _read_items(args.file)
        cache, cfg = _open_cache(args)
    except _UsageError as exc:
        print(f"perf-infra: error: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            fn, version = _function_for(args, cfg)
            plan = _plan(fn, args.namespace, version, cache)
        except _UsageError as exc:
            print(f"perf-infra: error: {exc}", file=sys.stderr)
            return 2
        bar = _Bar(len(items), f"warm {args.namespace}", enabled=not args.no_progress)
        t0 = time.perf_counter()
        try:
            stats = warm_cache(
                items,
                plan.fn,
                namespace=plan.namespace,
                key=plan.key,
                cache=cache,
                ttl=args.ttl,
                concurrency=args.concurrency,
                force=args.force,
                progress=bar,
                background=False,
            )
        finally:
            bar.close()
        assert isinstance(stats, WarmStats)
        stats.seconds = time.perf_counter() - t0
    finally:
        cache.close()
    if args.json:
        emit_json({"namespace": args.namespace, **stats.to_dict()})
    else:
        print(
            f"namespace {args.namespace}: {stats.ok} warmed, {stats.skipped} already cached, "
            f"{stats.failed} failed, of {stats.total} items in {stats.seconds:.2f}s"
        )
        for line in stats.errors:
            print(f"  failed: {line}")
    return 1 if stats.failed else 0
