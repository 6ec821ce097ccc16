"""Thread safety: nothing lost under concurrent increments; rendering while observing is consistent."""

from __future__ import annotations

import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.metrics import MetricsRegistry
from infra.metrics.exposition import render_text

THREADS = 4
N = 100_000


def _run(target: object, n_threads: int = THREADS) -> None:
    start = threading.Barrier(n_threads)

    def body() -> None:
        start.wait()
        target()  # type: ignore[operator]

    ts = [threading.Thread(target=body) for _ in range(n_threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
        assert not t.is_alive()


def test_four_threads_times_1e5_counter_increments_lose_nothing(registry: MetricsRegistry) -> None:
    child = registry.counter("c_total", "", ("a",)).labels("x")
    solo = registry.counter("solo_total")

    def work() -> None:
        inc, sinc = child.inc, solo.inc
        for _ in range(N):
            inc()
            sinc()

    _run(work)
    assert child.get() == THREADS * N
    assert solo.get() == THREADS * N


def test_four_threads_times_1e5_observations_lose_nothing(registry: MetricsRegistry) -> None:
    child = registry.histogram("h_seconds", "", ("a",)).labels("x")

    def work() -> None:
        obs = child.observe
        for i in range(N):
            obs((i % 1000) / 1000)

    _run(work)
    cum, total = child.cumulative()
    assert cum[-1] == THREADS * N
    assert total == pytest.approx(THREADS * sum((i % 1000) / 1000 for i in range(N)), rel=1e-12)
    assert child.sketch().count == THREADS * N


def test_gauge_inc_dec_from_threads_balances_to_zero(registry: MetricsRegistry) -> None:
    g = registry.gauge("inflight").labels()

    def work() -> None:
        for _ in range(20_000):
            g.inc()
            g.dec()

    _run(work)
    assert g.get() == 0


def test_render_while_observing_always_parses_and_never_goes_backwards(registry: MetricsRegistry) -> None:
    h = registry.histogram("h_seconds", "", ("a",))
    c = registry.counter("c_total", "", ("a",))
    stop = threading.Event()

    def observe() -> None:
        i = 0
        while not stop.is_set() and i < 2_000_000:  # bounded
            h.labels(str(i % 50)).observe((i % 997) / 100)
            c.labels(str(i % 50)).inc()
            i += 1

    writers = [threading.Thread(target=observe) for _ in range(2)]
    for w in writers:
        w.start()
    last: dict[tuple[str, str], float] = {}
    try:
        for _ in range(30):
            for fam in text_string_to_metric_families(render_text(registry)):
                groups: dict[str, list[float]] = {}
                for s in fam.samples:
                    key = (s.name, s.labels.get("a", ""))
                    if s.name.endswith("_bucket"):
                        groups.setdefault(s.labels["a"], []).append(s.value)
                    if s.name.endswith(("_count", "_total")):
                        assert s.value >= last.get(key, 0)  # counters never go backwards between scrapes
                        last[key] = s.value
                for cums in groups.values():
                    assert cums == sorted(cums)  # cumulative buckets are monotonic in every snapshot
    finally:
        stop.set()
        for w in writers:
            w.join(timeout=60)


def test_shards_of_finished_threads_are_folded_so_memory_tracks_live_threads(
    registry: MetricsRegistry,
) -> None:
    c = registry.counter("c_total").labels()
    h = registry.histogram("h_seconds").labels()
    for _ in range(40):
        t = threading.Thread(target=lambda: (c.inc(), h.observe(0.1)))
        t.start()
        t.join()
    c.inc()  # a new thread's first touch (here: this one) folds the dead ones
    h.observe(0.1)
    # seam: the per-thread shard lists (no public API tells how many shards a series holds)
    assert len(c._set.shards) <= 2 and len(h._set.shards) <= 2
    assert c.get() == 41
    assert h.cumulative()[0][-1] == 41


def test_a_forked_child_renders_even_if_another_thread_held_a_lock_at_fork(registry: MetricsRegistry) -> None:
    """Prefork workers (gunicorn, celery) fork with threads running: the child must not deadlock."""
    import os
    import time

    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    hist = registry.histogram("h_seconds", "", ("a",))
    child = hist.labels("x")
    child.observe(0.1)
    render_text(registry)  # the histogram's scrape plans exist, with their lock
    assert hist.render_plan is not None
    plans = hist.render_plan
    gauge = registry.gauge("g").labels()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        # seam: the very locks a thread may hold at fork (only holding them shows the child survives it)
        with child._set.lock, gauge._lock, registry._lock, plans.lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # the child: render, observe, register; exit 0 only if all of it worked
            code = 1
            try:
                child.observe(0.2)
                gauge.set(1)
                registry.counter("new_total").inc()
                code = 0 if 'h_seconds_count{a="x"} 2' in render_text(registry) else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise AssertionError("the forked child deadlocked")
            time.sleep(0.05)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        release.set()
        t.join(10)


def test_four_threads_of_timers_lose_nothing_while_a_reader_folds_their_batches(
    registry: MetricsRegistry,
) -> None:
    """Timers append to one shared list, folded in batches by whichever thread fills one and by every
    read: with 4 writers and a reader racing, each block is counted exactly once."""
    from infra.metrics import timed

    n = 20_000
    done = threading.Event()
    seen: list[int] = []

    def read() -> None:
        h = registry.get("infra_operation_duration_seconds")
        while not done.is_set():
            if h is not None:
                seen.append(h.labels("race").sketch().count)  # type: ignore[attr-defined]
            else:
                h = registry.get("infra_operation_duration_seconds")

    reader = threading.Thread(target=read)
    reader.start()

    def work() -> None:
        for _ in range(n):
            with timed("race", registry=registry):
                pass

    _run(work)
    done.set()
    reader.join(timeout=60)
    child = registry.get("infra_operation_duration_seconds").labels("race")  # type: ignore[union-attr]
    cum, _ = child.cumulative()
    assert cum[-1] == THREADS * n == child.sketch().count
    assert seen == sorted(seen)  # a reader never sees a count go backwards
    assert any(0 < c < THREADS * n for c in seen)  # it did read mid-run
