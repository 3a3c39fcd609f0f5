"""Encoder runtimes on the CPU: torch fp32 vs onnx fp32 vs onnx-int8, in one run, same texts.

Encodes the first 512 SciFact abstracts (title + " " + text, as the corpus loader embeds them)
with the packaged all-MiniLM-L6-v2 on each runtime (uncached, batch 32, after a warm-up
batch), then 50 fresh SciFact queries one at a time (the latency of a search request's query
encode), and compares every runtime's vectors with torch's by cosine. Prints a table and writes
``benchmarks/results/encode_runtime.json`` with the hardware, versions and git commit.

Targets (issue "Fast CPU encoding"): onnx-int8 >= 2x torch's passages/s; a fresh query encode
<= 1/3 of torch's.

    python benchmarks/encode_runtime.py [--data ../shared/data/scifact] [--n 512]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from qrerank.corpus import load_corpus, read_jsonl
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.embed.onnx import default_preset
from qrerank.embed.runtime import RUNTIMES
from qrerank.eval.meta import environment, write_results

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "encode_runtime.json"
DATA = ROOT.parent.parent / "shared" / "data" / "scifact"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def measure(runtime: str, passages: list[str], queries: list[str], batch_size: int) -> dict[str, Any]:
    """Load time, passages/s, per-query latencies and the vectors of one runtime."""
    t0 = time.perf_counter()
    encoder = load_encoder(DEFAULT_MODEL, runtime=runtime, cache=False)
    load_s = time.perf_counter() - t0
    encoder.encode(passages[:batch_size], batch_size=batch_size)  # warm-up: allocators, kernels
    t0 = time.perf_counter()
    vectors = encoder.encode(passages, batch_size=batch_size)
    encode_s = time.perf_counter() - t0
    encoder.encode(["warm-up query"], batch_size=1)
    latencies = []
    query_vectors = []
    for q in queries:
        t0 = time.perf_counter()
        query_vectors.append(encoder.encode([q], batch_size=1)[0])
        latencies.append(time.perf_counter() - t0)
    return {
        "runtime": runtime,
        "load_seconds": round(load_s, 2),
        "encode_seconds": round(encode_s, 3),
        "passages_per_s": len(passages) / encode_s,
        "query_ms_median": 1000 * statistics.median(latencies),
        "query_ms_p90": 1000 * float(np.percentile(latencies, 90)),
        "_vectors": vectors,
        "_queries": np.stack(query_vectors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=DATA, help="SciFact folder (corpus.jsonl, queries.jsonl)"
    )
    parser.add_argument("--n", type=int, default=512, help="passages (default 512)")
    parser.add_argument("--queries", type=int, default=50, help="fresh queries (default 50)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    passages = [d.content for d in load_corpus(args.data)[: args.n]]
    queries = [q.text for q in read_jsonl(args.data / "queries.jsonl")[: args.queries]]
    load_before = os.getloadavg()  # other jobs on the cores change every number: record them
    rows = [measure(rt, passages, queries, args.batch_size) for rt in RUNTIMES]
    load_after = os.getloadavg()
    torch_row = rows[0]
    ref, ref_q = torch_row["_vectors"], torch_row["_queries"]
    for row in rows:
        row["speedup_vs_torch"] = row["passages_per_s"] / torch_row["passages_per_s"]
        row["query_latency_vs_torch"] = row["query_ms_median"] / torch_row["query_ms_median"]
        cos = _cosines(row.pop("_vectors"), ref)
        qcos = _cosines(row.pop("_queries"), ref_q)
        row["cosine_vs_torch"] = {
            "passages_min": float(cos.min()),
            "passages_mean": float(cos.mean()),
            "queries_min": float(qcos.min()),
            "queries_mean": float(qcos.mean()),
        }

    print(
        f"{DEFAULT_MODEL}, {len(passages)} SciFact passages (batch {args.batch_size}), {len(queries)} queries (batch 1)"
    )
    print(
        f"{'runtime':<10} {'pass/s':>8} {'x torch':>8} {'query ms':>9} {'x torch':>8} {'cos min':>8} {'cos mean':>9} {'q cos min':>9}"
    )
    for r in rows:
        c = r["cosine_vs_torch"]
        print(
            f"{r['runtime']:<10} {r['passages_per_s']:8.1f} {r['speedup_vs_torch']:8.2f} {r['query_ms_median']:9.2f} "
            f"{r['query_latency_vs_torch']:8.2f} {c['passages_min']:8.4f} {c['passages_mean']:9.5f} {c['queries_min']:9.4f}"
        )
    int8 = rows[-1]
    targets = {
        "int8_speedup_ge_2": int8["speedup_vs_torch"] >= 2.0,
        "int8_query_latency_le_one_third": int8["query_latency_vs_torch"] <= 1 / 3,
    }
    print("targets:", ", ".join(f"{k}={'met' if v else 'MISSED'}" for k, v in targets.items()))
    env = environment()
    env["versions"] |= {p: _version(p) for p in ("onnxruntime", "onnx", "sentence-transformers")}
    result = {
        "benchmark": "encode_runtime",
        "model": DEFAULT_MODEL,
        "passages": len(passages),
        "queries": len(queries),
        "batch_size": args.batch_size,
        "int8_preset": default_preset(),
        "rows": rows,
        "targets": targets,
        "load_average_1_5_15": {"before": load_before, "after": load_after},
        "environment": env,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
