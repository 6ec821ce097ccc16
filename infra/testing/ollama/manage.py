"""Model management on the Ollama test server: pull, push, create, copy, delete, blobs (docs/api.md), and the
``/v1/systemone`` scoring call ollama-python 0.6.3 exposes.

The "registry" has every well-formed model name, so a pull always succeeds (and the model then appears in
/api/tags); progress is streamed as NDJSON status objects in Ollama's order and wording, or answered once
with ``{"status": "success"}`` when ``stream`` is false. A created model gets a digest from its recipe, so
re-creating a model under the same name changes its digest as a new manifest would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .sim import ModelInfo, normalize_model_name
from .wire import Call, ModelCall, json_object, opened, state_of
from .wire import native_error as _error

__all__ = ["routes"]

#: The handlers below, each under its method and path (``build_app`` adds them).
routes = web.RouteTableDef()

NDJSON = "application/x-ndjson"
_NAME = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*(:[A-Za-z0-9][A-Za-z0-9._-]*)?$"
)


async def _begin(request: web.Request, endpoint: str) -> Call | web.Response:
    """Count the call and read its JSON object body (or the 400 reply)."""
    state = state_of(request)
    state.stats.count_request(endpoint)
    body = await json_object(request)
    return body if isinstance(body, web.Response) else (state, body)


async def _begin_named(request: web.Request, endpoint: str) -> ModelCall | web.Response:
    """``_begin``, and the body's well-formed model name (or the 400 reply)."""
    begun = await _begin(request, endpoint)
    if isinstance(begun, web.Response):
        return begun
    name = _model_name(begun[1])
    if name is None:
        return _error(400, "invalid model name")
    return (*begun, name)


async def _progress(request: web.Request, steps: list[dict[str, Any]], stream: bool) -> web.StreamResponse:
    if not stream:
        return web.json_response(steps[-1])
    resp = web.StreamResponse(status=200, headers={"Content-Type": NDJSON})
    await resp.prepare(request)
    for step in steps:
        await resp.write((json.dumps(step) + "\n").encode())
    await resp.write_eof()
    return resp


def _layer(status: str, digest: str, total: int) -> list[dict[str, Any]]:
    """One layer's transfer in four progress steps, as Ollama reports it."""
    short = digest[:12]
    return [
        {
            "status": f"{status} {short}",
            "digest": f"sha256:{digest}",
            "total": total,
            "completed": total * i // 4,
        }
        for i in range(5)
    ]


def _model_name(body: Mapping[str, Any]) -> str | None:
    name = body.get("model") or body.get("name")
    return name if isinstance(name, str) and _NAME.match(name) else None


@routes.post("/api/pull")
@opened(_begin_named, "pull")
async def pull(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    state, body, name = begun
    full = normalize_model_name(name)
    info = state.models.get(full) or ModelInfo.for_name(full)
    steps = [{"status": "pulling manifest"}, *_layer("pulling", info.digest, info.size)]
    steps += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
    state.models[full] = info
    return await _progress(request, steps, body.get("stream", True) is not False)


@routes.post("/api/push")
@opened(_begin_named, "push")
async def push(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    state, body, name = begun
    info = state.models.get(normalize_model_name(name))
    if info is None:
        return _error(404, f"model '{name}' not found")
    steps = [{"status": "retrieving manifest"}, *_layer("pushing", info.digest, info.size)]
    steps += [{"status": "pushing manifest"}, {"status": "success"}]
    return await _progress(request, steps, body.get("stream", True) is not False)


@routes.post("/api/create")
@opened(_begin_named, "create")
async def create(request: web.Request, begun: ModelCall) -> web.StreamResponse:
    state, body, name = begun
    parent_name = body.get("from")
    files = body.get("files") or {}
    if not parent_name and not files:
        return _error(400, "neither 'from' or 'files' was specified")
    blobs = state.blobs
    for fname, digest in dict(files).items():
        if digest not in blobs:
            return _error(400, f"missing blob {digest} for file {fname}")
    parent = None
    if parent_name:
        parent = state.models.get(normalize_model_name(parent_name)) or ModelInfo.for_name(
            normalize_model_name(parent_name)
        )
    system = body.get("system") or (parent.system if parent else "")
    params = body.get("parameters") or {}
    recipe = json.dumps(
        {k: body.get(k) for k in sorted(body) if k not in ("stream", "model")}, sort_keys=True
    )
    full = normalize_model_name(name)
    info = ModelInfo.for_name(full, system=system, salt=recipe)
    if parent is not None:
        info = dataclasses.replace(info, capabilities=parent.capabilities, embedding=parent.embedding)
    if body.get("template"):
        info = dataclasses.replace(info, template=body["template"])
    if params:
        info = dataclasses.replace(info, parameters="\n".join(f"{k} {v}" for k, v in dict(params).items()))
    steps: list[dict[str, Any]] = [{"status": "reading model metadata"}]
    if system:
        steps.append({"status": "creating system layer"})
    if parent is not None:
        steps.append({"status": f"using already created layer sha256:{parent.digest}"})
    steps += [{"status": "writing manifest"}, {"status": "success"}]
    state.models[full] = info
    return await _progress(request, steps, body.get("stream", True) is not False)


@routes.post("/api/copy")
@opened(_begin, "copy")
async def copy(request: web.Request, begun: Call) -> web.StreamResponse:
    state, body = begun
    src, dst = body.get("source"), body.get("destination")
    if not isinstance(src, str) or not isinstance(dst, str) or not _NAME.match(dst):
        return _error(400, "source and destination are required")
    info = state.models.get(normalize_model_name(src))
    if info is None:
        return _error(404, f"model '{src}' not found")
    state.models[normalize_model_name(dst)] = dataclasses.replace(info, name=normalize_model_name(dst))
    return web.Response(status=200)


@routes.delete("/api/delete")
@opened(_begin, "delete")
async def delete(request: web.Request, begun: Call) -> web.StreamResponse:
    state, body = begun
    name = _model_name(body)
    full = normalize_model_name(name) if name else ""
    if full not in state.models:
        return _error(404, f"model '{body.get('model') or body.get('name')}' not found")
    del state.models[full]
    state.unload(full)
    return web.Response(status=200)


@routes.head("/api/blobs/{digest}")
async def blob_head(request: web.Request) -> web.StreamResponse:
    return web.Response(status=200 if request.match_info["digest"] in state_of(request).blobs else 404)


@routes.post("/api/blobs/{digest}")
async def blob_post(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    digest = request.match_info["digest"]
    data = await request.read()
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest.replace("sha256-", "sha256:"):
        return _error(400, "digest mismatch")
    state.blobs.add(digest)
    return web.Response(status=201)


@routes.post("/v1/systemone")
@opened(_begin, "systemone")
async def systemone(request: web.Request, begun: Call) -> web.StreamResponse:
    """Deterministic answers of each question's type (choice / noul / score) for the given state."""
    state, body = begun
    name = body.get("model")
    if not isinstance(name, str) or normalize_model_name(name) not in state.models:
        return _error(404, f"model '{name}' not found")
    questions = body.get("questions")
    if not isinstance(questions, dict) or not questions:
        return _error(400, "questions are required")
    seed = json.dumps([name, body.get("state")], sort_keys=True, default=str)
    answers: dict[str, Any] = {}
    for key, q in questions.items():
        h = hashlib.sha256((seed + key).encode()).digest()
        kind = q.get("type") if isinstance(q, dict) else None
        criteria = q.get("criteria") if isinstance(q, dict) else None
        if kind == "choice" and isinstance(criteria, dict) and criteria:
            probs = _probabilities(list(criteria), h)
            best = max(probs, key=lambda k: probs[k])
            answers[key] = {
                "type": "choice",
                "choice": best,
                "probabilities": probs,
                "confidence": probs[best],
            }
        elif kind == "score" and isinstance(criteria, list) and criteria:
            labels = [str(i) for i in range(len(criteria))]
            probs = _probabilities(labels, h)
            score = round(sum(int(k) * p for k, p in probs.items()), 4)
            legend = dict(zip(labels, map(str, criteria), strict=True))
            conf = max(probs.values())
            answers[key] = {
                "type": "score",
                "score": score,
                "legend": legend,
                "probabilities": probs,
                "confidence": conf,
            }
        elif kind == "noul":
            answers[key] = {"type": "noul", "noul": round(h[0] / 255, 4)}
        else:
            return _error(400, f"question {key!r}: unknown type {kind!r}")
    usage = {"input_tokens": max(1, len(seed) // 4), "output_tokens": len(answers)}
    return web.json_response({"model": name, "answers": answers, "usage": usage})


def _probabilities(labels: list[str], h: bytes) -> dict[str, float]:
    weights = [h[i % len(h)] + 1 for i in range(len(labels))]
    total = sum(weights)
    return {k: round(w / total, 4) for k, w in zip(labels, weights, strict=True)}
