"""``config check|show|schema``: validate perf_config.json, print the effective config, print the schema."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from infra.cli._output import emit_json
from infra.config import load_config
from infra.errors import ConfigError

__all__ = ["register"]


def register(sub: Any) -> None:
    group = sub.add_parser("config", help="check or show perf_config.json")
    cmds = group.add_subparsers(dest="config_command", metavar="ACTION")
    cmds.required = True
    check = cmds.add_parser("check", help="validate the config file and environment; list every problem")
    check.set_defaults(handler=_check)
    show = cmds.add_parser("show", help="print the effective config (file + defaults + environment)")
    show.set_defaults(handler=_show)
    schema = cmds.add_parser("schema", help="print the JSON Schema (config/perf_config.schema.json)")
    schema.set_defaults(handler=_schema)


def _check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        # the wrap list too: its modules, classes and methods as the worker would import them
        from infra.integrate._check import check_wrap

        problems = check_wrap(config)
        if problems:
            raise ConfigError(problems, source=config.source)
    except ConfigError as exc:
        if args.json:
            emit_json({"ok": False, "source": exc.source, "problems": [str(p) for p in exc.problems]})
        else:
            print(f"{exc.source or 'config'}: {len(exc.problems)} problem(s)", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
        return 2
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
        emit_json(data)
    else:
        print(f"# effective configuration from {config.source} (durations in seconds, sizes in bytes)")
        print(json.dumps(data, indent=2))
    return 0


def _schema(args: argparse.Namespace) -> int:
    from infra.config._schema import json_schema

    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
    return 0
