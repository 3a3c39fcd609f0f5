"""The training experiments of arXiv 2501.04591, on the data we have, with seeds and significance.

Three experiments, each one command (``--data scifact`` trains on SciFact train and tests on
SciFact test; ``--data dl`` trains on the judged pairs of TREC DL 2019 and tests on DL 2020,
``--data dl-reverse`` the other way round):

    python benchmarks/train_grid.py methods --data scifact      # BT/QBT/BEC/QBEC/BFEC/QBFEC
    python benchmarks/train_grid.py methods --data dl
    python benchmarks/train_grid.py scarcity --data scifact     # 1/5/10/25/100% of the queries
    python benchmarks/train_grid.py compression --data scifact  # 64/128/256 vs linear vs PCA

Every method reranks the same candidates of every test query (SciFact: the top 100 of
untrained cosine over the whole corpus; DL 2020: the top 100 of the official BM25 run), so all
comparisons are paired by query. Each trained method runs with ``--seeds`` seeds (each seed
draws its own training subset, validation split, negatives and initial weights); the table gives
the mean nDCG@10 over seeds with its standard error, and a paired t-test on per-query nDCG@10
(averaged over seeds) against untrained cosine and between each quantum method and its
classical twin. Heads train on cached MiniLM embeddings; ``train_layers = 1`` methods also
fine-tune MiniLM's last transformer layer (on cached outputs of the five frozen layers).

Writes ``benchmarks/results/train/<experiment>-<data>.{json,md}`` (+ a PNG for scarcity and
compression) and prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qrerank.core.head import Head
from qrerank.core.similarity import similarity
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.eval.datasets import Dataset, load_dataset, read_split_qrels
from qrerank.eval.evaluator import Protocol, build_candidates
from qrerank.eval.meta import environment
from qrerank.eval.significance import paired_comparison
from qrerank.metrics import per_query
from qrerank.train import TrainConfig
from qrerank.train.data import cosine_candidates
from qrerank.train.trainer import layer_split, load_data, train_head
from qrerank.train.tuning import LayerSplit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "train"


@dataclass(frozen=True)
class Setup:
    train_dir: Path
    train_split: str
    rel_level: int
    test_dir: Path
    candidates: str  # "cosine" (top-100 of cosine over the corpus) or a run name of the test folder
    # Train and test qrels that share relevant documents: the test queries none of whose relevant
    # documents was relevant in training form the held-out "unseen" subset, reported beside all.
    unseen_from: str | None = None


SETUPS = {
    # 196 of SciFact's 300 test claims cite a document that some train claim cites too.
    "scifact": Setup(DATA / "scifact", "train", 1, DATA / "scifact", "cosine", unseen_from="train"),
    # DL 2019 and 2020 share no document of grade >= 2 (one of grade >= 1): all test queries are unseen.
    "dl": Setup(DATA / "trec-dl-2019-passage", "test", 2, DATA / "trec-dl-2020-passage", "bm25"),
    "dl-reverse": Setup(DATA / "trec-dl-2020-passage", "test", 2, DATA / "trec-dl-2019-passage", "bm25"),
}

# Paper name -> (qrerank train --head, --train-layers). "QB-tau" is the Bloch encoding with
# only its temperature learnt; BFEC/QBFEC keep the encoder frozen, the others train its last layer.
METHODS: dict[str, tuple[str, int]] = {
    "QB-tau": ("none", 0),
    "QB-rot": ("rotation", 0),  # Bloch encoding, tau and offset learnt per qubit (2d params)
    "BFEC": ("linear", 0),
    "QBFEC": ("qbec", 0),
    "QBFEC-mix": ("qbec-mix", 0),  # QBEC after a fixed random orthogonal rotation (same params)
    "BT": ("cosine", 1),
    "QBT": ("none", 1),
    "BEC": ("linear", 1),
    "QBEC": ("qbec", 1),
}
# quantum method -> its classical twin
TWINS = {"QBT": "BT", "QBEC": "BEC", "QBFEC": "BFEC", "QBFEC-mix": "BFEC"}
COMPRESSING = ("linear", "qbec", "qbec-mix")  # heads with an output dim below the input's
LR = {"none": 0.01, "rotation": 1e-3, "cosine": 1e-3, "linear": 1e-3, "qbec": 1e-3, "qbec-mix": 1e-3}


class TestSet:
    """The test queries, their fixed candidates, and cached base embeddings of both."""

    def __init__(self, setup: Setup, encoder: Any, k: int = 100) -> None:
        ds: Dataset = load_dataset(setup.test_dir, split="test", rel_level=setup.rel_level)
        self.ds = ds
        self.qids = list(ds.queries)
        self.unseen: list[str] | None = None
        if setup.unseen_from:
            sub = ds.unseen_from(
                read_split_qrels(setup.train_dir, setup.unseen_from), source=setup.unseen_from
            )
            self.unseen = list(sub.queries)
        self.q_texts = [ds.queries[q] for q in self.qids]
        corpus = ds.corpus
        if setup.candidates == "cosine":
            ids = list(corpus)
            d_all = torch.from_numpy(encoder.encode([corpus[d].content for d in ids], show_progress=True))
            q_all = torch.from_numpy(encoder.encode(self.q_texts))
            top = cosine_candidates(q_all, d_all, k)
            cands = {q: [ids[j] for j in row] for q, row in zip(self.qids, top.tolist(), strict=True)}
            self.note = f"top-{k} of untrained cosine over {len(ids)} documents"
        else:
            cands, self.note = build_candidates(ds, Protocol.RERANK, setup.candidates, k)
        self.cands = [cands.get(q, []) for q in self.qids]
        self.doc_ids = list(dict.fromkeys(d for c in self.cands for d in c))
        self.d_texts = [corpus[d].content for d in self.doc_ids]
        row = {d: i for i, d in enumerate(self.doc_ids)}
        self.rows = [torch.tensor([row[d] for d in c], dtype=torch.long) for c in self.cands]
        self.q_emb = torch.from_numpy(encoder.encode(self.q_texts))
        self.d_emb = torch.from_numpy(encoder.encode(self.d_texts))

    @torch.no_grad()
    def ndcg(
        self, score: Any, q: torch.Tensor | None = None, d: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Per-query nDCG@10 of ``score(q [c, ...], d [c, k, ...]) -> [c, k]`` on the candidates."""
        q = self.q_emb if q is None else q
        d = self.d_emb if d is None else d
        run: dict[str, dict[str, float]] = {}
        for i, qid in enumerate(self.qids):
            if not len(self.rows[i]):
                continue
            s = score(q[i : i + 1], d[self.rows[i]].unsqueeze(0))[0]
            run[qid] = {doc: float(v) for doc, v in zip(self.cands[i], s.tolist(), strict=True)}
        return per_query(self.ds.qrels, run, self.qids, self.ds.rel_level)["nDCG@10"]


def head_scorer(head: Head) -> Any:
    head.eval()
    return lambda q, d: head.similarity(q.unsqueeze(1), d)


def cosine_scorer(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    return similarity(q.unsqueeze(1), d, "vector")


def mean_se(xs: list[float]) -> tuple[float, float]:
    m = float(np.mean(xs))
    return m, (float(np.std(xs, ddof=1)) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def run_method(
    name: str,
    head: str,
    layers: int,
    *,
    setup: Setup,
    test: TestSet,
    encoder: Any,
    seed: int,
    frac: float,
    out_dim: int,
    epochs: int,
    tuner: LayerSplit | None,
    form: str = "log",
    lr: float | None = None,
    steps: int | None = None,
    pseudo_queries: int = 0,
) -> dict[str, Any]:
    config = TrainConfig(
        head=head, out_dim=out_dim, split=setup.train_split, rel_level=setup.rel_level, frac=frac,
        seed=seed, epochs=epochs, lr=lr or LR[head], train_layers=layers, model=DEFAULT_MODEL,
        val_depth=10 if layers else 100, patience=2, similarity=form, pseudo_queries=pseudo_queries,
    )  # fmt: skip
    data = load_data(setup.train_dir, config)  # its qrels, or pseudo-queries of its corpus
    if steps:
        # A fixed optimizer-step budget: as many epochs as it takes, no early stop (the best
        # epoch on validation is still the one kept), so small fractions are not under-trained.
        per_epoch = math.ceil(sum(len(ex.positives) for ex in data.train) / config.batch_size)
        n_epochs = max(1, math.ceil(steps / max(per_epoch, 1)))
        config = dataclasses.replace(config, epochs=n_epochs, patience=n_epochs)
    result = train_head(data, encoder, config, tuner=tuner if layers else None)
    seconds = result.train_seconds  # training only: the first run also encodes the corpus (cached after)
    if layers:
        assert tuner is not None
        q, d = tuner.embed_eval(test.q_texts).cpu(), tuner.embed_eval(test.d_texts).cpu()
        pq = test.ndcg(head_scorer(result.head), q, d)
    else:
        pq = test.ndcg(head_scorer(result.head))
    ndcg = float(np.mean(list(pq.values())))
    print(
        f"  {name:7s} frac={frac:<5g} dim={out_dim:<4d} seed={seed}: nDCG@10 {ndcg:.4f} "
        f"(val {result.best_val_ndcg10:.4f}, epoch {result.best_epoch}/{result.epochs_run}, "
        f"{seconds:.1f}s, {len(data.train)} train queries)",
        flush=True,
    )
    return {
        "method": name, "head": head, "train_layers": layers, "seed": seed, "frac": frac, "out_dim": out_dim,
        "epochs": epochs, "steps": steps, "lr": config.lr, "similarity": form, "pseudo_queries": pseudo_queries, "ndcg@10": ndcg, "per_query": pq, "val_ndcg@10": result.best_val_ndcg10,
        "best_epoch": result.best_epoch, "epochs_run": result.epochs_run, "seconds": seconds,
        "train_queries": len(data.train), "parameters": result.trainable_parameters,
        "head_parameters": result.head.num_parameters(),
    }  # fmt: skip


class RunLog:
    """Finished runs, one JSON line each, written as they finish so an interrupted grid can resume.

    Without ``resume`` the file starts empty; with it, earlier runs whose settings match are reused.
    """

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        self.runs: list[dict[str, Any]] = []
        if resume and path.exists():
            self.runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def find(self, **settings: Any) -> dict[str, Any] | None:
        return next((r for r in self.runs if all(r.get(k) == v for k, v in settings.items())), None)

    def add(self, run: dict[str, Any]) -> None:
        self.runs.append(run)
        with self.path.open("a") as f:
            f.write(json.dumps(run, default=float) + "\n")


def subset_stats(runs: list[dict[str, Any]], baseline: dict[str, float], qids: list[str]) -> dict[str, Any]:
    """On the queries ``qids``: mean +- SE over seeds of nDCG@10, and the paired test vs cosine."""
    mean, se = mean_se([float(np.mean([r["per_query"][q] for q in qids])) for r in runs])
    pq = {q: float(np.mean([r["per_query"][q] for r in runs])) for q in qids}
    return {
        "ndcg@10": mean, "se": se, "per_query": pq,
        "vs_cosine": paired_comparison(pq, {q: baseline[q] for q in qids}).to_dict(),
    }  # fmt: skip


def summarise(
    runs: list[dict[str, Any]],
    baseline: dict[str, float],
    key: tuple[str, ...],
    unseen: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Group runs by ``key``: mean +- SE over seeds, per-query mean, paired tests (all queries,
    and the ``unseen`` subset when there is one)."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(tuple(r[k] for k in key), []).append(r)
    rows = []
    for k, rs in groups.items():
        row = {
            **dict(zip(key, k, strict=True)), "seeds": len(rs),
            **subset_stats(rs, baseline, list(rs[0]["per_query"])),
            "parameters": rs[0]["parameters"], "head_parameters": rs[0]["head_parameters"],
            "seconds": float(np.mean([r["seconds"] for r in rs])),
        }  # fmt: skip
        if unseen is not None:
            row["unseen"] = subset_stats(rs, baseline, unseen)
        rows.append(row)
    return rows


def mean_of(pq: dict[str, float], qids: list[str] | None = None) -> float:
    return float(np.mean([pq[q] for q in (qids if qids is not None else pq)]))


def cell(r: dict[str, Any]) -> str:
    """``mean ± SE`` with ▲/▼ for a significant paired difference from cosine."""
    c = r["vs_cosine"]
    mark = ("▲" if c["mean_diff"] > 0 else "▼") if c["significant"] else ""
    return f"{100 * r['ndcg@10']:.2f} ± {100 * r['se']:.2f}{mark}"


def strip_per_query(r: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in r.items() if k != "per_query"}
    if "unseen" in r:
        out["unseen"] = strip_per_query(r["unseen"])
    return out


def fmt_p(c: dict[str, Any]) -> str:
    mark = ("▲" if c["mean_diff"] > 0 else "▼") if c["significant"] else ""
    return f"{100 * c['mean_diff']:+.2f} (p={c['p_value']:.2g}){mark}"


def methods_table(
    rows: list[dict[str, Any]], cosine: float, base_dim: int, cosine_unseen: float | None = None
) -> str:
    by = {r["method"]: r for r in rows}
    held = cosine_unseen is not None
    lines = [
        "| method | encoder | head | trainable params | seeds | nDCG@10 (mean ± SE) | vs cosine | vs classical twin"
        + (" | unseen nDCG@10 | unseen vs cosine | unseen vs twin" if held else "")
        + " | s/run |",
        "|---|---|---|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if held else "") + "---:|",
        f"| cosine (untrained) | frozen | — | 0 | | {100 * cosine:.2f} | | |"
        + (f" {100 * cosine_unseen:.2f} | | |" if held else "")
        + " |",
    ]
    for name in METHODS:
        if name not in by:
            continue
        r = by[name]
        twin = twin_u = ""
        if name in TWINS and TWINS[name] in by:
            t = by[TWINS[name]]
            twin = fmt_p(paired_comparison(r["per_query"], t["per_query"]).to_dict()) + f" vs {TWINS[name]}"
            if held:
                twin_u = fmt_p(
                    paired_comparison(r["unseen"]["per_query"], t["unseen"]["per_query"]).to_dict()
                )
        head, layers = METHODS[name]
        unseen = f" {cell(r['unseen'])} | {fmt_p(r['unseen']['vs_cosine'])} | {twin_u} |" if held else ""
        lines.append(
            f"| {name} | {'last layer trained' if layers else 'frozen'} | {head} ({base_dim}→{r['out_dim'] if head in COMPRESSING else base_dim}) "
            f"| {r['parameters']:,} | {r['seeds']} | {100 * r['ndcg@10']:.2f} ± {100 * r['se']:.2f} | {fmt_p(r['vs_cosine'])} | {twin} |{unseen} {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def plot_lines(
    series: dict[str, list[tuple[float, float, float]]], cosine: float, path: Path, xlabel: str, log_x: bool
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, pts in series.items():
        pts = sorted(pts)
        ax.errorbar([p[0] for p in pts], [100 * p[1] for p in pts], yerr=[100 * p[2] for p in pts],
                    marker="o", capsize=3, label=name)  # fmt: skip
    ax.axhline(100 * cosine, color="grey", linestyle="--", label="cosine (untrained)")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("nDCG@10 (test)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_options(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked; ``names`` holds the methods to run (given or the experiment's)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=("methods", "scarcity", "compression"))
    p.add_argument("--data", choices=tuple(SETUPS), default="scifact")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--methods", default=None, help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--fracs", default="0.01,0.05,0.1,0.25,1.0", help="scarcity: shares of training queries")
    p.add_argument("--frac", type=float, default=1.0, help="methods, compression: share of training queries")
    p.add_argument("--dims", default="64,128,256")
    p.add_argument(
        "--out-dim", type=int, default=128, help="output dim of linear/QBEC heads (methods, scarcity)"
    )
    p.add_argument("--epochs", type=int, default=10, help="most epochs (early stopping: patience 2)")
    p.add_argument(
        "--steps", type=int, default=None,
        help="train every run for this many optimizer steps instead (no early stop; best epoch kept)",
    )  # fmt: skip
    p.add_argument("--lr", type=float, default=None, help="learning rate of every head (default: per head)")
    p.add_argument(
        "--similarity", choices=("log", "linear"), default="log", help="training logit of state heads"
    )
    p.add_argument(
        "--pseudo-queries", type=int, default=0, metavar="N",
        help="train on N label-free pseudo-queries cut from the training corpus instead of its qrels",
    )  # fmt: skip
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument(
        "--resume", action="store_true",
        help="keep the finished runs of an interrupted grid (its .runs.jsonl) and run only the rest",
    )  # fmt: skip
    p.add_argument(
        "--report-only", action="store_true",
        help="with --resume: tabulate the finished runs of the log and start none",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.report_only and not args.resume:
        p.error("--report-only reads an earlier grid's runs: add --resume")
    args.names = args.methods.split(",") if args.methods else (
        list(METHODS) if args.experiment == "methods" else ["QB-tau", "BFEC", "QBFEC"]
    )  # fmt: skip
    unknown = set(args.names) - set(METHODS)
    if unknown:
        p.error(f"unknown methods {sorted(unknown)}")
    return args


@dataclass(frozen=True)
class Baseline:
    """Untrained cosine on the test candidates: per-query nDCG@10, its mean, its mean on unseen."""

    per_query: dict[str, float]
    mean: float
    unseen: float | None


@dataclass(frozen=True)
class Grid:
    """One experiment's fixed parts: the options, the data setup, the test set, its cosine baseline."""

    args: argparse.Namespace
    setup: Setup
    test: TestSet
    baseline: Baseline


def cosine_baseline(test: TestSet, setup: Setup, data: str) -> Baseline:
    """Score untrained cosine on ``test`` and print the test set's size and that score."""
    base = test.ndcg(cosine_scorer)
    cosine = mean_of(base)
    cosine_unseen = mean_of(base, test.unseen) if test.unseen is not None else None
    print(f"{data}: {len(test.qids)} test queries, candidates: {test.note}; cosine nDCG@10 {cosine:.4f}")
    if test.unseen is not None:
        print(
            f"  unseen from {setup.unseen_from}: {len(test.unseen)} queries; cosine nDCG@10 {cosine_unseen:.4f}"
        )
    return Baseline(base, cosine, cosine_unseen)


def grid_points(
    args: argparse.Namespace, fracs: list[float], dims: list[int]
) -> Iterator[tuple[int, float, int, str]]:
    """``(seed, frac, out_dim, method)`` of every run (compression: linear and QBEC heads only).

    Seed-major: an interrupted grid still has every method at the seeds it finished.
    """
    for seed in range(args.seeds):
        for frac in fracs:
            for dim in dims:
                for name in args.names:
                    if args.experiment == "compression" and METHODS[name][0] not in COMPRESSING:
                        continue
                    yield seed, frac, dim, name


def run_grid(
    grid: Grid, encoder: Any, tuner: LayerSplit | None, log: RunLog, fracs: list[float], dims: list[int]
) -> list[dict[str, Any]]:
    """Every run of the grid: kept from ``log`` when it finished before, else trained (and logged)."""
    args, setup, test = grid.args, grid.setup, grid.test
    runs: list[dict[str, Any]] = []
    for seed, frac, dim, name in grid_points(args, fracs, dims):
        head, layers = METHODS[name]
        lr = args.lr or LR[head]
        done = log.find(
            method=name, seed=seed, frac=frac, out_dim=dim, epochs=args.epochs, lr=lr,
            similarity=args.similarity, steps=args.steps, pseudo_queries=args.pseudo_queries,
        )  # fmt: skip
        if done is None and args.report_only:
            continue
        if done is None:
            done = run_method(
                name, head, layers, setup=setup, test=test, encoder=encoder, seed=seed, frac=frac,
                out_dim=dim, epochs=args.epochs, tuner=tuner, form=args.similarity, lr=lr,
                steps=args.steps, pseudo_queries=args.pseudo_queries,
            )  # fmt: skip
            log.add(done)
        else:
            print(f"  {name:7s} frac={frac:<5g} dim={dim:<4d} seed={seed}: kept from {log.path.name}")
        runs.append(done)
    return runs


def summary_line(grid: Grid, runs: list[dict[str, Any]]) -> str:
    """The line above every table: the cosine baseline, the unseen subset, the training budget."""
    args, setup, test, baseline = grid.args, grid.setup, grid.test, grid.baseline
    line = f"cosine (untrained) nDCG@10 = {100 * baseline.mean:.2f} on {len(test.qids)} queries ({test.note})"
    if args.pseudo_queries:
        line += (
            f"; label-free: every head trains on {args.pseudo_queries} pseudo-queries cut from the passages of "
            f"{setup.train_dir.name} (inverse cloze task, BM25 negatives), no qrels read"
        )
    if test.unseen is not None:
        line += (
            f"; unseen: the {len(test.unseen)} test queries none of whose relevant documents is relevant to a "
            f"{setup.unseen_from} query (cosine {100 * (baseline.unseen or 0):.2f}), the only held-out part for a trained head"
        )
    line += (
        f"; every run trains for {args.steps} optimizer steps (batch 32, no early stop, best validation epoch kept)"
        if args.steps
        else f"; at most {args.epochs} epochs, early stopping with patience 2"
    )
    if args.experiment != "scarcity":
        used = sorted({r["train_queries"] for r in runs})
        line += f"; trained on {100 * args.frac:g}% of the training queries ({', '.join(map(str, used))} after the validation split)"
    return line


def scarcity_table(
    grid: Grid, rows: list[dict[str, Any]], runs: list[dict[str, Any]], fracs: list[float]
) -> tuple[list[str], dict[str, Any]]:
    """The scarcity tables (all test queries, then unseen ones) by training share, and their plot."""
    args, baseline, unseen = grid.args, grid.baseline, grid.test.unseen
    md: list[str] = []
    header = [
        "| method | " + " | ".join(f"{100 * f:g}%" for f in fracs) + " |",
        "|---|" + "---:|" * len(fracs),
    ]
    series: dict[str, list[tuple[float, float, float]]] = {}
    for scope in ("all", "unseen") if unseen is not None else ("all",):
        if scope == "unseen":
            md += [
                "",
                f"Unseen test queries only ({len(unseen or [])}; cosine {100 * (baseline.unseen or 0):.2f}):",
                "",
            ]
        md += header
        for name in args.names:
            cells = []
            for f in fracs:
                r = next((r for r in rows if r["method"] == name and r["frac"] == f), None)
                if r is None:
                    cells.append("")
                    continue
                if scope == "all":
                    series.setdefault(name, []).append((f * 100, r["ndcg@10"], r["se"]))
                cells.append(cell(r if scope == "all" else r["unseen"]))
            md.append(f"| {name} | " + " | ".join(cells) + " |")
    md.append("")
    md.append("Train queries per fraction: " + ", ".join(
        f"{100 * f:g}% = {next(r['train_queries'] for r in runs if r['frac'] == f)}" for f in fracs))  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    png = OUT / f"scarcity-{args.data}{args.tag}.png"
    plot_lines(series, baseline.mean, png, "training queries used (%)", log_x=True)
    return md, {"plot": png.name}


def pca_baseline(test: TestSet, dims: list[int], base: dict[str, float]) -> dict[int, dict[str, Any]]:
    """PCA to each of ``dims``, the unsupervised linear baseline, fitted on the test candidates' embeddings."""
    d = test.d_emb.double()
    mu = d.mean(0)
    _, _, v = torch.linalg.svd(d - mu, full_matrices=False)
    pca = {}
    for k in dims:
        proj = v[:k].T.float()
        pq = test.ndcg(cosine_scorer, (test.q_emb - mu.float()) @ proj, (test.d_emb - mu.float()) @ proj)
        pca[k] = {
            "ndcg@10": mean_of(pq),
            "vs_cosine": paired_comparison(pq, base).to_dict(),
        }
        if test.unseen is not None:
            pca[k]["unseen_ndcg@10"] = mean_of(pq, test.unseen)
    return pca


def compression_table(
    grid: Grid, rows: list[dict[str, Any]], dims: list[int], dim: int
) -> tuple[list[str], dict[str, Any]]:
    """The compression table (PCA, linear, QBEC per output dim of a ``dim``-d input) and its plot."""
    args, test, baseline = grid.args, grid.test, grid.baseline
    pca = pca_baseline(test, dims, baseline.per_query)
    held = test.unseen is not None
    md = [
        f"| out dim | bytes/vector (float32; {dim}-d input = {4 * dim}) | PCA | linear (BFEC) | QBEC (QBFEC) | QBEC vs linear"
        + (" | unseen: PCA | unseen: linear | unseen: QBEC" if held else "") + " | params linear / QBEC |",
        "|---:|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if held else "") + "---:|",
    ]  # fmt: skip
    series: dict[str, list[tuple[float, float, float]]] = {"linear (BFEC)": [], "QBEC (QBFEC)": [], "PCA": []}
    for k in dims:
        lin = next(r for r in rows if r["method"] == "BFEC" and r["out_dim"] == k)
        qb = next(r for r in rows if r["method"] == "QBFEC" and r["out_dim"] == k)
        cmp = paired_comparison(qb["per_query"], lin["per_query"]).to_dict()
        md.append(
            f"| {k} | {4 * k} ({dim / k:.1f}x smaller) | {100 * pca[k]['ndcg@10']:.2f} | {100 * lin['ndcg@10']:.2f} ± {100 * lin['se']:.2f} "
            f"| {100 * qb['ndcg@10']:.2f} ± {100 * qb['se']:.2f} | {fmt_p(cmp)} |"
            + (f" {100 * pca[k]['unseen_ndcg@10']:.2f} | {cell(lin['unseen'])} | {cell(qb['unseen'])} |" if held else "")
            + f" {lin['parameters']:,} / {qb['parameters']:,} |"
        )  # fmt: skip
        series["linear (BFEC)"].append((k, lin["ndcg@10"], lin["se"]))
        series["QBEC (QBFEC)"].append((k, qb["ndcg@10"], qb["se"]))
        series["PCA"].append((k, pca[k]["ndcg@10"], 0.0))
    OUT.mkdir(parents=True, exist_ok=True)
    png = OUT / f"compression-{args.data}{args.tag}.png"
    plot_lines(series, baseline.mean, png, "output dimensions / qubits", log_x=True)
    return md, {"pca": pca, "plot": png.name}


def write_results(
    grid: Grid,
    stem: Path,
    table: str,
    argv: list[str] | None,
    rows: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    t_start: float,
    extra: dict[str, Any],
) -> None:
    """``<stem>.md`` (the table) and ``<stem>.json`` (command, summary, runs, environment)."""
    args, setup, test, baseline = grid.args, grid.setup, grid.test, grid.baseline
    OUT.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(table + "\n")
    payload = {
        "experiment": args.experiment, "data": args.data, "command": "python benchmarks/train_grid.py " + " ".join(argv or sys.argv[1:]),
        "test_queries": len(test.qids), "candidates": test.note, "cosine_ndcg@10": baseline.mean,
        "unseen": None if test.unseen is None else {
            "from": setup.unseen_from, "queries": len(test.unseen), "cosine_ndcg@10": baseline.unseen,
        },
        "summary": [strip_per_query(r) for r in rows],
        "runs": [{k: v for k, v in r.items() if k != "per_query"} for r in runs],
        "seconds": time.perf_counter() - t_start, "environment": environment(), **extra,
    }  # fmt: skip
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print(f"wrote {stem}.json ({payload['seconds']:.0f}s)")


def main(argv: list[str] | None = None) -> int:
    """Run one experiment's grid (or tabulate a resumed one), print and write its tables."""
    args = parse_options(argv)
    setup = SETUPS[args.data]
    t_start = time.perf_counter()
    encoder = load_encoder(DEFAULT_MODEL)
    test = TestSet(setup, encoder)
    grid = Grid(args, setup, test, cosine_baseline(test, setup, args.data))
    tuner = (
        layer_split(DEFAULT_MODEL, 1, normalized=encoder.normalized)
        if any(METHODS[n][1] for n in args.names)
        else None
    )
    fracs = [float(x) for x in args.fracs.split(",")] if args.experiment == "scarcity" else [args.frac]
    dims = [int(x) for x in args.dims.split(",")] if args.experiment == "compression" else [args.out_dim]
    stem = OUT / f"{args.experiment}-{args.data}{args.tag}"
    log = RunLog(stem.with_suffix(".runs.jsonl"), resume=args.resume)
    runs = run_grid(grid, encoder, tuner, log, fracs, dims)
    if not runs:
        print(f"no finished runs in {log.path.name}", file=sys.stderr)
        return 1
    rows = summarise(runs, grid.baseline.per_query, ("method", "frac", "out_dim"), test.unseen)
    md = [summary_line(grid, runs), ""]
    extra: dict[str, Any] = {}
    if args.experiment == "methods":
        md.append(methods_table(rows, grid.baseline.mean, encoder.dim, grid.baseline.unseen))
    elif args.experiment == "scarcity":
        lines, extra = scarcity_table(grid, rows, runs, fracs)
        md += lines
    else:
        lines, extra = compression_table(grid, rows, dims, encoder.dim)
        md += lines
    table = "\n".join(md)
    print(table)
    write_results(grid, stem, table, argv, rows, runs, t_start, extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
