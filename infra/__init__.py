"""perf-infra: an opt-in performance layer for Python AI and voice pipelines.

The front door. Everything here is imported lazily (PEP 562 ``__getattr__``), so ``import infra`` costs a
few milliseconds and pulls in none of aiohttp, httpx, ollama, torch, asyncpg or redis; each name loads its
module on first use. The settings sections (``HttpConfig``, ``CacheConfig``, ``OllamaConfig``,
``DbConfig``, ...) are here too: each is THE settings of its part (``AsyncPerfClient(HttpConfig(...))``).
``infra.cache``, ``infra.metrics``, ``infra.db`` and ``infra.enrichment_helpers`` are public modules too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra._lazy import lazy_exports

__version__ = "0.1.0"


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from infra.cache import cached as cached
    from infra.cache import get_cache as get_cache
    from infra.config import BatchingConfig as BatchingConfig
    from infra.config import BreakerConfig as BreakerConfig
    from infra.config import CacheConfig as CacheConfig
    from infra.config import DbConfig as DbConfig
    from infra.config import HttpCacheConfig as HttpCacheConfig
    from infra.config import HttpConfig as HttpConfig
    from infra.config import MetricsConfig as MetricsConfig
    from infra.config import NamespaceConfig as NamespaceConfig
    from infra.config import OllamaCacheConfig as OllamaCacheConfig
    from infra.config import OllamaConfig as OllamaConfig
    from infra.config import PerfConfig as PerfConfig
    from infra.config import PostgresCacheConfig as PostgresCacheConfig
    from infra.config import RedisCacheConfig as RedisCacheConfig
    from infra.config import RetryBudgetConfig as RetryBudgetConfig
    from infra.config import RetryConfig as RetryConfig
    from infra.config import TimeoutConfig as TimeoutConfig
    from infra.config import TorchConfig as TorchConfig
    from infra.config import WarmupConfig as WarmupConfig
    from infra.config import get_config as get_config
    from infra.config import load_config as load_config
    from infra.errors import ConfigError as ConfigError
    from infra.errors import PerfInfraError as PerfInfraError
    from infra.hotpath import AudioFrameTemplate as AudioFrameTemplate
    from infra.hotpath import AudioStreamSender as AudioStreamSender
    from infra.hotpath import gather_ordered as gather_ordered
    from infra.hotpath import warm as warm
    from infra.http import AsyncPerfClient as AsyncPerfClient
    from infra.http import PerfClient as PerfClient
    from infra.inference import CachedEmbedder as CachedEmbedder
    from infra.inference import MicroBatcher as MicroBatcher
    from infra.inference import apply_thread_budget as apply_thread_budget
    from infra.integrate import cached_class as cached_class
    from infra.integrate import enable as enable
    from infra.integrate import enable_caching_for_worker as enable_caching_for_worker
    from infra.integrate import patch as patch
    from infra.metrics import get_metrics as get_metrics
    from infra.metrics import timed as timed
    from infra.ollama import AsyncOptimizedOllama as AsyncOptimizedOllama
    from infra.ollama import OptimizedOllama as OptimizedOllama
    from infra.server import metrics_asgi_app as metrics_asgi_app
    from infra.server import serve_metrics as serve_metrics
else:
    __all__, __getattr__, __dir__ = lazy_exports(__name__, eager=["__version__"])
