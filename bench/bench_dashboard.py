"""/dashboard: page weight, the history ring's memory, and what watching costs the observed process.

    python bench/bench_dashboard.py            # full run (~1.5 minutes, 60 s of it a real browser)
    python bench/bench_dashboard.py --quick    # smoke run (~20 s)
    python bench/bench_dashboard.py --no-browser

The observed process is this one: it runs the dashboard workload (every kind of series the page draws:
cache namespaces, timed stages, a wrapped method, an HTTP origin, Ollama calls) and serves /metrics and
/dashboard from the thread server. Figures:

  page weight        bytes of the HTML, script and style the page loads (raw and gzip), and of the
                     first /data answer (an hour of history) and of one refresh (new rows only)
  ring memory        ``MetricsHistory.nbytes()`` for this workload's columns, its ceiling
                     (``max_nbytes()``), and tracemalloc's count of everything a full ring holds
  sample CPU         CPU of one history sample (``ColumnSampler``), taken every 2 s
  refresh CPU        CPU the server thread spends answering one page refresh (``/data?since=``),
                     measured as this process's CPU time while a separate client process polls
  peer: scrape CPU   the same for one /metrics scrape (text), what Prometheus costs the process
  budget             sample CPU / 2 s + refresh CPU / 5 s, as % of one core (target <= 1 %)
  browser            this process's CPU over 60 s while headless Chromium shows the page at the
                     default refresh (everything: sampler, refreshes, idle server), % of one core

Rounds of the CPU cases are interleaved (refresh, scrape, scrape, refresh, ...); medians reported.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infra.metrics import get_metrics  # noqa: E402
from infra.metrics.history import MetricsHistory  # noqa: E402
from infra.server import serve_metrics  # noqa: E402
from infra.server._dashboard_source import ColumnSampler  # noqa: E402
from infra.server.dashboard import DEFAULT_REFRESH_SECONDS, history_for, rows_json  # noqa: E402
from infra.testing.dashboard_workload import run_workload  # noqa: E402

STATIC = ROOT / "infra" / "server" / "static"

# A client in its own process, so only the server's side of each request is charged to us.
CLIENT = r"""
import sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    with urllib.request.urlopen(url, timeout=10) as r:
        r.read()
"""


def cpu() -> float:
    # CPU of every thread of this process (the server's included), at ns resolution (os.times ticks 10 ms)
    return time.process_time()


def server_cpu_per_request(url: str, n: int) -> float:
    """This process's CPU seconds per request while another process sends ``n`` of them."""
    before = cpu()
    subprocess.run([sys.executable, "-c", CLIENT, url, str(n)], check=True)
    return (cpu() - before) / n


def page_weight(base: str, seq: int) -> dict[str, int]:
    out: dict[str, int] = {}
    total = b""
    for name in ("dashboard.html", "dashboard.js", "dashboard.css"):
        body = (STATIC / name).read_bytes()
        out[name] = len(body)
        total += body
    out["page_raw"] = len(total)
    out["page_gzip"] = len(gzip.compress(total, 9))
    with urllib_open(f"{base}/dashboard/data?since=0") as body:
        out["data_first"] = len(body)
    with urllib_open(f"{base}/dashboard/data?since={seq - 1}") as body:
        out["data_refresh"] = len(body)
    return out


class urllib_open:  # a tiny context manager returning the body
    def __init__(self, url: str) -> None:
        import urllib.request

        with urllib.request.urlopen(url, timeout=10) as r:
            self.body: bytes = r.read()

    def __enter__(self) -> bytes:
        return self.body

    def __exit__(self, *exc: object) -> None:
        pass


def ring_memory(columns: dict[str, float], capacity_rows: int) -> dict[str, float]:
    """A ring filled with ``capacity_rows`` samples like this row (counters growing, latencies moving):
    its own count and tracemalloc's, and what opening the page on a full hour sends and costs."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    h = MetricsHistory(lambda: columns)
    t0 = time.time() - capacity_rows * h.interval
    for i in range(capacity_rows):
        row = {
            k: (v + i if k.split("|")[0] in COUNTERS else v * (1 + 0.1 * (i % 7))) for k, v in columns.items()
        }
        h.record(row, t=t0 + i * h.interval)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    c = time.process_time()
    body = json.dumps(rows_json(h.since(0)), separators=(",", ":"), allow_nan=False).encode()
    first_cpu = time.process_time() - c
    return {
        "columns": len(columns),
        "nbytes": h.nbytes(),
        "traced": after - before,
        "max": h.max_nbytes(),
        "hour_json": len(body),
        "hour_gzip": len(gzip.compress(body, 1)),
        "hour_cpu_ms": first_cpu * 1000,
    }


COUNTERS = {"hits", "misses", "cache_errors", "saved", "calls", "errors", "denied"}


def browser_cpu(url: str, seconds: float) -> float | None:
    """% of one core this process spends while headless Chromium shows ``url`` for ``seconds``."""
    sys.path.insert(0, str(ROOT / "tests" / "server"))
    from headless_chromium import chromium_page, chromium_path

    binary = chromium_path()
    if binary is None:
        return None
    with tempfile.TemporaryDirectory() as tmp, chromium_page(binary, Path(tmp) / "profile") as page:
        page.send("Page.navigate", {"url": url})
        page.wait_for("document.body.dataset.seq")
        t0, c0 = time.monotonic(), cpu()
        time.sleep(seconds)
        used = cpu() - c0
        elapsed = time.monotonic() - t0
        assert not page.errors, page.errors
    return 100.0 * used / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    rounds, per_round = (3, 20) if args.quick else (9, 50)
    browser_s = 10.0 if args.quick else 60.0

    server = serve_metrics(port=0)
    base = f"http://127.0.0.1:{server.port}"
    history = history_for()

    def sample(_: int) -> None:
        history.sample_now()

    with tempfile.TemporaryDirectory() as tmp:
        run_workload(tmp, rounds=2, between_rounds=sample)
    history.sample_now()
    row = ColumnSampler(get_metrics())()
    assert row is not None
    print(f"workload done: {len(row)} history columns", file=sys.stderr)

    weight = page_weight(base, history.seq)
    mem = ring_memory(row, history.capacity)

    # CPU of one sample (the sampler thread paused so it doesn't interleave).
    history.stop()
    sampler = ColumnSampler(get_metrics())
    sample_cpu = []
    for _ in range(rounds):
        t = time.thread_time()
        for _ in range(per_round):
            sampler()
        sample_cpu.append((time.thread_time() - t) / per_round)

    refresh: list[float] = []
    scrape: list[float] = []
    for r in range(rounds):
        cases = [("refresh", refresh), ("scrape", scrape)]
        for name, out in cases if r % 2 == 0 else cases[::-1]:
            history.sample_now()  # one new row per round, as between two real refreshes
            url = f"{base}/dashboard/data?since={history.seq - 1}" if name == "refresh" else f"{base}/metrics"
            out.append(server_cpu_per_request(url, per_round))
    history.start()

    browser = None if args.no_browser else browser_cpu(f"{base}/dashboard", browser_s)
    server.close()

    s_ms, r_ms, p_ms = (statistics.median(x) * 1000 for x in (sample_cpu, refresh, scrape))
    budget = 100.0 * (s_ms / 1000 / history.interval + r_ms / 1000 / DEFAULT_REFRESH_SECONDS)
    result = {
        "page_weight_bytes": weight,
        "ring_memory_bytes": mem,
        "sample_cpu_ms": round(s_ms, 3),
        "refresh_cpu_ms": round(r_ms, 3),
        "scrape_cpu_ms": round(p_ms, 3),
        "refresh_vs_scrape": round(r_ms / p_ms, 2),
        "budget_pct_of_core": round(budget, 3),
        "browser_pct_of_core": None if browser is None else round(browser, 3),
    }
    print(json.dumps(result, indent=2))
    kib = 1024
    print("\n| figure | value |\n|---|---|")
    print(
        f"| page: HTML + script + style | {weight['page_raw'] / kib:.1f} KiB "
        f"({weight['page_gzip'] / kib:.1f} KiB gzip); no other request |"
    )
    print(
        f"| /data: first load (whole history) / one refresh | {weight['data_first'] / kib:.1f} KiB / "
        f"{weight['data_refresh'] / kib:.1f} KiB |"
    )
    print(
        f"| opening the page on a full hour ({mem['columns']} columns x {history.capacity} rows) | "
        f"{mem['hour_json'] / kib:.0f} KiB JSON ({mem['hour_gzip'] / kib:.0f} KiB gzip), "
        f"{mem['hour_cpu_ms']:.0f} ms CPU, once per page load |"
    )
    print(
        f"| ring, {mem['columns']} columns x {history.capacity} rows | {mem['nbytes'] / kib:.0f} KiB arrays, "
        f"{mem['traced'] / kib:.0f} KiB traced; ceiling {mem['max'] / kib / kib:.1f} MiB |"
    )
    print(f"| one history sample (every {history.interval:.0f} s) | {s_ms:.2f} ms CPU |")
    print(f"| one page refresh (every {DEFAULT_REFRESH_SECONDS:.0f} s), server side | {r_ms:.2f} ms CPU |")
    ratio = r_ms / p_ms
    print(
        f"| peer: one /metrics text scrape, server side | {p_ms:.2f} ms CPU (refresh/scrape {ratio:.2f}x) |"
    )
    print(f"| sampling + refreshing at the defaults | {budget:.3f} % of one core (target <= 1 %) |")
    if browser is not None:
        what = f"measured: this process while Chromium shows the page, {browser_s:.0f} s"
        print(f"| {what} | {browser:.3f} % of one core |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
