"""Closed form vs Qiskit vs PennyLane: time to score candidates, and shots needed to rank them.

    PYTHONPATH=. python benchmarks/quantum_backends.py [--dims 8 16] [--shots 64 256 ...]

For each dimension d (= qubits) one query and ``--candidates`` documents are scored by every
backend in the same run; times are medians over ``--repeats`` and reported as ratios to the
closed form. Then, for each shot count, the Kendall tau between the shot-estimated and the exact
log-fidelities over the candidates (mean over ``--queries`` queries) tells how many shots a
ranking needs. Candidates are unit vectors q + sigma * noise with sigma in [0.2, 1.5], the spread
of similarities a first-stage retriever hands to a reranker; tau = 1/sqrt(d).

Writes a markdown table to stdout and JSON (with hardware and package versions) to ``--out``.
Requires the extras [qiskit] and [pennylane], plus scipy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from scipy.stats import kendalltau

from qrerank.core import bloch_angles, default_tau
from qrerank.eval.meta import environment, write_results
from qrerank.quantum import pennylane as pq
from qrerank.quantum import score_log_fidelity
from qrerank.quantum.product import DEFAULT_BLOCK

PACKAGES = ("torch", "numpy", "scipy", "qiskit", "qiskit-aer", "pennylane", "pennylane-lightning")
RESULTS = Path(__file__).parent / "results" / "quantum_backends.json"
TARGETS = (0.9, 0.95, 0.98)


def candidates(d: int, n_docs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A unit query ``[d]`` and ``[n_docs, d]`` unit documents at graded distances from it."""
    g = torch.Generator().manual_seed(seed)
    q = torch.nn.functional.normalize(torch.randn(d, generator=g, dtype=torch.float64), dim=0)
    sigma = 0.2 + 1.3 * torch.rand(n_docs, 1, generator=g, dtype=torch.float64)
    noise = torch.randn(n_docs, d, generator=g, dtype=torch.float64) / d**0.5
    return q, torch.nn.functional.normalize(q + sigma * noise, dim=1)


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm-up: imports, device construction, JIT caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing(d: int, n_docs: int, repeats: int, shots: int, seed: int) -> dict[str, float]:
    q, docs = candidates(d, n_docs, seed)
    tau = default_tau(d)

    def lightning() -> torch.Tensor:
        theta_q, theta_d = bloch_angles(q, tau), bloch_angles(docs, tau)
        return pq.log_fidelity(theta_q, theta_d, device="lightning.qubit")

    runs: dict[str, Callable[[], Any]] = {
        "closed-form": lambda: score_log_fidelity(q, docs, tau, "closed-form"),
        "qiskit (statevector)": lambda: score_log_fidelity(q, docs, tau, "qiskit"),
        "pennylane default.qubit": lambda: score_log_fidelity(q, docs, tau, "pennylane"),
        "pennylane lightning.qubit": lightning,
        f"qiskit aer, {shots} shots": lambda: score_log_fidelity(q, docs, tau, "qiskit", shots, seed=seed),
        f"pennylane default.qubit, {shots} shots": lambda: score_log_fidelity(
            q, docs, tau, "pennylane", shots, seed=seed
        ),
    }
    return {
        name: median_seconds(fn, repeats if name != "closed-form" else 50 * repeats)
        for name, fn in runs.items()
    }


def ranking_agreement(
    d: int, n_docs: int, shots_list: list[int], n_queries: int, seed: int, block_sizes: list[int]
) -> list[dict[str, Any]]:
    rows = []
    for backend in ("qiskit", "pennylane"):
        for block_size in block_sizes:
            for shots in shots_list:
                taus, errors = [], []
                for k in range(n_queries):
                    q, docs = candidates(d, n_docs, seed + 1000 * k)
                    tau = default_tau(d)
                    exact = score_log_fidelity(q, docs, tau, "closed-form")
                    est = score_log_fidelity(
                        q, docs, tau, backend, shots, seed=seed + k, block_size=block_size
                    )
                    taus.append(float(kendalltau(exact.numpy(), est.numpy()).statistic))
                    errors.append(float((est - exact).abs().mean()))
                rows.append(
                    {
                        "backend": backend,
                        "dims": d,
                        "block_size": block_size,
                        "shots": shots,
                        "kendall_tau_mean": statistics.fmean(taus),
                        "kendall_tau_min": min(taus),
                        "mean_abs_log_f_error": statistics.fmean(errors),
                    }
                )
    return rows


def shots_needed(rows: list[dict[str, Any]], targets: tuple[float, ...]) -> list[dict[str, Any]]:
    """Smallest shot count whose mean Kendall tau reaches each target, per configuration."""
    out: dict[tuple[str, int, int], dict[str, Any]] = {}
    for r in sorted(rows, key=lambda r: r["shots"]):
        key = (r["backend"], r["dims"], r["block_size"])
        entry = out.setdefault(
            key,
            {"backend": key[0], "dims": key[1], "block_size": key[2]} | {f"tau>={t}": None for t in targets},
        )
        for t in targets:
            if entry[f"tau>={t}"] is None and r["kendall_tau_mean"] >= t:
                entry[f"tau>={t}"] = r["shots"]
    return list(out.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shots", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--timing-shots", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--block-sizes", type=int, nargs="+", default=[1, DEFAULT_BLOCK])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    env = environment(PACKAGES)
    print(f"# Quantum backends: {args.candidates} candidates, one query\n")
    load = env["load_average_1_5_15min"][0]
    print(f"{env['platform']}, {env['cpu_count']} CPUs (load {load:.1f}), ", end="")
    print(f"Python {env['python']}; ", end="")
    print(", ".join(f"{k} {env['versions'][k]}" for k in PACKAGES) + "\n")

    timings: dict[int, dict[str, float]] = {}
    print(f"## Time to score {args.candidates} candidates (median of {args.repeats})\n")
    print("| dims (qubits) | backend | ms | x closed form |")
    print("|---|---|---:|---:|")
    for d in args.dims:
        timings[d] = timing(d, args.candidates, args.repeats, args.timing_shots, args.seed)
        base = timings[d]["closed-form"]
        for name, seconds in timings[d].items():
            print(f"| {d} | {name} | {1e3 * seconds:.3f} | {seconds / base:,.0f} |")

    agreement = []
    print(f"\n## Ranking agreement with the exact scores (mean over {args.queries} queries)\n")
    print("| backend | dims | block | shots | Kendall tau (mean) | (min) | mean abs log-F error |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for d in args.dims:
        rows = ranking_agreement(d, args.candidates, args.shots, args.queries, args.seed, args.block_sizes)
        agreement += rows
        for r in rows:
            print(
                f"| {r['backend']} | {r['dims']} | {r['block_size']} | {r['shots']} | "
                f"{r['kendall_tau_mean']:.3f} | {r['kendall_tau_min']:.3f} | "
                f"{r['mean_abs_log_f_error']:.3f} |"
            )

    needed = shots_needed(agreement, TARGETS)
    print("\n## Shots per block needed for a mean Kendall tau of at least ...\n")
    print("| backend | dims | block | " + " | ".join(f"tau >= {t}" for t in TARGETS) + " |")
    print("|---|---:|---:|" + "---:|" * len(TARGETS))
    for row in needed:
        cells = " | ".join(str(row[f"tau>={t}"] or f"> {max(args.shots)}") for t in TARGETS)
        print(f"| {row['backend']} | {row['dims']} | {row['block_size']} | {cells} |")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": {k: (os.path.relpath(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": env,
        "timing_seconds": {str(d): t for d, t in timings.items()},
        "ranking_agreement": agreement,
        "shots_needed": needed,
    }
    write_results(args.out, payload)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
