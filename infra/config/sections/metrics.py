"""Settings of the metrics registry and /metrics (infra.metrics, infra.server): the ``metrics`` section."""

from __future__ import annotations

import dataclasses

from infra.config._spec import field
from infra.config.sections._base import _Section

__all__ = ["MetricsConfig"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class MetricsConfig(_Section):
    enabled: bool = field("bool", True, "Record metrics.")
    serve: bool = field("bool", False, "Serve /metrics in a background thread when infra.enable() runs.")
    host: str = field("str", "127.0.0.1", "Bind address of /metrics (loopback unless you mean otherwise).")
    port: int = field("port", 9464, "Port of /metrics (0: any free port).", minimum=0, maximum=65535)
    token_env: str = field("str", "PERF_METRICS_TOKEN", "Environment variable with an optional bearer token.")
    max_series_per_metric: int = field("int", 2000, "Cardinality guard per metric.", minimum=1)
