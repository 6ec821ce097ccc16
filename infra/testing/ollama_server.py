"""A faithful-enough Ollama HTTP API server for tests, benchmarks and the demo, with no model and no GPU.

The official ``ollama`` client (sync and async) and the ``openai`` SDK work against it unchanged (Ollama's
docs/api.md and docs/openai.md): POST /api/generate, /api/chat, /api/embed, /api/embeddings, /api/show,
/api/pull, /api/push, /api/create, /api/copy, /api/blobs/:digest (HEAD too), /v1/systemone; DELETE
/api/delete; GET /api/tags, /api/ps, /api/version, /; and the OpenAI-compatible POST /v1/chat/completions,
/v1/completions, /v1/embeddings, GET /v1/models[/:model] (SSE streams). Structured outputs and tool-call
arguments are valid against the JSON schemas given; ``logprobs``; a model's /api/show capabilities decide
what it refuses (think, tools, suffix: 400, as Ollama). Output is deterministic in
(model, input, output options); latency (model load, prompt eval, per token), parallel slots with a queue,
reloads on runner-option changes and keep_alive expiry are simulated, and the server counts what it did
(``stats()``) so tests can assert on work actually done: reloads, embedded inputs, aborted streams.

::

    from infra.testing.ollama_server import OllamaTestServer, ServerSettings
    with OllamaTestServer(ServerSettings(token_latency=0.002)) as srv:
        client = ollama.Client(host=srv.url)
        client.generate(model="llama3.2:3b", prompt="hi")
        assert srv.stats()["loads"] == 1

From a shell: ``python -m infra.testing.ollama_server --port 11434 --token-latency 0.02``.
The server always binds 127.0.0.1 by default; port 0 lets the OS choose.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from types import TracebackType
from typing import Any

from ._serve import serve_until
from .ollama.sim import DEFAULT_MODELS, Fault, ServerSettings, StatsSnapshot

__all__ = ["DEFAULT_MODELS", "Fault", "OllamaTestServer", "ServerSettings", "main"]


class OllamaTestServer:
    """Runs the simulated Ollama on its own event loop in a daemon thread, so sync and async tests can use it.

    ``start()`` returns once the socket is bound (``url`` is then ``http://127.0.0.1:<port>``);
    ``stop()`` shuts it down. Also a context manager, sync and async.
    """

    def __init__(
        self,
        settings: ServerSettings | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: tuple[str, ...] | None = None,
        load_time: float | None = None,
        prompt_eval_latency: float | None = None,
        token_latency: float | None = None,
        embed_latency: float | None = None,
        num_parallel: int | None = None,
        max_queue: int | None = None,
        default_keep_alive: float | None = None,
        min_tokens: int | None = None,
        max_tokens: int | None = None,
        embedding_dim: int | None = None,
        embeddings: str | None = None,
        version: str | None = None,
    ) -> None:
        """``settings`` (default ``ServerSettings()``) with any ``ServerSettings`` field given here in place
        of its value (None: keep it). The fields are spelled out, so a misspelled one is a type error."""
        given: dict[str, Any] = {  # (each typed above; replace() checks them again)
            "models": models,
            "load_time": load_time,
            "prompt_eval_latency": prompt_eval_latency,
            "token_latency": token_latency,
            "embed_latency": embed_latency,
            "num_parallel": num_parallel,
            "max_queue": max_queue,
            "default_keep_alive": default_keep_alive,
            "min_tokens": min_tokens,
            "max_tokens": max_tokens,
            "embedding_dim": embedding_dim,
            "embeddings": embeddings,
            "version": version,
        }
        overrides = {k: v for k, v in given.items() if v is not None}
        if overrides:
            from dataclasses import replace

            settings = replace(settings or ServerSettings(), **overrides)
        elif settings is None:
            settings = ServerSettings()
        self.settings = settings
        self.host = host
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        from .ollama.state import SimState

        self.state = SimState(settings)

    @property
    def url(self) -> str:
        if not self._ready.is_set():
            raise RuntimeError("OllamaTestServer is not started; call start() first")
        return f"http://{self.host}:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> OllamaTestServer:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="ollama-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"OllamaTestServer did not start within {timeout}s")
        if self._error is not None:
            raise RuntimeError(f"OllamaTestServer failed to start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None or loop is None or stop is None:
            return
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        self._thread = None

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to start(); a thread has nowhere else to report
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        from aiohttp import web

        from .ollama.app import build_app

        self._stop = asyncio.Event()
        runner = web.AppRunner(build_app(self.state), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        addresses = runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def __enter__(self) -> OllamaTestServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> OllamaTestServer:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- inspection and fault injection -------------------------------------------------------------------

    def stats(self) -> StatsSnapshot:
        """Counters: requests per endpoint, loads, reloads, unloads, embed_inputs, tokens, completed, aborted,
        busy (503s), faults, max_in_flight."""
        return self.state.stats.snapshot()

    def reload_log(self) -> list[tuple[str, tuple[object, ...], tuple[object, ...]]]:
        """(model, old runner options, new runner options) for each reload, for clear test failures."""
        return self.state.stats.reloads_seen()

    def fail_next(
        self,
        status: int = 500,
        message: str = "injected failure",
        *,
        times: int = 1,
        endpoint: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` and ``{"error": message}``."""
        self.state.add_fault(
            Fault(kind="status", status=status, message=message, times=times, endpoint=endpoint)
        )

    def error_mid_stream(
        self,
        after: int = 3,
        message: str = "injected stream failure",
        *,
        times: int = 1,
        endpoint: str | None = None,
    ) -> None:
        """Send ``after`` chunks of the next streamed reply, then an ``{"error"}`` line; end the stream."""
        self.state.add_fault(
            Fault(kind="mid_stream", after=after, message=message, times=times, endpoint=endpoint)
        )

    def stall_next(self, seconds: float, *, times: int = 1, endpoint: str | None = None) -> None:
        """Hold the next matching request ``seconds`` before any byte is sent (timeouts, retries)."""
        self.state.add_fault(Fault(kind="stall", seconds=seconds, times=times, endpoint=endpoint))

    def clear_faults(self) -> None:
        self.state.clear_faults()


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.testing.ollama_server --port N``: serve until interrupted."""
    p = argparse.ArgumentParser(
        prog="python -m infra.testing.ollama_server", description=__doc__.split("\n")[0]
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=11434, help="0 lets the OS choose (printed on start)")
    p.add_argument("--model", action="append", dest="models", help="a model to serve (repeatable)")
    p.add_argument("--load-time", type=float, default=0.0, help="seconds to load a model")
    p.add_argument("--prompt-eval-latency", type=float, default=0.0, help="seconds per prompt token")
    p.add_argument("--token-latency", type=float, default=0.0, help="seconds per generated token")
    p.add_argument("--embed-latency", type=float, default=0.0, help="seconds per embedded input")
    p.add_argument("--num-parallel", type=int, default=4, help="like OLLAMA_NUM_PARALLEL")
    p.add_argument("--max-queue", type=int, default=512, help="like OLLAMA_MAX_QUEUE")
    p.add_argument("--min-tokens", type=int, default=20, help="shortest natural reply, in tokens")
    p.add_argument("--max-tokens", type=int, default=140, help="longest natural reply, in tokens")
    p.add_argument("--embeddings", choices=("hash", "sentence-transformers", "auto"), default="hash")
    args = p.parse_args(argv)
    try:
        settings = ServerSettings(
            models=tuple(args.models) if args.models else DEFAULT_MODELS,
            load_time=args.load_time,
            prompt_eval_latency=args.prompt_eval_latency,
            token_latency=args.token_latency,
            embed_latency=args.embed_latency,
            num_parallel=args.num_parallel,
            max_queue=args.max_queue,
            min_tokens=args.min_tokens,
            max_tokens=args.max_tokens,
            embeddings=args.embeddings,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = OllamaTestServer(settings, host=args.host, port=args.port)
    try:
        server.start()
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"Ollama test server on {server.url} (models: {', '.join(sorted(server.state.models))})", flush=True
    )
    return serve_until(server, threading.Event().wait)


if __name__ == "__main__":
    raise SystemExit(main())
