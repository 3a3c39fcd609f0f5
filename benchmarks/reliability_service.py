"""Failure isolation of ``qrerank serve`` under load: poisoned texts must fail only their request.

Each round sends ``--requests`` (default 200) concurrent Cohere-shaped ``POST /v1/rerank``
requests to a real uvicorn on 127.0.0.1 (ephemeral port, in this process). ``--poison`` (default
1%) of them carry one document with a marker text on which the encoder raises, as a real model
can on one pathological input. Concurrent requests share micro-batches, so a poisoned text
usually lands in a batch with clean requests: before the batcher retried failed batches in
halves, every one of those got a 500 too ("clean batched with poison" counts them; on the
commit before that fix, 1d7e591, one round here gave 46 clean failures out of 198).

Checked per round: clean requests that did not get a 200 with the library's ranking (target 0),
and poisoned requests that did not get a 500 ``encode_failed`` (target 0). The encoder is the
dependency-free HashingEncoder plus ``--encode-ms`` of sleep per call, standing in for a model
so that batches form; everything is bounded by ``--timeout-s`` per round.

    python benchmarks/reliability_service.py                   # 3 rounds of 200 requests
    python benchmarks/reliability_service.py --rounds 1 --poison 0.05

Writes benchmarks/results/reliability_service.json (with hardware, versions and git commit)
and prints a markdown table; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import threading
import time
from collections.abc import Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from qrerank.embed.hashing import HashingEncoder
from qrerank.eval.meta import environment, write_results
from qrerank.rerank.reranker import Reranker
from qrerank.service import Settings, create_app
from qrerank.service.server import serve_in_thread

RESULTS = Path(__file__).resolve().parent / "results" / "reliability_service.json"
MARKER = "\u2620poison\u2620"  # the encoder raises on any text containing it
SERVICE_PACKAGES = ("fastapi", "starlette", "uvicorn", "httpx", "pydantic")


class PoisonedEncoder(HashingEncoder):
    """HashingEncoder that sleeps ``delay`` s per call and raises on texts holding MARKER.

    It records, per call, the request ids (``req-N`` tokens of the queries) and whether it raised.
    """

    def __init__(self, dim: int, delay: float) -> None:
        super().__init__(dim)
        self.delay = delay
        self.calls: list[tuple[set[str], bool]] = []
        self._lock = threading.Lock()

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        time.sleep(self.delay)
        poisoned = any(MARKER in t for t in texts)
        ids = {w for t in texts for w in t.split() if w.startswith("req-")}
        with self._lock:
            self.calls.append((ids, poisoned))
        if poisoned:
            raise RuntimeError("the encoder cannot embed this text")
        return super().encode(texts)


def vocabulary() -> list[str]:
    text = (resources.files("qrerank") / "data" / "demo_corpus.jsonl").read_text(encoding="utf-8")
    return sorted({w.strip(".,;:()\"'").lower() for w in text.split() if w.isalpha()})


def make_requests(
    rng: random.Random, words: list[str], n: int, poison: float, docs: int
) -> list[tuple[dict[str, Any], bool]]:
    """``n`` request bodies, ``round(n * poison)`` (at least 1 if poison > 0) of them poisoned."""
    n_bad = max(1, round(n * poison)) if poison > 0 else 0
    bad = set(rng.sample(range(n), n_bad))
    out = []
    for i in range(n):
        query = f"req-{i} " + " ".join(rng.choices(words, k=4))
        documents = [" ".join(rng.choices(words, k=30)) for _ in range(docs)]
        if i in bad:
            documents[rng.randrange(docs)] += f" {MARKER}"
        out.append(({"query": query, "documents": documents}, i in bad))
    return out


async def send_all(url: str, bodies: list[dict[str, Any]], timeout: float) -> list[tuple[int, Any, float]]:
    """POST every body at once; ``(status, json, seconds)`` each (status 0: transport error)."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[int, Any, float]:
        t0 = time.perf_counter()
        try:
            resp = await client.post("/v1/rerank", json=body)
            return resp.status_code, resp.json(), time.perf_counter() - t0
        except (httpx.HTTPError, ValueError) as exc:
            return 0, {"type": type(exc).__name__}, time.perf_counter() - t0

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        return await asyncio.wait_for(asyncio.gather(*(one(client, b) for b in bodies)), timeout)


def run_round(
    url: str,
    encoder: PoisonedEncoder,
    reference: Reranker,
    workload: list[tuple[dict[str, Any], bool]],
    timeout: float,
) -> dict[str, Any]:
    encoder.calls.clear()
    t0 = time.perf_counter()
    answers = asyncio.run(send_all(url, [body for body, _ in workload], timeout))
    seconds = time.perf_counter() - t0
    clean_failed: dict[str, int] = {}
    wrong_ranking = poisoned_errored = 0
    poisoned_wrong: dict[str, int] = {}
    for (body, bad), (status, data, _) in zip(workload, answers, strict=True):
        if bad:
            if status == 500 and data.get("type") == "encode_failed":
                poisoned_errored += 1
            else:
                poisoned_wrong[str(status)] = poisoned_wrong.get(str(status), 0) + 1
        elif status != 200:
            clean_failed[str(status)] = clean_failed.get(str(status), 0) + 1
        else:
            expected = [h.index for h in reference.rank(body["query"], body["documents"])]
            wrong_ranking += [r["index"] for r in data["results"]] != expected
    clean_ids = {body["query"].split()[0] for body, bad in workload if not bad}
    exposed = set().union(*(ids for ids, raised in encoder.calls if raised)) & clean_ids
    latencies = sorted(s for _, _, s in answers)
    return {
        "requests": len(workload),
        "clean": len(clean_ids),
        "poisoned": sum(bad for _, bad in workload),
        "clean_failed": sum(clean_failed.values()),
        "clean_failed_by_status": clean_failed,
        "clean_wrong_ranking": wrong_ranking,
        "poisoned_errored": poisoned_errored,
        "poisoned_not_errored_by_status": poisoned_wrong,
        "clean_batched_with_poison": len(exposed),
        "encode_calls": len(encoder.calls),
        "encode_calls_failed": sum(raised for _, raised in encoder.calls),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
        "seconds": round(seconds, 2),
    }


def table(rows: list[dict[str, Any]]) -> str:
    cols = [
        ("round", "round"),
        ("requests", "requests"),
        ("poisoned", "poisoned"),
        ("clean failed", "clean_failed"),
        ("clean wrong ranking", "clean_wrong_ranking"),
        ("poisoned -> 500 encode_failed", "poisoned_errored"),
        ("clean batched with poison", "clean_batched_with_poison"),
        ("encode calls (failed)", "calls"),
        ("p50 ms", "p50_ms"),
        ("p99 ms", "p99_ms"),
        ("s", "seconds"),
    ]
    lines = ["| " + " | ".join(c for c, _ in cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        row = {**row, "calls": f"{row['encode_calls']} ({row['encode_calls_failed']})"}
        lines.append("| " + " | ".join(str(row[k]) for _, k in cols) + " |")
    return "\n".join(lines)


def passed(row: dict[str, Any]) -> bool:
    return (
        row["clean_failed"] == 0
        and row["clean_wrong_ranking"] == 0
        and row["poisoned_errored"] == row["poisoned"]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=200, help="concurrent requests per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--poison", type=float, default=0.01, help="fraction of poisoned requests")
    p.add_argument("--docs", type=int, default=20, help="documents per request")
    p.add_argument("--dim", type=int, default=256, help="HashingEncoder dimension")
    p.add_argument("--encode-ms", type=float, default=5.0, help="sleep per encode call (a stand-in model)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="the server's micro-batch wait")
    p.add_argument("--timeout-s", type=float, default=60.0, help="bound on each round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--verbose", action="store_true", help="show the server's log of each failure")
    args = p.parse_args(argv)
    if not args.verbose:  # every poisoned batch logs its bisection and a traceback: expected here
        logging.getLogger("qrerank.service").setLevel(logging.CRITICAL)

    encoder = PoisonedEncoder(args.dim, args.encode_ms / 1000.0)
    settings = Settings(max_wait_ms=args.max_wait_ms, max_queue=max(256, 2 * args.requests))
    reference = Reranker(HashingEncoder(args.dim))
    rng, words = random.Random(args.seed), vocabulary()
    rows = []
    t0 = time.perf_counter()
    with serve_in_thread(create_app(settings, Reranker(encoder)), log_level="critical") as url:
        for r in range(args.rounds):
            workload = make_requests(rng, words, args.requests, args.poison, args.docs)
            rows.append({"round": r + 1, **run_round(url, encoder, reference, workload, args.timeout_s)})
    ok = all(passed(row) for row in rows)
    report = {
        "benchmark": "reliability_service",
        "what": "concurrent /v1/rerank with poisoned inputs; clean requests must all succeed",
        "settings": {k: v for k, v in vars(args).items() if k != "out"}
        | {"server_max_wait_ms": settings.max_wait_ms, "server_max_batch": settings.max_batch},
        "rounds": rows,
        "pass": ok,
        "total_seconds": round(time.perf_counter() - t0, 1),
        "environment": environment(),
        "service_versions": {pkg: metadata.version(pkg) for pkg in SERVICE_PACKAGES},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, report)
    print(table(rows))
    print(f"\n{'PASS' if ok else 'FAIL'}: wrote {args.out} in {report['total_seconds']} s")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
