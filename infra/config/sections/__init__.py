"""The one settings tree: a module per part, each section a frozen, slotted, keyword-only dataclass whose
fields carry their Spec (kind, default, bounds, description). The loader builds them from
perf_config.json; the parts take them as they are (``AsyncPerfClient(config.http)``). A part never
defines a second settings class: a value it derives is a property or function beside the section."""
