"""The layer's call flows, written once for both clients (sans-I/O, as httpx's ``Auth.auth_flow``).

A flow is a generator that decides everything a planned call does (hit or miss, single-flight, what is
stored, the metrics) and yields an *effect* wherever it needs I/O: read the cache, read the model's digest,
send the request, join a call in flight, store. ``OptimizedOllama._drive`` performs each effect plainly,
``AsyncOptimizedOllama._drive`` awaits it; that loop and the effects' bodies are the only places the two
clients differ. Flows cover the non-streamed reply (``full``), the per-item embed (``embed``) and a stream's
store at its end (``stream_end``); a memoized hit and a stream's chunks are written out in each client
(they are the hot path and an iterator of the caller's, respectively).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, NamedTuple

from ._values import (
    decode_full,
    embed_response,
    fill_vectors,
    full_value,
    split_found,
    storable,
    stream_value,
    tagged,
)

if TYPE_CHECKING:
    from ._core import ClientCore, Flight, Plan
    from .stream import StreamRecorder

__all__ = [
    "Digest",
    "Get",
    "GetMany",
    "Land",
    "Put",
    "Run",
    "Send",
    "Share",
    "embed",
    "full",
    "stream_end",
]


class Get(NamedTuple):
    """Read one cache entry (a write-behind entry still queued counts); answer: the value or None."""

    ns: str
    key: str


class GetMany(NamedTuple):
    """Read several entries; answer: the values found, by key."""

    ns: str
    keys: list[str]


class Digest(NamedTuple):
    """The model's current digest (/api/tags, read once per host); answer: the digest or None."""

    model: str


class Send(NamedTuple):
    """Send ``body`` under the concurrency limit, retried before the first byte; answer: the reply."""

    body: dict[str, Any]
    plan: Plan


class Share(NamedTuple):
    """Join the identical call in flight or lead it; answer ``(flight, leader)``, a follower's after the
    leader is done (or the wait ran out)."""

    key: str


class Land(NamedTuple):
    """The leader is done: wake its followers and forget the flight."""

    key: str
    flight: Flight


class Put(NamedTuple):
    """Store ``items`` (write-behind when on); answer: None."""

    ns: str
    items: dict[str, Any]
    cost: float


Effect = Get | GetMany | Digest | Send | Share | Land | Put
#: A flow: yields effects, is sent their answers, returns the call's result.
Flow = Generator[Effect, Any, Any]


class Run:
    """One flow being driven: ``step()`` hands back the next effect (None when the flow has returned its
    ``result``); the driver sets ``answer`` or ``failed`` (an exception the effect raised, thrown into the
    flow so its finally blocks run) before the next step."""

    __slots__ = ("answer", "failed", "flow", "result")

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.answer: Any = None
        self.failed: BaseException | None = None
        self.result: Any = None

    def step(self) -> Effect | None:
        failed, self.failed = self.failed, None
        try:
            return self.flow.send(self.answer) if failed is None else self.flow.throw(failed)
        except StopIteration as done:
            self.result = done.value
            return None


def full(core: ClientCore, cls: Any, plan: Plan) -> Flow:
    """A non-streamed generate/chat/embeddings call: a fresh hit, else one request shared by identical
    concurrent callers, whose complete reply is stored."""
    h, key = plan.h, plan.key
    t0 = time.perf_counter()
    if key is None:
        resp = yield Send(plan.body, plan)
        h.duration_miss.observe(time.perf_counter() - t0)
        core.observe_final(h, plan.model, resp)
        return resp
    value = None if plan.looked_up else (yield Get(plan.ns, key))
    if value is not None and tagged(value) and value["d"] == (yield Digest(plan.model)):
        hit = core.rebuild(cls, key, value)
        if hit is not None:
            h.hit()
            h.duration_hit.observe(time.perf_counter() - t0)
            return hit
    flight, leader = yield Share(key)
    if not leader:
        shared = decode_full(cls, flight.value) if flight.value is not None else None
        if shared is not None:
            h.coalesce()
            h.duration_hit.observe(time.perf_counter() - t0)
            return shared
    h.miss()
    try:
        resp = yield Send(plan.body, plan)
        spent = time.perf_counter() - t0
        h.duration_miss.observe(spent)
        core.observe_final(h, plan.model, resp)
        if plan.op == "embeddings" or storable(resp):
            value = full_value(resp, (yield Digest(plan.model)))
            flight.value = value
            yield Put(plan.ns, {key: value}, spent)
        return resp
    finally:
        if leader:
            yield Land(key, flight)


def embed(core: ClientCore, cls: Any, plan: Plan) -> Flow:
    """An embed call, cached per input: only the inputs the cache lacks are sent, once each."""
    h = plan.h
    assert plan.items is not None
    t0 = time.perf_counter()
    found = yield GetMany(plan.ns, [k for _, k in plan.items])
    digest = (yield Digest(plan.model)) if found else None
    vectors, missing = split_found(plan, found, digest)
    h.hit(len(plan.items) - len(missing))
    resp = None
    if missing:
        h.miss(len(missing))
        resp = yield Send(plan.embed_body([t for t, _ in missing]), plan)
        spent = time.perf_counter() - t0
        if len(resp.embeddings) != len(missing):  # not what we asked for: hand it back, store nothing
            return resp
        digest = yield Digest(plan.model)
        yield Put(plan.ns, fill_vectors(vectors, missing, resp, digest, plan), spent / len(missing))
        h.duration_miss.observe(spent)
        core.observe_final(h, plan.model, resp)
    else:
        h.duration_hit.observe(time.perf_counter() - t0)
    return embed_response(cls, plan, vectors, resp)


def stream_end(core: ClientCore, plan: Plan, rec: StreamRecorder) -> Flow:
    """A streamed reply has ended: its metrics, and its chunks stored when it completed."""
    h, key = plan.h, plan.key
    spent = time.perf_counter() - rec.t0
    h.duration_miss.observe(spent)
    if rec.final is not None:
        core.observe_final(h, plan.model, rec.final)
        if key is not None and storable(rec.final):
            value = stream_value(rec.chunks, rec.offsets, (yield Digest(plan.model)))
            yield Put(plan.ns, {key: value}, spent)
