"""One entry of ``wrap``: a class or function cached by enable_caching_for_worker() (infra.integrate)."""

from __future__ import annotations

import dataclasses

from infra.config._spec import field
from infra.config.sections._base import _Section

__all__ = ["WrapEntry"]


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class WrapEntry(_Section):
    target: str = field(
        "str",
        "",
        "Class to wrap, as package.module:Class, or a module-level function (package.module:function: "
        "cached as a whole and replaced in its module; no methods).",
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$",
    )
    methods: tuple[str, ...] = field("list", (), "Methods whose results are cached.", item="str")
    namespace: str | None = field("str", None, "Cache namespace (default: the class name).", nullable=True)
    ttl: float | None = field("duration", None, "TTL (default: the namespace's).", nullable=True)
    version: str | None = field("str", None, "Bump to drop entries made by older code.", nullable=True)
    include_self: bool = field(
        "bool", False, "Kept for compatibility: instances are keyed by their configuration by default."
    )
    key_attrs: tuple[str, ...] | None = field(
        "list",
        None,
        "Instance attributes (dotted paths allowed) that define the results; null: the instance's "
        "configuration (public attributes and constructor settings, clients/locks/loggers skipped); "
        "[]: instances share entries.",
        item="str",
        nullable=True,
    )
