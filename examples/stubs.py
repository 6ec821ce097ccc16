"""Small stand-ins for the services the example pipelines call, on 127.0.0.1 with realistic latencies.

* TTS over HTTP: ``POST /v1/tts {"text", "voice"}`` → 16 kHz 16-bit PCM (deterministic bytes);
* song search over HTTP: ``GET /v1/songs?mood=&limit=`` → JSON list;
* memory search over HTTP (GraphRAG-like): ``POST /v1/entities/search``, ``GET /v1/entities/{id}/neighbors``,
  ``POST /v1/communities/search``;
* STT over a WebSocket (``/v1/stt``): ElevenLabs-style ``input_audio_chunk`` messages, a ``commit`` answered
  with ``committed_transcript``;
* the LLM and embeddings: the project's Ollama API test server (``infra.testing.ollama_server``).

Every stub counts what it did (``work()``): requests and the simulated seconds spent, so tests can assert
that a warm, cached run asked the services for nothing. ``ExampleServers`` starts them all::

    with ExampleServers(scale=0.2) as servers:
        env = servers.env()          # OLLAMA_HOST, EXAMPLE_TTS_URL, EXAMPLE_STT_URL, ...

From a shell, ``python -m examples.stubs CMD ...`` starts them, runs CMD with that environment (stdin passed
through) and stops them; with no CMD it prints the ``export`` lines and serves until Ctrl-C::

    echo "I walked by the river" | PERF_CONFIG=examples/perf_config.json \
        python -m examples.stubs python -m examples.enrichment_worker_cached
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import struct
import threading
from collections import Counter
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

__all__ = ["ExampleServers", "StubLatency", "StubServers", "main"]


@dataclass(frozen=True)
class StubLatency:
    """Seconds each stub takes (before ``scale``); the defaults are typical of local services."""

    tts_base: float = 0.060
    tts_per_char: float = 0.0008
    songs: float = 0.080
    search: float = 0.012
    neighbors: float = 0.008
    stt_commit: float = 0.050
    # Ollama test server: per generated token, per prompt token, per embedded input, model load.
    token: float = 0.004
    prompt_token: float = 0.0001
    embed: float = 0.010
    load: float = 0.2
    scale: float = 1.0

    def scaled(self, name: str) -> float:
        return float(getattr(self, name)) * self.scale


_WORDS = ("river", "morning", "quiet", "storm", "lantern", "harbor", "meadow", "echo", "ember", "tide")
_ARTISTS = ("Nova Lane", "The Fieldnotes", "Aria Voss", "Low Orbit", "Mira Sol", "Kites & Keys")
_ENTITIES = [
    {"id": f"e{i}", "name": name, "entity_type": kind, "description": desc}
    for i, (name, kind, desc) in enumerate(
        [
            ("Mina", "person", "user's sister, lives in Busan"),
            ("Jae", "person", "college friend, plays guitar"),
            ("Harbor Cafe", "place", "where the user writes on Sundays"),
            ("Marathon", "event", "training for the autumn race"),
            ("Piano", "hobby", "practising Chopin nocturnes"),
            ("Dr. Kim", "person", "therapist, Tuesday sessions"),
            ("Luna", "pet", "grey cat, twelve years old"),
            ("New job", "event", "started at the design studio"),
            ("Grandmother", "person", "recovering from surgery"),
            ("Garden", "place", "tomatoes and basil on the balcony"),
            ("Book club", "group", "reads one novel a month"),
            ("Hiking", "hobby", "weekend trails near the coast"),
        ]
    )
]
_COMMUNITIES = [
    {"id": f"c{i}", "summary": s}
    for i, s in enumerate(
        [
            "Family: the user keeps close contact with Mina and their grandmother.",
            "Health: running and therapy help the user manage stress.",
            "Creativity: piano and writing at the Harbor Cafe are the user's outlets.",
            "Work: a new design job brings both excitement and pressure.",
            "Home: Luna the cat and the balcony garden anchor the user's routine.",
        ]
    )
]


def _digest(*parts: Any) -> bytes:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()).digest()


def _pick(seed: bytes, items: list[Any], k: int) -> list[Any]:
    order = sorted(range(len(items)), key=lambda i: hashlib.sha256(seed + bytes([i])).digest())
    return [items[i] for i in order[:k]]


def tts_audio(text: str, voice: str) -> bytes:
    """The stub's 'speech': deterministic PCM, 40 samples per character (what a real TTS would vary in)."""
    n = max(1, len(text)) * 40
    seed = _digest("tts", text, voice)
    out = bytearray()
    block = seed
    while len(out) < n * 2:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[: n * 2])


def song_list(mood: str, limit: int) -> list[dict[str, Any]]:
    seed = _digest("songs", mood)
    songs = []
    for i in range(max(0, min(limit, 10))):
        h = hashlib.sha256(seed + bytes([i])).digest()
        title = f"{_WORDS[h[0] % len(_WORDS)].title()} {_WORDS[h[1] % len(_WORDS)]}"
        songs.append(
            {
                "title": title,
                "artist": _ARTISTS[h[2] % len(_ARTISTS)],
                "youtube_id": base64.urlsafe_b64encode(h[3:11]).decode()[:11],
                "score": round(struct.unpack(">H", h[11:13])[0] / 65535, 4),
            }
        )
    return songs


def transcript_of(audio: bytes) -> str:
    """The stub's 'recognition': the examples' audio carries its text (see examples.voice.audio)."""
    return audio.rstrip(b"\0").decode("utf-8", "replace")


class StubServers:
    """The HTTP stubs (one aiohttp app) and the STT WebSocket stub, on a loop in a daemon thread."""

    def __init__(self, latency: StubLatency | None = None, *, host: str = "127.0.0.1") -> None:
        self.latency = latency or StubLatency()
        self.host = host
        self.http_port = 0
        self.ws_port = 0
        self._requests: Counter[str] = Counter()
        self._seconds = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- accounting -------------------------------------------------------------------------------------
    async def _work(self, endpoint: str, seconds: float) -> None:
        with self._lock:
            self._requests[endpoint] += 1
            self._seconds += seconds
        if seconds > 0:
            await asyncio.sleep(seconds)

    def work(self) -> dict[str, Any]:
        """Requests per endpoint, their total, and the simulated service seconds spent."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "total": sum(self._requests.values()),
                "seconds": round(self._seconds, 6),
            }

    # -- handlers ---------------------------------------------------------------------------------------
    def _app(self) -> Any:
        from aiohttp import web

        lat = self.latency

        async def tts(request: web.Request) -> web.Response:
            body = await request.json()
            text, voice = str(body.get("text", "")), str(body.get("voice", "default"))
            if not text:
                return web.json_response({"error": "text is required"}, status=400)
            await self._work("tts", lat.scaled("tts_base") + lat.scaled("tts_per_char") * len(text))
            return web.Response(body=tts_audio(text, voice), content_type="application/octet-stream")

        async def songs(request: web.Request) -> web.Response:
            mood = request.query.get("mood", "")
            limit = int(request.query.get("limit", "3"))
            await self._work("songs", lat.scaled("songs"))
            return web.json_response(song_list(mood, limit))

        async def entities(request: web.Request) -> web.Response:
            body = await request.json()
            emb = [round(float(x), 6) for x in body["query_embedding"]]
            await self._work("search_entities", lat.scaled("search"))
            return web.json_response(_pick(_digest("ent", emb), _ENTITIES, int(body.get("top_k", 5))))

        async def neighbors(request: web.Request) -> web.Response:
            eid = request.match_info["entity_id"]
            await self._work("neighbors", lat.scaled("neighbors"))
            found = [e for e in _pick(_digest("nb", eid), _ENTITIES, 4) if e["id"] != eid][:3]
            return web.json_response([{"name": e["name"], "description": e["description"]} for e in found])

        async def communities(request: web.Request) -> web.Response:
            body = await request.json()
            emb = [round(float(x), 6) for x in body["query_embedding"]]
            await self._work("search_communities", lat.scaled("search"))
            return web.json_response(_pick(_digest("com", emb), _COMMUNITIES, int(body.get("top_k", 2))))

        app = web.Application()
        app.router.add_post("/v1/tts", tts)
        app.router.add_get("/v1/songs", songs)
        app.router.add_post("/v1/entities/search", entities)
        app.router.add_get("/v1/entities/{entity_id}/neighbors", neighbors)
        app.router.add_post("/v1/communities/search", communities)
        return app

    async def _stt(self, ws: Any) -> None:
        audio = bytearray()
        async for raw in ws:
            msg = json.loads(raw)
            kind = msg.get("message_type")
            if kind == "input_audio_chunk":
                audio += base64.b64decode(msg.get("audio_base_64", ""))
                if not msg.get("commit"):
                    continue
            elif kind != "commit":
                await ws.send(
                    json.dumps({"message_type": "error", "error": f"unknown message_type {kind!r}"})
                )
                continue
            await self._work("stt", self.latency.scaled("stt_commit"))
            await ws.send(
                json.dumps({"message_type": "committed_transcript", "text": transcript_of(bytes(audio))})
            )
            audio.clear()

    # -- lifecycle --------------------------------------------------------------------------------------
    async def _serve(self) -> None:
        from aiohttp import web
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self.http_port = runner.addresses[0][1]
        async with serve(self._stt, self.host, 0) as ws_server:
            self.ws_port = next(iter(ws_server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stop.wait()
        await runner.cleanup()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    def start(self, timeout: float = 10.0) -> StubServers:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="example-stubs", daemon=True)
            self._thread.start()
            if not self._ready.wait(timeout) or self._error is not None:
                raise RuntimeError(f"example stubs did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._thread is not None and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
            self._thread = None

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def stt_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}/v1/stt"


class ExampleServers:
    """The stubs plus the Ollama API test server; ``env()`` gives the pipelines their endpoints."""

    def __init__(self, latency: StubLatency | None = None, *, scale: float | None = None) -> None:
        lat = latency or StubLatency()
        if scale is not None:
            lat = replace(lat, scale=scale)
        self.latency = lat
        self.stubs = StubServers(lat)
        self.ollama: Any = None

    def start(self) -> ExampleServers:
        from infra.testing.ollama_server import OllamaTestServer, ServerSettings

        lat = self.latency
        self.stubs.start()
        self.ollama = OllamaTestServer(
            ServerSettings(
                token_latency=lat.scaled("token"),
                prompt_eval_latency=lat.scaled("prompt_token"),
                embed_latency=lat.scaled("embed"),
                load_time=lat.scaled("load"),
                num_parallel=4,
            )
        ).start()
        return self

    def stop(self) -> None:
        if self.ollama is not None:
            self.ollama.stop()
            self.ollama = None
        self.stubs.stop()

    def env(self) -> dict[str, str]:
        """Environment variables the example pipelines read their endpoints from."""
        return {
            "OLLAMA_HOST": self.ollama.url,
            "EXAMPLE_TTS_URL": self.stubs.http_url,
            "EXAMPLE_SONGS_URL": self.stubs.http_url,
            "EXAMPLE_SEARCH_URL": self.stubs.http_url,
            "EXAMPLE_STT_URL": self.stubs.stt_url,
        }

    def apply_env(self) -> dict[str, str | None]:
        """Set ``env()`` in os.environ; returns the previous values (for ``restore_env``)."""
        previous = {k: os.environ.get(k) for k in self.env()}
        os.environ.update(self.env())
        return previous

    @staticmethod
    def restore_env(previous: dict[str, str | None]) -> None:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def work(self) -> dict[str, Any]:
        """What the services computed: stub requests and seconds; Ollama requests, tokens, embedded inputs."""
        stub = self.stubs.work()
        o = self.ollama.stats() if self.ollama is not None else {}
        return {
            "stub_requests": stub["total"],
            "stub_seconds": stub["seconds"],
            "stub_by_endpoint": stub["requests"],
            "ollama_requests": sum((o.get("requests") or {}).values()),
            "ollama_tokens": o.get("tokens", 0),
            "ollama_embed_inputs": o.get("embed_inputs", 0),
        }

    def __enter__(self) -> ExampleServers:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m examples.stubs [CMD ...]``: with CMD, run it with the stubs' environment (stdin passed
    through; its exit status is returned), then stop them; without, print the ``export`` lines and serve
    until Ctrl-C."""
    import shlex
    import subprocess
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--"]:
        args = args[1:]
    with ExampleServers() as servers:
        env = servers.env()
        if args:
            return subprocess.call(args, env={**os.environ, **env})
        for name, value in env.items():
            print(f"export {name}={shlex.quote(value)}", flush=True)
        print("# example stubs serving; Ctrl-C stops them", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
