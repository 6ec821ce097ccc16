"""infra.hotpath, infra.db, infra.inference and the warm CLI import without any heavy dependency."""

from __future__ import annotations

import subprocess
import sys
import textwrap

HEAVY = (
    "aiohttp",
    "httpx",
    "ollama",
    "torch",
    "asyncpg",
    "redis",
    "numpy",
    "websockets",
    "sentence_transformers",
)


def test_modules_import_with_every_heavy_dependency_blocked() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        for name in {HEAVY!r}:
            sys.modules[name] = None  # any import of it raises ImportError
        import infra.hotpath, infra.db, infra.inference, infra.cli.warm
        from infra.hotpath import AudioFrameTemplate, gather_ordered
        from infra.inference import MicroBatcher, plan_thread_budget
        assert AudioFrameTemplate({{"a": 1}}, "b").encode(b"x") == '{{"a":1,"b":"eA=="}}'
        b = MicroBatcher(lambda xs: xs)
        assert b.submit(1) == 1
        b.close()
        # Without torch the thread budget still sets the environment.
        from infra.inference import apply_thread_budget
        plan = apply_thread_budget(num_threads=1, ollama_threads=0, set_env=False)
        assert plan.torch_threads == 1
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_importing_loads_none_of_them() -> None:
    code = "import sys, infra.hotpath, infra.db, infra.inference, infra.cli.warm; " + (
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
