"""What several command groups share: a command's parser, the group parser, argument types, serving until
a signal."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

__all__ = [
    "action_group",
    "command",
    "json_and_config",
    "positive_int",
    "serve_until_stopped",
    "stop_on_signals",
]

N = TypeVar("N", int, float)


def command(
    sub: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """The parser of command ``name`` (for its own arguments), which ``handler`` runs with the parsed
    namespace; ``sub`` is the subparsers object of ``python -m infra`` or of a command group."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description)
    parser.set_defaults(handler=handler)
    return parser


def json_and_config() -> argparse.ArgumentParser:
    """A parent parser (``parents=[...]``) giving a command ``--json`` and ``--config`` after its name.

    SUPPRESS: the same option given before the command (``python -m infra --json cache stats``) is kept.
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="PATH", help="perf_config.json to use")
    return common


def action_group(sub: Any, name: str, help: str) -> Any:
    """A command group ``name`` whose action (``python -m infra NAME ACTION``) is required; its subparsers."""
    group = sub.add_parser(name, help=help)
    actions = group.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    actions.required = True
    return actions


def positive_int(text: str) -> int:
    """A whole number above 0."""
    return _above_zero(int, text, "a whole number", "a number")


def _above_zero(parse: Callable[[str], N], text: str, what: str, unit: str) -> N:
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected {unit} above 0, got {value}")
    return value


def stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Make SIGTERM (what service managers send) and SIGINT set ``stop``; return the undo.

    A SIGINT the process inherited as ignored (a job started with ``cmd &`` from a non-interactive shell)
    stays ignored, as the shell intended: such a server is stopped with SIGTERM.
    """
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        current = signal.getsignal(sig)
        if sig == signal.SIGINT and current is signal.SIG_IGN:
            continue
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


class _Closable(Protocol):
    def close(self) -> None: ...


def serve_until_stopped(handle: _Closable, announce: Callable[[], None]) -> int:
    """Block until SIGTERM, SIGINT or Ctrl-C, then close ``handle``; exit status 0.

    ``announce`` (print the URL, open a browser) runs once the signal handlers are in place: whoever
    reads its line may signal at once.
    """
    stop = threading.Event()
    restore = stop_on_signals(stop)
    try:
        announce()
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        restore()
        handle.close()
    return 0
