"""Ollama's OpenAI-compatible API on the test server (docs/openai.md): ``/v1/chat/completions``,
``/v1/completions``, ``/v1/embeddings``, ``/v1/models`` and ``/v1/models/{model}``, streamed as server-sent
events (``data: {...}`` lines, then ``data: [DONE]``), errors as ``{"error": {"message", "type", ...}}``.

Over the same simulation as the native API (same deterministic output for the same input and options, the
same loading, slots and counters), so a cache in front of either API sees the same behaviour.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .sim import Output, generate_output, normalize_model_name, prompt_token_count
from .state import BUSY_MESSAGE, Busy, SimState
from .wire import ModelCall, json_object, opened, state_of

__all__ = ["routes"]

#: The handlers below, each under its method and path (``build_app`` adds them).
routes = web.RouteTableDef()

_CREATED = 1767225600  # 2026-01-01T00:00:00Z: what /v1/models reports as each model's creation time


def _error(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    err = {"message": message, "type": kind, "param": None, "code": None}
    return web.json_response({"error": err}, status=status)


async def _begin(request: web.Request, endpoint: str) -> ModelCall | web.Response:
    """A model request's state, JSON body and full model name; or the error response to send instead."""
    state = state_of(request)
    body = await json_object(request, _error)
    if isinstance(body, web.Response):
        return body
    state.stats.count_request(endpoint)
    name = body.get("model")
    if not isinstance(name, str) or not name:
        return _error(400, "model is required")
    full = normalize_model_name(name)
    if full not in state.models:
        return _error(404, f'model "{name}" not found, try pulling it first', "api_error")
    return state, body, full


def _options(body: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI sampling fields as Ollama options."""
    opts: dict[str, Any] = {}
    for src, dst in (
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("seed", "seed"),
        ("frequency_penalty", "frequency_penalty"),
        ("presence_penalty", "presence_penalty"),
    ):
        if body.get(src) is not None:
            opts[dst] = body[src]
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None:
        opts["num_predict"] = limit
    stop = body.get("stop")
    if stop is not None:
        opts["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return opts


def _format(body: Mapping[str, Any]) -> Any:
    rf = body.get("response_format") or {}
    if rf.get("type") == "json_object":
        return "json"
    if rf.get("type") == "json_schema":
        return (rf.get("json_schema") or {}).get("schema") or "json"
    return None


def _text(content: Any) -> str:
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


async def _generate(
    state: SimState, model: str, name: str, source: Any, opts: Mapping[str, Any], **kw: Any
) -> tuple[Output, int]:
    """Run one completion in a slot (loading the model as the native API would); returns (output, load ns)."""
    s = state.settings
    async with state.slot(model):
        load_ns = await state.ensure_loaded(model, opts)
        try:
            out = generate_output(s, name, source, opts, **kw)
            n = len(out.tokens) + (1 if out.tool_calls else 0)
            if s.token_latency and n:
                await asyncio.sleep(s.token_latency * n)
        finally:
            state.release(model, s.default_keep_alive)
    state.stats.add(tokens=len(out.tokens), completed=1)
    return out, load_ns


def _id(prefix: str, *parts: Any) -> str:
    return (
        f"{prefix}-{int(hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:6], 16) % 1000}"
    )


def _tool_calls(out: Output, seed: str) -> list[dict[str, Any]]:
    return [
        {
            "index": i,
            "id": f"call_{hashlib.sha256(f'{seed}{i}'.encode()).hexdigest()[:8]}",
            "type": "function",
            "function": {"name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"])},
        }
        for i, c in enumerate(out.tool_calls)
    ]


def _finish(out: Output) -> str:
    return "tool_calls" if out.tool_calls else out.done_reason


async def _sse(request: web.Request, events: list[dict[str, Any]]) -> web.StreamResponse:
    resp = web.StreamResponse(
        status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    for e in events:
        await resp.write(f"data: {json.dumps(e)}\n\n".encode())
    await resp.write(b"data: [DONE]\n\n")
    await resp.write_eof()
    return resp


@routes.post("/v1/chat/completions")
@opened(_begin, "v1/chat/completions")
async def chat_completions(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    state, body, model = begun
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "messages is required")
    name = body["model"]
    # the native API's input shape, so one conversation gets one answer on both APIs
    source = [
        {"role": m.get("role"), "content": _text(m.get("content")), "images": None, "tool_calls": None,
         "tool_name": m.get("name")}
        for m in messages
        if isinstance(m, dict)
    ]  # fmt: skip
    tools = body.get("tools") or None
    use_tools = tools if (tools and source and source[-1]["role"] == "user") else None
    opts = _options(body)
    try:
        out, _ = await _generate(state, model, name, source, opts, fmt=_format(body), tools=use_tools)
    except Busy:
        return _error(503, BUSY_MESSAGE, "api_error")
    cid = _id("chatcmpl", name, source, opts)
    prompt_tokens = prompt_token_count(*(str(m["content"]) for m in source))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(out.tokens),
             "total_tokens": prompt_tokens + len(out.tokens)}  # fmt: skip
    head = {"id": cid, "created": int(time.time()), "model": name, "system_fingerprint": "fp_ollama"}
    calls = _tool_calls(out, cid)
    if body.get("stream"):
        events = []
        delta: dict[str, Any]
        for tok in out.tokens:
            delta = {"role": "assistant", "content": tok}
            events.append({**head, "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})  # fmt: skip
        if calls:
            delta = {"role": "assistant", "content": "", "tool_calls": calls}
            events.append({**head, "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})  # fmt: skip
        last = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": _finish(out)}
        events.append({**head, "object": "chat.completion.chunk", "choices": [last]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        return await _sse(request, events)
    message: dict[str, Any] = {"role": "assistant", "content": out.text}
    if calls:
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
    choice = {"index": 0, "message": message, "finish_reason": _finish(out)}
    return web.json_response({**head, "object": "chat.completion", "choices": [choice], "usage": usage})


@routes.post("/v1/completions")
@opened(_begin, "v1/completions")
async def completions(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    state, body, model = begun
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = "".join(p for p in prompt if isinstance(p, str))
    if not isinstance(prompt, str):
        return _error(400, "prompt is required")
    name = body["model"]
    source = {"prompt": prompt, "suffix": body.get("suffix"), "system": None, "template": None,
              "context": None, "raw": None, "images": None}  # fmt: skip
    opts = _options(body)
    try:
        out, _ = await _generate(state, model, name, source, opts)
    except Busy:
        return _error(503, BUSY_MESSAGE, "api_error")
    cid = _id("cmpl", name, source, opts)
    pt = prompt_token_count(prompt)
    usage = {"prompt_tokens": pt, "completion_tokens": len(out.tokens), "total_tokens": pt + len(out.tokens)}
    head = {"id": cid, "created": int(time.time()), "model": name, "system_fingerprint": "fp_ollama"}
    if body.get("stream"):
        events = [
            {**head, "object": "text_completion", "choices": [{"text": t, "index": 0, "finish_reason": None}]}
            for t in out.tokens
        ]
        events.append(
            {
                **head,
                "object": "text_completion",
                "choices": [{"text": "", "index": 0, "finish_reason": out.done_reason}],
            }
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**head, "object": "text_completion", "choices": [], "usage": usage})
        return await _sse(request, events)
    choice = {"text": out.text, "index": 0, "finish_reason": out.done_reason}
    return web.json_response({**head, "object": "text_completion", "choices": [choice], "usage": usage})


@routes.post("/v1/embeddings")
@opened(_begin, "v1/embeddings")
async def embeddings(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    state, body, model = begun
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return _error(400, "invalid input: a string or a list of strings")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return _error(400, f"invalid encoding_format {encoding!r}: float or base64")
    try:
        async with state.slot(model):
            await state.ensure_loaded(model, None)
            try:
                vectors = await state.embed(body["model"], texts)
            finally:
                state.release(model, state.settings.default_keep_alive)
    except Busy:
        return _error(503, BUSY_MESSAGE, "api_error")
    dims = body.get("dimensions")
    if isinstance(dims, int) and 0 < dims < len(vectors[0]):
        cut = [v[:dims] for v in vectors]
        vectors = [[x / (sum(y * y for y in v) ** 0.5 or 1.0) for x in v] for v in cut]
    data = []
    for i, v in enumerate(vectors):
        emb: Any = v if encoding == "float" else base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
        data.append({"object": "embedding", "embedding": emb, "index": i})
    pt = prompt_token_count(*texts)
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": pt, "total_tokens": pt},
        }
    )


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _CREATED, "owned_by": "library"}


@routes.get("/v1/models")
async def models(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    state.stats.count_request("v1/models")
    return web.json_response({"object": "list", "data": [_model_entry(m) for m in state.models]})


@routes.get("/v1/models/{model:.+}")
async def model(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    name = request.match_info["model"]
    if normalize_model_name(name) not in state.models:
        return _error(404, f'model "{name}" not found', "api_error")
    return web.json_response(_model_entry(name))
