"""What every /metrics front end shares: bearer-token check and the response for a request."""

from __future__ import annotations

import contextlib
import hmac
import importlib
from urllib.parse import parse_qs

# The cache's get_stats() section: present (empty) before the first cache call, as the page expects.
from ..cache import observability as _cache_observability  # noqa: F401
from ..metrics import MetricsRegistry, get_metrics
from ..metrics.exposition import negotiate, render

__all__ = ["Response", "accepts_gzip", "authorized", "metrics_response", "series_count"]

# Above this many series a scrape renders on a worker thread instead of the event loop. Text for 1000
# histogram series takes ~17-60 ms (bench/bench_metrics.py; more sketch keys per series cost more), so
# 64 series stay well under a few ms inline, and a thread hop per scrape costs nothing that matters.
INLINE_RENDER_MAX_SERIES = 64
GZIP_MIN_BYTES = 1024

Response = tuple[int, list[tuple[str, str]], bytes]

# Where the parts declare their get_stats() views (beside the histograms they read). A process serving a
# fleet (multi-process mode, e.g. ``python -m infra metrics serve`` beside the workers) shows series of
# parts it may never have imported itself, so it imports these declarations; a worker imported them
# when it made its calls.
PART_DECLARATIONS = ("infra.http._metrics", "infra.ollama._handles", "infra.db.timing")


def declare_parts(registry: MetricsRegistry) -> None:
    """Import every part's view declarations when ``registry`` combines a fleet (see above)."""
    if registry.multiprocess:
        for module in PART_DECLARATIONS:
            # A part whose optional dependency is missing has no series either.
            with contextlib.suppress(ImportError):
                importlib.import_module(module)


declare_parts(get_metrics())


def authorized(header: str | None, token: str | None) -> bool:
    """True if no token is required, or ``header`` is ``Bearer <token>`` (constant-time compare)."""
    if token is None:
        return True
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())


def series_count(registry: MetricsRegistry) -> int:
    return sum(m.series_count() for m in registry.collect())


def metrics_response(
    registry: MetricsRegistry | None,
    *,
    accept: str | None,
    query: str,
    authorization: str | None,
    token: str | None,
    accept_encoding: str | None = None,
) -> Response:
    """Status, headers and body for one GET of the metrics endpoint (pure apart from rendering).

    Bodies over ``GZIP_MIN_BYTES`` are gzip-compressed when ``accept_encoding`` allows it (Prometheus
    always asks): 1000 histogram series are ~2.5 MB of text and compress ~20x.
    """
    if not authorized(authorization, token):
        body = b"401 Unauthorized: send 'Authorization: Bearer <token>'\n"
        return (
            401,
            [("Content-Type", "text/plain; charset=utf-8"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
            body,
        )
    fmt = parse_qs(query).get("format", [None])[0] if query else None
    try:
        kind = negotiate(accept, fmt)
    except ValueError as exc:
        return 400, [("Content-Type", "text/plain; charset=utf-8")], f"400 Bad Request: {exc}\n".encode()
    # With multi-process mode on, every worker answers with the combined series of all workers.
    body, ctype = render((registry or get_metrics()).combined_view(), kind)
    headers = [("Content-Type", ctype), ("Cache-Control", "no-store"), ("Vary", "Accept, Accept-Encoding")]
    if len(body) >= GZIP_MIN_BYTES and accepts_gzip(accept_encoding):
        import gzip

        # Level 1: most of the size win for a fraction of the CPU of the default level 9.
        body = gzip.compress(body, compresslevel=1)
        headers.append(("Content-Encoding", "gzip"))
    return 200, headers, body


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True if an Accept-Encoding header allows gzip (listed, or ``*``, with q > 0)."""
    if not accept_encoding:
        return False
    for part in accept_encoding.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        key, _, value = params.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value) > 0
            except ValueError:
                return False
        return True
    return False
