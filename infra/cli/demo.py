"""``demo``: run the sample enrichment workload cold, then warm, and show what the layer saves.

Uses the Ollama at $OLLAMA_HOST (or the config's ollama.host) when one answers with a chat model pulled,
otherwise an in-process Ollama test server with realistic simulated latencies, and says which.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from infra.cli._shared import command

__all__ = ["register"]


def register(sub: Any) -> None:
    p = command(
        sub, "demo", _demo, "run a sample enrichment workload cold then warm; print the speed-up", __doc__
    )
    p.add_argument("--items", type=int, default=24, help="reflections to process per pass (default 24)")
    p.add_argument("--host", default=None, help="Ollama to use (default: $OLLAMA_HOST, then ollama.host)")
    p.add_argument(
        "--test-server", action="store_true", help="use the in-process test server even if Ollama runs"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument(
        "--keep-serving",
        action="store_true",
        help="keep /metrics and /dashboard (the passes, charted) up after the table until Ctrl-C",
    )


def _demo(args: argparse.Namespace) -> int:
    from infra.demo import DemoOptions, format_report, run_demo

    if args.items < 1 or args.items > 10_000:
        print(f"perf-infra: error: --items must be in 1..10000, got {args.items}", file=sys.stderr)
        return 2
    opts = DemoOptions(
        items=args.items,
        host=args.host,
        force_test_server=args.test_server,
        config_path=args.config,
        progress=not args.no_progress,
    )
    if not args.json and not args.no_progress:
        print("perf-infra demo: a seed-004-like enrichment workload, cold then warm", file=sys.stderr)
    report = run_demo(opts, progress_stream=sys.stderr)
    # the running metrics server, if any (a MetricsServer; kept out of the JSON)
    metrics_server: Any = report.pop("_metrics_server", None)
    try:
        if args.json:
            from infra.cli._output import emit_json

            emit_json(report)
        else:
            print(format_report(report))
        if args.keep_serving and metrics_server is not None:
            print(
                f"serving {report['dashboard_url']} (the cold and warm passes) and {report['metrics_url']} "
                "until Ctrl-C",
                file=sys.stderr,
            )
            import threading

            threading.Event().wait()
    finally:
        if metrics_server is not None:
            metrics_server.close()
    return 0
