"""What the handler modules (app, manage, openai_compat) share: where the state lives on the aiohttp app,
Ollama's native error reply, and reading a request body that must be a JSON object."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .state import SimState

__all__ = ["SIM_KEY", "json_object", "native_error", "state_of"]

SIM_KEY: web.AppKey[SimState] = web.AppKey("sim", SimState)


def state_of(request: web.Request) -> SimState:
    return request.app[SIM_KEY]


def native_error(status: int, message: str) -> web.Response:
    """Ollama's error reply: the HTTP status with ``{"error": message}``."""
    return web.json_response({"error": message}, status=status)


async def json_object(
    request: web.Request, error: Callable[[int, str], web.Response] = native_error
) -> dict[str, Any] | web.Response:
    """The body as a JSON object, or ``error``'s 400 reply saying what is wrong with it."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return error(400, "invalid JSON in request body")
    return body if isinstance(body, dict) else error(400, "request body must be a JSON object")
