"""Turn client keyword overrides into one HTTPSettings, and decide which origins speak HTTP/2."""

from __future__ import annotations

import dataclasses
from typing import Any

from infra.http._policy import HTTPSettings

__all__ = ["DEFAULT", "backend_for", "resolve_settings", "settings_from_config", "tls_context", "uses_http2"]


class _Default:
    """Sentinel: "use the configured value" (None already means "no limit")."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Any = _Default()

_FIELDS = {f.name for f in dataclasses.fields(HTTPSettings)}


def resolve_settings(settings: HTTPSettings | None, overrides: dict[str, Any]) -> HTTPSettings:
    """``AsyncPerfClient(retry=RetryPolicy(attempts=1), http2=True)`` → one HTTPSettings value."""
    base = settings if settings is not None else HTTPSettings()
    unknown = set(overrides) - _FIELDS
    if unknown:
        raise TypeError(f"unknown client setting(s) {sorted(unknown)}; expected some of {sorted(_FIELDS)}")
    if "http2_hosts" in overrides:
        overrides["http2_hosts"] = tuple(overrides["http2_hosts"])
    return dataclasses.replace(base, **overrides) if overrides else base


_h2_memo: dict[tuple[tuple[str, ...], str], bool] = {}


def uses_http2(settings: HTTPSettings, origin: str) -> bool:
    """Whether ``origin`` (scheme://host:port) goes over HTTP/2: ``http2=True`` or a match in
    ``http2_hosts`` by host or host:port."""
    if settings.http2:
        return True
    if not settings.http2_hosts:
        return False
    key = (settings.http2_hosts, origin)
    found = _h2_memo.get(key)
    if found is None:
        hostport = origin.split("://", 1)[1]
        host = hostport.rsplit(":", 1)[0]
        found = hostport in settings.http2_hosts or host in settings.http2_hosts
        if len(_h2_memo) < 4096:
            _h2_memo[key] = found
    return found


def backend_for(settings: HTTPSettings, url: str, origin: str) -> str:
    """Which transport carries a request: "h2c" / "h2" (httpx + h2, cleartext prior knowledge or TLS ALPN)
    for HTTP/2 origins, else "aiohttp", or "h1" (httpx) when ``backend="httpx"``."""
    if uses_http2(settings, origin):
        return "h2c" if url.startswith("http:") else "h2"
    return "h1" if settings.backend == "httpx" else "aiohttp"


def settings_from_config(section: Any = None) -> HTTPSettings:
    """HTTPSettings from an ``http`` config section, or from the process-wide config when None; there the
    top-level ``enabled`` and ``metrics.enabled`` switches apply too (off means off)."""
    if section is not None:
        return HTTPSettings.from_config(section)
    from infra.config import get_config

    cfg = get_config()
    settings = HTTPSettings.from_config(cfg.http)
    if not getattr(cfg, "enabled", True):
        return HTTPSettings.passthrough(settings)
    metrics = getattr(cfg, "metrics", None)
    if metrics is not None and not getattr(metrics, "enabled", True):
        settings = dataclasses.replace(settings, metrics=False)
    return settings


def tls_context(verify: bool | str) -> Any:
    """A fresh SSLContext for one transport: system roots (True), a CA bundle (path), or no verification
    (False). Fresh per transport because httpx configures ALPN on the context it is handed."""
    import ssl

    if verify is False:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if verify is True:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=verify)
