"""The three protocols end to end on the tiny fixture, with hand-computed cosine metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from qrerank.core.head import BlochHead
from qrerank.embed.cache import CachedEncoder, EmbeddingCache
from qrerank.errors import InputError
from qrerank.eval.evaluator import EvalConfig, evaluate
from qrerank.eval.report import write_outputs
from qrerank.heads.io import save_head
from qrerank.train import build_head
from tests.eval.test_metrics import BM25_EXPECTED

L2 = math.log2
IDCG_Q1 = 3 + 2 / L2(3) + 2 / L2(4) + 1 / L2(5)  # grades 3, 2, 2, 1 (d1, d4, d7, d2)
# Cosine order of q1's candidates (see conftest ANGLES): d1(3) d4(2) d2(1) d3(0) [d5(-) d6(-)]
COS_Q1 = (3 + 2 / L2(3) + 1 / L2(4)) / IDCG_Q1  # = 0.836509
# q2: rerank/judged candidates come out ideal: d5(2) d6(1) -> 1.0
# q2 over the whole corpus: d5(2) d3(-) d6(1) ... -> (2 + 1/log2(4)) / (2 + 1/log2(3)) = 0.950234
COS_Q2_FULL = (2 + 1 / L2(4)) / (2 + 1 / L2(3))
# Binary metrics (rel >= 2): q1 retrieves d1, d4 at ranks 1, 2 (d7 has no text): RR 1, R 2/3,
# AP (1 + 1) / 3; q2 retrieves d5 at rank 1: RR 1, R 1, AP 1.
COS_BINARY = {"RR@10": 1.0, "R@100": (2 / 3 + 1) / 2, "AP": (2 / 3 + 1) / 2}
METHODS = "bm25,cosine,fidelity,hybrid,rrf,run:bm25"


def cfg(tiny: Path, **kw) -> EvalConfig:
    return EvalConfig(data_dir=tiny, n_resamples=200, show_progress=False, **kw)


def test_rerank_protocol(tiny: Path, encoder) -> None:
    res = evaluate(cfg(tiny, protocol="rerank", methods=METHODS), encoder=encoder)
    m = res["metrics"]
    assert res["primary_metric"] == "nDCG@10"
    assert res["main"] == ["bm25", "cosine", "fidelity", "hybrid", "rrf", "run:bm25"]
    assert round(COS_Q1, 6) == 0.836509
    assert m["cosine"] == pytest.approx({"nDCG@10": (COS_Q1 + 1) / 2, **COS_BINARY})
    assert m["run:bm25"] == pytest.approx(BM25_EXPECTED)  # the run file as is
    assert res["per_query"]["cosine"]["nDCG@10"] == pytest.approx({"q1": COS_Q1, "q2": 1.0})
    # Every method ranks the same candidates: the top-100 of runs/bm25.trec.
    assert {q: sorted(r) for q, r in res["runs"]["bm25"].items()} == {
        "q1": ["d1", "d2", "d3", "d4", "d5"],
        "q2": ["d1", "d5", "d6"],
    }
    assert set(res["significance"]) == {"bm25", "fidelity", "hybrid", "rrf", "run:bm25"}
    assert set(res["significance"]["bm25"]) == {"nDCG@10", "RR@10", "R@100", "AP"}
    meta = res["meta"]
    assert (meta["rel_level"], meta["rel_level_source"], meta["n_queries"]) == (2, "PROVENANCE.md", 2)
    assert meta["measures"]["RR@10"] == "RR(rel=2)@10"
    tau = meta["tuning"]["tau"]
    assert tau == pytest.approx(1 / math.sqrt(2)) and meta["tuning"]["alpha"] == 0.5
    # Sweep endpoints: alpha = 1 is cosine, alpha = 0 is fidelity at the same tau.
    assert m[f"hybrid[tau={tau:.4g},alpha=1]"] == pytest.approx(m["cosine"])
    assert m[f"hybrid[tau={tau:.4g},alpha=0]"] == pytest.approx(m["fidelity"])
    assert len(res["sweeps"]["tau"]) == 6 and len(res["sweeps"]["alpha"]) == 11


def test_rerank_depth_k(tiny: Path, encoder) -> None:
    # k = 2: q1 keeps d3, d1 -> cosine d1(3) d3(0): DCG 3; q2 keeps d6, d5 -> ideal.
    res = evaluate(cfg(tiny, protocol="rerank", methods="cosine", k=2), encoder=encoder)
    assert res["per_query"]["cosine"]["nDCG@10"] == pytest.approx({"q1": 3 / IDCG_Q1, "q2": 1.0})


def test_judged_protocol(tiny: Path, encoder) -> None:
    # Candidates = judged docs with text: q1 d1 d2 d3 d4, q2 d5 d6 -> same cosine order as above.
    res = evaluate(cfg(tiny, protocol="judged", methods="cosine,fidelity"), encoder=encoder)
    assert {q: sorted(r) for q, r in res["runs"]["cosine"].items()} == {
        "q1": ["d1", "d2", "d3", "d4"],
        "q2": ["d5", "d6"],
    }
    assert res["metrics"]["cosine"] == pytest.approx({"nDCG@10": (COS_Q1 + 1) / 2, **COS_BINARY})


def test_full_protocol(tiny: Path, encoder) -> None:
    res = evaluate(cfg(tiny, protocol="full", methods="cosine,bm25,rrf"), encoder=encoder)
    assert list(res["runs"]["cosine"]["q2"]) == ["d5", "d3", "d6", "d2", "d4", "d1"]
    assert res["per_query"]["cosine"]["nDCG@10"] == pytest.approx({"q1": COS_Q1, "q2": COS_Q2_FULL})
    assert len(res["runs"]["bm25"]["q1"]) == 6
    assert "whole corpus (6 docs)" in res["meta"]["candidates"]


def test_cosine_baseline_always_runs(tiny: Path, encoder) -> None:
    res = evaluate(cfg(tiny, protocol="rerank", methods="fidelity"), encoder=encoder)
    assert res["main"] == ["cosine", "fidelity"]


def test_tuning_split_picks_tau_and_alpha(tiny: Path, encoder) -> None:
    res = evaluate(
        cfg(tiny, protocol="rerank", methods="cosine,fidelity,hybrid", tune_split="train"), encoder=encoder
    )
    tuning = res["meta"]["tuning"]
    assert tuning["source"].startswith("tiny_beir train")
    assert all(row["tune"] is not None for row in res["sweeps"]["tau"] + res["sweeps"]["alpha"])
    best = max(res["sweeps"]["tau"], key=lambda r: r["tune"]["nDCG@10"])  # first best wins ties
    assert tuning["tau"] == best["tau"]
    with pytest.raises(InputError, match="refusing to tune on the evaluated split"):
        evaluate(cfg(tiny, protocol="rerank", methods="cosine", tune_split="test"), encoder=encoder)


def test_head_method(tiny: Path, encoder, tmp_path: Path) -> None:
    # A Bloch head with fixed tau scores exactly like fidelity at that tau.
    head_dir = save_head(BlochHead(2, tau=0.3, learn_tau=False), tmp_path / "bloch-head")
    res = evaluate(
        cfg(tiny, protocol="rerank", methods=f"fidelity,head:{head_dir}", tau=0.3), encoder=encoder
    )
    assert res["metrics"]["head:bloch-head"] == pytest.approx(res["metrics"]["fidelity"])
    with pytest.raises(InputError, match="no head at"):
        evaluate(cfg(tiny, protocol="rerank", methods=f"head:{tmp_path / 'nope'}"), encoder=encoder)


def test_bad_runs_fail_before_encoding(tiny: Path, encoder) -> None:
    with pytest.raises(InputError, match="unknown run 'nope'"):
        evaluate(cfg(tiny, protocol="rerank", methods="cosine,run:nope"), encoder=encoder)
    with pytest.raises(InputError, match="unknown run 'nope'"):
        evaluate(cfg(tiny, protocol="rerank", methods="cosine", run="nope"), encoder=encoder)
    with pytest.raises(InputError, match="unknown protocol"):
        evaluate(cfg(tiny, protocol="sideways", methods="cosine"), encoder=encoder)
    assert encoder.calls == 0


def test_repeated_eval_reuses_the_embedding_cache(tiny: Path, encoder, tmp_path: Path) -> None:
    cached = CachedEncoder(encoder, EmbeddingCache(encoder.name, encoder.dim, tmp_path / "emb"))
    evaluate(cfg(tiny, protocol="full", methods="cosine"), encoder=cached)
    calls = encoder.calls
    evaluate(cfg(tiny, protocol="full", methods="cosine"), encoder=cached)
    assert calls > 0 and encoder.calls == calls  # nothing re-encoded


def test_outputs_on_disk(tiny: Path, encoder, tmp_path: Path) -> None:
    res = evaluate(cfg(tiny, protocol="rerank", methods=METHODS), encoder=encoder)
    out = tmp_path / "out"
    files = write_outputs(res, out, res["runs"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["cosine"]) == {"nDCG@10", "RR@10", "R@100", "AP"}
    assert all(0.0 <= v <= 1.0 for m in metrics.values() for v in m.values())
    assert json.loads((out / "meta.json").read_text())["rel_level"] == 2
    table = (out / "table.md").read_text()
    assert "| run:bm25 | 71.57" in table and "tau sweep" in table
    lines = (out / "runs" / "cosine.trec").read_text().splitlines()
    assert lines[0].split()[:4] == ["q1", "Q0", "d1", "1"] and len(lines) == 8
    for name in ("per_query_delta", "tau_sweep", "alpha_sweep"):
        assert files[name].stat().st_size > 1000
    assert not (out / "runs" / "run_bm25.trec").exists()  # anchors are not copied


@pytest.mark.parametrize("name", ["linear", "qbec", "angle", "rotation"])
def test_float32_heads_score_float64_embeddings(name: str, tiny: Path, encoder, tmp_path: Path) -> None:
    # Saved heads hold float32 weights and the evaluator scores in float64: every kind must run.
    head = build_head(name, 2, 1 if name == "qbec" else 2)  # QBEC compresses: out < in
    if name == "linear":
        # tanh(1e-3 u) ~ 1e-3 u: the head ranks exactly as cosine does.
        with torch.no_grad():
            head.proj.weight.copy_(1e-3 * torch.eye(2))
            head.proj.bias.zero_()
    head_dir = save_head(head, tmp_path / name)
    res = evaluate(cfg(tiny, protocol="rerank", methods=f"cosine,head:{head_dir}"), encoder=encoder)
    got = res["metrics"][f"head:{name}"]
    assert all(math.isfinite(v) for v in got.values())
    if name == "linear":
        assert got == pytest.approx(res["metrics"]["cosine"])


def test_unseen_from_keeps_only_queries_with_no_seen_relevant_doc(tiny_copy: Path, encoder) -> None:
    # "seen" judges d4 relevant (>= 2) to some other query: q1 (relevant d1, d4, d7) is seen,
    # q2 (relevant d5) is not. d6 has grade 2 here but is only grade 1 for q2: not relevant there.
    (tiny_copy / "qrels" / "seen.tsv").write_text(
        "query-id\tcorpus-id\tscore\nt1\td4\t2\nt2\td6\t2\nt2\td5\t1\n"
    )
    res = evaluate(cfg(tiny_copy, protocol="rerank", methods="cosine", unseen_from="seen"), encoder=encoder)
    assert res["per_query"]["cosine"]["nDCG@10"] == pytest.approx({"q2": 1.0})
    meta = res["meta"]
    assert meta["n_queries"] == 1
    assert meta["subset"]["unseen_from"] == "tiny_beir/seen"
    assert (meta["subset"]["n_queries"], meta["subset"]["of"]) == (1, 2)
    assert "grade >= 2" in meta["subset"]["rule"]
    # Without the subset both queries count.
    full = evaluate(cfg(tiny_copy, protocol="rerank", methods="cosine"), encoder=encoder)
    assert full["meta"]["n_queries"] == 2 and full["meta"]["subset"] is None


def test_unseen_from_refuses_the_evaluated_split_and_an_empty_subset(tiny: Path, encoder) -> None:
    with pytest.raises(InputError, match="evaluated split itself"):
        evaluate(cfg(tiny, protocol="rerank", methods="cosine", unseen_from="test"), encoder=encoder)
    # Every test query shares a relevant document with train (d1/d4, d5).
    with pytest.raises(InputError, match="every query"):
        evaluate(cfg(tiny, protocol="rerank", methods="cosine", unseen_from="train"), encoder=encoder)
    with pytest.raises(InputError, match="no qrels for split 'nope'"):
        evaluate(cfg(tiny, protocol="rerank", methods="cosine", unseen_from="nope"), encoder=encoder)


def test_convex_fusion_weight_is_tuned_on_the_tuning_split(tiny: Path, encoder) -> None:
    res = evaluate(
        cfg(tiny, protocol="rerank", methods="bm25,cosine,convex,convex-fidelity", tune_split="train"),
        encoder=encoder,
    )
    tuning = res["meta"]["tuning"]
    for kind in ("convex", "convex-fidelity"):
        w = tuning[f"{kind}_weight"]
        curve = {row["weight"]: row["tune"]["nDCG@10"] for row in res["sweeps"][f"{kind}-weight"]}
        assert w in curve and curve[w] == max(curve.values())  # the best weight on train
    # w = 0 is the dense signal alone, w = 1 BM25 alone (same order, so the same metrics).
    res0 = evaluate(cfg(tiny, protocol="rerank", methods="bm25,cosine,convex"), encoder=encoder)
    assert res0["meta"]["tuning"]["convex_weight"] == 0.3  # no tuning split: the default
    assert "convex (w_bm25=0.3)" in res0["labels"].values()


def test_convex_endpoints_are_the_single_signals(tiny: Path, encoder) -> None:
    from qrerank.eval.datasets import load_dataset
    from qrerank.eval.methods import BM25Scorer, CandidateScorer
    from qrerank.rerank.methods import Method, MethodSpec
    from qrerank.rerank.scoring import rank_order

    ds = load_dataset(tiny, split="test")
    ids = list(ds.corpus)
    qids = list(ds.queries)
    scorer = CandidateScorer(
        qids=qids, queries=ds.queries, candidates={q: ids for q in qids}, doc_ids=ids,
        q_emb=encoder.encode([ds.queries[q] for q in qids]), d_emb=encoder.encode([ds.corpus[d].content for d in ids]),
        bm25=BM25Scorer(list(ds.corpus.values())),
    )  # fmt: skip
    for i in range(len(qids)):
        cos, bm25 = scorer.cosine(i), scorer.bm25_scores(i)
        for kind in (Method.CONVEX, Method.CONVEX_FIDELITY):
            at1 = scorer.scores(MethodSpec(kind=kind, tau=0.5, weight=1.0), i)
            assert torch.equal(rank_order(at1), rank_order(bm25))
        at0 = scorer.scores(MethodSpec(kind=Method.CONVEX, weight=0.0), i)
        assert torch.equal(rank_order(at0), rank_order(cos))
        half = scorer.scores(MethodSpec(kind=Method.CONVEX, weight=0.5), i)
        lo = lambda x: (x - x.min()) / (x.max() - x.min())  # noqa: E731
        assert torch.allclose(half.double(), 0.5 * lo(bm25.double()) + 0.5 * lo(cos.double()))
