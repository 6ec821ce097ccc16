"""Helpers for the example-pipeline tests: inputs with repeats, pipeline runners, config builder, hashes."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `pytest` (not `python -m pytest`) doesn't put the repo root on sys.path
    sys.path.insert(0, str(ROOT))

# Small latencies keep the area fast; bench/bench_integrate.py runs the realistic ones (scale 1).
SCALE = 0.02
N_INPUTS = 200
N_UNIQUE = 40

_FEELINGS = [
    "stressed and overwhelmed",
    "grateful for family",
    "happy and excited",
    "sad and lonely",
    "calm and rested",
    "anxious about the deadline",
    "thankful for my friends",
    "peaceful after a walk",
]
_CONTEXTS = ["at work", "this morning", "after the call with Mina", "before the race", "at the Harbor Cafe"]


def unique_reflections() -> list[str]:
    out = [f"I feel {f} {c}" for f in _FEELINGS for c in _CONTEXTS]
    return out[:N_UNIQUE]


def inputs_with_repeats(n: int = N_INPUTS) -> list[str]:
    """``n`` inputs drawn from N_UNIQUE distinct ones (every one at least once), in a fixed shuffled order."""
    uniq = unique_reflections()
    rng = random.Random(2024)
    items = uniq + [rng.choice(uniq) for _ in range(n - len(uniq))]
    rng.shuffle(items)
    return items


def run_enrichment(worker_cls: Any, inputs: list[str]) -> list[dict[str, Any]]:
    worker = worker_cls()
    try:
        return [worker.process(x) for x in inputs]
    finally:
        worker.close()


def run_voice(inputs: list[str]) -> list[dict[str, Any]]:
    from examples.voice.audio import speak
    from examples.voice.turn import run_turns

    return asyncio.run(run_turns([speak(x) for x in inputs]))


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (caches excluded): proves the pipelines' source is untouched."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def example_config(tmp_path: Path, **overrides: Any) -> Any:
    """examples/perf_config.json with the cache in ``tmp_path`` and dotted-path overrides
    (``example_config(tmp, **{"metrics.serve": True})``), as a PerfConfig (environment ignored)."""
    from infra.config import load_config

    data = json.loads((ROOT / "examples" / "perf_config.json").read_text())
    data = copy.deepcopy(data)
    data.pop("$schema", None)
    data["cache"]["path"] = str(tmp_path / "cache" / "examples.db")
    for dotted, value in overrides.items():
        node = data
        *heads, last = dotted.split(".")
        for h in heads:
            node = node.setdefault(h, {})
        node[last] = value
    path = tmp_path / "perf_config.json"
    path.write_text(json.dumps(data))
    return load_config(path, use_env=False)
