"""End-to-end search latency: a fresh query through ``SearchPipeline.search`` at 10k to 1M docs.

    python benchmarks/e2e_latency.py                          # 10k and 100k
    python benchmarks/e2e_latency.py --sizes 10000 100000 1000000
    python benchmarks/e2e_latency.py --sizes 100000 --profile # + a cProfile of 200 queries

Each query is one call of ``SearchPipeline.search(text, k=100, top_n=10)`` with the default
method (hybrid): encode the query (uncached, all-MiniLM-L6-v2 on ``--runtime``, default
onnx-int8), first-stage top 100 from the index, rerank them from the stored embeddings, fetch
the 10 texts from SQLite. Queries are SciFact's 300 test claims, each encoded once (no
embedding cache). Per index kind it reports p50 and p99 over the queries after 5 warm-up calls,
and recall@10: the share of flat's top 10 (for the angle index: of the exact flat angle index's
top 10) that the index returns.

Corpora are synthetic beyond SciFact's 5,183 abstracts: each row a random abstract's
all-MiniLM-L6-v2 vector plus Gaussian noise of the same norm, renormalised
(``state_space.synthetic``); texts are short placeholders. Index kinds: flat (exact cosine
over the memory-mapped matrix), hnsw (M 32, efSearch 128), ivf (nlist ~4 sqrt(n) capped at
n/39, nprobe 16: the product's defaults) and "angles" (an hnsw index of space angles, the
first stage by fidelity).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from state_space import DATA, OUT, scifact, synthetic

from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.eval.meta import write_results
from qrerank.index.build import build_index_from_embeddings
from qrerank.index.directory import DocumentIndex
from qrerank.rerank.pipeline import SearchPipeline
from qrerank.rerank.reranker import Reranker
from qrerank.types import Document

PUBLIC_QUANTUM_MS = 268.0  # the public quantum reranker's reported best per-query latency
KINDS = {  # name: (kind, space)
    "flat": ("flat", "cosine"),
    "hnsw": ("hnsw", "cosine"),
    "ivf": ("ivf", "cosine"),
    "angles": ("hnsw", "angles"),
    "angles-flat": ("flat", "angles"),  # the exact reference of "angles" (recall only)
}


def build(emb: np.ndarray, path: Path, kind: str, space: str, runtime: str) -> tuple[DocumentIndex, float]:
    docs = [Document(doc_id=str(i), text=f"passage {i}") for i in range(len(emb))]
    t = time.perf_counter()
    index = build_index_from_embeddings(
        docs, emb, path, model=DEFAULT_MODEL, runtime=runtime, kind=kind, space=space, lexical=False
    )
    return index, time.perf_counter() - t


def run_queries(pipe: SearchPipeline, texts: list[str]) -> tuple[list[float], list[list[str]]]:
    """ms per search and the top-10 ids of each query, after 5 warm-up searches."""
    for text in texts[:5]:
        pipe.search(text + " (warm-up)", k=100, top_n=10)
    times, tops = [], []
    for text in texts:
        t = time.perf_counter()
        hits = pipe.search(text, k=100, top_n=10)
        times.append(1e3 * (time.perf_counter() - t))
        tops.append([h.doc_id for h in hits])
    return times, tops


def pct(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def encode_only(encoder: Any, texts: list[str]) -> list[float]:
    """ms to encode each query alone (the floor under every search)."""
    times = []
    for text in texts:
        t = time.perf_counter()
        encoder.encode([text + " (encode only)"])
        times.append(1e3 * (time.perf_counter() - t))
    return times


def profile(pipe: SearchPipeline, texts: list[str]) -> list[dict[str, Any]]:
    """cProfile of the searches: the top functions by their own time."""
    prof = cProfile.Profile()
    prof.enable()
    for text in texts:
        pipe.search(text + " (profiled)", k=100, top_n=10)
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:12]  # type: ignore[attr-defined]
    return [
        {
            "function": f"{Path(f).name}:{line}:{name}",
            "own_ms_per_query": 1e3 * v[2] / len(texts),
            "share": v[2] / total,
        }
        for (f, line, name), v in rows
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--runtime", default="onnx-int8")
    ap.add_argument("--kinds", nargs="*", default=list(KINDS))
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--profile", action="store_true", help="cProfile 200 searches on the largest hnsw index")
    ap.add_argument("--out", type=Path, default=OUT / "e2e_latency.json")
    args = ap.parse_args()
    base, _ = scifact()
    from qrerank.eval.datasets import load_dataset

    texts = list(load_dataset(DATA, split="test").queries.values())[: args.queries]
    encoder = load_encoder(DEFAULT_MODEL, runtime=args.runtime, cache=False)
    reranker = Reranker(encoder)
    enc_ms = encode_only(encoder, texts)
    print(
        f"query encode alone ({args.runtime}): p50 {statistics.median(enc_ms):.2f} ms, p99 {pct(enc_ms, 0.99):.2f} ms"
    )
    rows: list[dict[str, Any]] = []
    prof: list[dict[str, Any]] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            emb = synthetic(base, n)
            tops: dict[str, list[list[str]]] = {}
            for name in args.kinds:
                kind, space = KINDS[name]
                index, build_s = build(emb, Path(tmp) / f"{n}-{name}", kind, space, args.runtime)
                pipe = SearchPipeline(index, reranker)
                times, tops[name] = run_queries(pipe, texts)
                row = {
                    "docs": n,
                    "index": name,
                    "kind": kind,
                    "space": space,
                    "build_s": build_s,
                    "p50_ms": statistics.median(times),
                    "p99_ms": pct(times, 0.99),
                    "vs_public_quantum_268ms": PUBLIC_QUANTUM_MS / statistics.median(times),
                }
                rows.append(row)
                print(
                    f"n={n:>8} {name:>11}: p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
                    f"build {build_s:6.1f} s  {row['vs_public_quantum_268ms']:.0f}x faster than 268 ms",
                    flush=True,
                )
                if args.profile and n == max(args.sizes) and name == "hnsw":
                    prof = profile(pipe, texts[:200])
                index.close()
            del emb
            for row in rows:
                ref = "angles-flat" if row["space"] == "angles" else "flat"
                if row["docs"] == n and ref in tops:
                    found, truth = tops[row["index"]], tops[ref]
                    row["recall@10_vs"] = ref
                    row["recall@10"] = float(
                        np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
                    )
                    print(f"n={n:>8} {row['index']:>11}: recall@10 {row['recall@10']:.3f} of {ref}'s top 10")
    if prof:
        print("profile (hnsw, largest size), own time per query:")
        for p in prof:
            print(f"  {p['own_ms_per_query']:6.3f} ms  {100 * p['share']:5.1f}%  {p['function']}")
    write_results(
        args.out,
        {
            "benchmark": "e2e_latency",
            "runtime": args.runtime,
            "queries": len(texts),
            "k": 100,
            "top_n": 10,
            "method": reranker.method,
            "encode_only": {"p50_ms": statistics.median(enc_ms), "p99_ms": pct(enc_ms, 0.99)},
            "rows": rows,
            "profile": prof,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
