"""``python -m infra`` / ``perf-infra``: see the config, the cache and the metrics from a terminal.

Each command group lives in its own module with a ``register(subparsers)`` function; ``main`` wires them.
Human output by default, ``--json`` for scripts; bad input gives a one-line error and exit status 2.
"""
