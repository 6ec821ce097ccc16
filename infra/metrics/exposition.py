"""Render a registry as Prometheus text 0.0.4, OpenMetrics 1.0.0 or JSON; pick one from a request.

Rendering takes no registry-wide lock, so observers never wait for a scrape: counters and gauges are
read through their snapshot methods, histograms through ``_scrape`` (every series read, counted and
formatted in a few long C calls from per-series plans, no lock in the steady state: why, the GIL, is
there). Sample lines differ between the two text formats only in metadata (family names of counters,
HELP escaping, ``# EOF``), so each child caches what it renders once (a line prefix; for a histogram
series all its lines as one ``%`` template).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from itertools import accumulate
from typing import Any

from ._core import Counter, Histogram, Metric
from ._names import format_float
from ._registry import MetricsRegistry, get_metrics, series_stats
from ._scrape import HistogramScrape

__all__ = [
    "CONTENT_TYPE_JSON",
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "FORMATS",
    "format_float",
    "negotiate",
    "render",
    "render_json",
    "render_openmetrics",
    "render_text",
]

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
CONTENT_TYPE_JSON = "application/json"
FORMATS = {"text": CONTENT_TYPE_TEXT, "openmetrics": CONTENT_TYPE_OPENMETRICS, "json": CONTENT_TYPE_JSON}


def _help_text(doc: str) -> str:
    return doc.replace("\\", "\\\\").replace("\n", "\\n")


def _help_openmetrics(doc: str) -> str:
    return doc.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _sample_name(m: Metric) -> str:
    if isinstance(m, Counter) and not m.name.endswith("_total"):
        return m.name + "_total"
    return m.name


def _family_openmetrics(m: Metric) -> str:
    # OpenMetrics names a counter family without `_total`; its sample adds it.
    if isinstance(m, Counter) and m.name.endswith("_total"):
        return m.name[: -len("_total")]
    return m.name


def _prefixes(m: Metric, child: Any) -> list[str]:
    """The cached line prefix (name + labels + space) of a counter's or gauge's sample."""
    pre: list[str] | None = child.render_cache
    if pre is None:
        lbl = child.label_text
        pre = child.render_cache = [f"{_sample_name(m)}{{{lbl}}} " if lbl else f"{_sample_name(m)} "]
    return pre


def _samples(m: Metric, out: list[str]) -> None:
    if isinstance(m, Histogram):
        plan = m.render_plan
        if plan is None or plan.n != m.series_count():
            plan = m.render_plan = HistogramScrape(m, plan)
        plan.lines(out)
    else:
        for plain in m.children():
            out.append(_prefixes(m, plain)[0] + format_float(plain.get()))


def _render(
    registry: MetricsRegistry | None,
    family: Callable[[Metric], str],
    help_text: Callable[[str], str],
    end: str,
) -> str:
    out: list[str] = []
    for m in (registry or get_metrics()).collect():
        name = family(m)
        if m.documentation:
            out.append(f"# HELP {name} {help_text(m.documentation)}")
        out.append(f"# TYPE {name} {m.kind}")
        _samples(m, out)
    out.append(end)
    return "\n".join(out)


def render_text(registry: MetricsRegistry | None = None) -> str:
    """Prometheus text exposition format 0.0.4."""
    return _render(registry, _sample_name, _help_text, "")


def render_openmetrics(registry: MetricsRegistry | None = None) -> str:
    """OpenMetrics 1.0.0 text format (ends with ``# EOF``)."""
    return _render(registry, _family_openmetrics, _help_openmetrics, "# EOF\n")


def _json_value(v: float | None) -> float | str | None:
    if v is None:
        return None
    if math.isfinite(v):
        return v
    return format_float(v)  # JSON has no Inf/NaN: spell them as Prometheus does


def json_document(registry: MetricsRegistry | None = None) -> dict[str, Any]:
    """The JSON form: every metric and series, histogram quantiles from the sketch, and get_stats()."""
    reg = registry or get_metrics()
    metrics: list[dict[str, Any]] = []
    for m in reg.collect():
        series: list[dict[str, Any]] = []
        if isinstance(m, Histogram):
            for child in m.children():
                labels = dict(zip(m.labelnames, child.label_values, strict=True))
                le, total = child.le_counts()
                cum = list(accumulate(le))
                st = series_stats(child)
                entry: dict[str, Any] = {"labels": labels, "count": cum[-1], "sum": total}
                entry["buckets"] = {
                    format_float(b): c for b, c in zip((*m.buckets, math.inf), cum, strict=True)
                }
                for k in ("min", "max", "mean", "p50", "p95", "p99", "p999"):
                    entry[k] = _json_value(st[k])
                series.append(entry)
        else:
            for plain in m.children():
                labels = dict(zip(m.labelnames, plain.label_values, strict=True))
                series.append({"labels": labels, "value": _json_value(plain.get())})
        metrics.append({"name": m.name, "type": m.kind, "help": m.documentation, "series": series})
    return {"metrics": metrics, "stats": reg.get_stats()}


def render_json(registry: MetricsRegistry | None = None) -> str:
    return json.dumps(json_document(registry), separators=(",", ":"), allow_nan=False)


def _parse_accept(accept: str) -> Iterable[tuple[float, int, str]]:
    for pos, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        yield q, pos, media


def negotiate(accept: str | None = None, fmt: str | None = None) -> str:
    """Which format to serve: ``fmt`` (a ``?format=`` value) wins, else the Accept header.

    Returns "text", "openmetrics" or "json". ``application/openmetrics-text`` (Prometheus asks for it
    first) gets OpenMetrics 1.0.0, ``application/json`` JSON, anything else the 0.0.4 text format.
    Raises ValueError for an unknown ``fmt``.
    """
    if fmt:
        f = fmt.strip().lower()
        aliases = {"prometheus": "text", "om": "openmetrics", "openmetrics": "openmetrics", "text": "text"}
        if f == "json":
            return "json"
        if f in aliases:
            return aliases[f]
        raise ValueError(f"unknown format {fmt!r}: use json, text or openmetrics")
    if not accept:
        return "text"
    best: tuple[float, int, str] | None = None
    for q, pos, media in _parse_accept(accept):
        if q <= 0:
            continue
        if media == "application/openmetrics-text":
            kind = "openmetrics"
        elif media == "application/json":
            kind = "json"
        elif media in ("text/plain", "text/*", "*/*"):
            kind = "text"
        else:
            continue
        # Highest q wins; among equal q, the first listed.
        if best is None or q > best[0] or (q == best[0] and pos < best[1]):
            best = (q, pos, kind)
    return best[2] if best else "text"


def render(registry: MetricsRegistry | None = None, kind: str = "text") -> tuple[bytes, str]:
    """Body and Content-Type for ``kind`` ("text", "openmetrics" or "json")."""
    if kind == "openmetrics":
        return render_openmetrics(registry).encode(), CONTENT_TYPE_OPENMETRICS
    if kind == "json":
        return render_json(registry).encode(), CONTENT_TYPE_JSON
    return render_text(registry).encode(), CONTENT_TYPE_TEXT
