"""Pseudo-relevance feedback on SciFact: a mixed-state quantum query vs Rocchio, label-free.

    python benchmarks/prf.py

Full-corpus retrieval (5,183 abstracts, all-MiniLM-L6-v2, embeddings from the on-disk cache).
For each claim the top-m documents of a first stage (cosine, or the convex BM25 + cosine fusion
with the BM25 weight 0.4 that ``qrerank eval`` picks on train) are the feedback, and the whole
corpus is re-scored by

- ``rocchio``: cosine with q' = (1 - beta) q + beta mean(feedback), on unit vectors;
- ``mixed``: sum_i log <d_i|rho_i|d_i>, rho_i mixing the query qubit with the feedback qubits
  (``qrerank.core.mixed``, tau = 1/sqrt(d));
- ``convex+X``: 0.4 * minmax(BM25) + 0.6 * minmax(X), i.e. X in place of cosine in convex fusion.

m and beta are chosen per method on the 809 train claims (nDCG@10) and reported on test, all 300
claims and the 104 unseen ones, with paired t-tests against cosine and against convex.
Writes ``benchmarks/results/prf.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.core.fidelity import log_fidelity_angles_matrix
from qrerank.core.fusion import minmax
from qrerank.core.mixed import log_fidelity_mixed_matrix, mixed_bloch_vectors
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.eval.datasets import load_dataset, read_split_qrels
from qrerank.eval.meta import environment, write_results
from qrerank.eval.significance import paired_comparison
from qrerank.index.lexical import BM25Scorer
from qrerank.metrics import evaluate_run

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
OUT = Path(__file__).resolve().parent / "results" / "prf.json"
MS = (3, 10)
BETAS = (0.1, 0.3)
W_BM25 = 0.4
QUERY_BATCH = 8  # queries per mixed-score call (its intermediates are chunked by the core)


class Split:
    """Query embeddings, BM25 and cosine matrices of one split against the whole corpus."""

    def __init__(self, ds: Any, enc: Any, bm25: BM25Scorer, d_unit: torch.Tensor) -> None:
        self.ds, self.qids = ds, list(ds.queries)
        q = torch.from_numpy(enc.encode([ds.queries[x] for x in self.qids])).double()
        self.q = q / q.norm(dim=1, keepdim=True)
        self.bm25 = torch.from_numpy(np.stack([bm25.scores(ds.queries[x]) for x in self.qids]))
        self.cos = self.q @ d_unit.T

    def per_query(self, scores: torch.Tensor, doc_ids: list[str]) -> dict[str, float]:
        top = torch.topk(scores, 100, dim=1)
        run = {
            q: {
                doc_ids[j]: float(v)
                for v, j in zip(top.values[i].tolist(), top.indices[i].tolist(), strict=True)
            }
            for i, q in enumerate(self.qids)
        }
        _, pq = evaluate_run(self.ds.qrels, run, self.qids, self.ds.rel_level)
        return pq["nDCG@10"]


def convex(split: Split, dense: torch.Tensor) -> torch.Tensor:
    return W_BM25 * minmax(split.bm25) + (1 - W_BM25) * minmax(dense)


def feedback_scores(
    split: Split,
    first: torch.Tensor,
    m: int,
    beta: float,
    d_unit: torch.Tensor,
    d_angles: torch.Tensor,
    tau: float,
) -> dict[str, torch.Tensor]:
    fb = torch.topk(first, m, dim=1).indices  # [Q, m]
    q_r = (1 - beta) * split.q + beta * d_unit[fb].mean(1)
    rocchio = (q_r / q_r.norm(dim=1, keepdim=True)) @ d_unit.T
    q_angles = bloch_angles(split.q, tau)
    mixed = torch.cat(
        [
            log_fidelity_mixed_matrix(
                *mixed_bloch_vectors(q_angles[i : i + QUERY_BATCH], d_angles[fb[i : i + QUERY_BATCH]], beta),
                d_angles,
            )
            for i in range(0, len(split.qids), QUERY_BATCH)
        ]
    )
    return {
        "rocchio": rocchio,
        "mixed": mixed,
        "convex+rocchio": convex(split, rocchio),
        "convex+mixed": convex(split, mixed),
    }


def main() -> int:
    torch.set_grad_enabled(False)
    enc = load_encoder(DEFAULT_MODEL)
    splits_ds = {"train": load_dataset(DATA, split="train"), "test": load_dataset(DATA, split="test")}
    corpus = splits_ds["test"].corpus
    doc_ids = list(corpus)
    d = torch.from_numpy(enc.encode([corpus[x].content for x in doc_ids], batch_size=64)).double()
    d_unit = d / d.norm(dim=1, keepdim=True)
    tau = default_tau(enc.dim)
    d_angles = bloch_angles(d_unit, tau)
    bm25 = BM25Scorer(list(corpus.values()))
    if [bm25.row[x] for x in doc_ids] != list(range(len(doc_ids))):
        raise SystemExit("BM25 rows do not follow the corpus order")
    unseen = set(splits_ds["test"].unseen_from(read_split_qrels(DATA, "train"), source="train").queries)
    splits = {name: Split(ds, enc, bm25, d_unit) for name, ds in splits_ds.items()}

    # per split: method -> per-query nDCG@10
    pq: dict[str, dict[str, dict[str, float]]] = {}
    for name, s in splits.items():
        first = {"cosine": s.cos, "convex": convex(s, s.cos)}
        res = {
            "cosine": s.per_query(s.cos, doc_ids),
            "fidelity": s.per_query(log_fidelity_angles_matrix(bloch_angles(s.q, tau), d_angles), doc_ids),
            "convex": s.per_query(first["convex"], doc_ids),
        }
        for src, scores in first.items():
            for m in MS:
                for beta in BETAS:
                    for method, x in feedback_scores(s, scores, m, beta, d_unit, d_angles, tau).items():
                        res[f"{method}|fb={src},m={m},beta={beta}"] = s.per_query(x, doc_ids)
        pq[name] = res
        print(f"{name}: {len(res)} configurations scored", file=sys.stderr)

    def mean(v: dict[str, float], qids: set[str] | None = None) -> float:
        vals = [x for q, x in v.items() if qids is None or q in qids]
        return 100 * float(np.mean(vals))

    families = sorted(
        {k.split("|")[0] + "|" + k.split("|")[1].split(",")[0] for k in pq["train"] if "|" in k}
    )
    chosen = {"cosine": "cosine", "fidelity": "fidelity", "convex": "convex"}
    for fam in families:  # m and beta picked on train
        chosen[fam] = max(
            (k for k in pq["train"] if k.startswith(fam + ",")), key=lambda k: mean(pq["train"][k])
        )
    rows = []
    header = f"{'method (m, beta chosen on train)':52s} {'train':>6s} {'test':>6s} {'unseen':>6s} {'Δcos unseen':>12s} {'p':>6s} {'Δconvex unseen':>15s} {'p':>6s}"
    print(header)
    test = pq["test"]
    for label, key in chosen.items():
        t_un = {q: v for q, v in test[key].items() if q in unseen}
        vs_cos = paired_comparison(t_un, {q: v for q, v in test["cosine"].items() if q in unseen})
        vs_cvx = paired_comparison(t_un, {q: v for q, v in test["convex"].items() if q in unseen})
        row = {
            "method": label, "config": key, "train": mean(pq["train"][key]), "test": mean(test[key]),
            "unseen": mean(test[key], unseen), "vs_cosine_unseen": vs_cos.to_dict(), "vs_convex_unseen": vs_cvx.to_dict(),
        }  # fmt: skip
        rows.append(row)
        print(
            f"{key:52s} {row['train']:6.2f} {row['test']:6.2f} {row['unseen']:6.2f} "
            f"{100 * vs_cos.mean_diff:+12.2f} {vs_cos.p_value:6.3f} {100 * vs_cvx.mean_diff:+15.2f} {vs_cvx.p_value:6.3f}"
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "rows": rows,
        "grid": {"m": MS, "beta": BETAS, "w_bm25": W_BM25, "tau": tau},
        "all_configs": {n: {k: mean(v) for k, v in r.items()} for n, r in pq.items()},
        "model": enc.name,
        "n_unseen": len(unseen),
        "environment": environment(),
    }
    write_results(OUT, result)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
