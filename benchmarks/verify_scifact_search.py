"""Check `qrerank search --method cosine` against sentence-transformers' own cosine top-10 on SciFact.

Builds (or reuses) a qrerank index of the full SciFact corpus, encodes the corpus a second time
with plain sentence-transformers (no qrerank code), runs `util.semantic_search` for every test
query, and counts queries whose top-10 doc ids differ. Writes benchmarks/results/scifact_search.json.

    python benchmarks/verify_scifact_search.py [--data ../shared/data/scifact] [--index /tmp/qr/scifact-index]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from qrerank import Reranker, SearchPipeline, build_index, load_encoder
from qrerank.corpus import read_jsonl
from qrerank.eval.meta import write_results
from qrerank.index.directory import DocumentIndex

ROOT = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parents[1] / "shared" / "data" / "scifact"))
    ap.add_argument("--index", default="/tmp/qr/scifact-index")
    ap.add_argument("--out", default=str(ROOT / "results" / "scifact_search.json"))
    args = ap.parse_args()

    import sentence_transformers as st

    data = Path(args.data)
    docs = read_jsonl(data / "corpus.jsonl")
    test_ids = {line.split("\t")[0] for line in (data / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    queries = [q for q in read_jsonl(data / "queries.jsonl") if q.doc_id in test_ids]
    encoder = load_encoder("all-MiniLM-L6-v2")

    t0 = time.perf_counter()
    try:
        index = DocumentIndex.load(args.index)
        built = False
    except Exception:
        index = build_index(docs, encoder, args.index, kind="flat", show_progress=True)
        built = True
    index_s = time.perf_counter() - t0
    pipe = SearchPipeline(index, Reranker(encoder, method="cosine"))
    t0 = time.perf_counter()
    ours = [[h.doc_id for h in pipe.search(q.text, k=100, top_n=10, method="cosine")] for q in queries]
    search_ms = 1000 * (time.perf_counter() - t0) / len(queries)

    model = encoder.encoder.model  # the same weights, driven directly by sentence-transformers
    t0 = time.perf_counter()
    corpus_emb = model.encode(
        [d.content for d in docs],
        batch_size=64,
        convert_to_tensor=True,
        normalize_embeddings=True,
        show_progress_bar=True,
    )
    st_encode_s = time.perf_counter() - t0
    query_emb = model.encode([q.text for q in queries], convert_to_tensor=True, normalize_embeddings=True)
    reference = [
        [docs[r["corpus_id"]].doc_id for r in hits]
        for hits in st.util.semantic_search(query_emb, corpus_emb, top_k=10)
    ]
    mismatched = [q.doc_id for q, a, b in zip(queries, ours, reference, strict=True) if a != b]
    result = {
        "queries": len(queries),
        "docs": len(docs),
        "top10_identical": len(queries) - len(mismatched),
        "mismatched_query_ids": mismatched,
        "index_seconds": round(index_s, 1),
        "index_built_now": built,
        "index_manifest_encode_seconds": index.manifest.get("encode_seconds"),
        "search_ms_per_query": round(search_ms, 2),
        "st_reencode_seconds": round(st_encode_s, 1),
    }
    write_results(args.out, result)  # + hardware, versions and git commit (the one recorder)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
