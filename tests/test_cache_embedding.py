"""Embedding cache: binary codec, one round trip per batch, only misses computed, order kept."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tenfold.cache import EmbeddingCache, MemoryBackend
from tenfold.cache.codec import CodecError, decode_array, encode_array
from tenfold.cache.embedding import content_hash
from tenfold.clock import FakeClock
from tenfold.examples.sentences import sentences


class CountingMemory(MemoryBackend):
    """The real memory backend, counting round trips."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.gets = 0
        self.sets = 0

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.gets += 1
        return await super().get_many(keys)

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        self.sets += 1
        await super().set_many(items, ttl_s)


class Encoder:
    """A deterministic 8-d 'model' (a real function of the text) that records what it saw."""

    def __init__(self) -> None:
        self.seen: list[list[str | bytes]] = []

    def __call__(self, items: list[str | bytes]) -> npt.NDArray[np.float32]:
        self.seen.append(list(items))
        out = np.zeros((len(items), 8), dtype=np.float32)
        for row, item in enumerate(items):
            data = item.encode() if isinstance(item, str) else item
            out[row] = np.frombuffer(data.ljust(8, b"\0")[:8], dtype=np.uint8) / 7.0
        return out


@pytest.mark.parametrize(
    "array",
    [
        np.arange(384, dtype=np.float32) / 7,
        np.array([], dtype=np.float32),
        np.ones((3, 4), dtype=np.float32),
        np.array(1.5, dtype=np.float32),
    ],
)
def test_codec_round_trips_exactly(array: npt.NDArray[np.float32]) -> None:
    data = encode_array(array)
    back = decode_array(data)
    assert back.dtype == np.dtype("<f4")
    assert back.shape == array.shape
    assert np.array_equal(back, array)
    assert len(data) == array.nbytes + 4 + 1 + 3 + 1 + 4 * array.ndim


def test_codec_stores_float32_and_rejects_garbage() -> None:
    data = encode_array(np.array([0.1, 0.2], dtype=np.float64))
    assert decode_array(data).dtype == np.float32
    for bad in (b"", b"[0.1, 0.2]", data[:-1], data + b"\0", b"TFA1\x03<f9\x01\x00\x00\x00\x00"):
        with pytest.raises(CodecError):
            decode_array(bad)


async def test_one_lookup_only_misses_computed_order_kept() -> None:
    backend = CountingMemory(clock=FakeClock())
    cache = EmbeddingCache(backend, model="enc", version="1")
    enc = Encoder()
    texts = sentences(10, seed=1)
    first = await cache.embed_many(texts[:6], enc)
    assert (backend.gets, backend.sets) == (1, 1)
    mixed = [texts[8], texts[0], texts[9], texts[5], texts[7], texts[2]]
    got = await cache.embed_many(mixed, enc)
    assert (backend.gets, backend.sets) == (2, 2)
    assert enc.seen[1] == [texts[8], texts[9], texts[7]]
    assert np.array_equal(got, enc(mixed))
    assert np.array_equal(got[1], first[0])
    assert got.dtype == np.float32
    assert (cache.stats.hits, cache.stats.misses) == (3, 9)
    # All cached: no call to the model, and no write.
    await cache.embed_many(mixed, enc)
    assert len(enc.seen) == 3  # the two batches above plus the reference call
    assert (backend.gets, backend.sets) == (3, 2)


async def test_duplicates_in_a_batch_are_computed_once() -> None:
    cache = EmbeddingCache(MemoryBackend(), model="enc", version="1")
    enc = Encoder()
    got = await cache.embed_many(["aa", "bb", "aa", "aa"], enc)
    assert enc.seen == [["aa", "bb"]]
    assert np.array_equal(got[0], got[2]) and np.array_equal(got[0], got[3])
    assert cache.stats.coalesced == 2


async def test_keys_by_id_when_given_else_by_content() -> None:
    cache = EmbeddingCache(MemoryBackend(), model="enc", version="1")
    enc = Encoder()
    await cache.embed_many(["old text"], enc, ids=["item-1"])
    # Same id, new text: the id is the key, so the stored vector is returned
    # (the catalog refresh is what re-embeds a changed item).
    got = await cache.embed_many(["new text", "old text"], enc, ids=["item-1", None])
    assert enc.seen == [["old text"], ["old text"]]
    assert np.array_equal(got[0], got[1])
    assert cache.key("x", "item-1") != cache.key("x")
    assert cache.key("x") == cache.key("x", None)
    assert cache.key("a") != cache.key(b"a")
    with pytest.raises(ValueError, match="2 ids for 1 items"):
        await cache.embed_many(["x"], enc, ids=["a", "b"])


async def test_model_version_isolates_and_purge_drops_the_model() -> None:
    backend = MemoryBackend()
    v1 = EmbeddingCache(backend, model="enc", version="1")
    v2 = EmbeddingCache(backend, model="enc", version="2")
    other = EmbeddingCache(backend, model="enc2", version="1")
    enc = Encoder()
    for cache in (v1, v2, other):
        await cache.embed_many(["x"], enc)
    assert len(enc.seen) == 3
    assert await v1.purge() == 2  # both versions of "enc", not "enc2"
    await other.embed_many(["x"], enc)
    assert len(enc.seen) == 3


async def test_compute_errors_store_nothing_and_wrong_counts_fail() -> None:
    clock = FakeClock()
    cache = EmbeddingCache(MemoryBackend(clock=clock), model="enc", version="1", ttl_s=60)
    assert cache.ttl_s == 60

    def broken(items: list[str | bytes]) -> Any:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await cache.embed_many(["a", "b"], broken)
    with pytest.raises(ValueError, match="1 vectors for 2 items"):
        await cache.embed_many(["a", "b"], lambda items: np.zeros((1, 4)))
    enc = Encoder()
    await cache.embed_many(["a", "b"], enc)
    assert enc.seen == [["a", "b"]]
    clock.advance(61)
    await cache.embed_many(["a"], enc)
    assert enc.seen == [["a", "b"], ["a"]]


async def test_async_compute_and_empty_batch() -> None:
    cache = EmbeddingCache(MemoryBackend(), model="enc", version="1")
    enc = Encoder()

    async def acompute(items: list[str | bytes]) -> npt.NDArray[np.float32]:
        return enc(items)

    got = await cache.embed_many([b"\x00\xffbin", "txt"], acompute)
    assert got.shape == (2, 8)
    assert (await cache.embed_many([], acompute)).shape[0] == 0


@pytest.mark.slow
async def test_minilm_batch_of_32_with_20_cached_runs_only_the_12_others() -> None:
    from tenfold.examples.embed import load_sentence_transformer

    st = load_sentence_transformer()
    seen: list[list[str | bytes]] = []

    def encode(items: list[str | bytes]) -> npt.NDArray[np.float32]:
        seen.append(list(items))
        texts = [str(t) for t in items]
        out: npt.NDArray[np.float32] = st.encode(
            texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False
        )
        return out

    backend = CountingMemory(clock=FakeClock())
    cache = EmbeddingCache(backend, model="embed", version="all-MiniLM-L6-v2")
    batch = sentences(32, seed=7)
    rng = np.random.default_rng(3)
    cached_idx = sorted(rng.choice(32, size=20, replace=False).tolist())
    await cache.embed_many([batch[i] for i in cached_idx], encode)
    seen.clear()
    gets_before = backend.gets

    got = await cache.embed_many(batch, encode)

    others = [batch[i] for i in range(32) if i not in cached_idx]
    assert seen == [others]
    assert backend.gets == gets_before + 1
    fresh = st.encode(batch, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    assert got.shape == (32, 384) and got.dtype == np.float32
    # Rows computed in other batches differ from a 32-batch only by padding noise.
    assert np.allclose(got, fresh, atol=1e-5)
    cos = np.sum(got * fresh, axis=1) / (
        np.linalg.norm(got, axis=1) * np.linalg.norm(fresh, axis=1)
    )
    assert cos.min() > 0.99999


def test_content_keys_tell_every_kind_of_item_apart() -> None:
    cache = EmbeddingCache(MemoryBackend(), model="enc", version="1")
    items: list[Any] = [3, "3", [0, 0, 0], b"\x00\x00\x00", "\x00\x00\x00", 3.0, True, {"a": 1}]
    assert len({cache.key(item) for item in items}) == len(items)
    # Text keeps the key it always had, so entries written before stay readable.
    assert content_hash("héllo") == hashlib.sha256("shéllo".encode()).hexdigest()
    assert content_hash("\ud800") != content_hash("\udc00")  # lone surrogates are kept
    assert content_hash(bytearray(b"ab")) == content_hash(b"ab")
    assert content_hash({"b": 1, "a": 2}) == content_hash({"a": 2, "b": 1})


async def test_items_of_any_kind_embed_and_uncanonical_ones_are_computed_uncached() -> None:
    backend = CountingMemory()
    cache = EmbeddingCache(backend, model="enc", version="1")
    seen: list[list[Any]] = []

    def encode(items: list[Any]) -> list[list[float]]:
        seen.append(items)
        return [[float(len(repr(item))), 1.0] for item in items]

    nan = float("nan")
    batch: list[Any] = [1.5, {"a": 1}, "\ud800", 3, [0, 0, 0], nan, object()]
    got = await cache.embed_many(batch, encode)
    assert got.shape == (7, 2)
    again = await cache.embed_many(batch, encode)
    assert np.array_equal(got, again)
    # Only the two without a canonical form (NaN, an object) reach the model again.
    assert [len(s) for s in seen] == [7, 2]
    assert np.isnan(seen[1][0]) and seen[1][1] is batch[6]
    assert (cache.stats.hits, cache.stats.misses, cache.stats.bypasses) == (5, 5, 4)
    assert backend.sets == 1
    # A batch of nothing but uncacheable items does not touch the backend.
    await cache.embed_many([nan], encode)
    assert (backend.gets, backend.sets) == (2, 1)
