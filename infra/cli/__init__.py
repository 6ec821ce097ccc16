"""``python -m infra`` / ``perf-infra``: see the config, the cache and the metrics from a terminal.

Each command group lives in its own module with a ``register(subparsers)`` function; ``main`` wires the
ones that exist. Handlers take the parsed namespace (with ``json`` and ``config``) and return an exit
status: 0 ok, 1 a check or an operation failed, 2 bad input. Human output by default, ``--json`` for
scripts; a bad input is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from infra.errors import ConfigError, PerfInfraError

__all__ = ["build_parser", "main"]

# Command groups, in help order. A group whose module is missing (not built yet) is simply not offered.
_GROUPS = ("config", "metrics", "dashboard", "cache", "demo", "warm", "bench", "doctor", "test")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="perf_config.json to use (default: $PERF_CONFIG, then the nearest config/perf_config.json "
        "above the working directory)",
    )


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that keeps the subcommand actions it creates (argparse keeps them only among
    its private ``_actions``), so ``build_parser`` can reach every subcommand's parser; its subparsers are
    ``_Parser`` too (argparse's default ``parser_class`` is the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subcommand_actions: list[Any] = []

    def add_subparsers(self, **kwargs: Any) -> Any:
        action = super().add_subparsers(**kwargs)
        self.subcommand_actions.append(action)
        return action


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m infra",
        description="perf-infra: cache, metrics and tuned clients for AI and voice pipelines.",
    )
    _common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in _GROUPS:
        try:
            module = importlib.import_module(f"infra.cli.{group}")
        except ModuleNotFoundError as exc:
            if exc.name == f"infra.cli.{group}":
                continue
            raise
        before = set(sub.choices)
        module.register(sub)
        for name in set(sub.choices) - before:
            _add_common_everywhere(sub.choices[name])
    return parser


def _add_common_everywhere(parser: argparse.ArgumentParser) -> None:
    """--json and --config work before or after the subcommand (`python -m infra cache stats --json`)."""
    with contextlib.suppress(argparse.ArgumentError):  # the group defined them itself
        _common(parser)
    for action in parser.subcommand_actions if isinstance(parser, _Parser) else ():
        for child in action.choices.values():
            _add_common_everywhere(child)


# Exit status of a command whose reader went away (``... | head``): what a shell reports for a process
# killed by SIGPIPE (128 + 13), as ``cat`` and ``grep`` end in the same pipe.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a closed stdout (``perf-infra cache stats --json | head``) ends it quietly."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # here, not at interpreter exit, where a broken pipe can only print a warning
        return status
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush doesn't report the closed pipe again
    (the recipe of the Python docs' "Note on SIGPIPE")."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if getattr(args, "command", None) != "test":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.pytest_args = [*extra, *args.pytest_args]  # `test -q -k x`: options belong to pytest
    args.json = getattr(args, "json", False)
    args.config = getattr(args, "config", None)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.parse_args([*(argv if argv is not None else sys.argv[1:]), "--help"])
        return 2
    try:
        return int(handler(args))
    except ConfigError as exc:
        problems = exc.problems
        more = (
            f" (and {len(problems) - 1} more: run `python -m infra config check`)"
            if len(problems) > 1
            else ""
        )
        where = f"{exc.source}: " if exc.source and exc.source != "built-in defaults" else ""
        print(f"perf-infra: error: {where}{problems[0]}{more}", file=sys.stderr)
        return 2
    except PerfInfraError as exc:
        print(f"perf-infra: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
