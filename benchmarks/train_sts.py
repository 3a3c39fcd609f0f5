"""STS-B train -> test: do trained heads track graded human similarity better than cosine?

    python benchmarks/train_sts.py                 # QB-tau, BFEC, QBFEC; 5 seeds; MiniLM frozen

Each head trains on STS-B train as retrieval (``qrerank train`` on the STS-B folder: every
``sentence1`` with a pair scored >= 4 is a query, its partner the positive, pairs scored <= 1
judged negatives, the rest mined from all ``sentence2``), keeps its best epoch on validation
nDCG@10, and is then scored on STS-B test by the Spearman correlation of its similarity with the
gold scores (``qrerank eval --protocol sts --methods head:PATH``). Reports mean +- SE over seeds
and, per seed, whether the paired bootstrap 95% CI of the Spearman difference vs cosine
excludes zero. Writes ``benchmarks/results/train/sts.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.eval.meta import environment
from qrerank.eval.sts import evaluate_sts
from qrerank.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "stsb"
OUT = Path(__file__).resolve().parent / "results" / "train"
METHODS = {"QB-tau": "none", "QB-rot": "rotation", "BFEC": "linear", "QBFEC": "qbec"}
LR = {"none": 0.01, "rotation": 1e-3, "linear": 1e-3, "qbec": 1e-3}
DEFAULT_METHODS = "QB-tau,BFEC,QBFEC"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA, help="STS-B folder (sts-train.tsv, sts-test.tsv)")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument(
        "--methods", default=DEFAULT_METHODS, help="comma-separated subset of " + ",".join(METHODS)
    )
    p.add_argument("--out-dim", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples per head")
    p.add_argument("--tag", default="", help="suffix of the result files (sts{TAG}.json, .md)")
    args = p.parse_args(argv)
    names = args.methods.split(",")
    if set(names) - set(METHODS):
        p.error(f"unknown methods {sorted(set(names) - set(METHODS))}")

    t0 = time.perf_counter()
    encoder = load_encoder(DEFAULT_MODEL)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        dirs: dict[str, dict[str, Any]] = {}  # head folder name -> its run record
        for name in names:
            head = METHODS[name]
            for seed in range(args.seeds):
                out = Path(tmp) / f"{name}-s{seed}"
                config = TrainConfig(
                    head=head, out_dim=args.out_dim, split="train", seed=seed, epochs=args.epochs,
                    lr=LR[head], model=DEFAULT_MODEL, patience=2,
                )  # fmt: skip
                result = train(args.data, config, out, encoder=encoder)
                print(
                    f"  {name:7s} seed={seed}: val nDCG@10 {result.best_val_ndcg10:.4f} "
                    f"(epoch {result.best_epoch}/{result.epochs_run}, {result.train_seconds:.1f}s)",
                    flush=True,
                )
                dirs[out.name] = {
                    "method": name, "seed": seed, "head": head, "val_ndcg@10": result.best_val_ndcg10,
                    "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                    "seconds": result.train_seconds, "parameters": result.trainable_parameters,
                }  # fmt: skip
                runs.append(dirs[out.name])
        res = evaluate_sts(
            args.data, encoder=encoder, split="test", tune_split="dev", n_resamples=args.bootstrap,
            show_progress=False, heads=[Path(tmp) / d for d in dirs],
        )  # fmt: skip
    for key, r in dirs.items():
        r["spearman"] = res["metrics"][f"head:{key}"]["spearman"]
        r["pearson"] = res["metrics"][f"head:{key}"]["pearson"]
        r["vs_cosine"] = res["spearman_diff_vs_cosine"][f"head:{key}"]

    m = res["metrics"]
    tau = res["meta"]["tuning"]["tau"]
    lines = [
        f"STS-B test ({res['meta']['n_pairs']} pairs), {DEFAULT_MODEL}; heads trained on STS-B train, "
        f"{args.seeds} seeds, out dim {args.out_dim}; tau of untrained fidelity chosen on dev",
        "",
        "| method | trainable params | Spearman x100 (mean ± SE) | Δ vs cosine | seeds with CI > 0 / < 0 | s/run |",
        "|---|---:|---:|---:|---:|---:|",
        f"| cosine (untrained) | 0 | {100 * m['cosine']['spearman']:.2f} | | | |",
        f"| fidelity (untrained, τ={tau:.3g}) | 0 | {100 * m['fidelity']['spearman']:.2f} | "
        f"{100 * res['spearman_diff_vs_cosine']['fidelity']['diff']:+.2f} | | |",
    ]
    summary = []
    for name in names:
        rs = [r for r in runs if r["method"] == name]
        xs = np.array([r["spearman"] for r in rs])
        se = float(xs.std(ddof=1) / np.sqrt(len(xs))) if len(xs) > 1 else float("nan")
        up = sum(r["vs_cosine"]["ci_low"] > 0 for r in rs)
        down = sum(r["vs_cosine"]["ci_high"] < 0 for r in rs)
        diff = float(np.mean([r["vs_cosine"]["diff"] for r in rs]))
        secs = float(np.mean([r["seconds"] for r in rs]))
        summary.append({"method": name, "spearman": float(xs.mean()), "se": se, "diff": diff, "ci_up": up,
                        "ci_down": down, "parameters": rs[0]["parameters"], "seconds": secs})  # fmt: skip
        lines.append(
            f"| {name} | {rs[0]['parameters']:,} | {100 * xs.mean():.2f} ± {100 * se:.2f} | {100 * diff:+.2f} "
            f"| {up} / {down} of {len(rs)} | {secs:.1f} |"
        )
    table = "\n".join(lines)
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"sts{args.tag}.md").write_text(table + "\n")
    payload = {
        "command": "python benchmarks/train_sts.py " + " ".join(argv or sys.argv[1:]),
        "cosine": m["cosine"], "fidelity": m["fidelity"], "tau": tau, "summary": summary, "runs": runs,
        "seconds": time.perf_counter() - t0, "environment": environment(),
    }  # fmt: skip
    (OUT / f"sts{args.tag}.json").write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print(f"wrote {OUT / f'sts{args.tag}.json'} ({payload['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
