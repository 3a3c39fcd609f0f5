"""What cross-request batching can gain at the encoder, before any HTTP: one call vs many.

For a burst of requests, encodes the texts once per request (what a per-request server does)
and once in a single call (what the micro-batcher does), with the packaged all-MiniLM-L6-v2,
and prints texts/s and the ratio. Small requests (a query and a few short passages) are
dominated by per-call overhead, which batching removes; requests of 100 passages are already
compute-bound batches, which batching cannot speed up on a CPU.

It then sweeps the encoder's batch size (16/32/64/128) over the texts of 6 requests of 100
passages (606 texts, ~60 words each) for torch and onnx-int8: the service's
``encode_batch_size`` default is the best of this sweep.

    python benchmarks/encode_batching.py      # writes benchmarks/results/encode_batching.json
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from qrerank.embed.models import load_encoder
from qrerank.eval.meta import environment, write_results

OUT = Path(__file__).resolve().parent / "results" / "encode_batching.json"
WORDS = [
    "the",
    "of",
    "protein",
    "cell",
    "gene",
    "study",
    "results",
    "patients",
    "treatment",
    "increased",
    "analysis",
    "data",
    "model",
    "method",
    "significant",
    "effect",
    "retrieval",
    "query",
    "passage",
    "ranking",
    "dense",
    "sparse",
    "quantum",
    "state",
    "fidelity",
]
BATCH_SIZES = (16, 32, 64, 128)
# (label, requests, passages per request, words per passage)
WORKLOADS = [
    ("query only (1 text of 8 words)", 64, 0, 0),
    ("query + 4 passages of ~10 words", 64, 4, 10),
    ("query + 10 passages of ~60 words", 32, 10, 60),
    ("query + 100 passages of ~60 words", 8, 100, 60),
]


def main() -> int:
    rng = random.Random(0)
    encoder = load_encoder("all-MiniLM-L6-v2", cache=False)

    def text(n: int) -> str:
        """``n`` words, +-5 for passages longer than 10 words."""
        n = n + rng.randint(-5, 5) if n > 10 else n
        return " ".join(rng.choice(WORDS) for _ in range(n))

    encoder.encode([text(20) for _ in range(64)])  # warm-up
    rows = []
    for label, n_req, n_docs, words in WORKLOADS:
        requests = [[text(8)] + [text(words) for _ in range(n_docs)] for _ in range(n_req)]
        texts = sum(len(r) for r in requests)
        t0 = time.perf_counter()
        for r in requests:
            encoder.encode(r)
        per_request = time.perf_counter() - t0
        t0 = time.perf_counter()
        encoder.encode([t for r in requests for t in r])
        batched = time.perf_counter() - t0
        rows.append({
            "workload": label, "requests": n_req, "texts": texts,
            "per_request_s": round(per_request, 3), "one_call_s": round(batched, 3),
            "per_request_texts_per_s": round(texts / per_request, 1),
            "one_call_texts_per_s": round(texts / batched, 1), "gain": round(per_request / batched, 2),
        })  # fmt: skip
    print("| workload | requests | texts | per-request calls: texts/s | one call: texts/s | gain |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['workload']} | {r['requests']} | {r['texts']} | {r['per_request_texts_per_s']} "
            f"| {r['one_call_texts_per_s']} | {r['gain']:.2f}x |"
        )
    sweep = batch_size_sweep([t for _ in range(6) for t in [text(8)] + [text(60) for _ in range(100)]])
    print("\n| runtime | " + " | ".join(f"batch {b}: texts/s" for b in BATCH_SIZES) + " |")
    print("|---|" + "---:|" * len(BATCH_SIZES))
    for runtime, rates in sweep.items():
        print(f"| {runtime} | " + " | ".join(f"{rates[b]:.1f}" for b in BATCH_SIZES) + " |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_results(OUT, {"rows": rows, "batch_size_sweep": sweep, "environment": environment()})
    print(f"wrote {OUT}")
    return 0


def batch_size_sweep(texts: list[str]) -> dict[str, dict[int, float]]:
    """texts/s of one ``encode`` of ``texts`` per runtime and batch size (best of 2 calls)."""
    out: dict[str, dict[int, float]] = {}
    for runtime in ("torch", "onnx-int8"):
        encoder = load_encoder("all-MiniLM-L6-v2", runtime=runtime, cache=False)
        encoder.encode(texts[:64])  # warm-up (and the one-off export)
        out[runtime] = {}
        for batch in BATCH_SIZES:
            best = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                encoder.encode(texts, batch_size=batch)
                best = min(best, time.perf_counter() - t0)
            out[runtime][batch] = round(len(texts) / best, 1)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
