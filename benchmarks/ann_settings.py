"""HNSW search width: recall@10 and search time by efSearch, to choose the default.

    python benchmarks/ann_settings.py --sizes 100000 1000000

Builds one HNSW index (M 32, space cosine) per corpus size over synthetic rows made from
SciFact's all-MiniLM-L6-v2 vectors (``state_space.synthetic``) and searches it with each
efSearch for SciFact's 300 test-claim vectors, k = 100 (the first stage of a search). recall@10
and recall@100 are against the exact cosine top k (a matmul over every row); time is the FAISS
search alone, per single query (p50). Writes ``benchmarks/results/ann_settings.json``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from state_space import OUT, recall, scifact, synthetic, timed_search

from qrerank.eval.meta import write_results
from qrerank.index.build import build_index_from_embeddings
from qrerank.types import Document

EF = (64, 128, 256, 512, 1024)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--out", type=Path, default=OUT / "ann_settings.json")
    args = ap.parse_args()
    base, queries = scifact()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            emb = synthetic(base, n)
            truth = torch.topk(torch.from_numpy(queries) @ torch.from_numpy(emb).T, 100).indices.numpy()
            docs = [Document(doc_id=str(i), text="") for i in range(n)]
            t = time.perf_counter()
            index = build_index_from_embeddings(
                docs, emb, Path(tmp) / str(n), model="all-MiniLM-L6-v2", kind="hnsw", lexical=False
            )
            build_s = time.perf_counter() - t
            ann: Any = index.vectors
            for ef in EF:
                ann.ef_search = ef
                ann._apply_search_params()
                got, times = timed_search(index, queries, 100)
                row = {
                    "docs": n,
                    "ef_search": ef,
                    "build_s": build_s,
                    "recall@10": recall(got, truth, 10),
                    "recall@100": recall(got, truth, 100),
                    "p50_ms": statistics.median(times[1:]),
                }
                rows.append(row)
                print(
                    f"n={n:>8} efSearch {ef:>5}: recall@10 {row['recall@10']:.4f} recall@100 "
                    f"{row['recall@100']:.4f} search p50 {row['p50_ms']:.2f} ms (build {build_s:.0f} s)",
                    flush=True,
                )
            index.close()
    write_results(args.out, {"benchmark": "ann_settings", "k": 100, "m": 32, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
