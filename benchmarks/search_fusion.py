"""Lexical + dense fusion in the product's own search path, measured on SciFact.

    python benchmarks/search_fusion.py

Builds a flat index of the SciFact corpus (all-MiniLM-L6-v2, BM25 inside, embeddings from the
on-disk cache), then runs ``SearchPipeline.search`` (k = 100 from each retriever, top 100 kept)
for every train and test claim with: dense cosine, BM25 alone, fused RRF, and fused convex at
BM25 weights 0.1..0.9. The weight is chosen on the 809 train claims; the table reports test
nDCG@10 on all 300 claims and on the 104 unseen ones (no relevant document shared with train),
with paired t-tests against dense cosine, and the median extra latency of fused search over
dense search per query (query embeddings cached, so it is the retrieval + fusion cost).
Writes ``benchmarks/results/search_fusion.json``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from qrerank.corpus import load_corpus
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.eval.datasets import load_dataset, read_split_qrels
from qrerank.eval.meta import environment, write_results
from qrerank.eval.significance import paired_comparison
from qrerank.index.directory import build_index
from qrerank.metrics import per_query
from qrerank.rerank.pipeline import SearchPipeline
from qrerank.rerank.reranker import Reranker

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
OUT = Path(__file__).resolve().parent / "results" / "search_fusion.json"
WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def configs() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        "cosine": {"method": "cosine"},
        "lexical": {"method": "lexical"},
        "fused rrf": {"method": "fused", "fusion": "rrf"},
    }
    for w in WEIGHTS:
        out[f"fused convex w={w:g}"] = {"method": "fused", "fusion": "convex", "lexical_weight": w}
    return out


def run_split(pipe: SearchPipeline, ds: Any, kwargs: dict[str, Any]) -> tuple[dict[str, float], list[float]]:
    """Per-query nDCG@10 of one search configuration, and per-query latency in ms."""
    run: dict[str, dict[str, float]] = {}
    times = []
    for qid, text in ds.queries.items():
        t = time.perf_counter()
        hits = pipe.search(text, k=100, top_n=100, **kwargs)
        times.append(1e3 * (time.perf_counter() - t))
        run[qid] = {h.doc_id: float(h.score) for h in hits}
    return per_query(ds.qrels, run, list(ds.queries), ds.rel_level)["nDCG@10"], times


def main() -> int:
    t0 = time.perf_counter()
    encoder = load_encoder(DEFAULT_MODEL)
    test = load_dataset(DATA, split="test")
    train = load_dataset(DATA, split="train")
    unseen = list(test.unseen_from(read_split_qrels(DATA, "train"), source="train").queries)
    with tempfile.TemporaryDirectory() as tmp:
        index = build_index(load_corpus(DATA / "corpus.jsonl"), encoder, Path(tmp) / "scifact", kind="flat")
        pipe = SearchPipeline(index, Reranker(encoder, method="cosine"))
        for q in list(test.queries.values()) + list(train.queries.values()):  # warm the query cache
            pipe.search(q, k=1, top_n=1)
        rows: dict[str, dict[str, Any]] = {}
        for name, kwargs in configs().items():
            tune, _ = run_split(pipe, train, kwargs)
            pq, times = run_split(pipe, test, kwargs)
            rows[name] = {"kwargs": kwargs, "train": float(np.mean(list(tune.values()))), "per_query": pq,
                          "ms_p50": statistics.median(times)}  # fmt: skip
            print(
                f"  {name:22s} train {100 * rows[name]['train']:.2f}  test {100 * np.mean(list(pq.values())):.2f}",
                flush=True,
            )
    base = rows["cosine"]["per_query"]
    best_w = max(WEIGHTS, key=lambda w: rows[f"fused convex w={w:g}"]["train"])
    lines = [
        "SciFact, SearchPipeline.search (flat index, k = 100 per retriever), nDCG@10 x100; "
        f"convex weight chosen on train: w = {best_w:g}",
        "",
        "| search | train (809, tuning) | test, all 300 | Δ vs cosine (p) | test, unseen 104 | Δ vs cosine (p) | p50 ms/query |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        pq = r["per_query"]
        cells = []
        for qids in (list(pq), unseen):
            m = float(np.mean([pq[q] for q in qids]))
            c = paired_comparison({q: pq[q] for q in qids}, {q: base[q] for q in qids}).to_dict()
            mark = ("▲" if c["mean_diff"] > 0 else "▼") if c["significant"] else ""
            r.setdefault("test", {})["all" if qids is not unseen else "unseen"] = {
                "ndcg@10": m,
                "vs_cosine": c,
            }
            cells += [
                f"{100 * m:.2f}{mark}",
                "" if name == "cosine" else f"{100 * c['mean_diff']:+.2f} ({c['p_value']:.2g})",
            ]
        chosen = " ←" if name == f"fused convex w={best_w:g}" else ""
        lines.append(
            f"| {name}{chosen} | {100 * r['train']:.2f} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {r['ms_p50']:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    payload = {
        "command": "python benchmarks/search_fusion.py " + " ".join(sys.argv[1:]), "best_weight": best_w,
        "unseen_queries": len(unseen),
        "rows": {k: {kk: vv for kk, vv in v.items() if kk != "per_query"} for k, v in rows.items()},
        "seconds": time.perf_counter() - t0, "environment": environment(),
    }  # fmt: skip
    write_results(OUT, payload)
    OUT.with_suffix(".md").write_text(table + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
