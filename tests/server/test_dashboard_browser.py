"""/dashboard in a real headless Chromium after a workload: what a person sees is drawn and true.

Screenshots (light and dark theme) are kept under the test's tmp dir: ``dashboard.png``,
``dashboard-dark.png``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from headless_chromium import chromium_page

from infra.metrics import get_metrics
from infra.server import serve_metrics
from infra.server.dashboard import history_for
from infra.testing.dashboard_workload import run_workload

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

TOKEN = "dash-token"
FIXED_CHARTS = {"hit-rate", "calls", "errors", "saved", "entries", "bytes", "breakers", "retry-refusals"}

CHARTS_JS = """JSON.stringify([...document.querySelectorAll('.chart')].map(c => ({
  id: c.dataset.chart,
  points: +c.dataset.points,
  paths: [...c.querySelectorAll('path.line')].map(p =>
    ({n: +p.dataset.points, d: p.getAttribute('d').length})),
  nodata: !!c.querySelector('.nodata'),
})))"""
TILES_JS = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('#tiles .tile')].map(t =>
  [t.dataset.namespace, [t.querySelector('.hit-rate').textContent,
                         t.querySelector('.hit-rate').dataset.value]])))"""


def test_dashboard_draws_every_chart_with_the_numbers_get_stats_reports(
    chromium_bin: str, tmp_path: Path
) -> None:
    server = serve_metrics(port=0, token=TOKEN)
    history = history_for()
    try:
        # Two rounds with a sample around each: every rate and interval quantile has two rows to span.
        # A series that exists but never had a call (a registry reset leaves these): nothing to draw
        # for its latency, and the page must not trip over it.
        get_metrics().histogram("infra_operation_duration_seconds", "", ("operation",)).labels("never_called")
        history.sample_now()
        run_workload(tmp_path / "work", rounds=2, between_rounds=lambda _: history.sample_now())
        history.sample_now()
        stats = get_metrics().get_stats()
        url = f"http://127.0.0.1:{server.port}/dashboard?token={TOKEN}"
        with chromium_page(chromium_bin, tmp_path / "profile") as page:
            page.send("Page.navigate", {"url": url})
            try:
                page.wait_for("document.body.dataset.seq && document.querySelectorAll('.chart').length > 8")
            except AssertionError as exc:  # say what the page shows
                status = page.evaluate("(document.getElementById('status') || {}).textContent")
                raise AssertionError(f"{exc}; status: {status!r}; errors: {page.errors}") from None
            charts = json.loads(page.evaluate(CHARTS_JS))
            shot = page.screenshot(tmp_path / "dashboard.png")

            ids = {c["id"] for c in charts}
            assert ids >= FIXED_CHARTS, ids
            latency = {i for i in ids if i.startswith("latency-")}
            assert "latency-stage-never_called" not in latency
            # one latency chart per operation: two stages, a wrapped method, an origin, two Ollama calls
            for group, n in (("stage", 2), ("method", 1), ("http", 1), ("llm", 2)):
                assert len([i for i in latency if i.startswith(f"latency-{group}-")]) >= n, (group, latency)
            for c in charts:
                assert c["points"] > 0 and not c["nodata"], c
                assert c["paths"] and all(p["n"] > 0 and p["d"] > 0 for p in c["paths"]), c

            tiles = json.loads(page.evaluate(TILES_JS))
            assert set(stats["cache"]) <= set(tiles) and stats["cache"]
            for ns in stats["cache"]:
                shown, value = tiles[ns]
                # get_stats()'s hit_rate is a fraction: the tile carries it exactly and shows it in %
                rate = stats["cache"][ns]["hit_rate"]
                assert float(value) == rate and shown == f"{100 * rate:.1f} %", (
                    ns,
                    shown,
                    stats["cache"][ns],
                )

            assert page.errors == [], page.errors
            assert shot.stat().st_size > 10_000

            # The editor's dark theme: the page follows prefers-color-scheme.
            page.send(
                "Emulation.setEmulatedMedia",
                {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
            )
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(30, 30, 30)"
            page.screenshot(tmp_path / "dashboard-dark.png")
            assert page.errors == [], page.errors
            # ?theme=light wins over a dark preference (an editor whose theme the frame can't see)
            page.send("Page.navigate", {"url": url + "&theme=light"})
            page.wait_for("document.body && document.body.dataset.seq")
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"

            # Without the token the page says what to do instead of drawing nothing.
            page.send("Page.navigate", {"url": f"http://127.0.0.1:{server.port}/dashboard"})
            page.wait_for("(document.getElementById('status') || {}).textContent === 'unauthorized'")
            assert "?token=" in page.evaluate("document.getElementById('message').textContent")
        keep = os.environ.get("INFRA_DASHBOARD_SCREENSHOT")
        if keep:  # a developer's copy to look at
            Path(keep).write_bytes(shot.read_bytes())
    finally:
        server.close()
