"""Index directories: build, search, atomic save, corruption and mismatch detection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import IndexFormatError, InputError
from qrerank.index.directory import DocumentIndex, build_index
from qrerank.types import Document

pytest.importorskip("faiss")

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
]


def corpus(n: int = 60) -> list[Document]:
    rng = np.random.default_rng(0)
    return [
        Document(doc_id=f"d{i}", title=f"T{i}", text=" ".join(rng.choice(WORDS, 6)), metadata={"i": i})
        for i in range(n)
    ]


@pytest.mark.parametrize("kind", ["flat", "exact", "hnsw", "ivf"])
def test_build_load_search_roundtrip(tmp_path: Path, kind: str) -> None:
    enc = HashingEncoder(64)
    docs = corpus()
    index = build_index(docs, enc, tmp_path / "idx", kind=kind)
    assert index.version_dir is not None and index.version_dir.parent == tmp_path / "idx"
    manifest = json.loads((index.version_dir / "manifest.json").read_text())
    assert manifest["model"] == "hashing-64" and manifest["count"] == 60 and manifest["dim"] == 64
    ann = {"vectors.faiss"} if kind in ("hnsw", "ivf") else set()  # flat/exact search the embeddings
    assert set(manifest["files"]) == {"embeddings.safetensors", "docs.sqlite", "lexical.safetensors", *ann}
    assert manifest["format_version"] == 2 and manifest["dtype"] == "float32"
    assert manifest["lexical"]["kind"] == "bm25" and manifest["lexical"]["k1"] == 0.9
    loaded = DocumentIndex.load(tmp_path / "idx")
    q = enc.encode([docs[7].content])
    _, rows = loaded.search(q, 5)
    assert rows[0][0] == 7
    assert loaded.documents([7, 2]) == [docs[7], docs[2]]
    assert np.allclose(loaded.angles, index.angles)
    assert not list(tmp_path.glob(".idx.*"))  # no temp dirs left behind


def test_rebuild_replaces_atomically_and_failure_keeps_old(tmp_path: Path) -> None:
    enc = HashingEncoder(32)
    build_index(corpus(10), enc, tmp_path / "idx", kind="exact")

    class Boom(HashingEncoder):
        def encode(self, texts, **kw):  # type: ignore[no-untyped-def]
            raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError):
        build_index(corpus(20), Boom(32), tmp_path / "idx", kind="exact")
    assert len(DocumentIndex.load(tmp_path / "idx")) == 10
    build_index(corpus(20), enc, tmp_path / "idx", kind="exact")
    assert len(DocumentIndex.load(tmp_path / "idx")) == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_corrupt_and_foreign_indexes_are_refused(tmp_path: Path) -> None:
    enc = HashingEncoder(32)
    good = build_index(corpus(10), enc, tmp_path / "idx", kind="flat").version_dir
    assert good is not None
    with pytest.raises(IndexFormatError, match="no manifest"):
        DocumentIndex.load(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)  # a copy of one version is an index of the old flat layout
    with (bad / "embeddings.safetensors").open("r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    DocumentIndex.load(bad).close()  # the default load reads sizes and headers, not the data
    with pytest.raises(IndexFormatError, match=r"embeddings\.safetensors is corrupt"):
        DocumentIndex.load(bad, verify=True)
    shutil.copy(good / "embeddings.safetensors", bad / "embeddings.safetensors")
    (bad / "docs.sqlite").unlink()
    with pytest.raises(IndexFormatError, match="missing"):
        DocumentIndex.load(bad)
    manifest = json.loads((good / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bad / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="version 99"):
        DocumentIndex.load(bad)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        DocumentIndex.load(bad)


def test_bad_inputs(tmp_path: Path) -> None:
    enc = HashingEncoder(32)
    with pytest.raises(InputError, match="empty corpus"):
        build_index([], enc, tmp_path / "a")
    with pytest.raises(InputError, match="duplicate document id"):
        build_index([Document(text="x", doc_id="1"), Document(text="y", doc_id="1")], enc, tmp_path / "a")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match="not a qrerank index"):
        build_index(corpus(3), enc, tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    with pytest.raises(InputError, match="unknown index kind"):
        build_index(corpus(3), enc, tmp_path / "b", kind="annoy")


@pytest.mark.parametrize("name", ["idx#1", "idx?mode=rw", "idx%20x", "idx%", "a#b?c=d&e"])
def test_paths_with_uri_characters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """#, ? and % in the index path are part of the path, not of a SQLite URI (issue item 4)."""
    from qrerank.cli import main

    monkeypatch.chdir(tmp_path)
    docs = corpus(8)
    (tmp_path / "tiny.jsonl").write_text(
        "".join(json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n" for d in docs)
    )
    assert main(["index", "tiny.jsonl", "--out", name, "--model", "hashing-64", "--kind", "exact"]) == 0
    loaded = DocumentIndex.load(name)  # relative, as the CLI user typed it
    assert [d.doc_id for d in loaded.documents([0, 7])] == ["d0", "d7"]
    assert main(["search", name, docs[3].text, "--k", "3", "--json"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "tiny.jsonl"])  # no stray "idx"
