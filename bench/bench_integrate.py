"""Drop-in integration benchmark: the example pipelines untouched vs wrapped by perf_config, and the
per-call cost of the wrappers (layer off, pass-through, cache hit) next to the plain method and diskcache.

    python bench/bench_integrate.py            # full: realistic service latencies (scale 1)
    python bench/bench_integrate.py --quick    # smoke: latencies x0.05, fewer inputs and rounds

Part 1, end to end (seed 004's enrichment worker, seed 000's voice turn) against the Ollama API test server
and the stub TTS / STT / search / song services: the peer is the same pipeline with no layer. The wrapped
pipeline runs cold (empty cache) then warm; outputs are checked equal to the peer's on every input.
Reported: per-input p50 / p99, end-to-end wall time, and ratios (warm / cold, wrapped / untouched).

Part 2, per call (interleaved rounds, every variant in every round, rotated order): a trivial method
called on the original class; on what ``enable_caching_for_worker()`` returns with ``enabled: false``
(the original class itself); on a ``cached_class`` whose cache is off at run time (the @cached + timed
pass-through); a ``cached_class`` hit (L1 warm); and diskcache's ``memoize`` hit, the peer a user would
otherwise pick. Overheads are per call, in nanoseconds, over the plain method.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def inputs(n: int, unique: int) -> list[str]:
    import random

    feelings = [
        "stressed and overwhelmed",
        "grateful for family",
        "happy and excited",
        "sad and lonely",
        "calm and rested",
        "anxious about the deadline",
        "thankful for my friends",
        "peaceful after a walk",
    ]
    uniq = [f"I feel {feelings[i % len(feelings)]} (day {i})" for i in range(unique)]
    rng = random.Random(7)
    items = uniq + [rng.choice(uniq) for _ in range(n - unique)]
    rng.shuffle(items)
    return items


# ------------------------------------------------------------------------------------ part 1
def _config(tmp: Path) -> Any:
    from infra.config import load_config

    data = json.loads((ROOT / "examples" / "perf_config.json").read_text())
    data.pop("$schema", None)
    data["cache"]["path"] = str(tmp / "cache.db")
    (tmp / "perf_config.json").write_text(json.dumps(data))
    return load_config(tmp / "perf_config.json", use_env=False)


def _time_each(fn: Any, items: list[Any]) -> tuple[list[Any], list[float], float]:
    out, lat = [], []
    t0 = time.perf_counter()
    for x in items:
        t = time.perf_counter()
        out.append(fn(x))
        lat.append(time.perf_counter() - t)
    return out, lat, time.perf_counter() - t0


def end_to_end(scale: float, n: int, unique: int) -> list[dict[str, Any]]:
    from examples.stubs import ExampleServers
    from examples.voice.audio import speak
    from examples.voice.turn import VoiceTurn

    rows: list[dict[str, Any]] = []
    texts = inputs(n, unique)
    with ExampleServers(scale=scale) as servers, tempfile.TemporaryDirectory() as tmpdir:
        previous = servers.apply_env()
        try:
            from examples.enrichment.worker import EnrichmentWorker
            from infra.integrate import active_handle, enable_caching_for_worker, patch

            cfg = _config(Path(tmpdir))

            # enrichment: the untouched worker, then the three-line change's classes
            plain_w = EnrichmentWorker()
            plain, plain_lat, plain_wall = _time_each(plain_w.process, texts)
            plain_w.close()
            classes = enable_caching_for_worker(cfg)

            class Wrapped(EnrichmentWorker):
                def __init__(self) -> None:
                    self.scorer = classes["HybridScorer"]()
                    self.enricher = classes["PostEnricher"]()
                    self.songs = classes["SongClient"]()

            w = Wrapped()
            cold, cold_lat, cold_wall = _time_each(w.process, texts)
            work = servers.work()
            warm, warm_lat, warm_wall = _time_each(w.process, texts)
            assert servers.work() == work, "warm run asked the services for work"
            w.close()
            assert plain == cold == warm, "wrapped outputs differ from the untouched worker's"
            rows.append(
                _row("enrichment (seed 004)", plain_lat, plain_wall, cold_lat, cold_wall, warm_lat, warm_wall)
            )

            # voice: patch() in place, the pipeline unchanged
            audio = [speak(t) for t in texts]

            async def run_voice() -> tuple[list[Any], list[float], float]:
                turn = VoiceTurn()
                out, lat = [], []
                t0 = time.perf_counter()
                for a in audio:
                    t = time.perf_counter()
                    out.append(await turn.run(a))
                    lat.append(time.perf_counter() - t)
                wall = time.perf_counter() - t0
                await turn.aclose()
                return out, lat, wall

            active_handle().undo()  # type: ignore[union-attr] # the untouched voice run comes first
            vplain, vplain_lat, vplain_wall = asyncio.run(run_voice())
            handle = patch(cfg)
            vcold, vcold_lat, vcold_wall = asyncio.run(run_voice())
            work = servers.work()
            vwarm, vwarm_lat, vwarm_wall = asyncio.run(run_voice())
            assert servers.work() == work, "warm voice run asked the services for work"
            assert vplain == vcold == vwarm, "patched voice turns differ from the untouched pipeline's"
            handle.undo()
            rows.append(
                _row(
                    "voice turn (seed 000)",
                    vplain_lat,
                    vplain_wall,
                    vcold_lat,
                    vcold_wall,
                    vwarm_lat,
                    vwarm_wall,
                )
            )
        finally:
            servers.restore_env(previous)
    return rows


def _row(
    name: str, pl: list[float], pw: float, cl: list[float], cw: float, wl: list[float], ww: float
) -> dict[str, Any]:
    return {
        "pipeline": name,
        "inputs": len(pl),
        "untouched_p50_ms": statistics.median(pl) * 1e3,
        "untouched_p99_ms": pct(pl, 0.99) * 1e3,
        "untouched_s": pw,
        "cold_mean_ms": statistics.fmean(cl) * 1e3,
        "cold_s": cw,
        "warm_p50_ms": statistics.median(wl) * 1e3,
        "warm_p99_ms": pct(wl, 0.99) * 1e3,
        "warm_s": ww,
        "warm_vs_cold": cw / ww,
        "warm_vs_untouched": pw / ww,
        "cold_vs_untouched": pw / cw,
    }


# ------------------------------------------------------------------------------------ part 2
class Plain:
    def f(self, x: int) -> int:
        return x


class Configured:
    """A worker-like instance: three settings, a client, a lock, a logger and a counter (issue 14's call
    identity keys on the settings only; this measures what reading them costs on every hit)."""

    def __init__(self, weight: float = 1.0, model: str = "llama3.2:3b", top_k: int = 3) -> None:
        import logging
        import threading

        import httpx

        self.weight, self.model, self._top_k = weight, model, top_k
        self._client = httpx.Client()
        self._lock = threading.Lock()
        self.log = logging.getLogger("bench")
        self._calls = 0

    def f(self, x: int) -> int:
        return x


def per_call(rounds: int, calls: int) -> dict[str, dict[str, float]]:
    import diskcache

    from infra.cache import Cache, CacheConfig
    from infra.config import load_config
    from infra.integrate import cached_class, enable_caching_for_worker

    tmp = Path(tempfile.mkdtemp())
    off = load_config(
        _write(
            tmp, {"enabled": False, "wrap": [{"target": "bench_integrate_target:Plain", "methods": ["f"]}]}
        ),
        use_env=False,
    )
    sys.modules["bench_integrate_target"] = sys.modules[__name__]
    OffCls = enable_caching_for_worker(off)["Plain"]
    assert OffCls is Plain
    from infra.integrate import active_handle

    active_handle().undo()  # type: ignore[union-attr]
    disabled_cache = Cache(CacheConfig(enabled=False))
    PassThrough = cached_class(Plain, ["f"], cache=disabled_cache, timing=True)
    hit_cache = Cache(CacheConfig(path=str(tmp / "hit.db")))
    Hit = cached_class(Plain, ["f"], cache=hit_cache, timing=True)
    HitNoTiming = cached_class(Plain, ["f"], cache=hit_cache, timing=False)
    Keyed = cached_class(Configured, ["f"], cache=hit_cache, timing=False)
    Shared = cached_class(Configured, ["f"], cache=hit_cache, timing=False, key_attrs=[], namespace="shared")
    keyed, shared = Keyed(), Shared()
    dc = diskcache.Cache(str(tmp / "dc"))

    @dc.memoize()
    def dc_f(x: int) -> int:
        return x

    variants: dict[str, Any] = {
        "plain method": Plain().f,
        "enabled:false (original class)": OffCls().f,
        "cache off at run time (@cached+timed)": PassThrough().f,
        "cached_class hit, L1 (+timed)": Hit().f,
        "cached_class hit, L1 (no timing)": HitNoTiming().f,
        "configured instance hit, keyed on its settings": keyed.f,
        "configured instance hit, key_attrs=[] (shared)": shared.f,
        "diskcache memoize hit (peer)": dc_f,
    }
    for fn in variants.values():
        fn(1)
        fn(1)
    samples: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            fn = variants[name]
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                fn(1)
            samples[name].append((time.perf_counter_ns() - t0) / calls)
    dc.close()
    hit_cache.close()
    keyed._client.close()
    shared._client.close()
    base = statistics.median(samples["plain method"])
    out = {}
    for name, s in samples.items():
        out[name] = {
            "p50_ns": statistics.median(s),
            "p99_ns": pct(s, 0.99),
            "overhead_ns": statistics.median(s) - base,
        }
    return out


def _write(tmp: Path, data: dict[str, Any]) -> Path:
    data = {**data, "cache": {"path": str(tmp / "c.db")}, "torch": {"enabled": False}}
    p = tmp / "cfg.json"
    p.write_text(json.dumps(data))
    return p


# ------------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="latencies x0.05, fewer inputs and rounds")
    args = ap.parse_args()
    scale, n, unique = (0.05, 16, 6) if args.quick else (1.0, 24, 8)
    rounds, calls = (5, 20000) if args.quick else (11, 50000)

    print(f"== per-call cost ({rounds} interleaved rounds x {calls} calls)", flush=True)
    pc = per_call(rounds, calls)
    peer = pc["diskcache memoize hit (peer)"]["p50_ns"]
    for name, s in pc.items():
        print(
            f"  {name:40s} p50 {s['p50_ns']:8.0f} ns  p99 {s['p99_ns']:8.0f} ns  "
            f"overhead {s['overhead_ns']:+8.0f} ns"
        )
    hit = pc["cached_class hit, L1 (+timed)"]["p50_ns"]
    print(f"  cached_class hit / diskcache memoize hit: {hit / peer:.3f}x")

    print(f"\n== end to end (latency scale {scale}, {n} inputs, {unique} distinct)", flush=True)
    rows = end_to_end(scale, n, unique)
    for r in rows:
        print(
            f"  {r['pipeline']}: untouched {r['untouched_s']:.2f} s, cold {r['cold_s']:.2f} s, warm "
            f"{r['warm_s'] * 1e3:.2f} ms -> warm is {r['warm_vs_cold']:,.0f}x faster than cold, "
            f"{r['warm_vs_untouched']:,.0f}x than untouched; "
            f"per input p50 untouched {r['untouched_p50_ms']:.1f} ms, "
            f"warm {r['warm_p50_ms'] * 1e3:.0f} us (p99 {r['warm_p99_ms'] * 1e3:.0f} us)"
        )

    print(
        "\n| pipeline | untouched p50 | cold mean | warm p50 | warm p99 | end to end untouched / cold / warm "
        "| warm vs cold | warm vs untouched |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['pipeline']} ({r['inputs']} inputs) | {r['untouched_p50_ms']:.1f} ms | "
            f"{r['cold_mean_ms']:.1f} ms | "
            f"{r['warm_p50_ms'] * 1e3:.0f} µs | {r['warm_p99_ms'] * 1e3:.0f} µs | {r['untouched_s']:.2f} s / "
            f"{r['cold_s']:.2f} s / {r['warm_s'] * 1e3:.1f} ms | {r['warm_vs_cold']:,.0f}x | "
            f"{r['warm_vs_untouched']:,.0f}x |"
        )
    print("\n| per call | p50 | overhead vs plain method | ratio vs diskcache memoize hit |")
    print("| --- | --- | --- | --- |")
    for name, s in pc.items():
        print(f"| {name} | {s['p50_ns']:.0f} ns | {s['overhead_ns']:+.0f} ns | {s['p50_ns'] / peer:.3f}x |")
    off = pc["enabled:false (original class)"]["overhead_ns"]
    print(
        f"\nenabled:false per-call overhead {off:+.0f} ns (target <= 2000 ns): the original class is returned"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
