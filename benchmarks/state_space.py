"""Retrieval in quantum-state space: recall and speed of ``--space angles`` against an exact scan.

    python benchmarks/state_space.py                      # SciFact + 100k synthetic
    python benchmarks/state_space.py --sizes 100000 1000000

An index of space "angles" (``qrerank index --space angles``) asks FAISS for the
``ceil(oversample * k)`` rows nearest to the query's Bloch angles in L2 (the small-angle form
of -log F) and scores them exactly. The ground truth is an exact log-fidelity scan of every
row with the fastest kernel we have (``log_fidelity_planes_matrix`` on precomputed planes).
For each corpus it reports recall@100 and recall@10 of the exact fidelity top 100 / top 10,
per-query latency (median and p99 of single-query calls, the serving case), and, as the
reference a cosine index gives, how much of the fidelity top 100 the cosine top 100 holds.

Corpora: SciFact's 5,183 abstracts (all-MiniLM-L6-v2 vectors from the embedding cache) and
synthetic corpora of n rows made from them (a random abstract's vector plus Gaussian noise of
the same norm, renormalised: clustered like real embeddings, unlike uniform random vectors).
Queries: SciFact's 300 test claims, encoded by the same model.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.core.fidelity import bloch_planes, log_fidelity_planes_matrix
from qrerank.eval.meta import write_results
from qrerank.index.build import build_index_from_embeddings
from qrerank.index.directory import DocumentIndex
from qrerank.types import Document

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "scifact"
OUT = REPO / "benchmarks" / "results"
K = 100
OVERSAMPLES = (1.0, 1.5, 2.0, 4.0)


def scifact() -> tuple[np.ndarray, np.ndarray]:
    """(abstract vectors ``[5183, 384]``, test-claim vectors ``[300, 384]``), unit float32."""
    from qrerank.corpus import load_corpus
    from qrerank.embed.models import DEFAULT_MODEL, load_encoder
    from qrerank.eval.datasets import load_dataset

    encoder = load_encoder(DEFAULT_MODEL)
    docs = load_corpus(DATA / "corpus.jsonl")
    test = load_dataset(DATA, split="test")
    emb = np.asarray(encoder.encode([d.content for d in docs]), dtype=np.float32)
    queries = np.asarray(encoder.encode(list(test.queries.values())), dtype=np.float32)
    return emb, queries


def synthetic(base: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` rows: a random row of ``base`` plus Gaussian noise of unit norm, renormalised."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, base.shape[1]), dtype=np.float32)
    for s in range(0, n, 1 << 16):
        m = min(1 << 16, n - s)
        noise = rng.standard_normal((m, base.shape[1]), dtype=np.float32) / math.sqrt(base.shape[1])
        x = base[rng.integers(0, len(base), m)] + noise
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def exact_fidelity_top(
    emb: np.ndarray, queries: np.ndarray, tau: float, k: int
) -> tuple[np.ndarray, list[float]]:
    """Exact top-k rows by log F for each query (compiled planes kernel) and ms per query."""
    planes_d = bloch_planes(bloch_angles(torch.from_numpy(emb), tau))  # an exact scan keeps these
    tops, times = [], []
    for i in range(len(queries)):
        planes_q = bloch_planes(bloch_angles(torch.from_numpy(queries[i : i + 1]), tau))
        t = time.perf_counter()
        logf = log_fidelity_planes_matrix(planes_q, planes_d)
        top = torch.topk(logf[0], k).indices
        times.append(1e3 * (time.perf_counter() - t))
        tops.append(top.numpy())
    return np.stack(tops), times[1:]  # the first call compiles


def cosine_top(emb: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """Exact cosine top-k (a flat inner-product scan) and ms per query."""
    docs = torch.from_numpy(emb)
    tops, times = [], []
    for i in range(len(queries)):
        q = torch.from_numpy(queries[i])
        t = time.perf_counter()
        top = torch.topk(docs @ q, k).indices
        times.append(1e3 * (time.perf_counter() - t))
        tops.append(top.numpy())
    return np.stack(tops), times[1:]


def timed_search(
    index: DocumentIndex, queries: np.ndarray, k: int, **kw: Any
) -> tuple[np.ndarray, list[float]]:
    """``index.search`` one query at a time: the rows found ``[Q, k]`` and ms per call."""
    rows, times = [], []
    for i in range(len(queries)):
        t = time.perf_counter()
        _, r = index.search(queries[i : i + 1], k, **kw)
        times.append(1e3 * (time.perf_counter() - t))
        rows.append(r[0])
    return np.stack(rows), times


def recall(found: np.ndarray, truth: np.ndarray, at: int) -> float:
    """Mean |found[:at] & truth[:at]| / at over queries."""
    return float(np.mean([len(set(f[:at]) & set(t[:at])) / at for f, t in zip(found, truth, strict=True)]))


def summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def search_settings(kind: str, ann: Any) -> Iterator[dict[str, int]]:
    """The FAISS search settings to measure, applied in place: the product's default first.

    hnsw: efSearch 128 (default) and 512; ivf: nprobe 16 (default) and a quarter of the lists.
    """
    if kind == "hnsw":
        values = [("ef_search", 128), ("ef_search", 512)]
    elif kind == "ivf":
        values = [("nprobe", 16), ("nprobe", max(16, ann.nlist // 4))]
    else:
        yield {}
        return
    for key, value in values:
        setattr(ann, key, value)
        ann._apply_search_params()
        yield {key: value}


def build(
    emb: np.ndarray, path: Path, kind: str, tau: float, params: dict[str, Any]
) -> tuple[DocumentIndex, float]:
    docs = [Document(doc_id=str(i), text=f"doc {i}") for i in range(len(emb))]
    t = time.perf_counter()
    index = build_index_from_embeddings(
        docs,
        emb,
        path,
        model="all-MiniLM-L6-v2",
        kind=kind,
        tau=tau,
        lexical=False,
        space="angles",
        index_params=params,
    )
    return index, time.perf_counter() - t


def angle_rows(
    name: str, emb: np.ndarray, queries: np.ndarray, tau: float, kinds: list[str], work: Path
) -> dict[str, Any]:
    """Every angle index of ``kinds`` over ``emb`` at ``tau``, each oversample, against the exact scan."""
    truth, exact_ms = exact_fidelity_top(emb, queries, tau, K)
    cos, cos_ms = cosine_top(emb, queries, K)
    result: dict[str, Any] = {
        "corpus": name,
        "docs": len(emb),
        "tau": tau,
        "queries": len(queries),
        "exact_fidelity_scan": summary(exact_ms),
        "cosine_scan": {
            **summary(cos_ms),
            "recall@100": recall(cos, truth, 100),
            "recall@10": recall(cos, truth, 10),
        },
        "angle_indexes": [],
    }
    n = len(emb)
    for kind in kinds:
        index, build_s = build(emb, work / f"{name}-{kind}-{tau}", kind, tau, {})
        ann = index.vectors
        for setting in search_settings(kind, ann):
            for over in OVERSAMPLES:
                found, times = timed_search(index, queries, K, oversample=over)
                row = {
                    "kind": kind,
                    "search": setting,
                    "oversample": over,
                    "build_s": build_s,
                    "recall@100": recall(found, truth, 100),
                    "recall@10": recall(found, truth, 10),
                    **summary(times[1:]),
                }
                row["speedup_vs_exact_p50"] = result["exact_fidelity_scan"]["p50_ms"] / row["p50_ms"]
                result["angle_indexes"].append(row)
                shown = " ".join(f"{k}={v}" for k, v in setting.items())
                print(
                    f"{name:>10} n={n:>8} tau={tau:.3f} {kind:>5} {shown:<14} x{over:<4} "
                    f"recall@100 {row['recall@100']:.4f} @10 {row['recall@10']:.4f}  p50 {row['p50_ms']:7.2f} ms  "
                    f"p99 {row['p99_ms']:7.2f} ms  ({row['speedup_vs_exact_p50']:.1f}x exact)",
                    flush=True,
                )
        index.close()
    e, c = result["exact_fidelity_scan"], result["cosine_scan"]
    print(
        f"{name:>10} n={n:>8} tau={tau:.3f} exact fidelity scan p50 {e['p50_ms']:.2f} ms; cosine scan "
        f"p50 {c['p50_ms']:.2f} ms, holds {c['recall@100']:.4f} of the fidelity top 100 ({c['recall@10']:.4f} of the top 10)",
        flush=True,
    )
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000], help="synthetic corpus sizes")
    ap.add_argument("--queries", type=int, default=300, help="test claims used as queries (max 300)")
    ap.add_argument("--out", type=Path, default=OUT / "state_space.json")
    args = ap.parse_args()
    emb, queries = scifact()
    queries = queries[: args.queries]
    tau0 = default_tau(emb.shape[1])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for tau in (tau0, tau0 / 2, 1.0):  # default, more saturated, nearly linear (fidelity ~ cosine)
            results.append(angle_rows("scifact", emb, queries, tau, ["flat", "hnsw", "ivf"], work))
        for n in args.sizes:
            results.append(
                angle_rows("synthetic", synthetic(emb, n), queries, tau0, ["flat", "hnsw", "ivf"], work)
            )
    write_results(
        args.out, {"benchmark": "state_space", "k": K, "oversamples": list(OVERSAMPLES), "rows": results}
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
