"""Encoding on Ray actors vs the single-process path: documents/s with 1 and 2 actors, one run.

Encodes the first 512 SciFact abstracts (title + " " + text, as the corpus loader embeds them)
with the packaged all-MiniLM-L6-v2 (torch fp32, uncached, batch 32): once in this process
(after a warm-up batch), then with :class:`~qrerank.embed.ray.RayEncoder` on a local Ray with
1 and 2 encoder actors (1 CPU and 1 torch thread each; shards of 64). A Ray row is the wall
time of ``encode`` as ``qrerank index --ray`` pays it: actor start and model load included.
Each Ray row is preceded by a job of one 1-text shard per actor on a fresh pool of the same
size, whose wall time is that fixed cost; ``steady docs/s`` divides by the time beyond it. Prints a table and writes
``benchmarks/results/ray_encode.json`` with hardware, versions, git commit and load average.

    python benchmarks/ray_encode.py [--data ../shared/data/scifact] [--n 512]
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from qrerank import _ray
from qrerank.corpus import load_corpus
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.embed.ray import RayEncoder
from qrerank.eval.meta import environment, write_results

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "results" / "ray_encode.json"
DATA = ROOT.parent.parent / "shared" / "data" / "scifact"
SHARD = 64


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def local(passages: list[str], batch_size: int) -> tuple[dict[str, Any], np.ndarray]:
    """The single-process path: load, warm up, encode everything."""
    import torch

    encoder = load_encoder(DEFAULT_MODEL, device="cpu", cache=False)
    encoder.encode(passages[:batch_size], batch_size=batch_size)
    t0 = time.perf_counter()
    vectors = encoder.encode(passages, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    row = {"path": "single process", "actors": 0, "torch_threads": torch.get_num_threads()}
    return row | {"seconds": round(seconds, 2), "docs_per_s": len(passages) / seconds}, vectors


def on_ray(passages: list[str], actors: int, batch_size: int) -> tuple[dict[str, Any], np.ndarray]:
    """RayEncoder with ``actors`` actors: a near-empty job (the fixed cost), then all the passages."""
    load = functools.partial(load_encoder, DEFAULT_MODEL, device="cpu", cache=False)
    # The fixed cost: a job of one 1-text shard per actor (start the pool, load the model, go).
    t0 = time.perf_counter()
    RayEncoder(load, actors=actors, shard_size=1).encode(passages[:actors], batch_size=batch_size)
    fixed = time.perf_counter() - t0
    encoder = RayEncoder(load, actors=actors, shard_size=SHARD)
    t0 = time.perf_counter()
    vectors = encoder.encode(passages, batch_size=batch_size)
    seconds = time.perf_counter() - t0
    steady = len(passages) / max(seconds - fixed, 1e-9)
    row = {"path": f"Ray, {actors} actor{'s' if actors > 1 else ''}", "actors": actors, "torch_threads": 1}
    return row | {
        "seconds": round(seconds, 2),
        "docs_per_s": len(passages) / seconds,
        "fixed_cost_seconds": round(fixed, 2),
        "steady_docs_per_s": steady,
    }, vectors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="SciFact folder (corpus.jsonl)")
    parser.add_argument("--n", type=int, default=512, help="passages (default 512)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    passages = [d.content for d in load_corpus(args.data)[: args.n]]
    load_before = os.getloadavg()  # other jobs on the cores change every number: record them
    base, ref = local(passages, args.batch_size)
    ray = _ray.connect(_ray.AUTO)  # a local Ray on loopback unless a cluster runs here
    rows = [base]
    for actors in (1, 2):
        row, vectors = on_ray(passages, actors, args.batch_size)
        row["max_abs_diff_vs_single_process"] = float(np.abs(vectors - ref).max())
        rows.append(row)
    load_after = os.getloadavg()
    for row in rows:
        row["ratio_vs_single_process"] = row["docs_per_s"] / base["docs_per_s"]
    ray_cpus = ray.cluster_resources().get("CPU")

    print(
        f"{DEFAULT_MODEL} torch fp32, {len(passages)} SciFact passages, batch {args.batch_size}, shards of {SHARD}"
    )
    print(
        f"{'path':<16} {'threads':>7} {'seconds':>8} {'docs/s':>7} {'x single':>8} {'fixed s':>9} {'steady/s':>8}"
    )
    for r in rows:
        fixed = f"{r['fixed_cost_seconds']:9.1f}" if "fixed_cost_seconds" in r else f"{'-':>9}"
        steady = f"{r['steady_docs_per_s']:8.1f}" if "steady_docs_per_s" in r else f"{'-':>8}"
        print(
            f"{r['path']:<16} {r['torch_threads']:>7} {r['seconds']:8.1f} {r['docs_per_s']:7.1f} "
            f"{r['ratio_vs_single_process']:8.2f} {fixed} {steady}"
        )
    print(f"load average before {load_before}, after {load_after}")
    env = environment()
    env["versions"] |= {p: _version(p) for p in ("ray", "sentence-transformers")}
    result = {
        "benchmark": "ray_encode",
        "model": DEFAULT_MODEL,
        "runtime": "torch",
        "passages": len(passages),
        "batch_size": args.batch_size,
        "shard_size": SHARD,
        "ray_cluster_cpus": ray_cpus,
        "rows": rows,
        "load_average_1_5_15": {"before": load_before, "after": load_after},
        "environment": env,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
