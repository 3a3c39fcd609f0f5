"""Retrieval in state space: an index of space "angles" finds the rows of highest log-fidelity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from qrerank.cli import main
from qrerank.core.encoding import bloch_angles
from qrerank.core.fidelity import log_fidelity_angles_matrix
from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import IndexFormatError, InputError
from qrerank.index.build import build_index_from_embeddings
from qrerank.index.directory import DocumentIndex, build_index
from qrerank.index.update import append_documents, delete_documents
from qrerank.rerank.pipeline import SearchPipeline
from qrerank.rerank.reranker import Reranker
from tests.unit.test_index_build import same_index
from tests.unit.test_index_update import DIM, QUERIES, answers, corpus

pytest.importorskip("faiss")
KINDS = ["flat", "hnsw", "ivf"]


def exact_top(index: DocumentIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: log F of every row, best k (ties to the lower row), float64 reference."""
    theta_q = bloch_angles(torch.from_numpy(queries).double(), index.tau)
    theta_d = bloch_angles(torch.from_numpy(index.embeddings_of(np.arange(len(index)))).double(), index.tau)
    logf = torch.log(torch.cos((theta_q[:, None, :] - theta_d[None]) / 2) ** 2).sum(-1).numpy()
    rows = np.stack([np.lexsort((np.arange(len(r)), -r))[:k] for r in logf])
    return np.take_along_axis(logf, rows, 1), rows


def queries(n: int = 6) -> np.ndarray:
    return HashingEncoder(DIM).encode([f"w{i} v{i % 3} doc {7 * i}" for i in range(n)])


@pytest.mark.parametrize("kind", KINDS)
def test_angle_space_returns_exact_log_fidelity_best_first(tmp_path: Path, kind: str) -> None:
    index = build_index(corpus(0, 120), HashingEncoder(DIM), tmp_path / "i", kind=kind, space="angles")
    assert index.space == "angles" and index.manifest["index"]["space"] == "angles"
    q = queries()
    scores, rows = index.search(q, 10)
    assert rows.shape == (len(q), 10) and (rows >= 0).all()
    for i in range(len(q)):  # each score is the exact log F of its row, best first
        theta = bloch_angles(torch.from_numpy(q[i : i + 1]), index.tau)
        want = log_fidelity_angles_matrix(theta, torch.from_numpy(index.angles_of(rows[i])))[0].numpy()
        np.testing.assert_allclose(scores[i], want, rtol=1e-5)
        assert np.all(np.diff(scores[i]) <= 0)


def random_index(path: Path, n: int = 300, **kw: object) -> DocumentIndex:
    """Seeded unit vectors (no ties in log F, unlike the hashing encoder's shared tokens)."""
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, DIM)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    docs = corpus(0, n)
    return build_index_from_embeddings(docs, emb, path, model=f"hashing-{DIM}", lexical=False, **kw)  # type: ignore[arg-type]


def random_queries(n: int = 8) -> np.ndarray:
    q = np.random.default_rng(1).standard_normal((n, DIM)).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_flat_angle_search_equals_an_exact_fidelity_scan(tmp_path: Path) -> None:
    index = random_index(tmp_path / "i", space="angles")
    q = random_queries()
    want_s, want_r = exact_top(index, q, 10)
    got_s, got_r = index.search(q, 10, oversample=len(index) / 10)  # the whole corpus re-scored
    assert got_r.tolist() == want_r.tolist()
    np.testing.assert_allclose(got_s, want_s, rtol=1e-5)
    # the default pool (2k) already finds most of them on this corpus: L2 on the angles
    # is the small-angle form of -log F, not a different ranking
    _, pool_r = index.search(q, 10)
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(pool_r, want_r, strict=True)])
    assert overlap >= 0.8
    with pytest.raises(ValueError, match="oversample"):
        index.search(q, 10, oversample=0.5)


def test_cosine_space_is_unchanged_and_default(tmp_path: Path) -> None:
    index = build_index(corpus(0, 60), HashingEncoder(DIM), tmp_path / "i", lexical=False)
    assert index.space == "cosine" and "vectors.faiss" not in index.manifest["files"]
    q = queries(3)
    _, rows = index.search(q, 5)
    cos = q @ index.embeddings_of(np.arange(len(index))).T
    assert rows.tolist() == np.argsort(-cos, axis=1, kind="stable")[:, :5].tolist()


def test_search_method_fidelity_ranks_the_whole_corpus_by_fidelity(tmp_path: Path) -> None:
    index = build_index(corpus(0, 80), HashingEncoder(DIM), tmp_path / "i", kind="hnsw", space="angles")
    pipe = SearchPipeline(index, Reranker(HashingEncoder(DIM)))
    for text in QUERIES:
        hits = pipe.search(text, k=len(index), top_n=10, method="fidelity")
        q = HashingEncoder(DIM).encode([text])
        want, _ = exact_top(index, q, 10)  # compared by value: the hashing corpus has ties
        np.testing.assert_allclose([h.quantum for h in hits], want[0], rtol=1e-5)


def test_append_and_delete_keep_the_space_and_equal_a_fresh_build(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    enc = HashingEncoder(DIM)
    build_index(corpus(0, 40), enc, out, space="angles")
    append_documents(out, corpus(40, 70), enc)
    index = delete_documents(out, ["d3", "d41", "d0"])
    kept = [d for d in corpus(0, 70) if d.doc_id not in ("d3", "d41", "d0")]
    fresh = build_index(kept, enc, tmp_path / "fresh", space="angles")
    same_index(index, fresh)
    assert index.space == "angles" and index.vectors.ntotal == len(kept)
    for method in ("fidelity", "hybrid", "fused"):
        assert answers(index, method) == answers(fresh, method)
    assert DocumentIndex.load(out, verify=True).space == "angles"


def test_from_embeddings_with_angles(tmp_path: Path) -> None:
    docs = corpus(0, 50)
    emb = HashingEncoder(DIM).encode([d.content for d in docs])
    index = build_index_from_embeddings(docs, emb, tmp_path / "i", model=f"hashing-{DIM}", space="angles")
    built = build_index(docs, HashingEncoder(DIM), tmp_path / "j", space="angles")
    q = queries(3)
    assert index.search(q, 5)[1].tolist() == built.search(q, 5)[1].tolist()


def test_bad_spaces_are_refused(tmp_path: Path) -> None:
    docs, enc = corpus(0, 20), HashingEncoder(DIM)
    with pytest.raises(InputError, match="space 'angles' needs a FAISS index"):
        build_index(docs, enc, tmp_path / "a", kind="exact", space="angles")
    with pytest.raises(InputError, match="unknown space 'bloch'"):
        build_index(docs, enc, tmp_path / "b", space="bloch")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_load_refuses_a_manifest_or_file_of_the_wrong_space(tmp_path: Path) -> None:
    angles = build_index(corpus(0, 40), HashingEncoder(DIM), tmp_path / "a", space="angles")
    cosine = build_index(corpus(0, 40), HashingEncoder(DIM), tmp_path / "c", kind="hnsw")
    a_dir, c_dir = angles.version_dir, cosine.version_dir
    assert a_dir is not None and c_dir is not None
    angles.close()
    manifest = json.loads((a_dir / "manifest.json").read_text())
    for bad, match in (("euclid", "'index.space' must be one of"), (["angles"], "'index.space' must be one of")):
        manifest["index"]["space"] = bad
        (a_dir / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(IndexFormatError, match=match):
            DocumentIndex.load(tmp_path / "a")
    manifest["index"].update(space="angles", kind="exact")
    (a_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="needs format 2 and a flat, ivf or hnsw"):
        DocumentIndex.load(tmp_path / "a")
    # an inner-product FAISS file where the angles' L2 index belongs: refused before FAISS reads it
    manifest["index"].update(kind="hnsw")
    size = (c_dir / "vectors.faiss").stat().st_size
    manifest["files"]["vectors.faiss"]["bytes"] = size
    (a_dir / "manifest.json").write_text(json.dumps(manifest))
    shutil.copy(c_dir / "vectors.faiss", a_dir / "vectors.faiss")
    with pytest.raises(IndexFormatError, match="expected L2"):
        DocumentIndex.load(tmp_path / "a")


def test_cli_space_and_append_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"_id": d.doc_id, "text": d.text}) + "\n" for d in corpus(0, 30)))
    out = str(tmp_path / "idx")
    model = ["--model", f"hashing-{DIM}"]
    assert main(["index", str(src), "--out", out, *model, "--kind", "exact", "--space", "angles"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "space 'angles' needs a FAISS index" in err
    assert main(["index", str(src), "--out", out, *model, "--space", "angles"]) == 0
    assert "flat, angle space" in capsys.readouterr().out
    assert main(["search", out, "doc 4 w4", "--method", "fidelity", "--top-n", "3"]) == 0
    assert "d4" in capsys.readouterr().out
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"_id": "new", "text": "a new one"}) + "\n")
    for flag, value in (("--kind", "hnsw"), ("--space", "cosine"), ("--dtype", "float16"), ("--tau", "0.5")):
        assert main(["index", str(more), "--out", out, "--append", flag, value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--append keeps the index's settings" in err and flag in err
    assert main(["index", str(more), "--out", out, "--append", "--space", "angles"]) == 0  # the same: fine
    assert len(DocumentIndex.load(out)) == 31


def test_cli_ann_settings_are_stored_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"_id": d.doc_id, "text": d.text}) + "\n" for d in corpus(0, 60)))
    out = str(tmp_path / "idx")
    model = ["--model", f"hashing-{DIM}"]
    assert main(["index", str(src), "--out", out, *model, "--kind", "hnsw", "--ef-search", "300", "--hnsw-m", "8"]) == 0
    index = DocumentIndex.load(out)
    assert index.manifest["index"]["params"] == {"ef_search": 300, "m": 8}
    assert index.vectors._index.hnsw.efSearch == 300  # type: ignore[attr-defined]
    capsys.readouterr()
    for argv, message in (
        (["--kind", "hnsw", "--nprobe", "4"], "--nprobe applies to --kind ivf, not hnsw"),
        (["--ef-search", "64"], "--ef-search applies to --kind hnsw, not flat"),
        (["--kind", "hnsw", "--ef-search", "0"], "expected an integer in 1..65536"),
        (["--append", "--ef-search", "64"], "--append keeps the index's ANN settings"),
    ):
        try:
            code = main(["index", str(src), "--out", out, *argv])
        except SystemExit as exc:  # argparse refuses a bad value itself: usage + the error, exit 2
            code = exc.code
        assert code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err  # argparse's own errors add the usage
    ivf = str(tmp_path / "ivf")
    assert main(["index", str(src), "--out", ivf, *model, "--kind", "ivf", "--nlist", "2", "--nprobe", "2"]) == 0
    assert DocumentIndex.load(ivf).manifest["index"]["params"] == {"nlist": 2, "nprobe": 2}


@pytest.mark.parametrize("method", ["fidelity", "hybrid", "cosine"])
def test_pipeline_reuses_the_first_stage_log_fidelity(tmp_path: Path, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An angle index's exact log F is handed to the reranker (angles are fetched once, for the
    first stage's pool, not again for the rows kept), and the hits equal scoring the same rows
    from their embeddings."""
    index = build_index(corpus(0, 80), HashingEncoder(DIM), tmp_path / "i", kind="flat", space="angles")
    reranker = Reranker(HashingEncoder(DIM))
    pipe = SearchPipeline(index, reranker)
    for text in QUERIES:
        q = reranker.embed([text])
        _, rows = index.search(q.numpy(), 20)
        want = reranker.score_embeddings(q[0], torch.from_numpy(index.embeddings_of(rows[0])), method=method)
        order = np.lexsort((np.arange(20), -want.score.numpy()))[:5]
        fetched: list[int] = []
        real = index.angles_of
        monkeypatch.setattr(index, "angles_of", lambda idx, f=fetched, r=real: f.append(len(idx)) or r(idx))
        hits = pipe.search(text, k=20, top_n=5, method=method)
        monkeypatch.undo()
        assert fetched == [40]  # the 2k pool only
        assert [h.index for h in hits] == [int(rows[0][j]) for j in order]
        np.testing.assert_allclose([h.quantum for h in hits], want.quantum.numpy()[order], rtol=1e-5)
        np.testing.assert_allclose([h.score for h in hits], want.score.numpy()[order], rtol=1e-5, atol=1e-6)
