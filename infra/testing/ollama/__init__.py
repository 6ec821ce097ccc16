"""Internals of the Ollama API test server (``infra.testing.ollama_server`` is the public entry point).

* :mod:`.sim` - the I/O-free part: settings, deterministic text and embeddings, durations, keep_alive parsing,
  the runner model (loads, reloads, expiry) and the counters tests read.
* :mod:`.state` - what the handlers share: loaded runners, slots and queue, faults, embeddings, counters.
* :mod:`.app` - the aiohttp handlers that speak the wire format the official ``ollama`` client parses;
  :mod:`.manage` (pull, push, create, ...) and :mod:`.openai_compat` (``/v1``) add theirs, and
  :mod:`.wire` holds what the three share (the app key of the state, error replies, JSON bodies).
"""
