"""Corpus reading, the embedding cache, head persistence and the Reranker/SearchPipeline API."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qrerank import Reranker, SearchPipeline, build_index, load_encoder
from qrerank.core import QuantumCompressionHead
from qrerank.corpus import iter_corpus, load_corpus, read_folder, read_jsonl, text_files
from qrerank.embed.cache import CachedEncoder, EmbeddingCache
from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import IndexFormatError, InputError
from qrerank.heads.io import load_head, save_head
from qrerank.index.store import write_store
from qrerank.types import Document

DOCS = [
    "The cat sat on the mat.",
    "Quantum computers use qubits in superposition.",
    "A qubit lives on the Bloch sphere.",
    "Bread rises because yeast ferments sugar.",
]


def test_read_jsonl_formats_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "plain"}\n\n{"_id": "x1", "title": "T", "text": "beir", "year": 2020}\n')
    docs = read_jsonl(p)
    assert docs == [
        Document(doc_id="0", text="plain"),
        Document(doc_id="x1", title="T", text="beir", metadata={"year": 2020}),
    ]
    assert docs[1].content == "T beir"
    p.write_text('{"text": "ok"}\n{"text": 3}\n')
    with pytest.raises(InputError, match=r"d.jsonl:2: expected an object"):
        read_jsonl(p)
    p.write_text('{"text": "ok"}\n{"text": "ok"\n')
    with pytest.raises(InputError, match=r"d.jsonl:2: invalid JSON"):
        read_jsonl(p)
    with pytest.raises(InputError, match="no such file"):
        load_corpus(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="holds no documents"):
        load_corpus(tmp_path / "empty.jsonl")


def test_folder_corpus(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("first doc")
    (tmp_path / "sub" / "b.md").write_text("# second")
    (tmp_path / "c.bin").write_bytes(b"\x00")
    docs = load_corpus(tmp_path)
    assert [d.doc_id for d in docs] == ["a.txt", "sub/b.md"]


def test_iter_corpus_reads_lazily_and_equals_load_corpus(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a"}\n\n{"_id": "x", "text": "b"}\n{"text": "c"}\n{oops\n')
    it = iter_corpus(jsonl)
    assert [next(it).doc_id for _ in range(3)] == ["0", "x", "2"]  # default ids count documents
    with pytest.raises(InputError, match=r"d.jsonl:5: invalid JSON"):  # met only when reached
        next(it)
    with pytest.raises(InputError, match="no such file"):
        iter_corpus(tmp_path / "missing.jsonl")  # at once, before any reading
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="holds no documents"):
        list(iter_corpus(tmp_path / "empty.jsonl"))
    beir, folder = tmp_path / "beir", tmp_path / "folder"
    beir.mkdir()
    (beir / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "one"}\n')
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("first doc")
    (folder / "sub" / "b.md").write_text("# second")
    (folder / "blank.txt").write_text("  \n")
    for src in (beir, folder):
        assert list(iter_corpus(src)) == load_corpus(src)
    assert list(iter_corpus(folder)) == read_folder(folder) and len(read_folder(folder)) == 2


def test_folder_files_come_in_sorted_path_order_without_a_path_list(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    for rel in ("a.txt", "a/b.txt", "a-b/c.md", "a/z/deep.md", "B.TXT", "b/x.txt", "aa.md", "n.json"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"text of {rel}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.txt").write_text("not below root")
    (root / "link-dir").symlink_to(outside, target_is_directory=True)  # rglob does not descend it
    (root / "link.txt").symlink_to(root / "a.txt")  # a link to a file is a file, as for rglob
    want = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ".md"))
    got = list(text_files(root))
    assert got == want and len(got) == 8
    assert [d.doc_id for d in iter_corpus(root)] == [p.relative_to(root).as_posix() for p in want]


def test_the_text_store_names_a_repeated_id(tmp_path: Path) -> None:
    docs = [Document(doc_id=f"d{i}", text=f"t{i}") for i in range(5000)] + [Document(doc_id="d7", text="x")]
    with pytest.raises(InputError, match="duplicate document id 'd7'"):
        write_store(tmp_path / "docs.sqlite", iter(docs))


def test_cache_encodes_each_text_once(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    class Counting(HashingEncoder):
        def encode(self, texts, **kw):  # type: ignore[no-untyped-def]
            calls.append(list(texts))
            return super().encode(texts, **kw)

    enc = CachedEncoder(Counting(16), EmbeddingCache("counting-16", 16, tmp_path), chunk_size=1)
    a = enc.encode(["x y", "z", "x y"])
    b = enc.encode(["z", "new", "x y"])
    assert calls == [["x y"], ["z"], ["new"]]  # one chunk per distinct miss, each committed
    assert np.array_equal(a[0], b[2]) and np.array_equal(a[1], b[0])
    reopened = EmbeddingCache("counting-16", 16, tmp_path)
    assert len(reopened) == 3


def test_reranker_ranks_by_each_method() -> None:
    rr = Reranker(load_encoder("hashing-128"), method="fidelity")
    hits = rr.rank("qubit bloch sphere", DOCS)
    assert hits[0].index == 2 and [h.rank for h in hits] == [1, 2, 3, 4]
    assert sorted(h.index for h in hits) == [0, 1, 2, 3]
    assert all(hits[i].score >= hits[i + 1].score for i in range(3))
    cos = rr.rank(
        "qubit bloch sphere",
        [{"text": d, "id": f"doc{i}"} for i, d in enumerate(DOCS)],
        method="cosine",
        top_n=2,
    )
    assert len(cos) == 2 and cos[0].doc_id == "doc2" and cos[0].score == pytest.approx(cos[0].cosine)
    assert rr.rank("q", []) == []
    with pytest.raises(InputError, match="query"):
        rr.rank("  ", DOCS)
    with pytest.raises(InputError, match="document 1"):
        rr.rank("q", ["ok", {"title": "no text"}])
    with pytest.raises(InputError, match="alpha"):
        Reranker(load_encoder("hashing-128"), alpha=2.0)


def test_head_roundtrip_and_dim_check(tmp_path: Path) -> None:
    head = QuantumCompressionHead(128, 32)
    save_head(head, tmp_path / "h", extra={"model": "hashing-128"})
    loaded = load_head(tmp_path / "h", in_dim=128)
    x = torch.randn(3, 128)
    assert torch.equal(head(x), loaded(x))
    assert json.loads((tmp_path / "h" / "config.json").read_text())["parameters"] == head.num_parameters()
    with pytest.raises(InputError, match="expects 128-d"):
        load_head(tmp_path / "h", in_dim=384)
    with pytest.raises(InputError, match="not a saved head"):
        load_head(tmp_path)
    rr = Reranker(load_encoder("hashing-128"), head=tmp_path / "h", method="fidelity")
    assert len(rr.rank("qubit", DOCS)) == 4


def test_search_pipeline_uses_stored_angles(tmp_path: Path) -> None:
    enc = load_encoder("hashing-128")
    docs = [Document(doc_id=f"d{i}", text=t) for i, t in enumerate(DOCS)]
    build_index(docs, enc, tmp_path / "idx", kind="exact", tau=0.3)
    pipe = SearchPipeline(tmp_path / "idx", Reranker(enc, method="fidelity"))
    hits = pipe.search("bloch sphere qubit", k=4, top_n=2)
    assert hits[0].doc_id == "d2" and len(hits) == 2
    # Same scores as reranking the texts directly at the index's tau.
    direct = Reranker(enc, method="fidelity", tau=0.3).rank("bloch sphere qubit", docs)
    assert hits[0].quantum == pytest.approx(direct[0].quantum, abs=1e-4)
    with pytest.raises(IndexFormatError, match="built with hashing-128"):
        SearchPipeline(tmp_path / "idx", Reranker(load_encoder("hashing-64")))
