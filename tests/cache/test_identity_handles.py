"""Members that look like handles but hold settings: a user's ``LLMClient``, weak references, classmethods."""

from __future__ import annotations

import weakref
from typing import Any

from infra.cache import Cache, cached


def test_a_users_class_named_like_a_client_is_keyed_by_its_plain_settings(cache: Cache) -> None:
    import httpx

    calls: list[str] = []

    class LLMClient:  # the user's own wrapper: settings plus a real (library) client
        def __init__(self, model: str, temperature: float) -> None:
            self.model = model
            self.temperature = temperature
            self.voices = ["alice"] if model == "llama3" else ["bob"]
            self.http = httpx.Client()  # a library client: still left out
            self._sent = 0  # internal state: left out

        def complete(self, p: str) -> str:
            self._sent += 1
            calls.append(self.model)
            return f"[{self.model}@{self.temperature}:{self.voices[0]}] {p}"

    class Summarizer:
        def __init__(self, client: LLMClient) -> None:
            self.client = client

        @cached(cache=cache)
        def summarize(self, text: str) -> str:
            return self.client.complete(text)

    a, b = LLMClient("llama3", 0.0), LLMClient("qwen2", 0.9)
    try:
        assert Summarizer(a).summarize("t") == "[llama3@0.0:alice] t"
        assert Summarizer(b).summarize("t") == "[qwen2@0.9:bob] t"
        assert Summarizer(a).summarize("t") == "[llama3@0.0:alice] t"
        assert Summarizer(a).summarize("t") == "[llama3@0.0:alice] t"
        assert calls == ["llama3", "qwen2"]  # hits still hit
        a.temperature = 0.5  # a setting changed later is seen (the memo's fingerprint reads it too)
        assert Summarizer(a).summarize("t") == "[llama3@0.5:alice] t"
    finally:
        a.http.close()
        b.http.close()


def test_a_library_client_stays_a_resource(cache: Cache) -> None:
    import ollama

    from infra.cache.identity import is_resource

    class Pooled:  # data named like a handle
        def __init__(self, n: int) -> None:
            self.n = n

    class VoicePool(Pooled):
        pass

    assert is_resource(ollama.Client(host="http://127.0.0.1:9"))
    assert not is_resource(VoicePool(1))


def test_weak_references_are_walked_to_their_referent(cache: Cache) -> None:
    class Parent:
        def __init__(self, lang: str) -> None:
            self.lang = lang

    class Child:
        def __init__(self, parent: Any, ref: Any) -> None:
            self.parent = weakref.proxy(parent)
            self.ref = weakref.ref(ref)

        @cached(cache=cache)
        def greet(self, n: str) -> str:
            r = self.ref()
            return f"{self.parent.lang}:{r.lang if r else '-'}:{n}"

    en, fr = Parent("en"), Parent("fr")
    assert Child(en, en).greet("x") == "en:en:x"
    assert Child(fr, en).greet("x") == "fr:en:x"
    assert Child(en, fr).greet("x") == "en:fr:x"
    en.lang = "EN"
    assert Child(en, fr).greet("x") == "EN:fr:x"
    gone = Parent("de")
    child = Child(en, gone)
    del gone
    assert child.greet("x") == "EN:-:x"  # a dead reference is a state of its own, not a crash


def test_a_classmethod_member_is_keyed_by_the_class_it_is_bound_to(cache: Cache) -> None:
    class Base:
        k = 2

        @classmethod
        def make(cls, x: int) -> int:
            return x * cls.k

    class Sub(Base):
        k = 10

    class Holder:
        def __init__(self, f: Any) -> None:
            self.f = f

        @cached(cache=cache)
        def run(self, x: int) -> int:
            return int(self.f(x))

    assert (Holder(Base.make).run(3), Holder(Sub.make).run(3)) == (6, 30)
