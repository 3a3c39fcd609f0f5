"""The BM25 index inside index folders: same scores as eval, validated on load, optional."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from qrerank.core.fusion import convex_fusion, reciprocal_rank_fusion
from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import IndexFormatError
from qrerank.eval.methods import BM25Scorer as EvalBM25Scorer
from qrerank.index.directory import DocumentIndex, build_index
from qrerank.index.lexical import BM25_B, BM25_K1, BM25Builder, BM25Matrix, BM25Scorer, NoLexicalIndexError
from qrerank.types import Document

pytest.importorskip("bm25s")

DOCS = [
    Document(doc_id="cat", title="Cats", text="The cat sat on the mat and purred."),
    Document(doc_id="dog", text="Dogs bark at the postman every morning."),
    Document(
        doc_id="qubit", title="Qubits", text="A qubit is a two-level quantum system on the Bloch sphere."
    ),
    Document(doc_id="fid", text="Fidelity measures the overlap of two quantum states."),
    Document(doc_id="bake", text="Bread rises because yeast ferments the sugars in the dough."),
    Document(doc_id="stop", text="the of and a"),  # stopwords only: no terms
]
QUERIES = ["cat on a mat", "quantum states overlap", "yeast bread dough", "the of", "zebra", "Qubits qubit!"]


def build(tmp_path: Path, **kw: Any) -> Path:
    out = tmp_path / "idx"
    build_index(DOCS, HashingEncoder(64), out, kind="exact", **kw)
    return out


def data_dir(out: Path) -> Path:
    return out / (out / "CURRENT").read_text().strip()


def manifest_of(out: Path) -> dict[str, Any]:
    return json.loads((data_dir(out) / "manifest.json").read_text())


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    (data_dir(out) / "manifest.json").write_text(json.dumps(manifest))


def reseal(out: Path) -> None:
    """Fix the manifest's sizes and checksums to match the (tampered) files again."""
    manifest = manifest_of(out)
    for name in manifest["files"]:
        f = data_dir(out) / name
        manifest["files"][name] = {
            "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
            "bytes": f.stat().st_size,
        }
    write_manifest(out, manifest)


def test_index_bm25_equals_eval_bm25(tmp_path: Path) -> None:
    index = DocumentIndex.load(build(tmp_path))
    ref = EvalBM25Scorer(DOCS)
    assert EvalBM25Scorer is BM25Scorer  # one implementation
    for q in QUERIES:
        assert np.array_equal(index.bm25().scores(q), ref.scores(q)), q
    assert index.bm25().scores("cat")[0] > 0 and index.bm25().scores("the of").tolist() == [0.0] * 6
    scores, rows = index.bm25().top_k("quantum states overlap", 10)
    assert rows.tolist() == [3, 2] and scores[0] > scores[1] > 0  # docs scoring 0 are no lexical hits
    lex = manifest_of(tmp_path / "idx")["lexical"]
    assert (lex["kind"], lex["method"], lex["k1"], lex["b"]) == ("bm25", "lucene", 0.9, 0.4)


def test_top_k_ties_and_selection() -> None:
    docs = [Document(doc_id=str(i), text=f"shared word{i % 3}") for i in range(9)]
    scorer = BM25Scorer(docs)
    scores, rows = scorer.top_k("shared", 4)  # all tie: lower rows first
    assert rows.tolist() == [0, 1, 2, 3] and len(set(scores.tolist())) == 1
    scores, rows = scorer.top_k("shared word1", 2)
    assert rows.tolist() == [1, 4]


def test_corpus_without_terms_scores_zero(tmp_path: Path) -> None:
    docs = [Document(doc_id="a", text="the of"), Document(doc_id="b", text="and a")]
    index = build_index(docs, HashingEncoder(16), tmp_path / "i", kind="exact")
    assert index.bm25().scores("anything").tolist() == [0.0, 0.0]
    assert DocumentIndex.load(tmp_path / "i").bm25().top_k("the", 5)[1].tolist() == []


def test_no_lexical_and_old_indexes_load_without_it(tmp_path: Path) -> None:
    out = build(tmp_path, lexical=False)
    manifest = manifest_of(out)
    assert manifest["lexical"] is None and "lexical.safetensors" not in manifest["files"]
    assert not (data_dir(out) / "lexical.safetensors").exists()
    index = DocumentIndex.load(out)
    assert index.lexical is None and len(index) == 6
    with pytest.raises(NoLexicalIndexError, match=r"rebuild it .* without --no-lexical"):
        index.bm25()
    del manifest["lexical"]  # as written before qrerank stored a lexical index
    write_manifest(out, manifest)
    assert DocumentIndex.load(out).lexical is None


def _retype_indices(t: dict[str, np.ndarray]) -> None:
    t["indices"] = t["indices"].astype(np.int64)


def _row_out_of_range(t: dict[str, np.ndarray]) -> None:
    t["indices"][0] = len(DOCS)


def _negative_term(t: dict[str, np.ndarray]) -> None:
    t["data"][0] = -1.0


def _nan_term(t: dict[str, np.ndarray]) -> None:
    t["data"][-1] = np.nan


def _indptr_falls(t: dict[str, np.ndarray]) -> None:
    t["indptr"][1], t["indptr"][2] = t["indptr"][2], t["indptr"][1] - 1


def _duplicate_token(t: dict[str, np.ndarray]) -> None:
    tokens = t["vocab"].tobytes().decode().split("\n")
    tokens[1] = tokens[0]
    t["vocab"] = np.frombuffer("\n".join(tokens).encode(), dtype=np.uint8).copy()


def _bad_utf8(t: dict[str, np.ndarray]) -> None:
    t["vocab"][0] = 0xFF


TAMPERS: dict[str, tuple[Callable[[dict[str, np.ndarray]], None], str]] = {
    "indices int64": (_retype_indices, "truncated or foreign"),
    "row out of range": (_row_out_of_range, "document rows"),
    "negative term": (_negative_term, "finite and >= 0"),
    "NaN term": (_nan_term, "finite and >= 0"),
    "indptr falls": (_indptr_falls, "indptr"),
    "duplicate token": (_duplicate_token, "unique"),
    "not UTF-8": (_bad_utf8, "UTF-8"),
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_tampered_lexical_file_with_fixed_checksum_is_refused(tmp_path: Path, case: str) -> None:
    out = build(tmp_path)
    path = data_dir(out) / "lexical.safetensors"
    tensors = {k: v.copy() for k, v in load_file(str(path)).items()}
    edit, match = TAMPERS[case]
    edit(tensors)
    save_file(tensors, str(path))
    manifest = manifest_of(out)
    manifest["lexical"]["vocab_bytes"] = int(tensors["vocab"].size)  # a consistent forgery
    write_manifest(out, manifest)
    reseal(out)
    with pytest.raises(IndexFormatError, match=match):
        DocumentIndex.load(out)


def test_missing_truncated_or_changed_lexical_file_is_refused(tmp_path: Path) -> None:
    out = build(tmp_path)
    path = data_dir(out) / "lexical.safetensors"
    good = path.read_bytes()
    path.write_bytes(good[:-7])
    with pytest.raises(IndexFormatError, match=r"lexical\.safetensors is corrupt"):
        DocumentIndex.load(out)
    reseal(out)  # the manifest agrees with the short file: its own sizes do not
    with pytest.raises(IndexFormatError, match="truncated or foreign"):
        DocumentIndex.load(out)
    path.write_bytes(good)
    reseal(out)
    assert DocumentIndex.load(out).lexical is not None
    changed = bytearray(good)
    changed[-3] ^= 0x01  # same size, different bytes: only the checksum sees it
    path.write_bytes(bytes(changed))
    with pytest.raises(IndexFormatError, match="sha256"):
        DocumentIndex.load(out, verify=True)
    path.unlink()
    with pytest.raises(IndexFormatError, match=r"lexical\.safetensors is missing"):
        DocumentIndex.load(out)


def test_manifest_lexical_entry_is_validated(tmp_path: Path) -> None:
    out = build(tmp_path)
    good = manifest_of(out)
    cases: list[tuple[Callable[[dict[str, Any]], None], str]] = [
        (lambda m: m["lexical"].update(method="robertson"), "'lexical.method'"),
        (lambda m: m["lexical"].update(stemmer="porter"), "'lexical.stemmer'"),
        (lambda m: m["lexical"].update(k1=float("nan")), "'lexical.k1'"),
        (lambda m: m["lexical"].update(b=2), "'lexical.b'"),
        (lambda m: m["lexical"].update(vocab=-1), "'lexical.vocab'"),
        (lambda m: m["lexical"].update(nnz="7"), "'lexical.nnz'"),
        (lambda m: m["lexical"].update(vocab=m["lexical"]["vocab"] + 1), "truncated or foreign"),
        (lambda m: m["lexical"].update(extra=1), "unknown keys"),
        (lambda m: m.update(lexical=[1]), "'lexical' must be an object"),
        (lambda m: m.update(lexical=None), "not a file of a 'exact' index without a lexical index"),
        (lambda m: m["files"].pop("lexical.safetensors"), "no entry for lexical.safetensors"),
    ]
    for edit, match in cases:
        manifest = json.loads(json.dumps(good))
        edit(manifest)
        write_manifest(out, manifest)
        with pytest.raises(IndexFormatError, match=match):
            DocumentIndex.load(out)
    write_manifest(out, good)
    assert DocumentIndex.load(out).lexical is not None


# --- the chunked builder against bm25s' own index ---------------------------------------------

ORACLE = [
    *(d.content for d in DOCS),
    "",  # no tokens at all
    "Running runners ran; the runner runs and RUNS again, running running.",  # stems, repeats
    "qubit " * 40 + "cat",  # one term many times: a long document
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber stra\u00dfe 42 x 7a",  # non-ASCII words, numbers
    *(f"shared word{i % 5} doc{i} " + "filler " * (i % 7) for i in range(37)),
]


def bm25s_columns(texts: list[str]) -> dict[str, tuple[bytes, bytes]]:
    """token -> (rows, float32 terms) of each column of bm25s' ``BM25.index`` of ``texts``."""
    import bm25s
    import Stemmer

    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False)
    model = bm25s.BM25(k1=BM25_K1, b=BM25_B, method="lucene")
    model.index(tokens, show_progress=False)
    s = model.scores
    cols = {}
    for token, j in model.vocab_dict.items():
        if j < len(s["indptr"]) - 1:  # bm25s' extra empty token "" has no column
            lo, hi = s["indptr"][j], s["indptr"][j + 1]
            cols[token] = (
                np.asarray(s["indices"][lo:hi], np.int32).tobytes(),
                np.asarray(s["data"][lo:hi], np.float32).tobytes(),
            )
    return cols


def our_columns(m: BM25Matrix) -> dict[str, tuple[bytes, bytes]]:
    return {
        t: (
            m.indices[m.indptr[i] : m.indptr[i + 1]].tobytes(),
            m.data[m.indptr[i] : m.indptr[i + 1]].tobytes(),
        )
        for i, t in enumerate(m.vocab)
    }


@pytest.mark.parametrize(("chunk", "spill"), [(1, False), (4, False), (1000, False), (4, True)])
def test_chunked_builder_equals_bm25s_bit_for_bit(chunk: int, spill: bool) -> None:
    with tempfile.TemporaryFile() as file:
        builder = BM25Builder(spill=file if spill else None)  # token pairs in a file, not in memory
        for i in range(0, len(ORACLE), chunk):
            builder.add(ORACLE[i : i + chunk])
        m = builder.matrix()
    assert m.num_docs == len(ORACLE) and len(m.vocab) == len(set(m.vocab))
    assert our_columns(m) == bm25s_columns(ORACLE)  # same rows and the same float32 bits per token
    assert np.all(np.diff(m.indptr) > 0) and m.indptr[-1] == m.nnz


def test_builder_output_does_not_depend_on_the_hash_seed() -> None:
    code = (
        "import sys, hashlib; from qrerank.index.lexical import bm25_matrix; "
        "m = bm25_matrix(sys.stdin.read().split('\\x1e')); "
        "print(hashlib.sha256(m.vocab_bytes() + m.data.tobytes() + m.indices.tobytes()).hexdigest())"
    )
    digests = set()
    for seed in ("1", "2"):
        env = os.environ | {"PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", code],
            input="\x1e".join(ORACLE),
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(proc.stdout.strip())
    assert len(digests) == 1  # bm25s alone numbers a chunk's stems in set (hash) order


def test_scorer_accepts_any_iterable_of_documents() -> None:
    listed = BM25Scorer(DOCS)
    streamed = BM25Scorer(d for d in DOCS)
    assert streamed.row == listed.row == {d.doc_id: i for i, d in enumerate(DOCS)}
    for q in QUERIES:
        assert np.array_equal(streamed.scores(q), listed.scores(q)), q


# --- fusion math, by hand ---------------------------------------------------------------------


def test_rrf_by_hand() -> None:
    # dense ranks: a 1, b 2, c 3; bm25 ranks: c 1, a 2, b 3 (k = 60)
    fused = reciprocal_rank_fusion(torch.tensor([0.9, 0.5, 0.1]), torch.tensor([2.0, 0.0, 7.0]))
    assert fused.dtype == torch.float64
    assert fused.tolist() == pytest.approx([1 / 61 + 1 / 62, 1 / 62 + 1 / 63, 1 / 63 + 1 / 61])
    # ties: stable, the earlier candidate gets the better rank; k changes the constant
    tied = reciprocal_rank_fusion(torch.tensor([1.0, 1.0]), k=0)
    assert tied.tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match="one shape"):
        reciprocal_rank_fusion(torch.zeros(2), torch.zeros(3))


def test_convex_fusion_by_hand() -> None:
    lexical = torch.tensor([0.0, 10.0, 5.0])  # minmax -> 0, 1, 0.5
    dense = torch.tensor([0.2, 0.4, 0.6])  # minmax -> 0, 0.5, 1
    fused = convex_fusion(lexical, dense, 0.3)
    assert fused.tolist() == pytest.approx([0.0, 0.3 * 1 + 0.7 * 0.5, 0.3 * 0.5 + 0.7 * 1])
    assert torch.equal(convex_fusion(lexical, dense, 1.0).argsort(), lexical.argsort())
    assert torch.equal(convex_fusion(lexical, dense, 0.0).argsort(), dense.argsort())
    assert convex_fusion(torch.ones(3), dense, 0.5).tolist() == pytest.approx(
        [0.0, 0.25, 0.5]
    )  # constant -> 0
    with pytest.raises(ValueError, match="lexical weight"):
        convex_fusion(lexical, dense, 1.5)


# --- search methods over an index -------------------------------------------------------------

# "running dogs": three docs hold the exact word "running" (the hashing encoder's only overlap
# with the query); "A dog runs." shares no exact token, so the dense top-3 misses it, but
# stemmed it matches both query terms and BM25 ranks it first.
SEARCH_DOCS = [
    Document(doc_id="run0", text="running"),
    Document(doc_id="run1", text="running shoes"),
    Document(doc_id="run2", text="running shoes for a long marathon race"),
    Document(doc_id="target", text="A dog runs."),
    *(Document(doc_id=f"pad{i}", text=f"bread yeast oven recipe number {i}") for i in range(6)),
]
QUERY = "running dogs"


@pytest.fixture
def pipe(tmp_path: Path):  # type: ignore[no-untyped-def]
    from qrerank.rerank.pipeline import SearchPipeline
    from qrerank.rerank.reranker import Reranker

    enc = HashingEncoder(64)
    index = build_index(SEARCH_DOCS, enc, tmp_path / "s", kind="exact")
    return SearchPipeline(index, Reranker(enc))


def ids(hits) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.doc_id for h in hits]


def test_fused_search_finds_what_only_bm25_finds(pipe) -> None:  # type: ignore[no-untyped-def]
    dense = pipe.search(QUERY, k=3, top_n=10, method="hybrid")
    assert ids(dense) == ["run0", "run1", "run2"] and all(h.bm25 is None for h in dense)
    lexical = pipe.search(QUERY, k=3, top_n=10, method="lexical")
    assert ids(lexical) == ["target", "run0", "run1"]  # the padding scores 0 and never appears
    assert lexical[0].bm25 == lexical[0].score > lexical[1].score
    fused = pipe.search(QUERY, k=3, top_n=10, method="fused")
    assert sorted(ids(fused)) == ["run0", "run1", "run2", "target"]  # the union of both top-3
    # convex: w = 1 ranks the union by BM25 alone, w = 0 by the dense (hybrid) score alone
    by_bm25 = pipe.search(QUERY, k=3, top_n=10, method="fused", fusion="convex", lexical_weight=1.0)
    assert ids(by_bm25) == ["target", "run0", "run1", "run2"] and by_bm25[0].score == pytest.approx(1.0)
    by_dense = pipe.search(QUERY, k=3, top_n=10, method="fused", lexical_weight=0.0)  # convex implied
    assert ids(by_dense) == ["run0", "run1", "run2", "target"]
    assert by_dense[0].score == pytest.approx(1.0) and by_dense[-1].score == pytest.approx(0.0)


def test_fused_rrf_scores_by_hand(pipe) -> None:  # type: ignore[no-untyped-def]
    # Over the union {run0, run1, run2, target}: hybrid (alpha 0.5, min-max over the four) ranks
    # run0 1, run1 2, run2 3 (0.19), target 4 (0.16: cosine 0, log F above run2's); BM25 ranks
    # target 1, run0 2, run1 3, run2 4.
    expected = {
        "run0": 1 / 61 + 1 / 62,
        "target": 1 / 64 + 1 / 61,
        "run1": 1 / 62 + 1 / 63,
        "run2": 1 / 63 + 1 / 64,
    }
    fused = pipe.search(QUERY, k=3, top_n=10, method="fused", fusion="rrf")
    assert ids(fused) == ["run0", "target", "run1", "run2"]
    assert [h.score for h in fused] == pytest.approx([expected[h.doc_id] for h in fused], abs=1e-12)


def test_search_method_arguments_are_checked(pipe) -> None:  # type: ignore[no-untyped-def]
    from qrerank.errors import InputError

    with pytest.raises(InputError, match="unknown method 'bm42'"):
        pipe.search(QUERY, method="bm42")
    with pytest.raises(InputError, match="apply to method 'fused'"):
        pipe.search(QUERY, method="cosine", lexical_weight=0.5)
    with pytest.raises(InputError, match="rrf has no weight"):
        pipe.search(QUERY, method="fused", fusion="rrf", lexical_weight=0.5)
    with pytest.raises(InputError, match="unknown fusion"):
        pipe.search(QUERY, method="fused", fusion="max")
    with pytest.raises(InputError, match=r"lexical_weight must be in \[0, 1\]"):
        pipe.search(QUERY, method="fused", lexical_weight=1.5)
    assert pipe.search("zzz qqq", method="lexical") == []  # no term in the corpus


def test_cli_no_lexical_and_lexical_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from qrerank.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.jsonl").write_text(
        "".join(json.dumps({"_id": d.doc_id, "text": d.text}) + "\n" for d in SEARCH_DOCS)
    )
    common = ["--model", "hashing-64", "--kind", "exact"]
    assert main(["index", "c.jsonl", "--out", "lex", *common]) == 0
    assert main(["index", "c.jsonl", "--out", "dense", *common, "--no-lexical"]) == 0
    assert "BM25" in capsys.readouterr().out.splitlines()[0]
    assert main(["search", "lex", QUERY, "--k", "3", "--method", "fused", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert "target" in {r["doc_id"] for r in rows} and all("bm25" in r for r in rows)
    assert (
        main(["search", "lex", QUERY, "--method", "fused", "--lexical-weight", "0.5", "--fusion", "convex"])
        == 0
    )
    assert "bm25" in capsys.readouterr().out.splitlines()[0]
    assert main(["search", "dense", QUERY, "--method", "cosine", "--json"]) == 0
    assert all("bm25" not in r for r in json.loads(capsys.readouterr().out))
    for method in ("lexical", "fused"):
        assert main(["search", "dense", QUERY, "--method", method]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no lexical (BM25) index" in err[0] and "without --no-lexical" in err[0]
    assert (
        main(["search", "lex", QUERY, "--method", "fused", "--fusion", "rrf", "--lexical-weight", "0.2"]) == 2
    )
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
