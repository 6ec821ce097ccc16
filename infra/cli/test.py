"""``test [PYTEST ARGS ...]``: run the project's test suite (``python -m pytest``) from a source checkout."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

from infra.cli._shared import command

__all__ = ["register"]


def register(sub: Any) -> None:
    test = command(sub, "test", _test, "run the test suite (python -m pytest; extra arguments go to pytest)")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest as they are")


def _test(args: argparse.Namespace) -> int:
    return subprocess.run([sys.executable, "-m", "pytest", *args.pytest_args], check=False).returncode
