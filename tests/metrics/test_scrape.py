"""The histogram scrape read through cached plans in a few C calls (``infra.metrics._scrape``, issue 18)
is byte for byte what a plain line-by-line rendering gives, whatever happened between two scrapes, and a
scrape while threads observe is always a consistent snapshot."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from itertools import accumulate

from hypothesis import given, settings
from hypothesis import strategies as st

from infra.metrics import Counter, Gauge, Histogram, HistogramChild, MetricsRegistry
from infra.metrics._layout import KEY_MULT
from infra.metrics._names import escape_label_value
from infra.metrics._scrape import MIN_REBUILDS, HistogramScrape
from infra.metrics.exposition import format_float, render_openmetrics, render_text

# -- the plain reference twin of the whole exposition -------------------------------------------------


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def reference_render(reg: MetricsRegistry, *, openmetrics: bool = False) -> str:
    """Every line written out one by one from the public reads (``get``, ``le_counts``)."""
    out = []
    for m in reg.collect():
        sample = m.name + "_total" if isinstance(m, Counter) and not m.name.endswith("_total") else m.name
        family = sample
        if openmetrics and isinstance(m, Counter):
            family = sample[: -len("_total")]
        if m.documentation:
            doc = m.documentation.replace("\\", "\\\\").replace("\n", "\\n")
            if openmetrics:
                doc = doc.replace('"', '\\"')
            out.append(f"# HELP {family} {doc}")
        out.append(f"# TYPE {family} {m.kind}")
        for child in m.children():
            if isinstance(m, Histogram):
                le, total = child.le_counts()
                cum = list(accumulate(le))
                for b, c in zip((*m.buckets, math.inf), cum, strict=True):
                    le_label = f'le="{format_float(b)}"'
                    out.append(f"{m.name}_bucket{_labels(m.labelnames, child.label_values, le_label)} {c}")
                out.append(f"{m.name}_count{_labels(m.labelnames, child.label_values)} {cum[-1]}")
                out.append(f"{m.name}_sum{_labels(m.labelnames, child.label_values)} {format_float(total)}")
            else:
                assert isinstance(m, (Counter, Gauge))
                value = format_float(child.get())
                out.append(f"{sample}{_labels(m.labelnames, child.label_values)} {value}")
    out.append("# EOF\n" if openmetrics else "")
    return "\n".join(out)


def _same(reg: MetricsRegistry) -> None:
    assert render_text(reg) == reference_render(reg)
    assert render_openmetrics(reg) == reference_render(reg, openmetrics=True)


def _in_thread(fn: Callable[[], object]) -> None:
    t = threading.Thread(target=fn)
    t.start()
    t.join()


# -- byte-identical to the reference ------------------------------------------------------------------


def test_every_kind_of_metric_renders_as_the_reference_before_and_after_plans_exist() -> None:
    reg = MetricsRegistry()
    reg.counter("hits_total", "Hits.", ("ns",)).labels('a"b\\c\nd').inc(3)
    reg.counter("no_suffix", 'Say "hi"\\ now\nnext').inc(2.5)
    reg.gauge("open", "Open.", ("origin",)).labels("http://x:1").set(-2)
    h = reg.histogram("req_seconds", "Latency.", ("route", "code"))
    for i, v in enumerate((0.0, 0.001, 0.0025, 0.004, 0.1, 0.3, 2.0, 700.0, 5e6, 0.05 * 1.0001)):
        h.labels(f"/r{i % 3}%s{{}}", "2xx").observe(v)
    solo = reg.histogram("size_bytes", "Sizes.", buckets=(0.0, 1.0, 1.005, 1e7))
    for v in (0.0, 0.5, 1.0, 1.004, 1.005, 2e7):
        solo.observe(v)
    reg.histogram("empty_seconds", "Never observed.", ("x",))
    for _ in range(3):  # the first scrape builds the plans, later ones use them
        _same(reg)
    h.labels("/new", "5xx").observe(0.2)  # a series added between scrapes
    h.labels("/r0%s{}", "2xx").observe(123.0)  # a key not seen before in a planned series
    _same(reg)
    solo.observe(3e6)  # the sum passes 1e6: Go's exponent form
    _same(reg)


def test_a_big_sum_a_nan_free_inf_sum_and_sums_from_several_shards_match() -> None:
    reg = MetricsRegistry()
    h = reg.histogram("h_seconds", "H.", ("a",))
    big = h.labels("big")
    big.observe(1e308)
    _same(reg)
    big.observe(1e308)  # the sum overflows to +Inf
    _same(reg)
    h.labels("tiny").observe(1e-7)  # repr spells it 1e-07: no dot
    h.labels("round").observe(999_999.5)
    _same(reg)
    h.labels("round").observe(0.5)  # exactly 1e6: 1000000.0 in repr, 1e+06 in Go
    _same(reg)
    many = h.labels("threads")
    for v in (0.1, 0.2, 0.3):
        _in_thread(lambda v=v: many.observe(v))
    many.observe(0.7)
    _same(reg)  # the sum of four shards, added in shard order


def test_a_collapse_to_the_same_number_of_keys_is_seen_as_a_new_layout() -> None:
    """The one change that keeps a snapshot's length and shards: a shard past 2048 sketch keys
    collapses its two lowest keys into one, back to 2048 keys, but other ones. Here the key that makes
    it collapse lies just above the 600 s boundary, the one before it just below: read with the plan
    of the 2048 keys before, its count would land in the ``le="600.0"`` bucket."""
    reg = MetricsRegistry()
    h = reg.histogram("h_seconds", "H.", ("a",))
    child = h.labels("x")
    keys: list[int] = []
    k = math.floor(math.log(600.0) * KEY_MULT) + 1  # the first key wholly above 600
    while len(keys) < 2049:
        if k not in h.layout.straddle:  # a key holding a boundary is counted apart (``split``)
            keys.append(k)
        k -= 1
    keys.reverse()
    for k in keys[:-1]:
        child.observe(math.exp((k + 0.5) / KEY_MULT))
    _same(reg)
    child.observe(math.exp((keys[-1] + 0.5) / KEY_MULT))  # key 2049: the collapse
    _same(reg)
    child.observe(math.exp((keys[-1] + 1.5) / KEY_MULT))
    _same(reg)


def test_new_threads_folds_timers_merges_and_resets_between_scrapes() -> None:
    reg = MetricsRegistry()
    h = reg.histogram("h_seconds", "H.", ("a",))
    a, b = h.labels("a"), h.labels("b")
    a.observe(0.1)
    _same(reg)
    _in_thread(lambda: a.observe(0.2))  # a new shard
    _same(reg)
    _in_thread(lambda: (a.observe(0.3), b.observe(5.0)))  # the dead shard folds into the base
    _same(reg)
    for i in range(10):
        a.note(0.001 * (i + 1))  # timer notes: folded by the scrape
    _same(reg)
    b.merge_state(a.state())
    _same(reg)
    h.reset()
    _same(reg)
    a.observe(0.05)
    _same(reg)


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("observe"), st.integers(0, 3), st.floats(0.0, 1e4, allow_nan=False)),
        st.tuples(st.just("thread"), st.integers(0, 3), st.floats(0.0, 1e4, allow_nan=False)),
        st.tuples(st.just("note"), st.integers(0, 3), st.floats(0.0, 10.0, allow_nan=False)),
        st.tuples(st.just("boundary"), st.integers(0, 3), st.sampled_from([0.0, 0.005, 0.1, 2.5, 600.0])),
        st.tuples(st.just("merge"), st.integers(0, 3), st.just(0.0)),
        st.tuples(st.just("reset"), st.just(0), st.just(0.0)),
        st.tuples(st.just("scrape"), st.just(0), st.just(0.0)),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.text(alphabet='%s{}"\\\n ab', max_size=6), min_size=1, max_size=4, unique=True),
    ops=_OPS,
)
def test_any_sequence_of_changes_between_scrapes_renders_as_the_reference(
    labels: list[str], ops: list[tuple[str, int, float]]
) -> None:
    reg = MetricsRegistry()
    h = reg.histogram("prop_seconds", "P.", ("v",))
    for kind, i, value in ops:
        child = h.labels(labels[i % len(labels)])
        if kind in ("observe", "boundary"):
            child.observe(value)
        elif kind == "thread":
            _in_thread(lambda c=child, v=value: c.observe(v))
        elif kind == "note":
            child.note(value)
        elif kind == "merge":
            h.labels(labels[(i + 1) % len(labels)]).merge_state(child.state())
        elif kind == "reset":
            h.reset()
        else:
            _same(reg)
    _same(reg)
    _same(reg)


# -- consistency while threads observe -----------------------------------------------------------------


def _histograms(text: str) -> dict[str, tuple[list[int], int]]:
    """label value -> (cumulative bucket counts, _count) of every series in the text."""
    got: dict[str, tuple[list[int], int]] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        series = name[name.index('a="') + 3 : name.index('"', name.index('a="') + 3)]
        buckets = got.setdefault(series, ([], -1))[0]
        if "_bucket{" in name:
            buckets.append(int(value))
        elif "_count{" in name:
            got[series] = (buckets, int(value))
    return got


def test_a_scrape_while_threads_observe_and_come_and_go_always_adds_up() -> None:
    """Two threads observe into 50 series and short-lived threads keep adding shards (whose folds
    change the shard lists under the scrape) while the main thread scrapes: in every scrape each series'
    buckets are cumulative, ``+Inf`` equals ``_count``, no count goes back and none passes what was
    observed; the last scrape is exact."""
    reg = MetricsRegistry()
    h = reg.histogram("h_seconds", "H.", ("a",))
    kids = [h.labels(str(i)) for i in range(50)]
    per_thread, churn = 400, 60
    start = threading.Barrier(4)
    done = threading.Event()

    def observe(off: int) -> None:
        start.wait()
        for r in range(per_thread):
            for j, k in enumerate(kids):
                k.observe(((r * 31 + j * 7 + off) % 997) / 100)

    def come_and_go() -> None:
        start.wait()
        for r in range(churn):
            _in_thread(lambda r=r: kids[r % len(kids)].observe(0.01 * (r + 1)))

    ts = [threading.Thread(target=observe, args=(o,)) for o in (0, 1)]
    ts.append(threading.Thread(target=come_and_go))
    for t in ts:
        t.start()
    watcher = threading.Thread(target=lambda: ([t.join() for t in ts], done.set()))
    watcher.start()
    start.wait()
    last: dict[str, int] = {}
    scrapes = 0
    while not done.is_set() or scrapes < 2:
        scrapes += 1
        for series, (buckets, count) in _histograms(render_text(reg)).items():
            assert buckets == sorted(buckets) and buckets[-1] == count, series
            assert last.get(series, 0) <= count <= 2 * per_thread + churn, series
            last[series] = count
    watcher.join()
    final = _histograms(render_text(reg))
    churned = [sum(1 for r in range(churn) if r % len(kids) == i) for i in range(len(kids))]
    assert {s: c for s, (_, c) in final.items()} == {str(i): 2 * per_thread + churned[i] for i in range(50)}
    _same(reg)


# -- stale plans: a bounded number rebuilt a scrape ---------------------------------------------------


def _touch_in_new_threads(kids: list[HistogramChild], k: int, value: float) -> None:
    """``k`` threads that each observe into every series, then end (a thread-per-request server)."""
    for j in range(k):
        _in_thread(lambda j=j: [c.observe(value * (j + 1) + 0.001 * i) for i, c in enumerate(kids)])


def _plans(h: Histogram) -> HistogramScrape:
    assert h.render_plan is not None
    return h.render_plan


def _converge(reg: MetricsRegistry, plans: HistogramScrape) -> int:
    """Scrape (exactly) until a scrape builds no plan; how many scrapes built some. Each builds at
    least ``MIN_REBUILDS`` (or what was left) and at most its budget."""
    scrapes = 0
    while True:
        before, budget = plans.rebuilds, plans.budget
        assert render_text(reg) == reference_render(reg)
        built = plans.rebuilds - before
        if built == 0:
            return scrapes
        assert built <= budget
        scrapes += 1
        assert scrapes <= -(-plans.n // MIN_REBUILDS)


def test_a_scrape_after_new_threads_touched_every_series_rebuilds_a_few_plans_and_they_come_back() -> None:
    """200 series with plans; 3 new threads touch all of them: every scrape renders exactly, builds at
    least ``MIN_REBUILDS`` new plans and reads the rest the plain way, until every series has its plan
    again: then a scrape builds none, and a later series or a new key is exact too."""
    reg = MetricsRegistry()
    h = reg.histogram("h_seconds", "H.", ("a",))
    kids = [h.labels(str(i)) for i in range(200)]
    for i, c in enumerate(kids):
        c.observe(0.001 * (i + 1))
    assert render_text(reg) == reference_render(reg)
    plans = _plans(h)
    assert MIN_REBUILDS <= plans.rebuilds <= 200  # the first scrape: no series had a plan
    _converge(reg, plans)
    assert plans.rebuilds == 200

    _touch_in_new_threads(kids, 3, 0.5)
    assert render_openmetrics(reg) == reference_render(reg, openmetrics=True)
    assert plans.rebuilds >= 200 + MIN_REBUILDS
    _converge(reg, plans)
    assert plans.rebuilds == 400  # each series rebuilt once, over one or more scrapes
    kids[5].observe(1e7)  # a key not seen before: that one series is rebuilt
    h.labels("late").observe(2.0)  # a series added: planned by this scrape (with a new plans object)
    _same(reg)
    assert _plans(h) is not plans and _plans(h).rebuilds == 402


def test_where_new_threads_keep_coming_the_budget_falls_to_its_floor_and_comes_back_when_they_stop() -> None:
    """Before every scrape new threads touch every series, so the plans a scrape builds are stale by the
    next one: the number it may build halves down to ``MIN_REBUILDS``; when the threads stop it is back
    at ``cap()`` as soon as the plans built are used, and every text is exact throughout."""
    reg = MetricsRegistry()
    h = reg.histogram("h_seconds", "H.", ("a",))
    kids = [h.labels(str(i)) for i in range(200)]
    for c in kids:
        c.observe(0.25)
    render_text(reg)
    plans = _plans(h)
    _converge(reg, plans)
    cap = plans.cap()
    assert plans.budget == cap == 200
    budgets, built = [], []
    for r in range(7):  # 200, 100, 50, 25, 12, 8, 8
        _touch_in_new_threads(kids, 2, 0.01 * (r + 1))
        before = plans.rebuilds
        assert render_text(reg) == reference_render(reg)
        budgets.append(plans.budget)
        built.append(plans.rebuilds - before)
    assert budgets == [200, 100, 50, 25, 12, 8, 8]
    assert all(MIN_REBUILDS <= b <= budget for b, budget in zip(built, budgets, strict=True))
    assert built[-1] == MIN_REBUILDS
    assert render_text(reg) == reference_render(reg)  # no new threads: last scrape's plans are used
    assert plans.budget == cap
    assert _converge(reg, plans) >= 0
