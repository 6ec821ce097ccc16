"""A WSGI app serving the metrics endpoint, for gunicorn / Flask / Django workers.

Mount it at ``/metrics`` (``werkzeug.middleware.dispatcher.DispatcherMiddleware``, a Django view, or a
path check in front of your app). Under a multi-process server with ``INFRA_METRICS_MULTIPROC_DIR`` set,
every worker answers with the combined series of all workers (``infra.metrics.multiprocess``).
"""

from __future__ import annotations

from ..metrics import MetricsRegistry, get_metrics
from ._common import Environ, Response, WSGIApp, environ_opt, environ_str, metrics_response, wsgi_app

__all__ = ["make_wsgi_app", "metrics_wsgi_app"]


def make_wsgi_app(registry: MetricsRegistry | None = None, *, token: str | None = None) -> WSGIApp:
    """A WSGI app answering GET with the metrics of ``registry`` (default: the process-wide one)."""

    def respond(environ: Environ) -> Response:
        return metrics_response(
            registry or get_metrics(),
            accept=environ_opt(environ, "HTTP_ACCEPT"),
            query=environ_str(environ, "QUERY_STRING", ""),
            authorization=environ_opt(environ, "HTTP_AUTHORIZATION"),
            token=token,
            accept_encoding=environ_opt(environ, "HTTP_ACCEPT_ENCODING"),
        )

    return wsgi_app(respond)


metrics_wsgi_app: WSGIApp = make_wsgi_app()
"""The process-wide registry as a WSGI app, no token."""
