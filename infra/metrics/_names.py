"""Names and bounds of metrics: what a metric, label or bucket list may be, checked once at creation."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from itertools import pairwise

__all__ = [
    "DEFAULT_BUCKETS",
    "GAUGE_AGGREGATES",
    "OVERFLOW_VALUE",
    "check_buckets",
    "check_labelnames",
    "check_metric_name",
    "escape_label_value",
    "format_float",
]

# prometheus_client's defaults (5 ms .. 10 s), extended down to 1 ms and up to 10 minutes because voice
# and LLM pipelines span both ends (a cache hit is sub-millisecond, a cold model load takes minutes).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 7.5, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
)  # fmt: skip

OVERFLOW_VALUE = "__overflow__"  # every label value of the series past the per-metric limit
GAUGE_AGGREGATES = ("sum", "max", "min")  # how the processes of a multi-process server combine a gauge

_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def escape_label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def check_metric_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid metric name {name!r}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")


def check_labelnames(metric: str, labelnames: Iterable[str]) -> tuple[str, ...]:
    if isinstance(labelnames, str):
        raise TypeError(f"{metric}: labelnames must be a sequence of names, not the string {labelnames!r}")
    names = tuple(labelnames)
    for n in names:
        if not isinstance(n, str) or not _LABEL_RE.fullmatch(n) or n.startswith("__"):
            raise ValueError(
                f"{metric}: invalid label name {n!r}: must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"{metric}: duplicate label names in {names!r}")
    return names


def check_buckets(name: str, buckets: Sequence[float]) -> tuple[float, ...]:
    b = [float(x) for x in buckets]
    if b and b[-1] == math.inf:
        b.pop()  # +Inf is always there; accept it spelled out, as prometheus_client does
    if not b:
        raise ValueError(f"{name}: a histogram needs at least one finite bucket boundary")
    if any(not math.isfinite(x) for x in b):
        raise ValueError(f"{name}: bucket boundaries must be finite (got {buckets!r})")
    if any(x < 0 for x in b):
        raise ValueError(f"{name}: bucket boundaries must be >= 0 (got {buckets!r})")
    if any(a >= c for a, c in pairwise(b)):
        raise ValueError(f"{name}: bucket boundaries must be strictly increasing (got {buckets!r})")
    return tuple(b)


def format_float(v: float) -> str:
    """A sample value or ``le`` as Prometheus (and OpenMetrics' canonical form) spell it.

    Same as prometheus_client's ``floatToGoString``: repr, ``+Inf``/``-Inf``/``NaN``, and Go's switch
    to exponent notation past 6 integer digits (OpenMetrics requires canonical ``le`` values).
    """
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if v != v:
        return "NaN"
    s = repr(float(v))
    dot = s.find(".")
    if v > 0 and dot > 6:
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s
