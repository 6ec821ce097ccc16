"""A voice turn as a user would have written it (seed 000): STT over a WebSocket, memory context from a
GraphRAG-like search service, an LLM reply, TTS over HTTP. No perf-infra inside."""
