"""``config check|show|schema``: validate perf_config.json, print the effective config, print the schema."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from infra.cli._output import emit_json
from infra.cli._shared import action_group, command
from infra.config import diagnose_config, load_config

__all__ = ["register"]


def register(sub: Any) -> None:
    cmds = action_group(sub, "config", "check or show perf_config.json")
    command(cmds, "check", _check, "validate the config file and environment; list every problem")
    command(cmds, "show", _show, "print the effective config (file + defaults + environment)")
    command(cmds, "schema", _schema, "print the JSON Schema (config/perf_config.schema.json)")


def _check(args: argparse.Namespace) -> int:
    """Schema problems and wrap-target problems together: one run lists everything to fix."""
    from infra.integrate._check import check_wrap

    diagnosis = diagnose_config(args.config)
    problems = list(diagnosis.problems)
    config = diagnosis.config
    if config is not None:
        # the wrap list too: its modules, classes and methods as the worker would import them
        problems += check_wrap(config, diagnosis.wrap)
    if problems:
        if args.json:
            emit_json({"ok": False, "source": diagnosis.source, "problems": [str(p) for p in problems]})
        else:
            print(f"{diagnosis.source}: {len(problems)} problem(s)", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
        return 2
    assert config is not None
    if args.json:
        emit_json({"ok": True, "source": config.source, "problems": []})
    else:
        state = "enabled" if config.enabled else "DISABLED (every part is a pass-through)"
        print(f"{config.source}: ok, layer {state}")
    return 0


def _show(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    data = config.to_dict()
    if args.json:
        # which file was read (and which environment variables overrode it) beside the values
        emit_json({"source": config.source, "env_overrides": list(config.env_overrides), "config": data})
    else:
        print(f"# effective configuration from {config.source} (durations in seconds, sizes in bytes)")
        print(json.dumps(data, indent=2))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from infra.config._schema import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0
