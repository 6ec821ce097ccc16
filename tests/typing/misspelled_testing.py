"""``infra.testing``: ``OllamaTestServer``'s settings keywords are spelled out, so a misspelled one is a mypy
error (was ``**overrides: Any``: ``token_latncy=`` type-checked and failed only at run time); see
test_typing.py. ``well_typed_calls_stay_clean`` carries no ignore."""

from __future__ import annotations

from infra.testing import OllamaTestServer, ServerSettings


def misspelled() -> None:
    OllamaTestServer(token_latncy=0.002)  # type: ignore[call-arg]
    OllamaTestServer(ServerSettings(), min_tokns=4)  # type: ignore[call-arg]
    OllamaTestServer(token_latency="fast")  # type: ignore[arg-type]


def well_typed_calls_stay_clean() -> None:
    with OllamaTestServer(token_latency=0.002, min_tokens=4, max_tokens=8) as srv:
        loads: int = srv.stats()["loads"]
        chats: int = srv.stats()["requests"].get("chat", 0)
        print(srv.url, loads, chats, srv.reload_log())
    OllamaTestServer(ServerSettings(min_tokens=8, max_tokens=24), models=("llama3.2:3b",))
