"""PerfConfig and its sections: frozen, keyword-only value objects whose attributes mirror perf_config.json.

Durations are float seconds, sizes int bytes, lists tuples, free-form maps read-only mappings. Defaults
here are the built-in defaults, used for any key a file leaves out (the shipped config/perf_config.json
spells every one of them out; a test keeps the two identical).
"""

from __future__ import annotations

import dataclasses

from infra.config._spec import field, subsection
from infra.config.sections._base import _Section
from infra.config.sections.cache import CacheConfig
from infra.config.sections.http import HttpConfig
from infra.config.sections.metrics import MetricsConfig
from infra.config.sections.ollama import OllamaConfig
from infra.config.sections.runtime import BatchingConfig, DbConfig, TorchConfig, WarmupConfig
from infra.config.sections.wrap import WrapEntry

__all__ = ["PerfConfig"]  # the sections are public from infra.config, imported from their homes


# ---------------------------------------------------------------------------------------------- root
@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class PerfConfig(_Section):
    enabled: bool = field("bool", True, "Master switch: false makes every part a pass-through.")
    cache: CacheConfig = subsection(CacheConfig, "Content-addressed cache.")
    http: HttpConfig = subsection(HttpConfig, "Pooled retrying HTTP client.")
    ollama: OllamaConfig = subsection(OllamaConfig, "Tuned, caching Ollama client.")
    metrics: MetricsConfig = subsection(MetricsConfig, "Metrics registry and /metrics.")
    db: DbConfig = subsection(DbConfig, "asyncpg pool.")
    torch: TorchConfig = subsection(TorchConfig, "torch thread budget.")
    batching: BatchingConfig = subsection(BatchingConfig, "Dynamic micro-batching.")
    warmup: WarmupConfig = subsection(WarmupConfig, "Background warming.")
    wrap: tuple[WrapEntry, ...] = field(
        "list",
        (),
        "Classes whose methods (or module-level functions) get cached by enable_caching_for_worker().",
        item="section",
        section=WrapEntry,
    )
    source: str | None = dataclasses.field(default=None, compare=False, metadata={"spec": None})
    # the environment variables (ENV_OVERRIDES) that set a value, so a report can say where a switch came from
    env_overrides: tuple[str, ...] = dataclasses.field(default=(), compare=False, metadata={"spec": None})

    def switched_off_by(self, section: str | None = None) -> str | None:
        """Why the layer (or ``section``, e.g. "ollama") is off, naming the environment variable or the
        config field that did it; None when it is on."""
        if not self.enabled:
            if "PERF_ENABLED" in self.env_overrides:
                return "PERF_ENABLED in the environment switches the layer off"
            return f"enabled: false in {self.source or 'the config'}"
        if section is None or getattr(self, section).enabled:
            return None
        var = f"PERF_{section.upper()}_ENABLED"
        if var in self.env_overrides:
            return f"{var} in the environment switches {section} off"
        return f"{section}.enabled: false in {self.source or 'the config'}"

    def to_dict(self, *, redact: bool = True) -> dict[str, object]:
        out: dict[str, object] = {"$schema": "perf_config.schema.json"}
        out.update(
            _Section.to_dict(self, redact=redact)
        )  # slots=True rebuilds the class: no zero-arg super()
        return out
