"""How the Redis backend lays out its keys and entries, and the Lua scripts it runs (no connection here).

Here: the entry header and ``pack`` / ``unpack``, namespace quoting, the scripts and the EVALSHA helpers.

Layout (``{p}`` is the key prefix, ``perf_cache`` by default; ``{ns}`` the namespace with ``%`` and ``:``
escaped):

* ``{p}:e:{ns}:{key}`` → a 34-byte header (format version, codec id, generation, expires_at, cost,
  created_at) followed by the payload, stored with ``SET .. PX`` so Redis expires it on time.
* ``{p}:g:{ns}`` → the namespace generation (``INCR``); ``{p}:gens`` mirrors every generation in one hash
  so ``generations()`` is one ``HGETALL``. Both are changed by one Lua script that also PUBLISHes
  ``"<generation>:<namespace>"`` on ``{p}:invalidate``.
* ``{p}:changes`` → per namespace, how many deletes, clears and sets that replaced a live entry it has seen
  (issue 14): sets and deletes are Lua scripts that count in the same step; ``versions()`` reads both
  hashes in one pipeline, and ``Cache`` drops its L1 entries of a namespace whose count moved.
* ``{p}:l:{ns}:{key}`` → a single-flight lease: set-if-absent with PX and the owner's token (a Lua script, so
  the same owner may take it again and extend it), released by a Lua script only when the token still
  matches (a lease that outlived its timeout and was taken over is never released by its first owner).
  A dead holder blocks nobody past the timeout: Redis expires the key.

A read is one ``MGET {p}:g:{ns} {p}:e:{ns}:{key}``: one command, one round trip, and the entry's header
generation is compared with the namespace's current one right there, so an invalidation is honoured by the
next read on every host. A write stamps the generation this process last saw for the namespace (every read
refreshes it, as do invalidations and the pub/sub listener); if that is stale the entry is simply invisible,
which is also the right answer for a value computed before an invalidation. Batches are one ``MGET`` (reads)
or one pipeline (writes).
"""

from __future__ import annotations

import math
import struct
from typing import Any

from infra.cache.backends.base import StoredEntry, holder_is_dead, import_driver

__all__ = [
    "ACQUIRE_LUA",
    "DELETE_LUA",
    "HEADER",
    "INVALIDATE_LUA",
    "RELEASE_LUA",
    "SCAN_BATCH",
    "SET_LUA",
    "TAKEOVER_LUA",
    "aclose_client",
    "aeval_script",
    "dead_holder",
    "eval_script",
    "glob_escape",
    "pack",
    "px_of",
    "quote_ns",
    "redis_module",
    "unpack",
    "unquote_ns",
]

#: entry header: format version, codec, generation, expires_at (NaN: never), cost, created_at
HEADER = struct.Struct("!BBqddd")
FORMAT_VERSION = 1
_NAN = float("nan")
SCAN_BATCH = 500

INVALIDATE_LUA = """
local g = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], g)
redis.call('PUBLISH', ARGV[2], g .. ':' .. ARGV[1])
return g
"""
# A set that replaces an entry (one Redis still holds: not expired) counts a change of its namespace, so
# other processes drop their L1 copies (issue 14), and pushes the new count ("c<count>:<namespace>") on the
# invalidation channel; ARGV: payload, PX ms or '' (never expires), namespace, channel.
SET_LUA = """
local existed = redis.call('EXISTS', KEYS[1])
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if existed == 1 then
  local n = redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  redis.call('PUBLISH', ARGV[4], 'c' .. n .. ':' .. ARGV[3])
end
return existed
"""
# A delete that removed an entry counts (and pushes) a change of its namespace; ARGV: namespace, channel.
DELETE_LUA = """
local n = redis.call('DEL', KEYS[1])
if n > 0 then
  local c = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  redis.call('PUBLISH', ARGV[2], 'c' .. c .. ':' .. ARGV[1])
end
return n
"""
# re-entrant for the same owner (as the contract and the PostgreSQL lease table are): the owner extends it;
# when another owner holds it, its name comes back (a dead process of this host is taken over at once)
ACQUIRE_LUA = """
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return v
"""
# take the lease from a holder known dead, only if that holder still has it
TAKEOVER_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def redis_module() -> Any:
    return import_driver("redis", "redis", "redis-py")


def quote_ns(ns: str) -> str:
    return ns.replace("%", "%25").replace(":", "%3A")


def unquote_ns(q: str) -> str:
    return q.replace("%3A", ":").replace("%25", "%")


def glob_escape(s: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in s)


def pack(entry: StoredEntry, generation: int, now: float) -> bytes:
    """Header + payload as stored under an entry key (I/O-free; shared by the sync and async paths)."""
    exp = _NAN if entry.expires_at is None else entry.expires_at
    return HEADER.pack(FORMAT_VERSION, entry.codec, generation, exp, entry.cost, now) + entry.payload


def unpack(value: bytes, generation: int, now: float) -> StoredEntry | None:
    """The entry if ``value`` is well-formed, of ``generation`` and not expired; else None (a miss)."""
    if len(value) < HEADER.size:
        return None
    version, codec, gen, exp, cost, _created = HEADER.unpack_from(value)
    if version != FORMAT_VERSION or gen != generation:
        return None
    if exp != exp:  # NaN: never expires
        return StoredEntry(value[HEADER.size :], codec, None, cost)
    if exp <= now:
        return None
    return StoredEntry(value[HEADER.size :], codec, exp, cost)


def dead_holder(reply: Any) -> str | None:
    """The holder named by ``ACQUIRE_LUA``'s reply if it is a dead process of this host, else None."""
    if not isinstance(reply, bytes):
        return None
    holder = reply.decode("utf-8", "replace")
    return holder if holder_is_dead(holder) else None


def px_of(entry: StoredEntry, now: float) -> int | None:
    """Milliseconds to live for SET PX (None: no expiry); at least 1 so an entry due now still expires."""
    if entry.expires_at is None:
        return None
    return max(1, math.ceil((entry.expires_at - now) * 1000))


_SHA: dict[str, str] = {}


def _sha(script: str) -> str:
    sha = _SHA.get(script)
    if sha is None:
        import hashlib

        sha = _SHA[script] = hashlib.sha1(script.encode()).hexdigest()  # Redis names scripts by SHA-1
    return sha


def eval_script(client: Any, script: str, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA, loading the script on the first NOSCRIPT. Called directly: redis-py's ``Script`` object
    costs ~9 µs of Python per call, a fifth of a set's round trip."""
    from redis.exceptions import NoScriptError

    sha = _sha(script)
    try:
        return client.evalsha(sha, len(keys), *keys, *args)
    except NoScriptError:
        client.script_load(script)
        return client.evalsha(sha, len(keys), *keys, *args)


async def aeval_script(client: Any, script: str, keys: list[str], args: list[Any]) -> Any:
    """``eval_script`` for a ``redis.asyncio`` client."""
    from redis.exceptions import NoScriptError

    sha = _sha(script)
    try:
        return await client.evalsha(sha, len(keys), *keys, *args)
    except NoScriptError:
        await client.script_load(script)
        return await client.evalsha(sha, len(keys), *keys, *args)


async def aclose_client(client: Any) -> None:
    """Close a ``redis.asyncio`` client: ``aclose()`` from redis-py 5.0.1 on, ``close()`` in 5.0.0 (the
    oldest the extra allows; 5.0.1 deprecated it)."""
    close = getattr(client, "aclose", None)
    await (close() if close is not None else client.close())
