"""Distributed indexing: a Ray-encoded index equals the local one, and a failed run resumes.

Ray runs on loopback with 2 CPUs (see conftest). The corpus is synthetic and the encoder the
hashing one, so every vector is known exactly; one slow test uses the packaged MiniLM.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytest.importorskip("ray", reason="the Ray tests need qrerank[ray]")

from qrerank.cli import main
from qrerank.embed.base import Encoder
from qrerank.embed.cache import CachedEncoder, EmbeddingCache
from qrerank.embed.hashing import HashingEncoder
from qrerank.embed.ray import RayEncoder, ShardsFailedError
from qrerank.index.directory import DocumentIndex, build_index
from qrerank.types import Document
from tests.contracts import ShardedEncoderContract
from tests.ray.helpers import CountingLoader

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")

DIM = 64
N_DOCS = 300
SHARD = 50  # 6 shards
TIMINGS = {"created", "encode_seconds"}  # the only manifest fields allowed to differ


def _docs() -> list[Document]:
    words = ["qubit", "bloch", "fidelity", "phase", "entangle", "rerank", "vector", "sphere", "angle"]
    return [
        Document(
            doc_id=f"d{i:03d}",
            title=f"title {i % 11}",
            text=" ".join(words[(i * k) % len(words)] for k in range(1, 8)) + f" doc{i}",
        )
        for i in range(N_DOCS)
    ]


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ray-corpus") / "docs.jsonl"
    with path.open("w") as f:
        for d in _docs():
            f.write(json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n")
    return path


def _same_index(a: DocumentIndex, b: DocumentIndex) -> None:
    rows_a, rows_b = a.store.get(list(range(len(a)))), b.store.get(list(range(len(b))))
    assert [d.doc_id for d in rows_a] == [d.doc_id for d in rows_b]
    assert [d.content for d in rows_a] == [d.content for d in rows_b]
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5, rtol=0)
    np.testing.assert_allclose(a.angles, b.angles, atol=1e-5, rtol=0)
    ma = {k: v for k, v in a.manifest.items() if k not in TIMINGS}
    mb = {k: v for k, v in b.manifest.items() if k not in TIMINGS}
    assert ma == mb


def test_cli_ray_index_equals_local_index(
    local_ray: ModuleType, corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = ["index", str(corpus_file), "--model", f"hashing-{DIM}"]
    # Separate caches: the local build must encode, not read the Ray build's vectors back.
    monkeypatch.setenv("QRERANK_CACHE_DIR", str(tmp_path / "cache-ray"))
    assert main([*common, "--out", str(tmp_path / "ray"), "--ray", "auto", "--ray-actors", "2"]) == 0
    monkeypatch.setenv("QRERANK_CACHE_DIR", str(tmp_path / "cache-local"))
    assert main([*common, "--out", str(tmp_path / "local")]) == 0
    _same_index(DocumentIndex.load(tmp_path / "ray"), DocumentIndex.load(tmp_path / "local"))
    # One cache identity: the Ray run filled the very file the local encoder reads.
    local_cache = EmbeddingCache.for_encoder(HashingEncoder(DIM), tmp_path / "cache-ray")
    assert len(local_cache) == N_DOCS


class TestRayEncoderContract(ShardedEncoderContract):
    """The hashing encoder on 2 actors, 3 texts a shard: the contract's 8 texts come back in 3 shards."""

    @pytest.fixture(scope="class")
    def encoder(self, local_ray: ModuleType) -> Encoder:
        return RayEncoder(functools.partial(HashingEncoder, DIM), actors=2, shard_size=3)


def test_rows_come_back_in_input_order_with_repeats(local_ray: ModuleType, tmp_path: Path) -> None:
    loader = CountingLoader(DIM, tmp_path / "log")
    encoder = RayEncoder(loader, actors=2, shard_size=7)
    texts = [d.text for d in _docs()[:40]] * 2  # every text twice: encoded once
    np.testing.assert_allclose(encoder.encode(texts), HashingEncoder(DIM).encode(texts), atol=1e-6)
    assert sorted(loader.encoded()) == sorted(texts[:40])
    assert encoder.name == HashingEncoder(DIM).name and encoder.dim == DIM


def test_rerun_after_a_failed_shard_encodes_only_the_missing_shards(
    local_ray: ModuleType, tmp_path: Path
) -> None:
    docs = _docs()
    last = docs[-1].content  # the last shard fails once: the earlier ones finish and commit
    loader = CountingLoader(DIM, tmp_path / "log", trigger=last, marker=tmp_path / "failed")
    cache = EmbeddingCache.for_encoder(HashingEncoder(DIM), tmp_path / "cache")

    def build() -> DocumentIndex:
        encoder = CachedEncoder(RayEncoder(loader, actors=2, shard_size=SHARD), cache)
        return build_index(docs, encoder, tmp_path / "ray", kind="exact", lexical=False)

    with pytest.raises(ShardsFailedError, match=f"{SHARD} of {N_DOCS} texts were not encoded"):
        build()
    first = loader.encoded()
    assert len(first) == N_DOCS - SHARD and len(cache) == len(first)  # the other shards are kept
    index = build()
    second = loader.encoded()[len(first) :]
    assert sorted(second) == sorted(d.content for d in docs[-SHARD:])  # only the failed shard again
    local = build_index(docs, HashingEncoder(DIM), tmp_path / "local", kind="exact", lexical=False)
    _same_index(index, local)


def test_a_killed_worker_is_restarted_and_its_shard_retried(local_ray: ModuleType, tmp_path: Path) -> None:
    docs = _docs()[:120]
    texts = [d.content for d in docs]
    loader = CountingLoader(DIM, tmp_path / "log", trigger=texts[60], marker=tmp_path / "died", fail="exit")
    vectors = RayEncoder(loader, actors=2, shard_size=30).encode(texts)
    assert (tmp_path / "died").exists()  # the worker did die
    np.testing.assert_allclose(vectors, HashingEncoder(DIM).encode(texts), atol=1e-6)
    assert sorted(loader.encoded()) == sorted(texts)  # the dead shard once, after the restart


@pytest.mark.slow
def test_minilm_on_ray_equals_local(local_ray: ModuleType) -> None:
    pytest.importorskip("sentence_transformers")
    from qrerank.embed.models import load_encoder

    texts = [d.content for d in _docs()[:64]]
    load = functools.partial(load_encoder, "all-MiniLM-L6-v2", device="cpu", cache=False)
    ray_encoder = RayEncoder(load, actors=2, shard_size=32)
    local = load()
    assert ray_encoder.cache_identity() == local.cache_identity()  # type: ignore[attr-defined]
    np.testing.assert_allclose(ray_encoder.encode(texts), local.encode(texts), atol=1e-5, rtol=0)
