"""Run the demo: pick an Ollama (a real one at OLLAMA_HOST, else the in-process test server), run the workload
cold and then warm through AsyncOptimizedOllama, and report per-stage latencies, hit rates and the speed-up.

Cold is truly cold: the cache is a fresh SQLite file in a temporary directory (deleted afterwards), so nothing
from earlier runs or from the configured cache can leak in. Warm uses a new client and a new cache handle on
the same file, as a restarted worker would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO, cast

from .workload import StageTimes, build_items, run_pass

__all__ = ["DemoOptions", "format_report", "run_demo"]

TEST_LLM = "llama3.2:3b"
TEST_EMBED = "nomic-embed-text:latest"


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoOptions:
    """What the demo runs. ``host=None``: $OLLAMA_HOST, then the config's ollama.host."""

    items: int = 24
    host: str | None = None
    force_test_server: bool = False
    config_path: str | None = None
    progress: bool = True
    serve_metrics: bool = True
    # the test server's simulated latencies: realistic in shape, small enough for a ~10 s demo
    load_time: float = 0.4
    token_latency: float = 0.006
    prompt_eval_latency: float = 0.0002
    embed_latency: float = 0.004


# ------------------------------------------------------------------------------------------------ helpers


def _probe(host: str, timeout: float = 0.5) -> dict[str, Any] | None:
    """GET /api/version and /api/tags; None when nothing that speaks Ollama answers."""
    base = host if "://" in host else f"http://{host}"
    try:
        with urllib.request.urlopen(f"{base}/api/version", timeout=timeout) as r:
            version = json.loads(r.read()).get("version")
        with urllib.request.urlopen(f"{base}/api/tags", timeout=timeout * 4) as r:
            models = [m.get("model") or m.get("name") for m in json.loads(r.read()).get("models", [])]
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return {"version": version, "models": [m for m in models if m]}


def _pick_models(models: list[str]) -> tuple[str, str] | None:
    from infra.ollama._core import is_embedding_model

    llms = [m for m in models if not is_embedding_model(m)]
    embeds = [m for m in models if is_embedding_model(m)]
    if not llms:
        return None
    return llms[0], (embeds[0] if embeds else llms[0])


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


class _Progress:
    """A one-line progress bar on a terminal stream (stdlib only)."""

    def __init__(self, total: int, stream: TextIO | None, width: int = 30) -> None:
        self.total, self.done, self.stream, self.width = total, 0, stream, width
        self.label = ""
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())

    def start(self, label: str) -> None:
        self.label = label
        if self.stream is not None and not self.tty:  # a log file: one line per phase, no \r redraws
            self.stream.write(f"  {label} ...\n")
            self.stream.flush()
            return
        self._draw()

    def step(self) -> None:
        self.done += 1
        self._draw()

    def _draw(self) -> None:
        if self.stream is None or not self.tty:
            return
        filled = int(self.width * self.done / max(1, self.total))
        self.stream.write(
            f"\r  [{'#' * filled}{'.' * (self.width - filled)}] {self.done:>3}/{self.total}  {self.label:<40}"
        )
        self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


# ------------------------------------------------------------------------------------------------ the run


def run_demo(
    options: DemoOptions | None = None,
    *,
    progress_stream: TextIO | None = None,
    on_metrics_url: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Run cold then warm and return the report (JSON-ready; its shape is what ``format_report``
    reads and tests/ollama/test_ollama_demo.py pins)."""
    return asyncio.run(_run(options or DemoOptions(), progress_stream, on_metrics_url))


async def _run(
    opts: DemoOptions, progress_stream: TextIO | None, on_metrics_url: Callable[[str], None] | None
) -> dict[str, Any]:
    from infra.config import load_config

    cfg = load_config(opts.config_path)
    settings = dataclasses.replace(cfg.ollama, enabled=True)
    host = opts.host or os.environ.get("OLLAMA_HOST") or settings.host or "http://127.0.0.1:11434"
    backend = await _pick_backend(opts, host, settings.max_concurrency)
    metrics_server, metrics_url = _serve_metrics(opts, cfg.metrics.host, backend.info, on_metrics_url)
    items = build_items(opts.items)
    bar = _Progress(2 * len(items), progress_stream if opts.progress else None)
    try:
        passes, hits = await _cold_then_warm(
            backend, settings, items, bar, _pass_marker(metrics_server is not None)
        )
    finally:
        if backend.server is not None:
            await asyncio.to_thread(backend.server.stop)

    stats = backend.server.stats() if backend.server is not None else None
    report = _report(
        backend.info,
        passes,
        hits,
        len(items),
        backend.llm_model,
        backend.embed_model,
        cfg,
        metrics_url,
        stats,
    )
    if metrics_server is not None:
        report["_metrics_server"] = metrics_server  # the CLI may keep serving; dropped from JSON
    return report


@dataclass(slots=True)
class _Backend:
    """The Ollama the demo talks to: its URL, the two models, what the report says of it, and the
    in-process test server when one was started (stopped by ``_run``)."""

    host: str
    llm_model: str
    embed_model: str
    info: dict[str, Any]
    server: Any = None


async def _pick_backend(opts: DemoOptions, host: str, num_parallel: int) -> _Backend:
    """A real Ollama at ``host`` with a chat model pulled, else a started in-process test server."""
    found = None if opts.force_test_server else await asyncio.to_thread(_probe, host)
    picked = _pick_models(found["models"]) if found else None
    if found and picked:
        note = f"real Ollama {found['version']} at {host}"
        info = {"kind": "ollama", "host": host, "version": found["version"], "note": note}
        return _Backend(host, picked[0], picked[1], info)

    from infra.testing.ollama_server import OllamaTestServer, ServerSettings

    why = (
        "--test-server given"
        if opts.force_test_server
        else f"no Ollama answered at {host}"
        if not found
        else f"Ollama at {host} has no chat model pulled"
    )
    server = OllamaTestServer(
        ServerSettings(
            models=(TEST_LLM, TEST_EMBED),
            load_time=opts.load_time,
            token_latency=opts.token_latency,
            prompt_eval_latency=opts.prompt_eval_latency,
            embed_latency=opts.embed_latency,
            num_parallel=num_parallel,
        )
    )
    await asyncio.to_thread(server.start)
    info = {
        "kind": "test-server",
        "host": server.url,
        "version": server.settings.version,
        "note": f"in-process Ollama test server at {server.url} ({why}); simulated load "
        f"{opts.load_time}s, {opts.token_latency * 1000:.0f} ms/token",
    }
    return _Backend(server.url, TEST_LLM, TEST_EMBED, info, server)


def _serve_metrics(
    opts: DemoOptions,
    bind: str,
    backend_info: dict[str, Any],
    on_metrics_url: Callable[[str], None] | None,
) -> tuple[Any, str | None]:
    """(the /metrics server, its URL) on a free port, or (None, None); a failure to serve goes into
    ``backend_info`` and the demo runs without /metrics rather than not at all."""
    metrics_server = None
    if not opts.serve_metrics:
        return None, None
    try:
        from infra.server import serve_metrics

        metrics_server = serve_metrics(bind, 0)
        metrics_url = f"http://{bind}:{metrics_server.port}/metrics"
        if on_metrics_url is not None:
            on_metrics_url(metrics_url)
    except Exception as exc:
        backend_info["metrics_error"] = f"{type(exc).__name__}: {exc}"
        return metrics_server, None
    return metrics_server, metrics_url


async def _cold_then_warm(
    backend: _Backend, settings: Any, items: list[str], bar: _Progress, mark: Callable[[], None]
) -> tuple[dict[str, StageTimes], dict[str, dict[str, float]]]:
    """Both passes, each with a new client and cache handle on one fresh cache file (deleted after)."""
    from infra.cache import Cache, CacheConfig
    from infra.ollama import AsyncOptimizedOllama

    passes: dict[str, StageTimes] = {}
    hits: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="perf-infra-demo-") as tmp:
        cache_path = os.path.join(tmp, "cache.db")
        for label in ("cold", "warm"):
            cache = Cache(CacheConfig(path=cache_path), export_metrics=True)
            llm = AsyncOptimizedOllama(backend.host, settings=settings, cache=cache)
            try:
                if label == "cold":
                    bar.start("warming up the models")
                    await llm.warmup([backend.llm_model, backend.embed_model])
                bar.start(f"{label} pass ({len(items)} reflections)")
                mark()  # a dashboard sample at each pass's start and end: each pass is its own interval
                before = _hit_counts(llm)
                passes[label] = await run_pass(
                    llm,
                    items,
                    llm_model=backend.llm_model,
                    embed_model=backend.embed_model,
                    concurrency=settings.max_concurrency,
                    progress=bar.step,
                )
                hits[label] = _hit_rates(before, _hit_counts(llm))
                mark()
            finally:
                await llm.close()
                cache.close()
        bar.finish()
    return passes, hits


def _pass_marker(serving: bool) -> Callable[[], None]:
    """Take a /dashboard history sample now (when the demo serves one), so the charts' points fall on
    the passes' boundaries rather than wherever the 2 s sampling clock happens to be."""
    if not serving:
        return lambda: None
    from infra.server.dashboard import history_for

    history = history_for()

    def mark() -> None:
        history.sample_now()

    return mark


def _hit_counts(llm: Any) -> dict[str, tuple[float, float]]:
    """(served without a request of its own: hits + coalesced, misses) per operation."""
    return {
        op: (float(d["hits"] + d.get("coalesced", 0)), float(d["misses"]))
        for op, d in llm.cache_stats().items()
    }


def _hit_rates(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    out = {}
    for op, (h, m) in after.items():
        bh, bm = before.get(op, (0.0, 0.0))
        dh, dm = h - bh, m - bm
        out[op] = dh / (dh + dm) if dh + dm else 0.0
    return out


def _report(
    backend: dict[str, Any],
    passes: dict[str, StageTimes],
    hits: dict[str, dict[str, float]],
    n: int,
    llm_model: str,
    embed_model: str,
    cfg: Any,
    metrics_url: str | None,
    stats: dict[str, Any] | None,
) -> dict[str, Any]:
    stages = []
    for name, attr, op in (
        ("stage1 (generate)", "stage1", "generate"),
        ("stage2 (chat)", "stage2", "chat"),
        ("embed", "embed", "embed"),
        ("whole item", "item", None),
    ):
        cold, warm = getattr(passes["cold"], attr), getattr(passes["warm"], attr)
        row: dict[str, Any] = {
            "stage": name,
            "cold_p50_ms": _pct(cold, 0.5) * 1000,
            "cold_p95_ms": _pct(cold, 0.95) * 1000,
            "warm_p50_ms": _pct(warm, 0.5) * 1000,
            "warm_p95_ms": _pct(warm, 0.95) * 1000,
            "cold_hit_rate": hits["cold"].get(op, 0.0) if op else None,
            "warm_hit_rate": hits["warm"].get(op, 0.0) if op else None,
        }
        row["speedup_p50"] = row["cold_p50_ms"] / row["warm_p50_ms"] if row["warm_p50_ms"] else None
        stages.append(row)
    cold_wall, warm_wall = passes["cold"].wall, passes["warm"].wall
    return {
        "backend": backend,
        "models": {"llm": llm_model, "embed": embed_model},
        "items": n,
        "unique_items": len(set(build_items(n))),
        "config": getattr(cfg, "source", None) or "built-in defaults",
        "cache": "fresh SQLite file in a temporary directory (cold pass truly cold; deleted afterwards); "
        "warm pass = new client + new cache handle on that file, as after a worker restart",
        "stages": stages,
        "wall_s": {"cold": cold_wall, "warm": warm_wall},
        "speedup_wall": cold_wall / warm_wall if warm_wall else None,
        "metrics_url": metrics_url,
        "dashboard_url": metrics_url[: -len("/metrics")] + "/dashboard" if metrics_url else None,
        "server_stats": stats,
    }


def format_report(report: Mapping[str, object]) -> str:
    """The side-by-side table for people, from ``run_demo``'s report."""
    r = cast("Mapping[str, Any]", report)  # the JSON document run_demo builds (_report)

    def ms(v: float) -> str:
        return f"{v:,.1f}" if v >= 1 else f"{v:.3f}"

    def rate(v: float | None) -> str:
        return "-" if v is None else f"{v * 100:.0f}%"

    headers = (
        "stage",
        "cold p50 ms",
        "cold p95 ms",
        "warm p50 ms",
        "warm p95 ms",
        "hits cold",
        "hits warm",
        "speed-up p50",
    )
    rows = [
        (
            s["stage"],
            ms(s["cold_p50_ms"]),
            ms(s["cold_p95_ms"]),
            ms(s["warm_p50_ms"]),
            ms(s["warm_p95_ms"]),
            rate(s["cold_hit_rate"]),
            rate(s["warm_hit_rate"]),
            "-" if s["speedup_p50"] is None else f"{s['speedup_p50']:,.0f}x",
        )
        for s in r["stages"]
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    b = r["backend"]
    out = [
        f"Ollama:  {b['note']}",
        f"models:  {r['models']['llm']} (stages 1-2), {r['models']['embed']} (embeddings)",
        f"config:  {r['config']}",
        f"cache:   {r['cache']}",
        f"work:    {r['items']} reflections ({r['unique_items']} distinct), cold then warm",
        "",
        line(headers),
        line(tuple("-" * w for w in widths)),
        *(line(r) for r in rows),
        "",
        f"wall time: cold {r['wall_s']['cold']:.2f} s, warm {r['wall_s']['warm']:.3f} s"
        + (f"  ->  {r['speedup_wall']:,.0f}x faster" if r["speedup_wall"] else ""),
    ]
    if r.get("metrics_url"):
        out.append(
            f"metrics: served at {r['metrics_url']} while the demo ran "
            "(python -m infra metrics serve keeps one up)"
        )
    if r.get("dashboard_url"):
        out.append(
            f"see it: {r['dashboard_url']} charts the cold and warm passes "
            "(python -m infra demo --keep-serving keeps it up to look at)"
        )
    return "\n".join(out)


def main() -> int:  # pragma: no cover - convenience: python -m infra.demo.run
    report = run_demo(progress_stream=sys.stderr)
    report.pop("_metrics_server", None)
    print(format_report(report))
    return 0
