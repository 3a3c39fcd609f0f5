"""Streaming builds: chunked encoding that resumes after a failure, and precomputed embeddings."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qrerank.cli import main
from qrerank.corpus import iter_corpus
from qrerank.embed.cache import cache_key
from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import InputError
from qrerank.index import staging
from qrerank.index.build import build_index_from_embeddings
from qrerank.index.directory import DocumentIndex, build_index
from qrerank.index.staging import chunk_key, clear_staging, stage_documents
from qrerank.index.store import write_store
from qrerank.index.update import append_documents
from qrerank.rerank.pipeline import SearchPipeline
from qrerank.rerank.reranker import Reranker
from qrerank.types import Document

DIM = 32
CHUNK = 10
TIMINGS = {"created", "encode_seconds"}


def corpus(n: int = 60) -> list[Document]:
    return [Document(doc_id=f"d{i}", title=f"t{i % 4}", text=f"doc {i} w{i % 7} v{i % 3}") for i in range(n)]


class Counting(HashingEncoder):
    """The hashing encoder, logging every text it encodes; ``fail_on`` call number raises."""

    def __init__(self, dim: int, fail_on: int | None = None) -> None:
        super().__init__(dim)
        self.texts: list[str] = []
        self.calls = 0
        self.fail_on = fail_on

    def encode(self, texts: Sequence[str], **kw: Any) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError(f"encoder died on chunk {self.calls}")
        self.texts.extend(texts)
        return super().encode(texts, **kw)


def same_index(a: DocumentIndex, b: DocumentIndex) -> None:
    assert len(a) == len(b)
    assert a.documents(list(range(len(a)))) == b.documents(list(range(len(b))))
    np.testing.assert_array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))
    strip = lambda m: {k: v for k, v in m.items() if k not in TIMINGS}  # noqa: E731
    assert strip(a.manifest) == strip(b.manifest)
    q = HashingEncoder(a.dim).encode(["doc 5 w5", "v1 w3"])
    sa, ra = a.search(q, 7)
    sb, rb = b.search(q, 7)
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_array_equal(sa, sb)


@pytest.mark.parametrize("kind", ["exact", "flat", "hnsw"])
def test_a_failed_build_resumes_from_its_finished_chunks(tmp_path: Path, kind: str) -> None:
    if kind == "hnsw":
        pytest.importorskip("faiss")
    docs, out = corpus(), tmp_path / "idx"
    failing = Counting(DIM, fail_on=4)  # chunks 1-3 finish, the 4th raises
    with pytest.raises(RuntimeError, match="died on chunk 4"):
        build_index(docs, failing, out, kind=kind, chunk_size=CHUNK)
    assert len(failing.texts) == 3 * CHUNK
    assert len(list((out / ".staging").glob("*.safetensors"))) == 3
    rerun = Counting(DIM)
    index = build_index(docs, rerun, out, kind=kind, chunk_size=CHUNK)
    assert rerun.texts == [d.content for d in docs[3 * CHUNK :]]  # only the unfinished chunks
    assert not (out / ".staging").exists()  # cleaned after the publish
    clean = build_index(docs, HashingEncoder(DIM), tmp_path / "clean", kind=kind, chunk_size=CHUNK)
    if kind == "hnsw":  # the graph depends on FAISS's threads: compare the stored vectors and texts
        np.testing.assert_array_equal(np.asarray(index.embeddings), np.asarray(clean.embeddings))
        assert index.documents(list(range(60))) == clean.documents(list(range(60)))
    else:
        same_index(index, clean)


def test_a_damaged_chunk_is_encoded_again(tmp_path: Path) -> None:
    docs, out = corpus(30), tmp_path / "idx"
    with pytest.raises(RuntimeError):
        build_index(docs, Counting(DIM, fail_on=3), out, kind="exact", chunk_size=CHUNK)
    key = chunk_key(cache_key(HashingEncoder(DIM)), [d.content for d in docs[:CHUNK]])
    first = out / ".staging" / f"{key}.safetensors"
    first.write_bytes(first.read_bytes()[:-4])  # a torn file (not possible via rename, but a disk can)
    rerun = Counting(DIM)
    index = build_index(docs, rerun, out, kind="exact", chunk_size=CHUNK)
    assert rerun.texts == [d.content for d in docs[:CHUNK]] + [d.content for d in docs[2 * CHUNK :]]
    same_index(index, build_index(docs, HashingEncoder(DIM), tmp_path / "clean", kind="exact"))


def test_chunking_does_not_change_the_index(tmp_path: Path) -> None:
    docs = corpus(45)
    a = build_index(docs, HashingEncoder(DIM), tmp_path / "a", kind="flat", chunk_size=7)
    b = build_index(docs, HashingEncoder(DIM), tmp_path / "b", kind="flat", chunk_size=1000)
    same_index(a, b)


def test_precomputed_embeddings_equal_an_encoded_build(tmp_path: Path) -> None:
    docs = corpus(40)
    enc = HashingEncoder(DIM)
    emb = enc.encode([d.content for d in docs])
    encoded = build_index(docs, enc, tmp_path / "enc", kind="flat")
    given = build_index_from_embeddings(docs, emb, tmp_path / "pre", model=enc.name, kind="flat")
    same_index(given, encoded)
    perm = np.random.default_rng(0).permutation(len(docs))  # rows in another order, named by ids
    shuffled = build_index_from_embeddings(
        docs, emb[perm], tmp_path / "ids", model=enc.name, ids=[docs[i].doc_id for i in perm]
    )
    same_index(shuffled, encoded)


@pytest.mark.parametrize(
    ("embeddings", "kw", "match"),
    [
        (np.zeros((40, DIM, 1), np.float32), {}, "2-d array"),
        (np.ones((39, DIM), np.float32), {}, "39 rows, the corpus has 40"),
        (np.ones((40, DIM), np.int64), {}, "float16, float32 or float64"),
        (np.full((40, DIM), np.nan, np.float32), {}, "row 0 has NaN"),
        (np.ones((40, DIM), np.float32), {}, "row 0 has norm 5.657, not 1"),
        (np.eye(40, DIM, dtype=np.float32), {"ids": ["x"] * 40}, "embedding id 'x' is repeated"),
        (np.eye(40, DIM, dtype=np.float32), {"ids": [f"e{i}" for i in range(40)]}, "document id 'd0'"),
    ],
)
def test_bad_precomputed_embeddings(tmp_path: Path, embeddings: np.ndarray, kw: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        build_index_from_embeddings(corpus(40), embeddings, tmp_path / "idx", model="hashing-32", **kw)
    assert not (tmp_path / "idx").exists()


def test_cli_embeddings_and_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = corpus(20)
    src = tmp_path / "docs.jsonl"
    src.write_text(
        "".join(json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n" for d in docs)
    )
    enc = HashingEncoder(DIM)
    emb = enc.encode([d.content for d in docs])
    np.save(tmp_path / "emb.npy", emb[::-1].copy())
    (tmp_path / "ids.txt").write_text("".join(f"{d.doc_id}\n" for d in reversed(docs)))
    common = ["index", str(src), "--model", enc.name, "--no-lexical", "--kind", "exact"]
    args = [*common, "--out", str(tmp_path / "idx"), "--embeddings", str(tmp_path / "emb.npy")]
    assert main([*args, "--embedding-ids", str(tmp_path / "ids.txt")]) == 0
    assert main([*common, "--out", str(tmp_path / "ref")]) == 0
    same_index(DocumentIndex.load(tmp_path / "idx"), DocumentIndex.load(tmp_path / "ref"))
    capsys.readouterr()
    np.save(tmp_path / "short.npy", emb[:5])
    bad = [*common, "--out", str(tmp_path / "x"), "--embeddings", str(tmp_path / "short.npy")]
    assert main(bad) == 2
    assert "5 rows, the corpus has 20" in capsys.readouterr().err
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}] * 20, dtype=object), allow_pickle=True)
    bad = [*common, "--out", str(tmp_path / "x"), "--embeddings", str(tmp_path / "obj.npy")]
    assert main(bad) == 2
    assert "Python objects in dtype" in capsys.readouterr().err  # never unpickled


# --- a stream of documents builds the same index as a list ------------------------------------


def stream(docs: Sequence[Document]) -> Iterator[Document]:
    """``docs`` as a one-shot generator: no len(), no indexing, readable once."""
    yield from docs


def version_files(index: DocumentIndex) -> dict[str, bytes]:
    assert index.version_dir is not None
    return {p.name: p.read_bytes() for p in sorted(index.version_dir.iterdir()) if p.name != "manifest.json"}


def hits(index: DocumentIndex) -> list[list[tuple[str, str, float]]]:
    pipe = SearchPipeline(index, Reranker(HashingEncoder(DIM)))
    return [
        [(h.doc_id, h.text, round(h.score, 6)) for h in pipe.search(q, k=20, top_n=10, method=method)]
        for q in ("doc 5 w5", "t2 v1 w3")
        for method in ("hybrid", "cosine", "lexical", "fused")
    ]


def write_jsonl(path: Path, docs: Sequence[Document]) -> Path:
    path.write_text(
        "".join(
            json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text, **d.metadata}) + "\n" for d in docs
        )
    )
    return path


@pytest.mark.parametrize("kind", ["exact", "flat"])
def test_a_streamed_build_equals_the_list_build(tmp_path: Path, kind: str) -> None:
    docs = [
        Document(doc_id=d.doc_id, title=d.title, text=d.text, metadata={"i": i})
        for i, d in enumerate(corpus(57))
    ]
    listed = build_index(docs, HashingEncoder(DIM), tmp_path / "list", kind=kind, chunk_size=CHUNK)
    streamed = build_index(
        stream(docs), HashingEncoder(DIM), tmp_path / "stream", kind=kind, chunk_size=CHUNK
    )
    src = write_jsonl(tmp_path / "docs.jsonl", docs)
    from_file = build_index(
        iter_corpus(src), HashingEncoder(DIM), tmp_path / "file", kind=kind, chunk_size=CHUNK
    )
    for other in (streamed, from_file):
        same_index(listed, other)  # ids, texts, embeddings, manifest (every file's sha256) and search
        assert version_files(other) == version_files(listed)  # embeddings, texts, BM25: byte for byte
        assert hits(other) == hits(listed)
    files = version_files(listed)
    expected = HashingEncoder(DIM).encode([d.content for d in docs])  # what one call on the list gives
    assert np.array_equal(np.asarray(listed.embeddings), expected)
    write_store(tmp_path / "one-shot.sqlite", docs)  # the text store as one write of the list makes it
    assert files["docs.sqlite"] == (tmp_path / "one-shot.sqlite").read_bytes()
    assert listed.documents(list(range(57))) == docs


def test_a_stream_with_a_repeated_id_is_refused_before_encoding(tmp_path: Path) -> None:
    enc = Counting(DIM)
    docs = [*corpus(25), Document(doc_id="d3", text="again")]
    with pytest.raises(InputError, match="duplicate document id 'd3'"):
        build_index(stream(docs), enc, tmp_path / "idx", chunk_size=CHUNK)
    assert enc.texts == [] and not (tmp_path / "idx").exists()  # nothing encoded, nothing left
    with pytest.raises(InputError, match="empty corpus"):
        build_index(stream([]), enc, tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


KILLED_STREAM = """
import os, signal, sys
from qrerank.embed.hashing import HashingEncoder
from qrerank.index.directory import build_index
from qrerank.types import Document

class Dies(HashingEncoder):  # SIGKILL (no cleanup at all) when the 4th chunk is encoded
    calls = 0
    def encode(self, texts, **kw):
        Dies.calls += 1
        if Dies.calls == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return super().encode(texts, **kw)

docs = (Document(doc_id=f"d{i}", title=f"t{i % 4}", text=f"doc {i} w{i % 7} v{i % 3}") for i in range(60))
build_index(docs, Dies(32), sys.argv[1], kind="flat", chunk_size=10)
"""


def test_a_killed_streamed_build_resumes_without_re_encoding(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_STREAM), str(out)], timeout=120)
    assert proc.returncode == -9
    staged = sorted(p.name for p in (out / ".staging").iterdir())
    assert len([n for n in staged if n.endswith(".safetensors")]) == 3  # chunks 1-3 finished
    assert any(n.startswith("docs-") for n in staged)  # the dead build's staged texts, left behind
    rerun = Counting(DIM)
    index = build_index(stream(corpus()), rerun, out, kind="flat", chunk_size=CHUNK)
    assert rerun.texts == [d.content for d in corpus()[3 * CHUNK :]]  # only the unfinished chunks
    assert not (out / ".staging").exists()  # the leftovers went with the publish
    same_index(index, build_index(corpus(), HashingEncoder(DIM), tmp_path / "clean", kind="flat"))


def test_staged_documents_survive_another_builds_cleanup(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    (out / ".staging").mkdir(parents=True)
    abandoned = out / ".staging" / f"docs-{'a' * 32}.sqlite"  # a killed build's: no lock held
    abandoned.write_bytes(b"")
    with stage_documents(stream(corpus(12)), out) as docs:
        clear_staging(out)  # what a concurrent build does after its publish
        assert not abandoned.exists()
        assert [d.doc_id for d in docs.documents()] == [f"d{i}" for i in range(12)]  # still readable
        assert docs.reread(10, 2) == [d.content for d in corpus(12)[10:]]
    assert list((out / ".staging").iterdir()) == []


def test_staging_removed_by_another_build_before_the_docs_file_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two writers of one OUT: the other build's clear_staging can rmdir the empty .staging
    # between this build's mkdir and the creation of its documents file (seen once as a
    # FileNotFoundError in tests/unit/test_index_swap.py::test_two_concurrent_writers).
    out = tmp_path / "idx"
    real_open = staging.os.open
    removed = []

    def open_after_cleanup(path: Any, flags: int, *args: Any) -> int:
        if not removed and str(path).endswith(".sqlite"):
            clear_staging(out)  # the other build's publish, right now
            removed.append(True)
        return real_open(path, flags, *args)

    monkeypatch.setattr(staging.os, "open", open_after_cleanup)
    with stage_documents(stream(corpus(5)), out) as docs:
        assert removed and [d.doc_id for d in docs.documents()] == [f"d{i}" for i in range(5)]


def test_append_streams_too(tmp_path: Path) -> None:
    build_index(corpus(30), HashingEncoder(DIM), tmp_path / "a", kind="flat", chunk_size=CHUNK)
    build_index(corpus(30), HashingEncoder(DIM), tmp_path / "b", kind="flat", chunk_size=CHUNK)
    more = [Document(doc_id=f"n{i}", text=f"new doc {i} w{i % 5}") for i in range(23)]
    listed = append_documents(tmp_path / "a", more, HashingEncoder(DIM), chunk_size=CHUNK)
    streamed = append_documents(tmp_path / "b", stream(more), HashingEncoder(DIM), chunk_size=CHUNK)
    same_index(listed, streamed)
    assert version_files(listed) == version_files(streamed) and hits(listed) == hits(streamed)
    fresh = build_index([*corpus(30), *more], HashingEncoder(DIM), tmp_path / "c", kind="flat")
    assert version_files(streamed) == version_files(fresh)
    with pytest.raises(InputError, match=r"document id 'd7' is already in the index .* \(and 1 more"):
        append_documents(
            tmp_path / "b", stream([Document(doc_id="z", text="z"), *corpus(9)[7:]]), HashingEncoder(DIM)
        )
