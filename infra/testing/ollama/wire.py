"""What the handler modules (app, manage, openai_compat) share: where the state lives on the aiohttp app,
Ollama's native error reply, reading a request body that must be a JSON object, and ``opened``: a handler
whose opening step (count the call, read the body, find the model) may answer the request itself."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web

from .state import SimState

__all__ = ["SIM_KEY", "Call", "Handler", "ModelCall", "json_object", "native_error", "opened", "state_of"]

SIM_KEY: web.AppKey[SimState] = web.AppKey("sim", SimState)

#: What an opening step hands a handler: the state and the JSON body, and for a model call the model's name.
Call = tuple[SimState, dict[str, Any]]
ModelCall = tuple[SimState, dict[str, Any], str]
#: What aiohttp routes: a coroutine function of the request.
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Begun = TypeVar("Begun")


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


def opened(
    begin: Callable[[web.Request, str], Awaitable[Begun | web.Response]], endpoint: str
) -> Callable[[Callable[[web.Request, Begun], Awaitable[web.StreamResponse]]], Handler]:
    """Decorate ``handler(request, begun)`` into the aiohttp handler ``(request)`` that first awaits
    ``begin(request, endpoint)``: the error reply ``begin`` returns is sent as it is, what it read goes to
    ``handler``."""

    def wrap(handler: Callable[[web.Request, Begun], Awaitable[web.StreamResponse]]) -> Handler:
        async def routed(request: web.Request) -> web.StreamResponse:
            begun = await begin(request, endpoint)
            return begun if isinstance(begun, web.Response) else await handler(request, begun)

        routed.__name__ = routed.__qualname__ = handler.__name__
        return routed

    return wrap
