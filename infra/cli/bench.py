"""``bench [NAME ...] [--quick]``: run the side-by-side benchmarks in bench/ (a source checkout's)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

from infra.cli._shared import command

__all__ = ["register"]


def register(sub: Any) -> None:
    bench = command(
        sub, "bench", _bench, "run bench/bench_*.py side-by-side benchmarks (from a source checkout)"
    )
    bench.add_argument("names", nargs="*", metavar="NAME", help="e.g. metrics cache http (default: all)")
    bench.add_argument("--quick", action="store_true", help="short smoke run")
    bench.add_argument("--list", action="store_true", help="list the benchmarks and exit")


def _bench_dir() -> Path | None:
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "bench").is_dir():
            return base / "bench"
    return None


def _bench(args: argparse.Namespace) -> int:
    directory = _bench_dir()
    if directory is None:
        print(
            "perf-infra: error: no bench/ folder here: benchmarks ship with the source checkout",
            file=sys.stderr,
        )
        return 2
    available = {p.stem.removeprefix("bench_"): p for p in sorted(directory.glob("bench_*.py"))}
    if args.list:
        print("\n".join(available))
        return 0
    unknown = [n for n in args.names if n not in available]
    if unknown:
        print(
            f"perf-infra: error: no benchmark {unknown[0]!r} (have: {', '.join(available)})", file=sys.stderr
        )
        return 2
    status = 0
    for name in args.names or list(available):
        print(f"== bench {name}", flush=True)
        cmd = [sys.executable, str(available[name]), *(["--quick"] if args.quick else [])]
        status = max(status, subprocess.run(cmd, check=False).returncode)
    return 1 if status else 0
