"""``python -m infra demo``: the layer's main job, cold then warm, on a sample enrichment workload.

:func:`run_demo` returns a JSON-ready report; :func:`format_report` renders it for people. The CLI wiring is
in :mod:`infra.cli.demo`.
"""

from __future__ import annotations

from .run import DemoOptions, format_report, run_demo

__all__ = ["DemoOptions", "format_report", "run_demo"]
