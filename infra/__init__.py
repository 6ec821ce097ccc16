"""perf-infra: an opt-in performance layer for Python AI and voice pipelines (placeholder front door)."""
__version__ = "0.1.0"
