"""``dashboard``: open the live dashboard of the process serving /metrics, or serve one from here.

If a perf-infra endpoint already answers at metrics.host:metrics.port (a worker with metrics.serve, or
``metrics serve``), its dashboard is what the user wants: print the URL (and open a browser where
there is a display), then exit. Otherwise start the endpoint in this process, like ``metrics serve``,
and keep it up until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from typing import Any

from infra.cli._shared import command
from infra.config import load_config

__all__ = ["register"]


def register(sub: Any) -> None:
    p = command(
        sub,
        "dashboard",
        _dashboard,
        "open the live dashboard (hit rates, p50/p95/p99, errors, savings, breakers)",
        __doc__,
    )
    p.add_argument("--host", help="address of the endpoint (default: metrics.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="its port (default: metrics.port, 9464)")
    p.add_argument("--no-browser", action="store_true", help="only print the URL")


def _is_dashboard(base: str) -> bool:
    """True if a perf-infra dashboard answers at ``base`` (the page itself needs no token)."""
    try:
        with urllib.request.urlopen(base + "/dashboard", timeout=2) as r:
            return r.status == 200 and b"perf-infra dashboard" in r.read(4096)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _has_display() -> bool:
    # No display (ssh, containers, VS Code remote): a browser would be a text one taking over the
    # terminal, so only the URL is printed (VS Code turns it into a link and forwards the port).
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def _open(url: str) -> None:
    import contextlib
    import webbrowser

    with contextlib.suppress(Exception):  # the URL is printed; a browser that won't start is no error
        webbrowser.open(url)


def _dashboard(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    host = args.host or config.metrics.host
    port = config.metrics.port if args.port is None else args.port
    token_env = config.metrics.token_env
    token = os.environ.get(token_env) or None if token_env else None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown

    def url_for(p: int) -> tuple[str, str]:
        url = f"http://{shown}:{p}/dashboard"
        # The token goes only to the browser: never printed (it would land in terminal logs).
        return url, (f"{url}?token={token}" if token else url)

    hint = f" (add ?token=<the value of ${token_env}>)" if token else ""
    if port and _is_dashboard(f"http://{shown}:{port}"):
        url, private = url_for(port)
        if args.json:
            from infra.cli._output import emit_json

            emit_json({"url": url, "served_here": False})
        else:
            print(f"dashboard: {url}{hint}", flush=True)
        if not args.no_browser and _has_display():
            _open(private)
        return 0

    from infra.cli._shared import serve_until_stopped
    from infra.server import serve_metrics

    try:
        handle = serve_metrics(host=host, port=port, token=token)
    except OSError as exc:  # the port is taken by something that isn't a perf-infra endpoint
        print(f"perf-infra: error: {exc}; choose another with --port", file=sys.stderr)
        return 1

    def announce() -> None:
        url, private = url_for(handle.port)
        if args.json:
            from infra.cli._output import emit_json

            emit_json({"url": url, "served_here": True})
            sys.stdout.flush()
        else:
            print(f"dashboard: {url}{hint}; served by this process (Ctrl-C or SIGTERM stops)", flush=True)
        if not args.no_browser and _has_display():
            _open(private)

    return serve_until_stopped(handle, announce)
