"""Exposition: both prometheus_client parsers (the strict OpenMetrics one too) accept our output."""

from __future__ import annotations

import json
import math
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from infra.metrics import MetricsRegistry
from infra.metrics._names import escape_label_value
from infra.metrics.exposition import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    format_float,
    json_document,
    negotiate,
    render,
    render_openmetrics,
    render_text,
)


def _populated() -> MetricsRegistry:
    reg = MetricsRegistry()
    reg.counter("infra_cache_hits_total", "Cache hits.", ("namespace",)).labels("inference").inc(3)
    reg.counter("no_suffix", "A counter without _total.").inc()
    reg.gauge("infra_http_active_connections", "Open.", ("origin",)).labels("http://127.0.0.1:1").set(2)
    h = reg.histogram("infra_http_request_duration_seconds", "Latency.", ("origin", "code"))
    for v in (0.0, 0.004, 0.1, 0.3, 2.0, 700.0):
        h.labels("http://127.0.0.1:1", "2xx").observe(v)
    reg.histogram("empty_seconds", "Never observed.", ("x",))
    return reg


def _samples(families: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}  # type: ignore[attr-defined]


def test_text_format_parses_and_histograms_have_ascending_buckets_ending_in_inf_equal_to_count() -> None:
    reg = _populated()
    fams = {f.name: f for f in parse_text(render_text(reg))}
    h = fams["infra_http_request_duration_seconds"]
    assert h.type == "histogram"
    buckets = [s for s in h.samples if s.name.endswith("_bucket")]
    les = [float(s.labels["le"]) for s in buckets]
    assert les == sorted(les) and les[-1] == math.inf
    count = next(s.value for s in h.samples if s.name.endswith("_count"))
    assert buckets[-1].value == count == 6
    assert next(s.value for s in h.samples if s.name.endswith("_sum")) == pytest.approx(702.404)
    assert fams["infra_cache_hits"].samples[0].value == 3
    assert fams["no_suffix"].samples[0].name == "no_suffix_total"


def test_strict_openmetrics_parser_accepts_the_same_registry() -> None:
    reg = _populated()
    text = render_openmetrics(reg)
    assert text.endswith("# EOF\n")
    om = _samples(parse_openmetrics(text))
    classic = _samples(parse_text(render_text(reg)))
    assert om == classic  # same samples in both formats


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.text(max_size=20), min_size=1, max_size=4, unique=True), doc=st.text(max_size=40))
def test_any_label_value_and_help_round_trips_through_both_parsers(values: list[str], doc: str) -> None:
    """Quotes, backslashes, newlines and any unicode in label values and HELP survive escaping."""
    reg = MetricsRegistry()
    c = reg.counter("infra_prop_total", doc, ("v",))
    h = reg.histogram("infra_prop_seconds", doc, ("v",))
    for i, v in enumerate(values):
        c.labels(v).inc(i + 1)
        h.labels(v).observe(0.01 * (i + 1))
    for parse, text in ((parse_text, render_text(reg)), (parse_openmetrics, render_openmetrics(reg))):
        fams = {f.name: f for f in parse(text)}
        counts = {s.labels["v"]: s.value for s in fams["infra_prop"].samples if s.name == "infra_prop_total"}
        assert counts == {v: i + 1 for i, v in enumerate(values)}
        # Leading/trailing blanks of HELP are not representable in either format (parsers strip them).
        assert fams["infra_prop"].documentation.strip() == doc.strip()
        hist = fams["infra_prop_seconds"]
        assert {s.labels["v"] for s in hist.samples} == set(values)


def test_le_values_are_canonical_floats() -> None:
    assert [format_float(x) for x in (0.005, 1.0, 10.0, math.inf, 1e-05, 12345678.0)] == [
        "0.005", "1.0", "10.0", "+Inf", "1e-05", "1.2345678e+07",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("accept", "fmt", "expected"),
    [
        (None, None, "text"),
        ("*/*", None, "text"),
        ("text/plain;version=0.0.4", None, "text"),
        (
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
            "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            None,
            "openmetrics",
        ),  # what Prometheus sends
        ("application/json", None, "json"),
        ("text/html,application/json;q=0.9", None, "json"),
        ("application/openmetrics-text;q=0.2, text/plain;q=0.8", None, "text"),
        ("application/openmetrics-text;q=0", None, "text"),
        ("image/png", None, "text"),
        ("application/openmetrics-text", "json", "json"),
        (None, "openmetrics", "openmetrics"),
        (None, "prometheus", "text"),
    ],
)
def test_negotiation_table(accept: str | None, fmt: str | None, expected: str) -> None:
    assert negotiate(accept, fmt) == expected


def test_unknown_format_parameter_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        negotiate(None, "xml")


def test_render_returns_the_matching_content_type() -> None:
    reg = _populated()
    assert render(reg, "text")[1] == CONTENT_TYPE_TEXT
    assert render(reg, "openmetrics")[1] == CONTENT_TYPE_OPENMETRICS
    body, ctype = render(reg, "json")
    assert ctype == CONTENT_TYPE_JSON
    doc = json.loads(body)
    assert doc == json.loads(json.dumps(json_document(reg)))


def test_json_document_has_series_buckets_quantiles_and_stats() -> None:
    # The cache declares its stats section when infra.cache.observability is imported; import it here so
    # the test doesn't depend on another test having imported the cache first.
    import infra.cache.observability  # noqa: F401

    doc = json_document(_populated())
    by_name = {m["name"]: m for m in doc["metrics"]}
    [series] = by_name["infra_http_request_duration_seconds"]["series"]
    assert series["labels"] == {"origin": "http://127.0.0.1:1", "code": "2xx"}
    assert series["count"] == 6 and series["buckets"]["+Inf"] == 6 and series["buckets"]["0.1"] == 3
    assert series["min"] == 0.0 and series["max"] == 700.0
    assert series["p50"] == pytest.approx(0.3, rel=0.01)  # numpy method="higher": rank ceil(0.5 * 5) = 3
    assert by_name["empty_seconds"]["series"] == []
    assert "cache" in doc["stats"]
    json.dumps(doc, allow_nan=False)


def test_help_with_quotes_is_escaped_only_where_the_format_requires() -> None:
    reg = MetricsRegistry()
    reg.gauge("g", 'say "hi"\\ now\nnext')
    assert '# HELP g say "hi"\\\\ now\\nnext' in render_text(reg)
    assert '# HELP g say \\"hi\\"\\\\ now\\nnext' in render_openmetrics(reg)


def test_numpy_scalars_observed_render_in_every_format() -> None:
    """ML pipelines hand over numpy scalars; float32 isn't a float subclass, so reads must convert."""
    import numpy as np

    reg = MetricsRegistry()
    h = reg.histogram("h_seconds")
    h.observe(np.float64(0.5))
    h.observe(np.float32(0.25))
    reg.counter("c_total").inc(np.int64(2))
    reg.gauge("g").set(np.float32(3))
    assert "h_seconds_sum 0.75" in render_text(reg)
    list(parse_openmetrics(render_openmetrics(reg)))
    doc = json.loads(render(reg, "json")[0])
    [series] = next(m for m in doc["metrics"] if m["name"] == "h_seconds")["series"]
    assert series["min"] == 0.25 and series["max"] == 0.5


def _reference_histogram_lines(reg: MetricsRegistry) -> list[str]:
    """The histogram sample lines written out one by one from ``le_counts`` (the plain twin of the
    one-template-per-series rendering exposition does)."""
    lines = []
    for m in reg.collect():
        if m.kind != "histogram":
            continue
        for child in m.children():
            pairs = zip(m.labelnames, child.label_values, strict=True)
            lbl = ",".join(f'{n}="{escape_label_value(v)}"' for n, v in pairs)
            le, total = child.le_counts()
            tail = f"{{{lbl}}}" if lbl else ""
            for b, c in zip((*m.buckets, math.inf), accumulate(le), strict=True):
                lines.append(f'{m.name}_bucket{{{lbl}{"," if lbl else ""}le="{format_float(b)}"}} {c}')
            lines.append(f"{m.name}_count{tail} {sum(le)}")
            lines.append(f"{m.name}_sum{tail} {format_float(total)}")
    return lines


@settings(max_examples=120, deadline=None)
@given(
    labels=st.lists(st.text(alphabet='%s{}"\\\n ab', max_size=8), min_size=1, max_size=4, unique=True),
    values=st.lists(
        st.one_of(
            st.floats(min_value=0.0, max_value=1e9, allow_nan=False),
            st.sampled_from([0.0, 0.005, 0.1, 1.0, 2.5, 999_999.9999999999, 1e6, 5e6]),
        ),
        max_size=30,
    ),
)
def test_histogram_text_is_the_line_by_line_rendering(labels: list[str], values: list[float]) -> None:
    """Byte for byte what writing each line out gives: ``%`` and braces in label values, sums past
    1e6 (Go's exponent form), zeros, values on boundaries."""
    reg = MetricsRegistry()
    h = reg.histogram("prop_seconds", "P.", ("v",))
    solo = reg.histogram("prop_solo_bytes", "S.", buckets=(0.0, 1.0, 1.005, 1e7))
    for i, v in enumerate(values):
        h.labels(labels[i % len(labels)]).observe(v)
        solo.observe(v)
    for lbl in labels:
        h.labels(lbl)
    got = [ln for ln in render_text(reg).splitlines() if not ln.startswith("#")]
    assert got == _reference_histogram_lines(reg)
    assert render_openmetrics(reg).count("prop_seconds_bucket") == len(labels) * (len(h.buckets) + 1)
