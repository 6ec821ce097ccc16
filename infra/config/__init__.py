"""Configuration: config/perf_config.json → frozen value objects (see ``PerfConfig``).

``load_config(path=None)`` looks in this order: an explicit path, ``$PERF_CONFIG``,
``./config/perf_config.json``, then built-in defaults; environment variables in ``ENV_OVERRIDES``
override the common switches. Every problem is reported at once in one ``ConfigError``.

One failure policy for every reader: ``PERF_ENABLED=0`` or a top-level ``"enabled": false`` always wins
(the file's other problems become one warning); otherwise ``load_config`` and ``get_config(strict=True)``
(the explicit entry points) raise, and ``get_config()`` (implicit readers) gives the layer off with one
warning, never the built-in defaults.
"""

from infra.config._loader import (
    ENV_OVERRIDES,
    ConfigDiagnosis,
    diagnose_config,
    find_config_file,
    get_config,
    load_config,
    project_root,
    reset_config,
    set_config,
)
from infra.config._model import PerfConfig
from infra.config._units import format_duration, format_size, parse_duration, parse_size
from infra.config.sections._base import redact_url
from infra.config.sections.cache import CacheConfig, NamespaceConfig, PostgresCacheConfig, RedisCacheConfig
from infra.config.sections.http import (
    BreakerConfig,
    HttpCacheConfig,
    HttpConfig,
    RetryBudgetConfig,
    RetryConfig,
    TimeoutConfig,
)
from infra.config.sections.metrics import MetricsConfig
from infra.config.sections.ollama import OllamaCacheConfig, OllamaConfig
from infra.config.sections.runtime import BatchingConfig, DbConfig, TorchConfig, WarmupConfig
from infra.config.sections.wrap import WrapEntry
from infra.errors import ConfigError, ConfigProblem

__all__ = [
    "ENV_OVERRIDES",
    "BatchingConfig",
    "BreakerConfig",
    "CacheConfig",
    "ConfigDiagnosis",
    "ConfigError",
    "ConfigProblem",
    "DbConfig",
    "HttpCacheConfig",
    "HttpConfig",
    "MetricsConfig",
    "NamespaceConfig",
    "OllamaCacheConfig",
    "OllamaConfig",
    "PerfConfig",
    "PostgresCacheConfig",
    "RedisCacheConfig",
    "RetryBudgetConfig",
    "RetryConfig",
    "TimeoutConfig",
    "TorchConfig",
    "WarmupConfig",
    "WrapEntry",
    "diagnose_config",
    "find_config_file",
    "format_duration",
    "format_size",
    "get_config",
    "load_config",
    "parse_duration",
    "parse_size",
    "project_root",
    "redact_url",
    "reset_config",
    "set_config",
]
