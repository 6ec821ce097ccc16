"""Calls to the metrics' public verbs with a misspelled keyword or a misread result: each must be a mypy error
(see test_typing.py). ``well_typed_calls_stay_clean`` holds the calls a typed user writes: they carry no
ignore."""

from __future__ import annotations

from infra.metrics import CounterChild, HistogramChild, MetricsRegistry, Timer


def registry_verbs(reg: MetricsRegistry) -> None:
    reg.histogram_stats("h", scal=1000.0)  # type: ignore[call-arg]
    reg.histogram_stats("h")[0]["p9"]  # type: ignore[typeddict-item]
    reg.counter("c", "doc", labelname=("a",))  # type: ignore[call-arg]
    # labels() takes any value by position or keyword (str()'d, as prometheus_client does): only what it
    # returns is checked
    reg.counter("c", "doc", labelnames=("a",)).labels("x").observe(1.0)  # type: ignore[attr-defined]
    reg.histogram("h", "doc").labels().time().stop()  # type: ignore[attr-defined]
    reg.gauge("g", "doc").children()[0].observe(1.0)  # type: ignore[attr-defined]


def well_typed_calls_stay_clean(reg: MetricsRegistry) -> None:
    """No ignore here: these must type-check as written."""
    hits: CounterChild = reg.counter("c", "doc", labelnames=("ns", "n")).labels("inference", 3)
    hist: HistogramChild = reg.histogram("h", "doc", labelnames=("op",)).labels(op="x")
    timer: Timer = hist.time()
    with timer:
        hits.inc()
    for child in reg.histogram("h", "doc", labelnames=("op",)).children():
        child.observe(0.1)
    p95: float | None = reg.histogram_stats("h", scale=1000.0)[0]["p95"]
    labels: dict[str, str] = reg.histogram_stats("h")[0]["labels"]
    row = reg.get_stats()["timed op"]
    count = row.get("count")
    del p95, labels, count
