"""Head latency: the QBEC compression head vs the linear baseline and the angle head, in one run.

    python benchmarks/head_latency.py            # full grid, writes benchmarks/results/head_latency.json
    python benchmarks/head_latency.py --quick    # a small grid (smoke run, a few seconds)

The paper (arXiv 2501.04591) leaves the latency of its quantum compression head open. This
script times the forward pass of each head, float32, under ``torch.inference_mode()``, with
torch's default thread count (reported), for input dims 384/768/1024, output dims 64/128/256
and batches 1..1024:

- ``linear``: tanh(Linear(in, out)), the classical baseline (``qrerank.core.linear``);
- ``qbec``: the quantum compression head (``qrerank.core.compression``), closed-form gates;
- ``angle``: MLP (hidden 512) -> rotation angles -> complex product states (``qrerank.core.angles``);
- ``bloch``: the Bloch encoding with a learnable tau (1 parameter, ``in -> in`` qubits, no
  compression): a floor, timed once per input dim since it has no output dim.

Every combination of the grid is valid for every head (QBEC needs in > out, which all of
them satisfy); none is skipped. The grid is timed in ``--rounds`` passes (default 3); in each
pass a cell gets a warm-up, then single calls until at least ``--min-calls`` (20) calls and
``--min-time`` (0.1 s) seconds. The figure reported is the median over all calls of all passes,
so a burst of load on a shared machine spoils one pass of a cell, not the cell. A second
timing ("+ score") adds scoring the batch's first output, as a query, against the whole batch
with ``qrerank.core.similarity.similarity_matrix`` (cosine for vector heads, log-fidelity for
state heads). The heads of one (in, out, batch) cell are timed back to back, so the ratios to
``linear`` come from the same minute of the same run. Inputs are seeded random unit vectors.
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from qrerank.core.head import Head
from qrerank.core.similarity import similarity_matrix
from qrerank.eval.meta import environment, write_results
from qrerank.heads.io import make_head

OUT = Path(__file__).resolve().parent / "results" / "head_latency.json"
HEADS = ("linear", "qbec", "angle")  # compared at the same (in, out, batch); linear is the baseline
FLOOR = "bloch"  # in -> in qubits, no output dim
FULL = {"in": (384, 768, 1024), "out": (64, 128, 256), "batch": (1, 8, 64, 256, 1024)}
QUICK = {"in": (384,), "out": (64,), "batch": (1, 64)}


def build_head(kind: str, in_dim: int, out_dim: int | None = None) -> Head:
    """A freshly initialised head of registry ``kind``, in eval mode (``out_dim`` unused for bloch)."""
    torch.manual_seed(0)
    head = (
        make_head(kind, in_dim=in_dim) if kind == FLOOR else make_head(kind, in_dim=in_dim, out_dim=out_dim)
    )
    return head.eval()


def grid(quick: bool = False) -> tuple[list[tuple[str, int, int]], list[str]]:
    """The (head, in, out) combinations to time, and a reason for each one left out."""
    dims = QUICK if quick else FULL
    cells, skipped = [], []
    for d_in in dims["in"]:
        for d_out in dims["out"]:
            for kind in HEADS:
                if kind == "qbec" and not d_in > d_out:
                    skipped.append(f"qbec {d_in} -> {d_out}: QBEC needs in_dim > out_dim")
                    continue
                cells.append((kind, d_in, d_out))
        cells.append((FLOOR, d_in, d_in))
    return cells, skipped


def inputs(batch: int, in_dim: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(batch * 10_000 + in_dim)
    x = torch.randn(batch, in_dim, generator=g)
    return torch.nn.functional.normalize(x, dim=-1)


def time_calls(
    fn: Callable[[], Any], min_time: float, min_calls: int, max_calls: int = 20_000
) -> list[float]:
    """ms of single calls after warm-up, until >= ``min_calls`` calls and >= ``min_time`` seconds."""
    t_warm = time.perf_counter()
    for _ in range(3):
        fn()
    while time.perf_counter() - t_warm < min(0.02, min_time):  # let allocators and caches settle
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or (time.perf_counter() - start < min_time and len(times) < max_calls):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return times


def summarise(rounds: list[list[float]]) -> dict[str, Any]:
    """Median over all calls of all rounds (the reported figure), p10/p90, each round's median."""
    ms = sorted(t for r in rounds for t in r)
    per_round = [statistics.median(r) for r in rounds]
    return {
        "ms": statistics.median(ms),
        "p10_ms": ms[len(ms) // 10],
        "p90_ms": ms[(9 * len(ms)) // 10],
        "round_medians_ms": per_round,
        "calls": len(ms),
    }


def forward_and_score(head: Head, x: torch.Tensor) -> torch.Tensor:
    out = head(x)
    return similarity_matrix(out[:1], out, head.kind)


def expected_shape(head: Head, batch: int) -> tuple[int, ...]:
    return (batch, head.out_dim) if head.kind == "vector" else (batch, head.out_dim, 2)


def run(quick: bool, rounds: int, min_time: float, min_calls: int, score: bool) -> dict[str, Any]:
    """Time every (head, in, out, batch) cell in ``rounds`` passes over the grid (so a burst of
    load on the shared machine hits one pass of a cell, not all its calls), heads of one
    (in, out, batch) back to back."""
    dims = QUICK if quick else FULL
    cells, skipped = grid(quick)
    heads = {(k, i, o): build_head(k, i, o) for k, i, o in cells}
    tasks: list[tuple[tuple[str, int, int, int], Head, torch.Tensor]] = []
    rows: dict[tuple[str, int, int, int], dict[str, Any]] = {}
    with torch.inference_mode():
        for d_in in dims["in"]:
            for batch in dims["batch"]:
                x = inputs(batch, d_in)
                for (kind, i, o), head in heads.items():
                    if i != d_in:
                        continue
                    y = head(x)
                    if tuple(y.shape) != expected_shape(head, batch):
                        raise AssertionError(f"{kind} {i}->{o}: shape {tuple(y.shape)}")
                    key = (kind, i, o, batch)
                    tasks.append((key, head, x))
                    rows[key] = {
                        "head": kind,
                        "in_dim": i,
                        "out_dim": o,
                        "batch": batch,
                        "params": head.num_parameters(),
                        "output_dtype": str(y.dtype).removeprefix("torch."),
                    }
        times: dict[tuple[Any, ...], list[list[float]]] = {}
        for rnd in range(rounds):
            t_round = time.perf_counter()
            for key, head, x in tasks:
                times.setdefault((key, "forward"), []).append(
                    time_calls(partial(head, x), min_time, min_calls)
                )
                if score:
                    times.setdefault((key, "forward_score"), []).append(
                        time_calls(partial(forward_and_score, head, x), min_time, min_calls)
                    )
            print(
                f"  round {rnd + 1}/{rounds}: {time.perf_counter() - t_round:.1f} s, load {os.getloadavg()}",
                flush=True,
            )
    for (key, what), rs in times.items():
        rows[key][what] = summarise(rs)
    out = list(rows.values())
    base = {(r["in_dim"], r["out_dim"], r["batch"]): r for r in out if r["head"] == "linear"}
    for r in out:
        if r["head"] in HEADS:
            b = base[(r["in_dim"], r["out_dim"], r["batch"])]
            r["forward_ratio_to_linear"] = r["forward"]["ms"] / b["forward"]["ms"]
            if score:
                r["forward_score_ratio_to_linear"] = r["forward_score"]["ms"] / b["forward_score"]["ms"]
    return {"grid": {k: list(v) for k, v in dims.items()}, "skipped": skipped, "rows": out}


def print_tables(rows: list[dict[str, Any]], score: bool) -> None:
    key = lambda r: (r["in_dim"], r["out_dim"], r["batch"])  # noqa: E731
    by = {(r["head"], *key(r)): r for r in rows}
    cols = ["in", "out", "batch", "linear ms", "qbec ms", "x lin", "angle ms", "x lin"]
    tables = [("forward", "forward, median ms (ratio to linear at the same in, out, batch)")]
    if score:
        tables.append(("forward_score", "forward + score 1 query vs the batch, median ms (ratio to linear)"))
    for metric, title in tables:
        print(f"\n{title}")
        print(" | ".join(f"{c:>9}" for c in cols))
        for d_in, d_out, batch in sorted({key(r) for r in rows if r["head"] == "linear"}):
            lin, q, a = (by[(h, d_in, d_out, batch)] for h in HEADS)
            cells = [d_in, d_out, batch, f"{lin[metric]['ms']:.4f}"]
            for r in (q, a):
                cells += [f"{r[metric]['ms']:.4f}", f"{r[f'{metric}_ratio_to_linear']:.2f}"]
            print(" | ".join(f"{c:>9}" for c in cells))
    print("\nbloch floor (in -> in qubits, 1 parameter), median ms")
    for r in sorted((r for r in rows if r["head"] == FLOOR), key=key):
        extra = f"  + score {r['forward_score']['ms']:.4f}" if score else ""
        print(f"  {r['in_dim']:>4} batch {r['batch']:>4}: {r['forward']['ms']:.4f}{extra}")
    print("\nparameters (trainable; qbec and bloch include the learnable tau)")
    for (h, d_in, d_out), p in sorted(
        {(r["head"], r["in_dim"], r["out_dim"]): r["params"] for r in rows}.items()
    ):
        print(f"  {h:>6} {d_in:>4} -> {d_out:<4}: {p:,}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small grid (in 384, out 64, batch 1 and 64)")
    ap.add_argument("--rounds", type=int, default=3, help="passes over the grid (default 3)")
    ap.add_argument(
        "--min-time", type=float, default=None, help="seconds per cell per pass (default 0.1, quick 0.02)"
    )
    ap.add_argument("--min-calls", type=int, default=20, help="calls per cell per pass at least (default 20)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: left as is)")
    ap.add_argument("--no-score", action="store_true", help="time the forward only")
    ap.add_argument(
        "--out", type=Path, default=None, help=f"results file (default {OUT}; quick: not written)"
    )
    args = ap.parse_args(argv)
    min_time = args.min_time if args.min_time is not None else (0.02 if args.quick else 0.1)
    score = not args.no_score
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads_note = "set by --threads" if args.threads is not None else "default"
    load_before = os.getloadavg()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads ({threads_note}), float32, load {load_before}"
    )
    t0 = time.perf_counter()
    with torch.no_grad():  # scoped: main() is also called in-process by tests, which need grad
        result = run(args.quick, max(1, args.rounds), min_time, max(1, args.min_calls), score)
    wall = time.perf_counter() - t0
    print_tables(result["rows"], score)
    load_after = os.getloadavg()
    print(f"\n{wall:.1f} s; load average before {load_before}, after {load_after}")
    payload = {
        "benchmark": "head_latency",
        "what": "head forward (and forward + scoring 1 query against the batch), float32, inference_mode",
        "timing": {
            "statistic": "median of all single calls of all passes, each pass after a warm-up",
            "passes": args.rounds,
            "min_time_s_per_pass": min_time,
            "min_calls_per_pass": args.min_calls,
        },
        "torch_threads": torch.get_num_threads(),
        "torch_threads_set": args.threads is not None,
        "torch_interop_threads": torch.get_num_interop_threads(),
        "angle_hidden": build_head("angle", 8, 4).hidden,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "wall_s": wall,
        **result,
        "environment": environment(),
    }
    out = args.out if args.out is not None else (None if args.quick else OUT)
    if out is not None:
        write_results(out, payload)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
