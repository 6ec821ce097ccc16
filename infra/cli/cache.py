"""``python -m infra cache stats|clear|vacuum|inspect``: look at and manage the cache store from a terminal.

``register(subparsers)`` adds the ``cache`` command group; ``infra.cli`` calls it. Every handler takes the
parsed args (``args.json``: machine-readable output; ``args.config``: a perf_config.json path or None) and
returns an exit status: 0 done, 1 the store failed (message on stderr), 2 bad input.
The store stays a plain SQLite file, readable by ``sqlite3`` and Datasette (table ``entries``, joined to
``namespaces`` by ``ns = namespaces.id``).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import sys
from typing import Any

from infra.cli._shared import json_and_config, positive_int

__all__ = ["cmd_clear", "cmd_inspect", "cmd_stats", "cmd_vacuum", "register"]

_CODEC_NAMES = {1: "str", 2: "bytes", 3: "json", 4: "tagged-json", 5: "ndarray", 6: "f64list", 7: "pickle"}


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``cache`` and its sub-commands to an argparse subparsers object."""
    common = json_and_config()
    p = subparsers.add_parser("cache", help="inspect and manage the cache store", parents=[common])
    sub = p.add_subparsers(dest="cache_command", metavar="{stats,clear,vacuum,inspect}")
    sub.required = True

    s = sub.add_parser(
        "stats",
        help="entries, bytes and hit rates per namespace (every process's counts, from the store)",
        parents=[common],
    )
    s.add_argument(
        "--reset",
        action="store_true",
        help="zero the fleet-wide counters (after showing them)",
    )
    s.set_defaults(func=cmd_stats, handler=cmd_stats)

    c = sub.add_parser("clear", help="delete entries (all, or one namespace)", parents=[common])
    c.add_argument("--namespace", "-n", metavar="N", help="only this namespace")
    c.set_defaults(func=cmd_clear, handler=cmd_clear)

    v = sub.add_parser("vacuum", help="purge expired entries and give free space back", parents=[common])
    v.set_defaults(func=cmd_vacuum, handler=cmd_vacuum)

    i = sub.add_parser("inspect", help="list the most recently used entries", parents=[common])
    i.add_argument("--namespace", "-n", metavar="N", help="only this namespace")
    i.add_argument("--limit", "-k", type=positive_int, default=20, metavar="K", help="how many (default 20)")
    i.set_defaults(func=cmd_inspect, handler=cmd_inspect)
    parser: argparse.ArgumentParser = p
    return parser


class _NoStore(Exception):
    """The configured SQLite file doesn't exist: a command that only reads says so instead of creating it."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no cache at {path}")
        self.path = path


def _settings(args: argparse.Namespace) -> tuple[Any, bool]:
    from infra.config.sections.cache import CacheConfig

    try:
        from infra.config import load_config

        cfg = load_config(getattr(args, "config", None))
        settings = cfg.cache
        configured_on = bool(cfg.enabled and cfg.cache.enabled)
    except ImportError:
        settings, configured_on = CacheConfig(), True
    return settings, configured_on


def _store_path(settings: Any) -> str | None:
    """The absolute path of the SQLite file the settings name (None for the other backends)."""
    if settings.backend != "sqlite":
        return None
    return os.path.abspath(os.path.expanduser(str(settings.path)))


def _missing(path: str) -> bool:
    """No file there, and nothing in the way of one (a path under a regular file is an error to report)."""
    if os.path.lexists(path):
        return False
    folder = os.path.dirname(path)
    while not os.path.lexists(folder) and folder != os.path.dirname(folder):
        folder = os.path.dirname(folder)
    return os.path.isdir(folder)


def _open(args: argparse.Namespace) -> Any:
    """A Cache on the configured store; the CLI opens it even when the config switches caching off.

    Every command here reads or trims what exists: a missing SQLite file raises ``_NoStore`` rather than
    being created empty (``cache stats`` run from the wrong folder must not leave a stray store behind)."""
    from infra.cache.core import Cache

    settings, configured_on = _settings(args)
    path = _store_path(settings)
    if path is not None and _missing(path):
        raise _NoStore(path)
    return Cache(dataclasses.replace(settings, enabled=True), export_metrics=False), configured_on


def _no_store(args: argparse.Namespace, missing: _NoStore, **fields: Any) -> int:
    """Nothing to read: one line (or a JSON object with ``exists: false``), exit 0."""
    if getattr(args, "json", False):
        print(json.dumps({"backend": "sqlite", "path": missing.path, "exists": False, **fields}, indent=2))
    else:
        print(str(missing))
    return 0


def _fail(exc: BaseException | str) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def _size(n: int) -> str:
    f = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if f < 1024 or unit == "GB":
            return f"{f:.0f} {unit}" if unit == "B" else f"{f:.1f} {unit}"
        f /= 1024
    return f"{n} B"


def _when(t: float | None) -> str:
    if t is None:
        return "never"
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def cmd_stats(args: argparse.Namespace) -> int:
    try:
        cache, configured_on = _open(args)
    except _NoStore as missing:
        return _no_store(args, missing, total_entries=0, total_bytes=0, namespaces={})
    except Exception as exc:
        return _fail(exc)
    try:
        stats = cache.get_stats()
        stats["enabled"] = configured_on
        path = _store_path(cache.settings)
        if path is not None:
            stats["path"] = path  # absolute: which store this is, whatever folder the command ran in
            stats["exists"] = True
        if "backend_error" in stats:
            if getattr(args, "json", False):
                print(json.dumps(stats, indent=2, sort_keys=True))
            return _fail(stats["backend_error"])
        try:
            _add_fleet_counts(cache, stats)
            if getattr(args, "reset", False):
                if stats["counts"] != "fleet":
                    return _fail(f"the {stats['backend']} backend keeps no fleet-wide counters to reset")
                cache.backend.fleet_reset(None)
                stats["reset"] = True
        except Exception as exc:
            return _fail(f"reading the fleet-wide counters failed: {exc}")
        if getattr(args, "json", False):
            print(json.dumps(stats, indent=2, sort_keys=True))
            return 0
        _print_stats(stats, configured_on)
        return 0
    finally:
        cache.close()


def _add_fleet_counts(cache: Any, stats: dict[str, Any]) -> None:
    """Put every process's counts (the store's fleet counters) in place of this process's zeros.

    ``counts`` says where the hit/miss figures come from: ``fleet`` (every process since the last
    ``--reset``) or ``none`` (a memory-only cache keeps no counters a terminal could read).
    """
    from infra.cache.fleet_stats import FleetCounts, fleet_totals

    totals = fleet_totals(cache) if cache.backend is not None else None
    if totals is None:
        stats["counts"] = "none"
        return
    stats["counts"] = "fleet"
    rows = stats["namespaces"]
    for name in totals:
        rows.setdefault(name, {"entries": 0, "bytes": 0})
    agg = FleetCounts()
    for name, row in rows.items():
        c = totals.get(name, FleetCounts())
        agg = agg + c
        row.update(_counts(c))
    stats.update(_counts(agg))


def _counts(c: Any) -> dict[str, Any]:
    """Fleet counts as the command shows them: ``hit_rate`` None (JSON null, "-" in text) before any lookup,
    where ``get_stats()`` says 0.0 (a float in every library view); a calls-uncached-only namespace has no
    lookups, and 0 % would read as "every lookup missed"."""
    out: dict[str, Any] = c.to_dict()
    if not out["hits"] + out["misses"]:
        out["hit_rate"] = None
    return out


def _print_stats(stats: dict[str, Any], configured_on: bool) -> None:
    from infra.cli._output import table

    store = stats.get("store", {})
    print(f"cache: {'enabled' if configured_on else 'disabled in config'}, backend {stats['backend']}")
    if stats.get("path"):
        print(f"file:  {stats['path']} ({_size(int(store.get('file_bytes', 0)))} on disk)")
    print(f"total: {stats['total_entries']} entries, {_size(stats['total_bytes'])}")
    if stats.get("counts") == "fleet":
        print(
            f"hits:  {stats['hits']} of {stats['hits'] + stats['misses']} lookups "
            f"({_pct(stats['hit_rate'], stats['hits'] + stats['misses'])}) "
            "by every process since the last `cache stats --reset`"
        )
        if stats.get("uncacheable"):
            print(
                f"uncacheable: {stats['uncacheable']} calls ran uncached (no cache key from their arguments "
                "or, for a method, the instance's members; the worker's log has one '@cached ... not "
                "cacheable' warning per function naming the argument or member)"
            )
    rows = stats["namespaces"]
    if rows:
        print()
        print(
            table(
                [
                    "namespace",
                    "entries",
                    "bytes",
                    "hits",
                    "misses",
                    "hit rate",
                    "uncacheable",
                    "errors",
                    "saved s",
                ],
                [
                    [
                        name,
                        s["entries"],
                        _size(s["bytes"]),
                        s["hits"],
                        s["misses"],
                        _pct(s["hit_rate"], s["hits"] + s["misses"]),
                        s.get("uncacheable", 0),
                        s["errors"],
                        round(float(s["compute_seconds_saved"]), 3),
                    ]
                    for name, s in sorted(rows.items())
                ],
            )
        )
    if stats.get("reset"):
        print("\nfleet-wide counters reset to zero")


def _pct(fraction: float | None, lookups: int) -> str:
    """A hit rate (a fraction everywhere in the layer) as people read it; "-" before any lookup."""
    return "-" if fraction is None or not lookups else f"{100.0 * fraction:.1f}%"


def cmd_clear(args: argparse.Namespace) -> int:
    try:
        cache, _ = _open(args)
    except _NoStore as missing:
        return _no_store(args, missing, removed=0, namespace=getattr(args, "namespace", None))
    except Exception as exc:
        return _fail(exc)
    try:
        n = cache.clear(getattr(args, "namespace", None))
    except Exception as exc:
        return _fail(exc)
    finally:
        cache.close()
    ns = getattr(args, "namespace", None)
    if getattr(args, "json", False):
        print(json.dumps({"removed": n, "namespace": ns}))
    else:
        print(f"removed {n} entries" + (f" from namespace {ns!r}" if ns else ""))
    return 0


def cmd_vacuum(args: argparse.Namespace) -> int:
    try:
        cache, _ = _open(args)
    except _NoStore as missing:
        return _no_store(args, missing, purged=0)
    except Exception as exc:
        return _fail(exc)
    try:
        b = cache.backend
        if b is None:
            return _fail(
                cache.get_stats().get("backend_error") or "no persistent store is configured (backend memory)"
            )
        purged = 0
        for _ in range(100_000):  # bounded: the purge cursor wraps after one pass
            n = b.purge(5000)
            purged += n
            if n == 0 and getattr(b, "_purge_cursor", None) in (None, -(1 << 63)):
                break
        before = b.stats().extra.get("file_bytes")
        b.vacuum()
        after = b.stats().extra.get("file_bytes")
    except Exception as exc:
        return _fail(exc)
    finally:
        cache.close()
    if getattr(args, "json", False):
        print(json.dumps({"purged": purged, "file_bytes_before": before, "file_bytes_after": after}))
    else:
        print(f"purged {purged} expired or stale entries")
        if before is not None and after is not None:
            print(f"file: {_size(int(before))} -> {_size(int(after))}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        cache, _ = _open(args)
    except _NoStore as missing:
        if getattr(args, "json", False):  # a list of entries: an empty one, the why on stderr
            print("[]")
            print(str(missing), file=sys.stderr)
            return 0
        return _no_store(args, missing)
    except Exception as exc:
        return _fail(exc)
    try:
        if cache.backend is None:
            return _fail(
                cache.get_stats().get("backend_error") or "no persistent store is configured (backend memory)"
            )
        rows = cache.backend.inspect(getattr(args, "namespace", None), int(getattr(args, "limit", 20)))
    except Exception as exc:
        return _fail(exc)
    finally:
        cache.close()
    if getattr(args, "json", False):
        out = []
        for r in rows:
            d = dataclasses.asdict(r)
            d["codec_name"] = _codec_name(r.codec)
            out.append(d)
        print(json.dumps(out, indent=2))
        return 0
    if not rows:
        print("no entries")
        return 0
    print(
        f"{'namespace':<14} {'key':<18} {'codec':<16} {'size':>9} "
        f"{'last used':<19} {'expires':<19} {'cost':>8}"
    )
    for r in rows:
        key = r.key if len(r.key) <= 18 else r.key[:15] + "..."
        print(
            f"{r.namespace:<14} {key:<18} {_codec_name(r.codec):<16} {_size(r.size):>9} "
            f"{_when(r.accessed_at):<19} {_when(r.expires_at):<19} {r.cost:>7.3f}s"
        )
    return 0


def _codec_name(codec: int) -> str:
    name = _CODEC_NAMES.get(codec & 0x3F, f"codec-{codec & 0x3F}")
    if codec & 0x40:
        name += "+zlib"
    if codec & 0x80:
        name += "+signed"
    return name
