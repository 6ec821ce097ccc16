"""``metrics show|serve``: read a running /metrics endpoint, or serve one from this process."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from infra.cli._output import emit_json, table
from infra.cli._shared import action_group, command, serve_until_stopped
from infra.config import load_config

__all__ = ["NO_ENDPOINT_ADVICE", "register"]

#: what to do when no endpoint answers: the numbers live in the worker processes, so serve from them
NO_ENDPOINT_ADVICE = (
    "To read a worker's numbers, serve /metrics from the worker itself: `metrics.serve: true` in the config "
    "(infra.enable() starts it), or `infra.serve_metrics()` in the worker's code, or mount "
    "infra.metrics_asgi_app in its app. A separate `python -m infra metrics serve` shows only its own "
    "(empty) process, unless every worker runs with INFRA_METRICS_MULTIPROC_DIR set to one shared directory "
    "and the server too: then it shows them all. The cache hit counts of every process: "
    "`python -m infra cache stats`."
)


def register(sub: Any) -> None:
    cmds = action_group(sub, "metrics", "show or serve the metrics")
    show = command(cmds, "show", _show, "p50/p95/p99, errors and hit rates from a running /metrics endpoint")
    show.add_argument("--url", help="endpoint (default: http://<metrics.host>:<metrics.port>/metrics)")
    serve = command(cmds, "serve", _serve, "serve /metrics in the foreground (Ctrl-C or SIGTERM stops)")
    serve.add_argument("--host", help="bind address (default: metrics.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: metrics.port, 9464)")


def _endpoint(args: argparse.Namespace) -> tuple[str, str | None]:
    config = load_config(args.config)
    token = os.environ.get(config.metrics.token_env) or None
    if args.url:
        return args.url, token
    host = config.metrics.host if config.metrics.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{config.metrics.port}/metrics", token


def _show(args: argparse.Namespace) -> int:
    url, token = _endpoint(args)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - parses the port: "http://h:x" raises here, not deep in urllib
    except ValueError as exc:
        return _error(args, url, f"not a valid URL ({exc})")
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return _error(args, url, "not an http:// or https:// URL (e.g. http://127.0.0.1:9464/metrics)")
    try:
        request = urllib.request.Request(url + ("&" if "?" in url else "?") + "format=json")
        request.add_header("Accept", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            doc = json.load(response)
    except urllib.error.HTTPError as exc:
        return _error(args, url, f"the endpoint answered HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        return _error(
            args,
            url,
            f"no /metrics endpoint answers there ({reason}). " + NO_ENDPOINT_ADVICE,
        )
    # The endpoint's JSON document is {"metrics": [...], "stats": get_stats()}: the tables read "stats".
    stats = doc.get("stats") if isinstance(doc, dict) else None
    if not isinstance(stats, dict):
        return _error(args, url, "the answer is not an infra /metrics JSON document (no 'stats' object)")
    if args.json:
        emit_json(stats)
        return 0
    print(render_stats(stats))
    return 0


def _error(args: argparse.Namespace, url: str, message: str) -> int:
    """One line on stderr, or with --json one JSON object on stdout; exit status 1."""
    if getattr(args, "json", False):
        emit_json({"error": message, "url": url})
    else:
        print(f"perf-infra: error: {url}: {message}", file=sys.stderr)
    return 1


def render_stats(stats: dict[str, Any]) -> str:
    """The human view of get_stats(): one row per operation, then cache hit rates."""
    ops = {k: v for k, v in stats.items() if isinstance(v, dict) and "count" in v}
    nested = stats.get("operations")
    if isinstance(nested, dict):  # operations whose names would shadow a section ("cache")
        ops.update({k: v for k, v in nested.items() if isinstance(v, dict) and "count" in v})
    lines = []
    if ops:
        rows = [
            [
                name,
                s.get("count"),
                s.get("errors"),
                s.get("p50_ms"),
                s.get("p95_ms"),
                s.get("p99_ms"),
                s.get("max_ms"),
            ]
            for name, s in sorted(ops.items())
        ]
        lines.append(table(["operation", "count", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms"], rows))
    else:
        lines.append(
            "no operations recorded yet by the process(es) behind this endpoint (a standalone "
            "`python -m infra metrics serve` makes no calls of its own: serve /metrics from the workers "
            "with metrics.serve: true or infra.serve_metrics(), or give the workers and the server one "
            "INFRA_METRICS_MULTIPROC_DIR)"
        )
    cache = stats.get("cache") or {}
    if cache:
        rows = [
            [
                ns,
                c.get("hits"),
                c.get("misses"),
                _rate(c),
                c.get("errors"),
                c.get("compute_seconds_saved"),
            ]
            for ns, c in sorted(cache.items())
        ]
        lines.append("")
        lines.append(table(["cache namespace", "hits", "misses", "hit rate", "errors", "saved s"], rows))
    return "\n".join(lines)


def _rate(c: dict[str, Any]) -> str:
    """A namespace's hit rate (a fraction in every view) as a percentage; "-" before any lookup."""
    if not (c.get("hits") or 0) + (c.get("misses") or 0) or c.get("hit_rate") is None:
        return "-"
    return f"{100.0 * float(c['hit_rate']):.1f}%"


def _serve(args: argparse.Namespace) -> int:
    from infra.server import serve_metrics

    config = load_config(args.config)
    host = args.host or config.metrics.host
    port = config.metrics.port if args.port is None else args.port
    token = os.environ.get(config.metrics.token_env) or None
    handle = serve_metrics(host=host, port=port, token=token)

    def announce() -> None:
        url = f"http://{host}:{handle.port}/metrics"
        print(f"serving /metrics on {url} (Ctrl-C or SIGTERM stops)", flush=True)

    return serve_until_stopped(handle, announce)
