"""Scoring speed: the log-fidelity kernel and candidate scoring against cosine, in one run.

    python benchmarks/perf.py                 # all tables, writes benchmarks/results/perf.json
    python benchmarks/perf.py --docs 20000    # a smaller corpus (quick look)

Every timing is a median over ``--repeats`` calls after one warm-up call (the compiled kernel's
one-off compile is timed separately), each kernel interleaved call by call with its
cosine baseline (``paired_ms``), on seeded unit vectors (d = 384, MiniLM's size) encoded
at tau = 1/sqrt(d). Each row quotes its ratio to the cosine baseline of the same tensors, in
the same process. The old formula (``log_fidelity_angles``, a sine, a cosine and a log per
qubit pair) is timed beside the kernel; every fast result is checked against the float64
reference before it is timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.core.fidelity import _chunked, bloch_planes, log_fidelity_angles, log_fidelity_planes_matrix
from qrerank.eval.meta import environment, write_results
from qrerank.rerank.scoring import score_candidates

OUT = Path(__file__).resolve().parent / "results"


def median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up (and, for the compiled kernel, its compile)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def paired_ms(fns: list[Callable[[], Any]], repeats: int) -> list[float]:
    """Medians of ``fns`` timed round-robin: a baseline and its rival see the same machine state
    (a shared core's load drifts over seconds, so timing them one after the other skews ratios)."""
    for fn in fns:
        fn()  # warm-up (and, for the compiled kernel, its compile)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return [1e3 * statistics.median(ts) for ts in times]


def unit(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(n, d, generator=gen), dim=1)


def check(fast: torch.Tensor, theta_q: torch.Tensor, theta_d: torch.Tensor) -> float:
    """Largest relative error of ``fast`` against the float64 pairwise formula (first 2,000 docs)."""
    ref = _chunked(log_fidelity_angles, theta_q.double(), theta_d[:2000].double(), theta_q.shape[1], None)
    return float(((fast[:, :2000].double() - ref).abs() / ref.abs().clamp(min=1e-12)).max())


def kernel_row(
    q: torch.Tensor, docs: torch.Tensor, theta_q: torch.Tensor, theta_d: torch.Tensor, repeats: int
) -> dict[str, Any]:
    """One row: cosine vs the compiled kernel, the eager kernel and the old pairwise formula."""
    n_q, d = q.shape
    planes_q, planes_d = bloch_planes(theta_q), bloch_planes(theta_d)  # an index keeps planes_d
    t0 = time.perf_counter()
    fast = log_fidelity_planes_matrix(planes_q, planes_d, compile=True)
    compile_s = time.perf_counter() - t0
    err = check(fast, theta_q, theta_d)
    cosine = (lambda: docs @ q[0]) if n_q == 1 else (lambda: q @ docs.T)
    cos_ms, compiled = paired_ms(
        [cosine, lambda: log_fidelity_planes_matrix(planes_q, planes_d, compile=True)], repeats
    )
    # The eager path serves small matrices; at 32 queries it is timed once.
    eager = median_ms(
        lambda: log_fidelity_planes_matrix(planes_q, planes_d, compile=False), 3 if n_q == 1 else 1
    )
    old = median_ms(lambda: _chunked(log_fidelity_angles, theta_q, theta_d, d, None), 1)
    return {
        "queries": n_q, "docs": docs.shape[0], "dim": d, "cosine_ms": cos_ms, "kernel_compiled_ms": compiled,
        "kernel_eager_ms": eager, "old_formula_ms": old, "compile_s": compile_s, "max_rel_err": err,
        "compiled_vs_cosine": compiled / cos_ms, "eager_vs_cosine": eager / cos_ms, "old_vs_cosine": old / cos_ms,
    }  # fmt: skip


def kernel_table(n_docs: int, d: int, repeats: int, gen: torch.Generator) -> list[dict[str, Any]]:
    docs, queries = unit(n_docs, d, gen), unit(32, d, gen)
    tau = default_tau(d)
    theta_d, theta_q = bloch_angles(docs, tau), bloch_angles(queries, tau)
    return [kernel_row(queries[:n], docs, theta_q[:n], theta_d, repeats) for n in (1, 32)]


def candidates_table(d: int, repeats: int, gen: torch.Generator) -> list[dict[str, Any]]:
    """score_candidates per method, eager and compiled (``compile=True``), against topk(D @ q)."""
    rows = []
    tau = default_tau(d)
    for n in (100, 1000):
        docs = unit(n, d, gen)
        q = unit(1, d, gen)[0]
        angles = bloch_angles(docs, tau)
        methods = ("cosine", "fidelity", "hybrid")

        def call(method: str, compile: bool) -> Any:
            return score_candidates(q, docs, method=method, tau=tau, doc_angles=angles, compile=compile)  # noqa: B023

        t = time.perf_counter()
        call("hybrid", True)  # the one-off compile of the fused pass
        compile_s = time.perf_counter() - t
        for m in methods:  # the compiled pass must equal the eager one before it is timed
            torch.testing.assert_close(call(m, True).score, call(m, False).score, rtol=1e-4, atol=1e-5)
        # Microseconds each: timed back to back, not interleaved (a rival's call between two
        # baseline calls would evict the baseline's cached tensors and flatter the ratio).
        base = median_ms(lambda: torch.topk(docs @ q, 10), repeats * 30)  # noqa: B023
        row: dict[str, Any] = {"candidates": n, "dim": d, "topk_cosine_ms": base, "compile_s": compile_s}
        for m in methods:
            for compiled, key in ((False, m), (True, f"{m}_compiled")):
                ms = median_ms(lambda m=m, c=compiled: call(m, c), repeats * 30)
                row[f"{key}_ms"], row[f"{key}_vs_topk"] = ms, ms / base
        # What a cosine ranking pays for the log F the Reranker reports: its top 10 only.
        top = torch.arange(10)
        ms = median_ms(lambda: call("cosine", False).quantum_at(top), repeats * 30)  # noqa: B023
        row["cosine_top10_quantum_ms"], row["cosine_top10_quantum_vs_topk"] = ms, ms / base
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", type=Path, default=OUT / "perf.json")
    args = p.parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    kernel = kernel_table(args.docs, args.dim, args.repeats, gen)
    print(
        f"log-fidelity, {args.docs:,} docs x {args.dim} qubits (float32, ms; ratio to cosine of the same tensors)"
    )
    print(
        "| queries | cosine | kernel (compiled) | ratio | kernel (eager) | ratio | old formula | ratio | compile s | max rel err |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in kernel:
        print(
            f"| {r['queries']} | {r['cosine_ms']:.1f} | {r['kernel_compiled_ms']:.1f} | {r['compiled_vs_cosine']:.1f}x "
            f"| {r['kernel_eager_ms']:.1f} | {r['eager_vs_cosine']:.1f}x | {r['old_formula_ms']:.0f} | {r['old_vs_cosine']:.0f}x "
            f"| {r['compile_s']:.1f} | {r['max_rel_err']:.1e} |"
        )
    cands = candidates_table(args.dim, args.repeats, gen)
    print("\nscore_candidates, cached candidates (ms; ratio to torch.topk(D @ q, 10)); eager / compiled")
    print(
        "| candidates | topk(D @ q) | cosine | + log F of top 10 | fidelity | compiled | hybrid | compiled | compile s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in cands:
        cells = [
            f"{r[k + '_ms']:.3f} ({r[k + '_vs_topk']:.1f}x)"
            for k in (
                "cosine",
                "cosine_top10_quantum",
                "fidelity",
                "fidelity_compiled",
                "hybrid",
                "hybrid_compiled",
            )
        ]
        print(
            f"| {r['candidates']} | {r['topk_cosine_ms']:.3f} | "
            + " | ".join(cells)
            + f" | {r['compile_s']:.1f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": "python benchmarks/perf.py " + " ".join(argv or []),
        "kernel": kernel, "candidates": cands, "seconds": time.perf_counter() - t0,
        "environment": environment(),
    }  # fmt: skip
    write_results(args.out, payload)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
