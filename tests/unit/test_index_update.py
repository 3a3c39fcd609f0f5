"""Append and delete: only new documents are encoded, and the result equals a fresh build."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from qrerank.cli import main
from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import InputError
from qrerank.index.directory import DocumentIndex, build_index
from qrerank.index.update import append_documents, delete_documents
from qrerank.rerank.pipeline import SearchPipeline
from qrerank.types import Document
from tests.unit.test_index_build import Counting, same_index

DIM = 32
QUERIES = ["doc 5 w5", "v1 w3", "t2 doc 41", "w6 v0"]


def corpus(lo: int, hi: int) -> list[Document]:
    return [
        Document(doc_id=f"d{i}", title=f"t{i % 4}", text=f"doc {i} w{i % 7} v{i % 3}", metadata={"i": i})
        for i in range(lo, hi)
    ]


def answers(index: DocumentIndex, method: str = "hybrid") -> list[list[tuple[str, float]]]:
    from qrerank.rerank.reranker import Reranker

    pipe = SearchPipeline(index, Reranker(HashingEncoder(DIM)))
    return [
        [(h.doc_id, round(h.score, 6)) for h in pipe.search(q, k=20, top_n=10, method=method)]
        for q in QUERIES
    ]


@pytest.mark.parametrize(("kind", "dtype"), [("exact", "float32"), ("flat", "float32"), ("flat", "float16")])
def test_append_then_delete_equals_a_fresh_build(tmp_path: Path, kind: str, dtype: str) -> None:
    out = tmp_path / "idx"
    build_index(corpus(0, 40), HashingEncoder(DIM), out, kind=kind, dtype=dtype, chunk_size=16)
    enc = Counting(DIM)
    append_documents(out, corpus(40, 70), enc, chunk_size=16)
    assert enc.texts == [d.content for d in corpus(40, 70)]  # the 40 stored ones are not re-encoded
    gone = ["d3", "d41", "d0", "d69"]
    index = delete_documents(out, gone)
    kept = [d for d in corpus(0, 70) if d.doc_id not in gone]
    fresh = build_index(kept, HashingEncoder(DIM), tmp_path / "fresh", kind=kind, dtype=dtype)
    same_index(index, fresh)
    for method in ("hybrid", "cosine", "fused", "lexical"):  # BM25 rebuilt over the same texts
        assert answers(index, method) == answers(fresh, method)
    assert not (out / ".staging").exists()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_append_and_delete_on_ann_kinds(tmp_path: Path, kind: str) -> None:
    pytest.importorskip("faiss")
    out = tmp_path / "idx"
    build_index(corpus(0, 80), HashingEncoder(DIM), out, kind=kind, lexical=False)
    append_documents(out, corpus(80, 120), HashingEncoder(DIM))
    index = delete_documents(out, [f"d{i}" for i in range(0, 120, 3)])
    kept = [d for d in corpus(0, 120) if int(d.doc_id[1:]) % 3]
    assert index.documents(list(range(len(kept)))) == kept and index.vectors.ntotal == len(kept)
    q = HashingEncoder(DIM).encode([d.content for d in kept[::9]])
    _, rows = index.search(q, 1)
    assert rows[:, 0].tolist() == list(range(0, len(kept), 9))  # each finds itself
    index.close()
    assert DocumentIndex.load(out, verify=True).manifest["count"] == len(kept)


def test_duplicate_and_unknown_ids_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build_index(corpus(0, 20), HashingEncoder(DIM), out, kind="exact")
    version = (out / "CURRENT").read_text()
    enc = Counting(DIM)
    with pytest.raises(InputError, match=r"document id 'd7' is already in the index .* \(and 1 more"):
        append_documents(out, [*corpus(20, 22), *corpus(7, 8), *corpus(9, 10)], enc)
    assert enc.texts == []  # refused before encoding
    with pytest.raises(InputError, match="duplicate document id 'd30'"):
        append_documents(out, [*corpus(30, 31), *corpus(30, 31)], enc)
    with pytest.raises(InputError, match=r"no document with id 'x1', 'x2' in the index"):
        delete_documents(out, ["d1", "x1", "x2"])
    with pytest.raises(InputError, match="would leave"):
        delete_documents(out, [f"d{i}" for i in range(20)])
    with pytest.raises(InputError, match="built with hashing-32"):
        append_documents(out, corpus(20, 21), HashingEncoder(16))
    assert (out / "CURRENT").read_text() == version
    assert len(DocumentIndex.load(out)) == 20


def test_cli_append_and_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def jsonl(name: str, docs: Sequence[Document]) -> str:
        path = tmp_path / name
        rows: list[dict[str, Any]] = [
            {"_id": d.doc_id, "title": d.title, "text": d.text, "i": d.metadata["i"]} for d in docs
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(path)

    out = str(tmp_path / "idx")
    assert main(["index", jsonl("a.jsonl", corpus(0, 30)), "--out", out, "--model", f"hashing-{DIM}"]) == 0
    # --model defaults to the index's own with --append
    assert main(["index", jsonl("b.jsonl", corpus(30, 45)), "--out", out, "--append"]) == 0
    assert "appended 15 documents, now 45" in capsys.readouterr().out
    assert main(["index", jsonl("c.jsonl", corpus(44, 46)), "--out", out, "--append"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "document id 'd44' is already in the index" in err
    (tmp_path / "gone.txt").write_text("d2\nd40\n\n")
    assert main(["delete", out, "d0", "--delete-ids", str(tmp_path / "gone.txt")]) == 0
    assert "deleted 3 documents, 42 left" in capsys.readouterr().out
    assert main(["delete", out, "d0"]) == 2
    assert "no document with id 'd0'" in capsys.readouterr().err
    assert main(["delete", out]) == 2
    kept = [d for d in corpus(0, 45) if d.doc_id not in ("d0", "d2", "d40")]
    fresh = build_index(kept, HashingEncoder(DIM), tmp_path / "fresh")
    same_index(DocumentIndex.load(out), fresh)
    assert main(["verify", out]) == 0
