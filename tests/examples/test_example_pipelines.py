"""Both example pipelines, wrapped by the layer without editing them, over 200 inputs with repeats.

Speed is shown by the work the services did (requests, tokens, simulated seconds, counted by the servers),
never by wall-clock thresholds: the warm run must ask the services for nothing at all, and the cold run
must compute each distinct input exactly once. Timings go to bench/bench_integrate.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _examples_support import (
    N_UNIQUE,
    ROOT,
    example_config,
    inputs_with_repeats,
    run_enrichment,
    run_voice,
    tree_digest,
)

EXAMPLES = ROOT / "examples"


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    keys = ("stub_requests", "stub_seconds", "ollama_requests", "ollama_tokens", "ollama_embed_inputs")
    return {k: round(after[k] - before[k], 6) for k in keys}


def _endpoint_delta(after: dict[str, Any], before: dict[str, Any], name: str) -> int:
    return int(after["stub_by_endpoint"].get(name, 0) - before["stub_by_endpoint"].get(name, 0))


def _load_cached_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_path: Path) -> Any:
    """Import examples/enrichment_worker_cached.py fresh, as a worker process would, with PERF_CONFIG set."""
    from infra.config import reset_config

    monkeypatch.setenv("PERF_CONFIG", str(config_path))
    reset_config()
    name = f"_cached_worker_{tmp_path.name}"
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / "enrichment_worker_cached.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_enrichment_three_line_worker_equals_unwrapped_and_warm_run_does_no_service_work(
    servers: Any,
    inputs: list[str],
    baseline: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    undo_all: None,
) -> None:
    """Seed 004's three-line change: outputs equal the untouched worker's exactly over 200 inputs; the cold
    run computes each distinct reflection once; the warm run asks Ollama and the song service for nothing."""
    example_config(tmp_path)
    module = _load_cached_worker(tmp_path, monkeypatch, tmp_path / "perf_config.json")
    from examples.enrichment.scorer import HybridScorer

    # cached in place: the name the worker rebinds and every other reference are one cached class
    assert module.HybridScorer is HybridScorer and hasattr(HybridScorer.score, "__infra_wrapped__")
    w0 = servers.work()
    cold = run_enrichment(module.EnrichmentWorker, inputs)
    w1 = servers.work()
    warm = run_enrichment(module.EnrichmentWorker, inputs)
    w2 = servers.work()
    assert cold == baseline["enrichment"]
    assert warm == baseline["enrichment"]
    cold_work, warm_work = _delta(w1, w0), _delta(w2, w1)
    # embed: the anchors once per worker + one per distinct reflection; chat + generate per distinct one
    assert cold_work["ollama_embed_inputs"] == 5 + N_UNIQUE
    assert cold_work["ollama_requests"] == 1 + 3 * N_UNIQUE
    assert _endpoint_delta(w1, w0, "songs") == len({r["emotion"]["top"] for r in cold})
    assert warm_work == {k: 0 for k in warm_work}, warm_work


def test_voice_turn_patched_in_place_equals_unwrapped_and_warm_run_does_no_service_work(
    servers: Any, inputs: list[str], baseline: dict[str, Any], tmp_path: Path, undo_all: None
) -> None:
    """patch(): the unchanged voice pipeline (STT over a WebSocket, memory search, LLM, TTS) gives the same
    turns over 200 inputs; each distinct utterance is transcribed once; a warm run does no service work."""
    from infra.integrate import patch

    handle = patch(example_config(tmp_path))
    assert len(handle.patches) == 7
    w0 = servers.work()
    cold = run_voice(inputs)
    w1 = servers.work()
    warm = run_voice(inputs)
    w2 = servers.work()
    assert cold == baseline["voice"]
    assert warm == baseline["voice"]
    assert _endpoint_delta(w1, w0, "stt") == N_UNIQUE
    assert _endpoint_delta(w1, w0, "search_entities") == N_UNIQUE
    assert _endpoint_delta(w1, w0, "tts") == len({r["reply"] for r in cold})
    warm_work = _delta(w2, w1)
    assert warm_work == {k: 0 for k in warm_work}, warm_work


def test_disabled_layer_hands_back_the_original_classes_and_equal_outputs(
    servers: Any, inputs: list[str], baseline: dict[str, Any], tmp_path: Path, undo_all: None
) -> None:
    """enabled: false → enable_caching_for_worker returns the very same classes, patch() changes nothing,
    no cache file appears, and both pipelines return exactly what they return without the layer (on every
    distinct input of the 200)."""
    from examples.enrichment.scorer import HybridScorer
    from examples.enrichment.worker import EnrichmentWorker
    from examples.voice.memory import MemoryExtractor
    from infra.integrate import enable_caching_for_worker, patch

    cfg = example_config(tmp_path, enabled=False)
    before = dict(MemoryExtractor.__dict__)
    classes = enable_caching_for_worker(cfg)
    assert classes["HybridScorer"] is HybridScorer
    assert classes["MemoryExtractor"] is MemoryExtractor
    handle = patch(cfg)
    assert handle.patches == []
    assert dict(MemoryExtractor.__dict__) == before
    # With no cache in play a repeat exercises nothing new: every distinct input once, plus some repeats.
    picks = sorted({x: i for i, x in enumerate(inputs)}.values())[:N_UNIQUE] + list(range(10))
    sub = [inputs[i] for i in picks]
    assert run_enrichment(EnrichmentWorker, sub) == [baseline["enrichment"][i] for i in picks]
    assert run_voice(sub) == [baseline["voice"][i] for i in picks]
    assert not (tmp_path / "cache").exists()


def test_layer_failures_never_change_outputs_unwritable_cache_dir_and_taken_metrics_port(
    servers: Any, inputs: list[str], baseline: dict[str, Any], tmp_path: Path, undo_all: None
) -> None:
    """The cache directory can't be created and the /metrics port is taken: enable() records both, counts
    them in infra_integrate_failures_total, and every output is still exactly the uncached one."""
    from infra.integrate import patch
    from infra.metrics import get_metrics

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        cfg = example_config(
            tmp_path,
            **{"cache.path": str(blocker / "sub" / "cache.db"), "metrics.serve": True, "metrics.port": port},
        )
        handle = patch(cfg)
        parts = sorted(f.split(":")[0] for f in handle.failures)
        assert parts == ["cache", "metrics_server"], handle.report()
        assert handle.metrics_server is None
        from examples.enrichment.worker import EnrichmentWorker

        few = inputs[:60]
        for _ in range(2):  # cold, then warm from the in-process L1
            assert run_enrichment(EnrichmentWorker, few) == baseline["enrichment"][:60]
            assert run_voice(few) == baseline["voice"][:60]
        text = get_metrics().get_stats()
        assert isinstance(text, dict)
        fam = get_metrics().counter("infra_integrate_failures_total", "", labelnames=("part",))
        assert fam.labels("cache").get() >= 1 and fam.labels("metrics_server").get() >= 1
    finally:
        taken.close()


def test_pipeline_sources_and_classes_are_untouched_by_the_integration(
    servers: Any, tmp_path: Path, undo_all: None
) -> None:
    """Wrapping lives outside the pipelines: their files hash the same after enable, patch, runs and undo,
    and after undo() every patched class's __dict__ is exactly what it was."""
    from examples.enrichment.worker import EnrichmentWorker
    from examples.voice.llm import Responder
    from examples.voice.stt import STTClient
    from infra.integrate import enable_caching_for_worker, patch

    before_files = {d: tree_digest(EXAMPLES / d) for d in ("enrichment", "voice")}
    before_dicts = {c: dict(c.__dict__) for c in (STTClient, Responder)}
    enable_caching_for_worker(example_config(tmp_path))
    handle = patch()
    assert STTClient.__dict__["transcribe"] is not before_dicts[STTClient]["transcribe"]
    run_enrichment(EnrichmentWorker, inputs_with_repeats(10))
    run_voice(inputs_with_repeats(10)[:10])
    handle.undo()
    assert {c: dict(c.__dict__) for c in (STTClient, Responder)} == before_dicts
    assert {d: tree_digest(EXAMPLES / d) for d in ("enrichment", "voice")} == before_files


def test_cached_worker_file_is_the_original_worker_plus_the_three_line_block() -> None:
    """examples/enrichment_worker_cached.py minus its marked perf-infra block is worker.py byte for byte."""
    original = (EXAMPLES / "enrichment" / "worker.py").read_text()
    cached = (EXAMPLES / "enrichment_worker_cached.py").read_text()
    start = cached.index("\n# --- perf-infra:")
    end = cached.index("# --- end perf-infra ---\n") + len("# --- end perf-infra ---\n")
    block = cached[start:end]
    assert cached[:start] + cached[end:] == original
    code = [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert "from infra.enrichment_helpers import enable_caching_for_worker" in code
    assert "cached_classes = enable_caching_for_worker()" in code


@pytest.mark.slow
def test_both_integrated_entry_points_run_as_worker_processes(
    servers: Any, baseline: dict[str, Any], inputs: list[str], tmp_path: Path
) -> None:
    """`python -m examples.enrichment_worker_cached` and `python -m examples.voice_turn_patched`, fed JSON
    lines on stdin with PERF_CONFIG pointing at the examples' config, print what the untouched pipelines
    compute."""
    example_config(tmp_path)
    env = {**os.environ, **servers.env(), "PERF_CONFIG": str(tmp_path / "perf_config.json")}
    lines = inputs[:12]
    stdin = "\n".join(lines) + "\n"
    out = subprocess.run(
        [sys.executable, "-m", "examples.enrichment_worker_cached"],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert [json.loads(x) for x in out.stdout.splitlines()] == baseline["enrichment"][:12]
    out = subprocess.run(
        [sys.executable, "-m", "examples.voice_turn_patched"],
        input=stdin,
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    got = [json.loads(x) for x in out.stdout.splitlines()]
    import hashlib

    want = [
        {
            **{k: v for k, v in r.items() if k != "speech"},
            "speech_sha256": hashlib.sha256(r["speech"]).hexdigest(),
        }
        for r in baseline["voice"][:12]
    ]
    assert got == want


def test_the_stubs_command_runs_a_pipeline_with_their_environment(tmp_path: Path) -> None:
    """README's command: `echo ... | PERF_CONFIG=... python -m examples.stubs python -m examples.X` starts the
    stubs, hands the command their endpoints and its stdin, and returns its exit status."""
    example_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "OLLAMA_HOST" and not k.startswith("EXAMPLE_")}
    env["PERF_CONFIG"] = str(tmp_path / "perf_config.json")
    out = subprocess.run(
        [sys.executable, "-m", "examples.stubs", sys.executable, "-m", "examples.enrichment_worker_cached"],
        input="I walked by the river this morning\n",
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    assert json.loads(line)["reflection"] == "I walked by the river this morning"
