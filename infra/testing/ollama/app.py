"""aiohttp handlers speaking the Ollama HTTP API (the subset pipelines use) over the I/O-free :mod:`.sim`.

Wire details follow what the official ``ollama`` Python client sends and parses (ollama 0.6, ``_client.py`` /
``_types.py``): NDJSON streaming with ``application/x-ndjson``; ``stream`` defaults to true when absent;
errors are an HTTP status with ``{"error": ...}``, or an ``{"error"}`` line once a stream has started;
durations are integer nanoseconds and are left out when zero.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .sim import (
    Output,
    ServerSettings,
    generate_output,
    normalize_model_name,
    parse_keep_alive,
    prompt_token_count,
    rfc3339_nanos,
    token_logprobs,
)
from .state import BUSY_MESSAGE, Busy, SimState
from .wire import SIM_KEY, ModelCall, opened, state_of
from .wire import native_error as _error

__all__ = ["SIM_KEY", "SimState", "build_app"]

NDJSON = "application/x-ndjson"

#: The native API's handlers below, each under its method and path.
routes = web.RouteTableDef()


# ------------------------------------------------------------------------------------------------- helpers


def _durations(d: dict[str, Any], **values: int) -> dict[str, Any]:
    """Add the nanosecond fields that are non-zero (Ollama's omitempty)."""
    for k, v in values.items():
        if v:
            d[k] = int(v)
    return d


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text='{"error":"invalid JSON in request body"}', content_type="application/json"
        ) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text='{"error":"request body must be a JSON object"}', content_type="application/json"
        )
    return body


async def _begin(request: web.Request, endpoint: str) -> ModelCall | web.Response:
    """A model request's state, JSON body and full model name; or the error response to send instead."""
    state = state_of(request)
    body = await _body(request)
    state.stats.count_request(endpoint)
    name = body.get("model")
    if not name or not isinstance(name, str):
        return _error(400, "model is required")
    full = normalize_model_name(name)
    if full not in state.models:
        return _error(404, f"model '{name}' not found")
    return state, body, full


def _keep_alive(state: SimState, body: Mapping[str, Any]) -> float:
    return parse_keep_alive(body.get("keep_alive"), state.settings.default_keep_alive)


async def _injected(state: SimState, endpoint: str) -> web.Response | None:
    """A queued ``status`` fault's reply; a queued ``stall`` sleeps here and the call goes on (None)."""
    fault = state.take_fault(endpoint, ("status", "stall"))
    if fault is not None and fault.kind == "status":
        return _error(fault.status, fault.message)
    if fault is not None and fault.kind == "stall":
        await asyncio.sleep(fault.seconds)
    return None


async def _sleep_until(deadline: float) -> None:
    delay = deadline - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


# ------------------------------------------------------------------------------------------------- handlers


async def _completion(request: web.Request, begun: ModelCall, endpoint: str) -> web.StreamResponse:
    """Shared body of /api/generate and /api/chat: they differ only in how input and chunks are shaped."""
    state, body, model = begun
    try:
        keep_alive = _keep_alive(state, body)
    except ValueError as exc:
        return _error(400, str(exc))
    options = body.get("options") or {}
    if not isinstance(options, dict):
        return _error(400, "options must be a JSON object")
    chat = endpoint == "chat"
    stream = body.get("stream", True) is not False
    refused = _refusal(state.models[model], body, endpoint)
    if refused is not None:
        return refused
    messages = body.get("messages") or []
    if chat:
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return _error(400, "messages must be a list of objects")
        empty = not messages
    else:
        empty = not body.get("prompt") and not body.get("images")

    injected = await _injected(state, endpoint)
    if injected is not None:
        return injected

    started = time.perf_counter_ns()
    try:
        async with state.slot(model):
            if empty and keep_alive == 0:
                state.unload(model)
                return _final_only(body, model, endpoint, "unload", 0, stream)
            load_ns = await state.ensure_loaded(model, options)
            try:
                if empty:
                    return _final_only(body, model, endpoint, "load", load_ns, stream)
                return await _produce(
                    request, state, body, model, endpoint, options, stream, started, load_ns
                )
            finally:
                state.release(model, keep_alive)
    except Busy:
        return _error(503, BUSY_MESSAGE)


def _refusal(info: Any, body: Mapping[str, Any], endpoint: str) -> web.Response | None:
    """Ollama's 400 for a request the model's capabilities (/api/show) can't serve."""
    caps = info.capabilities
    name = body.get("model")
    think = body.get("think")
    if "image" in caps and endpoint == "generate":
        return None
    if "completion" not in caps:
        return _error(400, f'"{name}" does not support {endpoint}')
    if think not in (None, False) and "thinking" not in caps:
        return _error(400, f'"{name}" does not support thinking')
    if body.get("tools") and "tools" not in caps:
        return _error(400, f'"{name}" does not support tools')
    if endpoint == "generate" and body.get("suffix") and "insert" not in caps:
        return _error(400, f'"{name}" does not support insert')
    return None


def _final_only(
    body: Mapping[str, Any], model: str, endpoint: str, reason: str, load_ns: int, stream: bool
) -> web.StreamResponse:
    """Ollama's reply to an empty prompt/messages: load (or unload with keep_alive 0) the model, no tokens."""
    d: dict[str, Any] = {"model": body["model"], "created_at": rfc3339_nanos()}
    if endpoint == "chat":
        d["message"] = {"role": "assistant", "content": ""}
    else:
        d["response"] = ""
    d["done"] = True
    d["done_reason"] = reason
    _durations(d, load_duration=load_ns, total_duration=load_ns)
    if stream:
        return web.Response(body=(json.dumps(d) + "\n").encode(), content_type=NDJSON)
    return web.json_response(d)


async def _produce(
    request: web.Request,
    state: SimState,
    body: Mapping[str, Any],
    model: str,
    endpoint: str,
    options: Mapping[str, Any],
    stream: bool,
    started: int,
    load_ns: int,
) -> web.StreamResponse:
    s = state.settings
    chat = endpoint == "chat"
    if not chat and "image" in state.models[model].capabilities:
        return await _image(request, body, stream, started, load_ns)
    out, prompt_tokens = _generate(s, body, options, chat)
    t_prompt = time.perf_counter()
    if s.prompt_eval_latency:
        await asyncio.sleep(s.prompt_eval_latency * prompt_tokens)
    prompt_ns = max(1, int((time.perf_counter() - t_prompt) * 1e9))
    logprobs = None
    if body.get("logprobs"):
        top = body.get("top_logprobs") or 0
        logprobs = token_logprobs(out.tokens, int(top), json.dumps([body["model"], out.text]).encode())
    g = _Generation(body["model"], chat, out, prompt_tokens, started, load_ns, prompt_ns, logprobs)
    if not stream:
        return await _whole(state, g)
    return await _streamed(request, state, endpoint, g)


def _generate(
    s: ServerSettings, body: Mapping[str, Any], options: Mapping[str, Any], chat: bool
) -> tuple[Output, int]:
    """The deterministic output for a generate/chat body, and its prompt's token count."""
    if chat:
        messages = body.get("messages") or []
        source: Any = [
            {k: m.get(k) for k in ("role", "content", "images", "tool_calls", "tool_name")} for m in messages
        ]
        prompt_tokens = prompt_token_count(*(str(m.get("content") or "") for m in messages))
        tools = body.get("tools") or None
        last_role = messages[-1].get("role") if messages else None
        use_tools = tools if (tools and last_role == "user") else None
    else:
        source = {
            k: body.get(k) for k in ("prompt", "suffix", "system", "template", "context", "raw", "images")
        }
        prompt_tokens = prompt_token_count(str(body.get("prompt") or ""), str(body.get("system") or ""))
        use_tools = None
    out = generate_output(
        s, body["model"], source, options, fmt=body.get("format"), think=body.get("think"), tools=use_tools
    )
    if body.get("context") and not chat:
        prompt_tokens += len(body["context"])
    return out, prompt_tokens


@dataclass(slots=True)
class _Generation:
    """One generate/chat call's output and the figures its final chunk reports."""

    name: str
    chat: bool
    out: Output
    prompt_tokens: int
    started: int
    load_ns: int
    prompt_ns: int
    logprobs: list[dict[str, Any]] | None

    @property
    def eval_count(self) -> int:
        return len(self.out.tokens) + len(self.out.thinking) + (1 if self.out.tool_calls else 0)

    def finish(self, d: dict[str, Any], eval_ns: int) -> None:
        """Make ``d`` the final chunk: done, the reason, the context (generate) and the durations."""
        d["done"] = True
        d["done_reason"] = self.out.done_reason
        n, count = self.prompt_tokens, self.eval_count
        if not self.chat:
            d["context"] = [(n * 31 + i * 7919) % 128000 for i in range(n + count)]
        _durations(
            d,
            total_duration=time.perf_counter_ns() - self.started,
            load_duration=self.load_ns,
            prompt_eval_count=n,
            prompt_eval_duration=self.prompt_ns,
            eval_count=count,
            eval_duration=eval_ns,
        )


async def _whole(state: SimState, g: _Generation) -> web.StreamResponse:
    """``stream: false``: one JSON reply after the whole evaluation time."""
    s = state.settings
    t_eval = time.perf_counter()
    if s.token_latency and g.eval_count:
        await asyncio.sleep(s.token_latency * g.eval_count)
    eval_ns = max(1, int((time.perf_counter() - t_eval) * 1e9))
    out = g.out
    d = _chunk(
        g.name,
        g.chat,
        out.text,
        thinking="".join(out.thinking) or None,
        tool_calls=list(out.tool_calls) or None,
    )
    if g.logprobs is not None:
        d["logprobs"] = g.logprobs
    g.finish(d, eval_ns)
    state.stats.add(tokens=g.eval_count, completed=1)
    return web.json_response(d)


async def _streamed(
    request: web.Request, state: SimState, endpoint: str, g: _Generation
) -> web.StreamResponse:
    """NDJSON: thinking, then one chunk per token at ``token_latency`` pace, then tool calls and the final
    chunk; a queued ``mid_stream`` fault ends the stream with an ``{"error"}`` line."""
    s = state.settings
    name, chat, out = g.name, g.chat, g.out
    resp = web.StreamResponse(status=200, headers={"Content-Type": NDJSON})
    mid = state.take_fault(endpoint, ("mid_stream",))
    sent = 0
    try:
        await resp.prepare(request)
        t_eval = time.perf_counter()
        pieces: list[dict[str, Any]] = []
        pieces += [_chunk(name, chat, "", thinking=t) for t in out.thinking]
        for i, t in enumerate(out.tokens):
            pieces.append(_chunk(name, chat, t))
            if g.logprobs is not None:
                pieces[-1]["logprobs"] = [g.logprobs[i]]
        if out.tool_calls:
            pieces.append(_chunk(name, chat, "", tool_calls=list(out.tool_calls)))
        for i, piece in enumerate(pieces):
            if mid is not None and sent >= mid.after:
                await resp.write((json.dumps({"error": mid.message}) + "\n").encode())
                await resp.write_eof()
                return resp
            if s.token_latency:
                await _sleep_until(t_eval + s.token_latency * (i + 1))
            await resp.write((json.dumps(piece) + "\n").encode())
            sent += 1
        eval_ns = max(1, int((time.perf_counter() - t_eval) * 1e9))
        final = _chunk(name, chat, "")
        g.finish(final, eval_ns)
        await resp.write((json.dumps(final) + "\n").encode())
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        state.stats.add(aborted=1, tokens=sent)
        raise
    state.stats.add(tokens=g.eval_count, completed=1)
    return resp


def _chunk(
    name: str,
    chat: bool,
    text: str,
    *,
    thinking: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    d: dict[str, Any] = {"model": name, "created_at": rfc3339_nanos()}
    if chat:
        msg: dict[str, Any] = {"role": "assistant", "content": text}
        if thinking:
            msg["thinking"] = thinking
        if tool_calls:
            msg["tool_calls"] = tool_calls
        d["message"] = msg
    else:
        d["response"] = text
        if thinking:
            d["thinking"] = thinking
    d["done"] = False
    return d


def _png(seed: bytes, size: int = 8) -> bytes:
    """A small deterministic RGB PNG (the "generated image")."""
    import struct
    import zlib

    rows = b"".join(
        b"\x00" + bytes(seed[(y * size + x) % len(seed)] for x in range(size * 3)) for y in range(size)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def _image(
    request: web.Request, body: Mapping[str, Any], stream: bool, started: int, load_ns: int
) -> web.StreamResponse:
    """Image generation (``x/z-image-turbo``): progress chunks ``{completed, total}``, then ``image``."""
    import base64
    import hashlib

    steps: int = body["steps"] if isinstance(body.get("steps"), int) and body["steps"] > 0 else 4
    name = body["model"]
    image = base64.b64encode(_png(hashlib.sha256(json.dumps([name, body.get("prompt")]).encode()).digest()))
    final = {"model": name, "created_at": rfc3339_nanos(), "image": image.decode(), "done": True}
    final["done_reason"] = "stop"
    _durations(final, total_duration=time.perf_counter_ns() - started, load_duration=load_ns)
    if not stream:
        return web.json_response(final)
    resp = web.StreamResponse(status=200, headers={"Content-Type": NDJSON})
    await resp.prepare(request)
    for i in range(1, steps + 1):
        step = {"model": name, "created_at": rfc3339_nanos(), "done": False, "completed": i, "total": steps}
        await resp.write((json.dumps(step) + "\n").encode())
    await resp.write((json.dumps(final) + "\n").encode())
    await resp.write_eof()
    return resp


@routes.post("/api/generate")
@opened(_begin, "generate")
async def generate(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    return await _completion(request, begun, "generate")


@routes.post("/api/chat")
@opened(_begin, "chat")
async def chat(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    return await _completion(request, begun, "chat")


@routes.post("/api/embed")
@opened(_begin, "embed")
async def embed(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    state, body, model = begun
    raw = body.get("input", [])
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return _error(400, "invalid input type")
    try:
        keep_alive = _keep_alive(state, body)
    except ValueError as exc:
        return _error(400, str(exc))
    injected = await _injected(state, "embed")
    if injected is not None:
        return injected
    started = time.perf_counter_ns()
    try:
        async with state.slot(model):
            load_ns = await state.ensure_loaded(model, body.get("options"))
            try:
                vectors = await state.embed(body["model"], texts)
            finally:
                state.release(model, keep_alive)
    except Busy:
        return _error(503, BUSY_MESSAGE)
    dims = body.get("dimensions")
    if isinstance(dims, int) and 0 < dims < len(vectors[0] if vectors else []):
        cut = [v[:dims] for v in vectors]
        vectors = [[x / (sum(y * y for y in v) ** 0.5 or 1.0) for x in v] for v in cut]
    d: dict[str, Any] = {"model": body["model"], "embeddings": vectors}
    _durations(
        d,
        total_duration=time.perf_counter_ns() - started,
        load_duration=load_ns,
        prompt_eval_count=prompt_token_count(*texts) if texts else 0,
    )
    return web.json_response(d)


@routes.post("/api/embeddings")
@opened(_begin, "embeddings")
async def embeddings(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    """The legacy single-prompt endpoint (``Client.embeddings``): ``{"prompt"}`` in, ``{"embedding"}`` out."""
    state, body, model = begun
    prompt = body.get("prompt") or ""
    try:
        keep_alive = _keep_alive(state, body)
        async with state.slot(model):
            await state.ensure_loaded(model, body.get("options"))
            try:
                vectors = await state.embed(body["model"], [prompt]) if prompt else [[]]
            finally:
                state.release(model, keep_alive)
    except ValueError as exc:
        return _error(400, str(exc))
    except Busy:
        return _error(503, BUSY_MESSAGE)
    return web.json_response({"embedding": vectors[0]})


def _modified_at() -> str:
    return "2026-01-01T00:00:00.000000000Z"


@routes.get("/api/tags")
async def tags(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    state.stats.count_request("tags")
    models = [
        {
            "name": m.name,
            "model": m.name,
            "modified_at": _modified_at(),
            "size": m.size,
            "digest": m.digest,
            "details": m.details(),
        }
        for m in state.models.values()
    ]
    return web.json_response({"models": models})


@routes.get("/api/ps")
async def ps(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    state.stats.count_request("ps")
    out = []
    for name, expires_wall, opts in state.loaded():
        m = state.models[name]
        # Ollama shows a far-future expires_at for keep_alive < 0 (never unload).
        wall = expires_wall if math.isfinite(expires_wall) else time.time() + 10 * 365 * 86400
        out.append(
            {
                "name": name,
                "model": name,
                "size": m.size,
                "digest": m.digest,
                "details": m.details(),
                "expires_at": rfc3339_nanos(int(wall * 1e9)),
                "size_vram": m.size,
                "context_length": opts[0],
            }
        )
    return web.json_response({"models": out})


@routes.post("/api/show")
@opened(_begin, "show")
async def show(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    state, _, model = begun
    m = state.models[model]
    return web.json_response(
        {
            "modelfile": f"FROM {m.name}\n" + (f'SYSTEM """{m.system}"""\n' if m.system else ""),
            "parameters": m.parameters,
            "template": m.template,
            "details": m.details(),
            "model_info": {"general.architecture": m.family, "general.parameter_count": m.size},
            "capabilities": list(m.capabilities),
            "modified_at": _modified_at(),
        }
    )


@routes.get("/api/version")
async def version(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    state.stats.count_request("version")
    return web.json_response({"version": state.settings.version})


@routes.get("/")
async def root(request: web.Request) -> web.StreamResponse:
    return web.Response(text="Ollama is running")


def build_app(state: SimState) -> web.Application:
    """The aiohttp application; ``app[SIM_KEY]`` is the shared :class:`SimState`."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[SIM_KEY] = state
    from . import manage, openai_compat

    for table in (routes, manage.routes, openai_compat.routes):
        app.add_routes(table)
    return app
