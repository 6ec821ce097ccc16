"""Thread budget: torch and Ollama share the cores; env set only where the user hasn't; torch applied."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from infra.config import TorchConfig, load_config
from infra.inference import apply_thread_budget, available_cores, plan_thread_budget


@pytest.mark.parametrize(
    ("kwargs", "torch_threads", "reserved"),
    [
        ({"cores": 16, "ollama_threads": 6}, 10, 6),
        ({"cores": 16, "ollama_threads": 6, "reserve_for_ollama": False}, 16, 0),
        ({"cores": 16, "ollama_threads": 6, "num_threads": 4}, 4, 6),
        ({"cores": 8}, 8, 0),
        ({"cores": 2, "ollama_threads": 6}, 1, 6),
    ],
)
def test_plan_splits_the_cores(kwargs: dict[str, int], torch_threads: int, reserved: int) -> None:
    plan = plan_thread_budget(**kwargs)  # type: ignore[arg-type]
    assert plan.torch_threads == torch_threads and plan.ollama_threads == reserved
    assert plan.env["OMP_NUM_THREADS"] == plan.env["MKL_NUM_THREADS"] == str(torch_threads)


def test_plan_warns_when_ollama_alone_takes_every_core() -> None:
    plan = plan_thread_budget(cores=2, ollama_threads=6)
    assert any("num_thread=6 uses every core" in n for n in plan.notes)


def test_plan_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="cores"):
        plan_thread_budget(cores=0)
    with pytest.raises(ValueError, match="num_threads"):
        plan_thread_budget(cores=4, num_threads=0)


@pytest.fixture
def torch_threads_restored() -> Iterator[None]:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_apply_sets_env_and_torch_from_config(
    monkeypatch: pytest.MonkeyPatch, torch_threads_restored: None
) -> None:
    import torch

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUMEXPR_NUM_THREADS", "7")  # the user's own setting wins
    shipped = load_config()
    config = dataclasses.replace(
        shipped,
        torch=TorchConfig(num_threads=None, interop_threads=1, reserve_for_ollama=True),
        ollama=dataclasses.replace(shipped.ollama, runner={"num_thread": 3}),
    )
    plan = apply_thread_budget(config, cores=5)
    assert plan.torch_threads == 2 and plan.ollama_threads == 3
    assert torch.get_num_threads() == 2
    import os

    assert os.environ["OMP_NUM_THREADS"] == "2" and os.environ["NUMEXPR_NUM_THREADS"] == "7"
    assert "OMP_NUM_THREADS=2" in plan.applied and not any(a.startswith("NUMEXPR") for a in plan.applied)


def test_apply_with_the_shipped_config_and_keywords_winning(
    monkeypatch: pytest.MonkeyPatch, torch_threads_restored: None
) -> None:
    import torch

    from infra.config import load_config

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = apply_thread_budget(load_config(), num_threads=1, set_env=False)
    assert plan.torch_threads == 1 and torch.get_num_threads() == 1
    assert plan.ollama_threads == 0  # num_thread "auto" in the shipped config reserves nothing (issue 15)
    assert "OMP_NUM_THREADS" not in __import__("os").environ


def test_available_cores_is_positive() -> None:
    assert available_cores() >= 1
