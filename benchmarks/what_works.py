"""What works: one table of every method on every benchmark, built from the result files alone.

    python benchmarks/what_works.py

Runs no model: it reads what earlier runs left under ``benchmarks/results/`` (the ``qrerank
eval`` folders, ``search_fusion.json``, ``prf.json``, the train grids under ``train/``, and
``perf.json`` / ``head_latency.json`` for timings, ``two_encoder.json`` for MiniLM + mpnet fusion)
and writes one row per method with

- nDCG@10 x100 on SciFact test (all 300 claims) and SciFact-unseen (the 104 claims none of whose
  relevant documents is relevant to a train claim), TREC DL 2019 and 2020 (rerank the BM25
  top-100; tau/alpha tuned, or heads trained, on the other year), and STS-B test Spearman x100;
- in each cell the difference from the cosine baseline of the same file, with ▲/▼ where that file
  records a significant paired difference, and "n.t." where it holds only the two means;
- trainable parameters, the extra cost per query where a results file measures it ("not
  measured" otherwise), and the file(s) each row came from.

A cell no results file holds says "not run"; sources that do not exist yet (the
all-mpnet-base-v2 eval folders ``*-mpnet``, the pseudo-query grids ``methods-*-pseudo.json``)
leave their rows "not run" until they do. Where several files hold the same method on the same
data, the first of an explicit preference list (newest, most complete) is used, and the others'
values are kept in the JSON (``also_in``). Writes ``benchmarks/results/what_works.{md,json}``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from qrerank.eval.meta import write_results
from qrerank.eval.significance import paired_comparison

RESULTS = Path(__file__).resolve().parent / "results"
OUT = RESULTS / "what_works"
DATASETS = {
    "scifact": "SciFact test (300)",
    "scifact-unseen": "SciFact unseen (104)",
    "dl2019": "DL 2019 (43)",
    "dl2020": "DL 2020 (54)",
    "stsb": "STS-B test (Spearman)",
}
# dataset -> qrerank eval folders (MiniLM), the first holding a method wins; mpnet adds "-mpnet".
EVAL_DIRS = {
    "scifact": ("scifact-full", "scifact-fusion"),
    "scifact-unseen": ("scifact-unseen", "scifact-unseen-fusion"),
    "dl2019": ("dl2019-rerank",),
    "dl2020": ("dl2020-rerank",),
    "stsb": ("stsb",),
}
# dataset -> train grids (under train/), in order of preference: newest and most complete first.
GRIDS = {
    "scifact": ("methods-scifact-repro", "methods-scifact-mix", "methods-scifact-rot", "methods-scifact-tuned",
                "methods-scifact"),
    "scifact-unseen": ("methods-scifact-repro", "methods-scifact-mix", "methods-scifact-rot",
                       "methods-scifact-tuned", "methods-scifact"),
    "dl2020": ("methods-dl-rot", "methods-dl"),  # --data dl: trained on DL 2019, tested on DL 2020
    "dl2019": ("methods-dl-reverse",),  # --data dl-reverse: trained on DL 2020, tested on DL 2019
}  # fmt: skip
STS_GRIDS = ("sts", "sts-rot")
PSEUDO_GRIDS = {
    "scifact": ("methods-scifact-pseudo",),
    "scifact-unseen": ("methods-scifact-pseudo",),
    "dl2020": ("methods-dl-pseudo",),
    "dl2019": ("methods-dl-reverse-pseudo",),
}
EVAL_LABELS = {
    "cosine": "cosine (baseline)",
    "fidelity": "fidelity, τ tuned",
    "fidelity@default": "fidelity, τ = 1/√d (untuned)",
    "hybrid": "hybrid cosine/fidelity, τ and α tuned",
    "bm25": "BM25 (bm25s) on the same candidates",
    "rrf": "RRF of BM25 and cosine",
    "convex": "convex BM25 + cosine, w tuned",
    "convex-fidelity": "convex BM25 + fidelity, w tuned",
}
RUN_LABELS = {
    "run:bm25": "BM25 run (runs/bm25.trec)",
    "run:bm25_rm3": "BM25 + RM3 run",
    "run:d_bert_kd_tasb": "TAS-B run",
    "run:open_ai_ada2": "OpenAI ada-2 run",
    "run:splade_p_p_ensemble_distil": "SPLADE++ (ensemble distil) run",
    "run:rep_llama": "RepLLaMA run",
}
SEARCH_LABELS = {
    "fused rrf": "search: fused RRF (SearchPipeline)",
    "fused convex (chosen)": "search: fused convex, w chosen on train (SearchPipeline)",
}
PRF_LABELS = {
    "rocchio|fb=cosine": "PRF Rocchio, feedback from cosine",
    "mixed|fb=cosine": "PRF mixed-state query, feedback from cosine",
    "rocchio|fb=convex": "PRF Rocchio, feedback from convex",
    "mixed|fb=convex": "PRF mixed-state query, feedback from convex",
    "convex+rocchio|fb=cosine": "convex(BM25, Rocchio), feedback from cosine",
    "convex+mixed|fb=cosine": "convex(BM25, mixed-state), feedback from cosine",
    "convex+rocchio|fb=convex": "convex(BM25, Rocchio), feedback from convex",
    "convex+mixed|fb=convex": "convex(BM25, mixed-state), feedback from convex",
}
TRAINED_LABELS = {
    "QB-tau": "QB-tau: Bloch encoding, learnt τ",
    "QB-rot": "QB-rot: learnt τ and offset per qubit",
    "BFEC": "BFEC: linear head (classical twin)",
    "QBFEC": "QBFEC: QBEC compression head",
    "QBFEC-mix": "QBFEC-mix: fixed rotation, then QBEC",
    "BT": "BT: MiniLM last layer fine-tuned, cosine",
    "QBT": "QBT: last layer fine-tuned + learnt τ",
    "BEC": "BEC: last layer fine-tuned + linear head",
    "QBEC": "QBEC: last layer fine-tuned + QBEC head",
}
MINILM_DIM = 384  # all-MiniLM-L6-v2's output size: the timings picked from perf/head_latency
PSEUDO_METHODS = ("QB-tau", "BFEC", "QBFEC")  # the rows shown before any pseudo grid exists
HEAD_TIMED = {"none": "bloch", "linear": "linear", "qbec": "qbec"}  # train-grid head -> head_latency.json
SECTIONS = {
    "untrained": "all-MiniLM-L6-v2 · untrained scoring and fusion (no training data)",
    "prf": "all-MiniLM-L6-v2 · pseudo-relevance feedback (prf.json; m, β chosen on train)",
    "trained": "all-MiniLM-L6-v2 · trained heads (labelled training queries)",
    "pseudo": "all-MiniLM-L6-v2 · trained heads (label-free pseudo-queries)",
    "runs": "external runs on TREC DL (their own candidates, evaluated as they are)",
    "mpnet": "all-mpnet-base-v2 · untrained (Δ vs mpnet cosine; then vs MiniLM cosine)",
    "two_encoder": "two encoders, all-MiniLM-L6-v2 + all-mpnet-base-v2 (convex fusion of min-max normalised "
    "scores, weights tuned on another split; two_encoder.json)",
}
TWO_ENCODER = "two_encoder.json"
TWO_ENCODER_SETS = {  # dataset -> (set name in two_encoder.json, test subset)
    "scifact": ("SciFact test, full corpus", "all"),
    "scifact-unseen": ("SciFact test, full corpus", "unseen"),
    "dl2019": ("TREC DL 2019, rerank BM25 top-100", "all"),
    "dl2020": ("TREC DL 2020, rerank BM25 top-100", "all"),
}
TWO_ENCODER_METHODS = (  # benchmarks/two_encoder.py's METHODS, in its order
    "MiniLM cosine", "mpnet cosine", "MiniLM + mpnet", "BM25 + MiniLM", "BM25 + mpnet", "BM25 + MiniLM + mpnet",
)  # fmt: skip
NOT_TABULATED = {
    "train/methods-scifact.json": "superseded by methods-scifact-repro.json (same command, newer code)",
    "train/methods-scifact-mix1.json": "1 seed; methods-scifact-mix.json has 5",
    "train/methods-scifact-linear.json": "ablation: linear-fidelity training logit",
    "train/methods-scifact-lr0.json": "ablation: QBFEC at lr 0.1",
    "train/scarcity-scifact.json": "training-share sweep (1-100% of the queries)",
    "train/compression-scifact.json": "output-dimension sweep (64/128/256) and PCA",
    "dl2019-judged": "judged-documents protocol, not BM25 top-100",
    "dl2020-judged": "judged-documents protocol, not BM25 top-100",
    "scifact-full-int8": "int8 runtime quality check (cosine, fidelity)",
}


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One method on one dataset, from one file; scores x100."""

    value: float
    source: str  # relative to benchmarks/results/
    delta: float | None = None  # minus the cosine of the same file
    mark: str = ""  # ▲ / ▼: a significant paired difference, as the file records it
    tested: bool = False  # whether the file holds a paired test (or CI) of ``delta``
    p_value: float | None = None
    se: float | None = None  # standard error over seeds
    setting: dict[str, Any] = field(default_factory=dict)
    params: int | None = None
    head: str | None = None
    out_dim: int | None = None
    vs_minilm: dict[str, Any] | None = None
    per_query: Mapping[str, float] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "per_query" and v not in (None, {}, "")}


class Ref(NamedTuple):
    """Where a cell may be: a loader, a file or folder name, a scope, the method's name there."""

    loader: str
    name: str
    scope: str
    method: str


@dataclass(frozen=True)
class Spec:
    """A row: its section, label, candidate cells per dataset, parameters and cost."""

    section: str
    label: str
    refs: dict[str, tuple[Ref, ...]]
    params: int | str | None = None  # None: from the cells (trained heads)
    cost: tuple[str, str] | None = None  # (cost loader, key), or None: from the head, or not measured
    baseline: bool = False


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _mark(comparison: Mapping[str, Any] | None) -> str:
    if not comparison or not comparison.get("significant"):
        return ""
    return "▲" if comparison["mean_diff"] > 0 else "▼"


def _ci_mark(ci: Mapping[str, Any]) -> str:
    return "▲" if ci["ci_low"] > 0 else "▼" if ci["ci_high"] < 0 else ""


def _eval_setting(method: str, tuning: Mapping[str, Any]) -> dict[str, Any]:
    keys = {"fidelity": ("tau",), "hybrid": ("tau", "alpha"), "convex": ("convex_weight",),
            "convex-fidelity": ("convex-fidelity_weight",)}.get(method, ())  # fmt: skip
    names = {"convex_weight": "w_bm25", "convex-fidelity_weight": "w_bm25"}
    return {names.get(k, k): round(tuning[k], 4) for k in keys if k in tuning}


def _default_tau(folder: Path, meta: Mapping[str, Any], metric: str) -> float | None:
    """The score of fidelity at tau = 1/sqrt(d) (multiplier 1) in the file's tau sweep."""
    sweeps = _json(folder / "sweeps.json") or meta.get("sweeps") or {}
    points = [p for p in sweeps.get("tau", []) if math.isclose(p.get("multiplier", 0.0), 1.0)]
    return points[0]["test"][metric] if points else None


def load_eval(results: Path, name: str, scope: str) -> dict[str, Cell]:
    """The main methods of a ``qrerank eval`` folder (retrieval or STS), and untuned fidelity."""
    folder = results / name
    metrics = _json(folder / "metrics.json")
    if not metrics or "cosine" not in metrics:
        return {}
    meta = _json(folder / "meta.json") or {}
    metric = meta.get("primary_metric", "nDCG@10")
    sig = _json(folder / "significance.json") or {}
    cis = meta.get(f"{metric}_diff_vs_cosine", {})  # STS: a bootstrap CI, no p-value
    per_query = _json(folder / "per_query.json") or {}
    base = metrics["cosine"][metric]
    out: dict[str, Cell] = {}
    for m in [m for m in metrics if "[" not in m]:
        c, ci = sig.get(m, {}).get(metric), cis.get(m)
        out[m] = Cell(
            value=100 * metrics[m][metric], source=name, delta=100 * (metrics[m][metric] - base),
            mark=_mark(c) if c else _ci_mark(ci) if ci else "", tested=bool(c or ci) or m == "cosine",
            p_value=c["p_value"] if c else None, setting=_eval_setting(m, meta.get("tuning", {})),
            per_query=per_query.get(m, {}).get(metric), params=0,
        )  # fmt: skip
        if c:
            out[m] = replace(out[m], delta=100 * c["mean_diff"])
    default = _default_tau(folder, meta, metric)
    if default is not None:
        out["fidelity@default"] = Cell(
            value=100 * default,
            source=name,
            delta=100 * (default - base),
            setting={"tau": "1/sqrt(d)"},
            params=0,
        )
    return out


def _grid_cell(row: Mapping[str, Any], r: Mapping[str, Any], source: str, head: str | None) -> Cell:
    c = r["vs_cosine"]
    setting = {"seeds": row["seeds"], "out_dim": row["out_dim"]}
    if row.get("frac", 1.0) < 1:
        setting["train_share"] = row["frac"]
    se = r.get("se")
    return Cell(
        value=100 * r["ndcg@10"], source=source, delta=100 * c["mean_diff"], mark=_mark(c), tested=True,
        p_value=c["p_value"], se=None if se is None or math.isnan(se) else 100 * se, setting=setting,
        params=row.get("parameters"), head=head, out_dim=row.get("out_dim"),
    )  # fmt: skip


def load_grid(results: Path, name: str, scope: str) -> dict[str, Cell]:
    """Per method, the summary of a ``train_grid.py methods`` file: all test queries or ``unseen``."""
    data = _json(results / "train" / f"{name}.json")
    if not data:
        return {}
    heads = {r["method"]: r.get("head") for r in data.get("runs", [])}
    out: dict[str, Cell] = {}
    for row in data.get("summary", []):
        r = row.get("unseen") if scope == "unseen" else row
        if r and row["method"] not in out:
            out[row["method"]] = _grid_cell(row, r, f"train/{name}.json", heads.get(row["method"]))
    return out


def load_sts_grid(results: Path, name: str, scope: str) -> dict[str, Cell]:
    """Per method, ``train_sts.py``'s summary: ▲/▼ when every seed's bootstrap CI is on one side of 0."""
    data = _json(results / "train" / f"{name}.json")
    if not data:
        return {}
    runs = data.get("runs", [])
    out: dict[str, Cell] = {}
    for row in data.get("summary", []):
        mine = [r for r in runs if r["method"] == row["method"]]
        n = len(mine)
        mark = "▼" if n and row["ci_down"] == n else "▲" if n and row["ci_up"] == n else ""
        se = row.get("se")
        out[row["method"]] = Cell(
            value=100 * row["spearman"], source=f"train/{name}.json", delta=100 * row["diff"], mark=mark,
            tested=True, se=None if se is None or math.isnan(se) else 100 * se,
            setting={"seeds": n, "seeds_ci_above_0": row["ci_up"], "seeds_ci_below_0": row["ci_down"]},
            params=row.get("parameters"), head=mine[0].get("head") if mine else None,
        )  # fmt: skip
    return out


def load_search(results: Path, name: str, scope: str) -> dict[str, Cell]:
    """``search_fusion.json``: each search configuration on test (``all`` or ``unseen``)."""
    data = _json(results / name)
    if not data:
        return {}
    out: dict[str, Cell] = {}
    for key, r in data.get("rows", {}).items():
        t = r.get("test", {}).get(scope)
        if t:
            c = t["vs_cosine"]
            setting = {"w_bm25": r["kwargs"]["lexical_weight"]} if "lexical_weight" in r["kwargs"] else {}
            out[key] = Cell(
                value=100 * t["ndcg@10"], source=name, delta=100 * c["mean_diff"], mark=_mark(c),
                tested=True, p_value=c["p_value"], setting=setting, params=0,
            )  # fmt: skip
    best = data.get("best_weight")
    if best is not None and f"fused convex w={best:g}" in out:
        out["fused convex (chosen)"] = out[f"fused convex w={best:g}"]
    return out


def load_prf(results: Path, name: str, scope: str) -> dict[str, Cell]:
    """``prf.json``: test means (no test on all 300), and the paired test on the unseen claims."""
    data = _json(results / name)
    if not data:
        return {}
    rows = {r["method"]: r for r in data.get("rows", [])}
    if "cosine" not in rows:
        return {}
    cos = rows["cosine"]
    out: dict[str, Cell] = {}
    for m, r in rows.items():
        fb = r["config"].partition("|")[2]
        setting = dict(kv.split("=", 1) for kv in fb.split(",")) if fb else {}
        if scope == "unseen":
            c = r["vs_cosine_unseen"]
            out[m] = Cell(value=r["unseen"], source=name, delta=100 * c["mean_diff"], mark=_mark(c),
                          tested=True, p_value=c["p_value"], setting=setting, params=0)  # fmt: skip
        else:
            out[m] = Cell(
                value=r["test"], source=name, delta=r["test"] - cos["test"], setting=setting, params=0
            )
    return out


def _two_encoder_cell(r: Mapping[str, Any], t: Mapping[str, Any]) -> Cell:
    c = t.get("vs MiniLM cosine")  # None for MiniLM cosine itself, the baseline
    return Cell(
        value=100 * t["ndcg@10"], source=TWO_ENCODER, delta=100 * c["mean_diff"] if c else 0.0, mark=_mark(c),
        tested=True, p_value=c["p_value"] if c else None, params=0,
        setting={f"w_{k}": v for k, v in r.get("weights", {}).items()},
    )  # fmt: skip


def load_two_encoder(results: Path, name: str, scope: str) -> dict[str, Cell]:
    """``two_encoder.json``: each method on one set's test subset (``scope``: a TWO_ENCODER_SETS key)."""
    data = _json(results / name)
    set_name, subset = TWO_ENCODER_SETS[scope]
    methods = ((data or {}).get("results", {}).get(set_name) or {}).get("methods", {})
    return {
        m: _two_encoder_cell(r, r["test"][subset]) for m, r in methods.items() if subset in r.get("test", {})
    }


LOADERS: dict[str, Callable[[Path, str, str], dict[str, Cell]]] = {
    "eval": load_eval,
    "grid": load_grid,
    "sts-grid": load_sts_grid,
    "search": load_search,
    "prf": load_prf,
    "two-encoder": load_two_encoder,
}


@functools.cache
def load(results: Path, loader: str, name: str, scope: str) -> dict[str, Cell]:
    """One file's cells by method, read once."""
    return LOADERS[loader](results, name, scope)


def perf_cost(results: Path, method: str) -> dict[str, Any] | None:
    """Scoring 100 candidates at MiniLM's dimension, minus cosine on the same tensors (perf.json)."""
    data = _json(results / "perf.json")
    rows = [
        r
        for r in (data or {}).get("candidates", [])
        if r.get("candidates") == 100 and r.get("dim") == MINILM_DIM
    ]
    if not rows or f"{method}_ms" not in rows[0]:
        return None
    ms = rows[0][f"{method}_ms"] - rows[0]["cosine_ms"]
    return {"ms": ms, "text": f"+{ms:.2f}", "source": "perf.json",
            "definition": f"{method} minus cosine scoring of 100 candidates, d = {MINILM_DIM}, eager, median"}  # fmt: skip


def search_cost(results: Path, key: str) -> dict[str, Any] | None:
    """p50 latency of one search configuration minus dense search's (search_fusion.json)."""
    data = _json(results / "search_fusion.json")
    rows = (data or {}).get("rows", {})
    if key == "fused convex (chosen)" and data and data.get("best_weight") is not None:
        key = f"fused convex w={data['best_weight']:g}"
    if key not in rows or "cosine" not in rows:
        return None
    ms = rows[key]["ms_p50"] - rows["cosine"]["ms_p50"]
    return {"ms": ms, "text": f"{ms:+.1f}", "source": "search_fusion.json",
            "definition": f"p50 of SearchPipeline.search ({key}) minus dense search p50, per query"}  # fmt: skip


def head_cost(results: Path, cell: Cell | None, in_dim: int = MINILM_DIM) -> dict[str, Any] | None:
    """Head forward (median ms) for the query (batch 1) and for 256 documents (head_latency.json)."""
    kind = HEAD_TIMED.get(cell.head or "") if cell else None
    data = _json(results / "head_latency.json")
    if cell is None or kind is None or not data:
        return None
    out_dim = in_dim if kind == "bloch" else cell.out_dim
    ms = {r["batch"]: r["forward"]["ms"] for r in data.get("rows", [])
          if r["head"] == kind and r["in_dim"] == in_dim and r["out_dim"] == out_dim}  # fmt: skip
    if 1 not in ms:
        return None
    docs = f" (+{ms[256]:.1f} per 256 docs)" if 256 in ms else ""
    return {"ms": ms[1], "ms_256_docs": ms.get(256), "text": f"+{ms[1]:.2f}{docs}", "source": "head_latency.json",
            "definition": f"{kind} head forward {in_dim}->{out_dim}, batch 1 (query) and 256, median; "
            "document states can be computed at index time"}  # fmt: skip


def encoder_cost(results: Path, key: str) -> dict[str, Any] | None:
    """mpnet's query encode (two_encoder.json): "second" added to MiniLM's, or "alone" in place of it."""
    ms = (_json(results / TWO_ENCODER) or {}).get("query_encode_ms") or {}
    if "mpnet" not in ms:
        return None
    timed = "median of 30 fresh queries, batch 1; document vectors are computed at index time"
    if key == "alone":
        instead = f" (instead of MiniLM's {ms['minilm']:.2f})" if "minilm" in ms else ""
        text = f"{ms['mpnet']:.2f} mpnet query encode{instead}"
        what = "all-mpnet-base-v2 (onnx-int8) query encode in place of all-MiniLM-L6-v2's (torch)"
    else:
        text = f"+{ms['mpnet']:.2f} (2nd encoder query encode)"
        what = "the second encoder's query encode, all-mpnet-base-v2 (onnx-int8)"
        timed += "; rows that also fuse BM25 add its cost (see the BM25 fusion rows), not included"
    return {"ms": ms["mpnet"], "text": text, "source": TWO_ENCODER, "definition": f"{what}, {timed}"}


COSTS: dict[str, Callable[[Path, str], dict[str, Any] | None]] = {
    "perf": perf_cost,
    "search": search_cost,
    "encoder": encoder_cost,
}


def eval_refs(method: str, suffix: str = "") -> dict[str, tuple[Ref, ...]]:
    return {ds: tuple(Ref("eval", d + suffix, "", method) for d in dirs) for ds, dirs in EVAL_DIRS.items()}


def grid_refs(
    method: str, grids: Mapping[str, tuple[str, ...]], sts: tuple[str, ...]
) -> dict[str, tuple[Ref, ...]]:
    refs = {ds: tuple(Ref("grid", g, "unseen" if ds == "scifact-unseen" else "all", method) for g in names)
            for ds, names in grids.items()}  # fmt: skip
    refs["stsb"] = tuple(Ref("sts-grid", g, "", method) for g in sts)
    return refs


def untrained_specs() -> list[Spec]:
    """MiniLM's untrained methods, fusion in eval and in the search path, and PRF."""
    costs = {"fidelity": ("perf", "fidelity"), "fidelity@default": ("perf", "fidelity"), "hybrid": ("perf", "hybrid"), "bm25": ("search", "lexical"),
             "rrf": ("search", "fused rrf"), "convex": ("search", "fused convex w={w_bm25:g}")}  # fmt: skip
    specs = [Spec("untrained", label, eval_refs(m), 0, costs.get(m), baseline=m == "cosine")
             for m, label in EVAL_LABELS.items()]  # fmt: skip
    for key, label in SEARCH_LABELS.items():
        refs = {
            ds: (Ref("search", "search_fusion.json", s, key),)
            for ds, s in (("scifact", "all"), ("scifact-unseen", "unseen"))
        }
        specs.append(Spec("untrained", label, refs, 0, ("search", key)))
    for key, label in PRF_LABELS.items():
        refs = {
            "scifact": (Ref("prf", "prf.json", "all", key),),
            "scifact-unseen": (Ref("prf", "prf.json", "unseen", key),),
        }
        specs.append(Spec("prf", label, refs, 0))
    return specs


def found_methods(results: Path, suffix: str) -> list[str]:
    """Main methods of the eval folders (``suffix``: "" for MiniLM, "-mpnet"), in file order."""
    names: dict[str, None] = {}
    for dirs in EVAL_DIRS.values():
        for d in dirs:
            names.update(dict.fromkeys(load(results, "eval", d + suffix, "")))
    return list(names)


def _grid_methods(results: Path, grids: Mapping[str, tuple[str, ...]], first: tuple[str, ...]) -> list[str]:
    """``first``, then every other method the grids hold: the paper's order, then by name."""
    held = {m for gs in grids.values() for g in gs for m in load(results, "grid", g, "all")}
    order = list(TRAINED_LABELS)
    rest = sorted(held - set(first), key=lambda m: (order.index(m) if m in order else len(order), m))
    return [*first, *rest]


def trained_specs(results: Path) -> list[Spec]:
    """Heads trained on labelled queries, then on pseudo-queries (rows even before a grid exists)."""
    out = [
        Spec("trained", TRAINED_LABELS.get(m, m), grid_refs(m, GRIDS, STS_GRIDS))
        for m in _grid_methods(results, GRIDS, tuple(TRAINED_LABELS))
    ]
    return out + [
        Spec("pseudo", f"{TRAINED_LABELS.get(m, m)}, pseudo-queries", grid_refs(m, PSEUDO_GRIDS, ()))
        for m in _grid_methods(results, PSEUDO_GRIDS, PSEUDO_METHODS)
    ]


def _two_encoder_cost(method: str) -> tuple[str, str] | None:
    """mpnet's query encode where mpnet is used; BM25 + MiniLM as the convex row, at its cells' weight."""
    if "mpnet" in method:
        return ("encoder", "second" if "MiniLM" in method else "alone")  # BM25 + mpnet: mpnet alone
    return ("search", "fused convex w={w_bm25:g}") if "BM25" in method else None


def two_encoder_specs(results: Path) -> list[Spec]:
    """MiniLM + mpnet fusion (two_encoder.json): the script's methods, then any other the file holds."""
    held = {m for ds in TWO_ENCODER_SETS for m in load(results, "two-encoder", TWO_ENCODER, ds)}
    methods = [*TWO_ENCODER_METHODS, *sorted(held - set(TWO_ENCODER_METHODS))]
    return [
        Spec("two_encoder", m, {ds: (Ref("two-encoder", TWO_ENCODER, ds, m),) for ds in TWO_ENCODER_SETS}, 0,
             _two_encoder_cost(m), baseline=m == "MiniLM cosine")
        for m in methods
    ]  # fmt: skip


def specs(results: Path) -> list[Spec]:
    """Every row, in table order: the known methods, then any other a results file holds."""
    known = set(EVAL_LABELS) | set(RUN_LABELS)
    extra = [m for m in found_methods(results, "") if m not in known]
    out = untrained_specs() + [
        Spec("untrained", m, eval_refs(m), 0) for m in extra if not m.startswith("run:")
    ]
    out += trained_specs(results)
    runs = [*RUN_LABELS, *(m for m in extra if m.startswith("run:"))]
    out += [Spec("runs", RUN_LABELS.get(m, m), eval_refs(m), "external") for m in runs]
    mpnet = [
        *EVAL_LABELS,
        *(m for m in found_methods(results, "-mpnet") if m not in known and not m.startswith("run:")),
    ]
    out += [
        Spec("mpnet", EVAL_LABELS.get(m, m), eval_refs(m, "-mpnet"), 0, baseline=m == "cosine") for m in mpnet
    ]
    return out + two_encoder_specs(results)


def pick(results: Path, refs: tuple[Ref, ...]) -> tuple[Cell | None, list[Cell]]:
    """The first cell ``refs`` find, and the same method's cells in the other files."""
    found = [c for r in refs if (c := load(results, r.loader, r.name, r.scope).get(r.method)) is not None]
    return (found[0] if found else None), found[1:]


def vs_minilm(results: Path, cell: Cell, dataset: str) -> dict[str, Any] | None:
    """An mpnet cell against MiniLM's cosine: paired when both files hold per-query values."""
    base, _ = pick(results, eval_refs("cosine")[dataset])
    if base is None:
        return None
    out: dict[str, Any] = {
        "delta": cell.value - base.value,
        "mark": "",
        "tested": False,
        "source": base.source,
    }
    if cell.per_query and base.per_query:
        c = paired_comparison(cell.per_query, base.per_query)
        out.update(delta=100 * c.mean_diff, mark=c.mark, tested=True, p_value=c.p_value, n=c.n)
    return out


def row_cost(results: Path, spec: Spec, cells: Mapping[str, Cell]) -> dict[str, Any] | None:
    if spec.baseline:
        return {"text": "baseline", "ms": 0.0}
    if spec.cost is not None:  # a key may name the weight the row's files chose: "w={w_bm25:g}"
        setting = next((c.setting for c in cells.values() if c.setting), {})
        try:
            key = spec.cost[1].format(**setting)
        except (KeyError, ValueError):
            return None
        return COSTS[spec.cost[0]](results, key)
    if spec.section in ("trained", "pseudo"):
        return head_cost(results, next((c for c in cells.values() if c.head), None))
    return None


def build_row(results: Path, spec: Spec, baselines: dict[str, dict[str, float]]) -> dict[str, Any]:
    """One row: its cells (or "not run"), parameters, cost and sources."""
    cells: dict[str, Cell] = {}
    also: dict[str, dict[str, float]] = {}
    for ds in DATASETS:
        cell, others = pick(results, spec.refs.get(ds, ()))
        for c in [cell, *others] if cell else []:
            if c.delta is not None and not c.source.endswith("-mpnet"):
                baselines.setdefault(ds, {}).setdefault(c.source, c.value - c.delta)
        if cell is None:
            continue
        if spec.section == "mpnet":
            cell = replace(cell, vs_minilm=vs_minilm(results, cell, ds))
        cells[ds] = cell
        if others:
            also[ds] = {c.source: c.value for c in others}
    params = {c.params for c in cells.values() if c.params is not None}
    cost = row_cost(results, spec, cells)
    cost_source = [cost["source"]] if cost and "source" in cost else []
    sources = [*dict.fromkeys([*(c.source for c in cells.values()), *cost_source])]
    return {
        "section": spec.section, "method": spec.label, "baseline": spec.baseline,
        "params": spec.params if spec.params is not None else (sorted(params) if params else None),
        "cost": cost, "sources": sources, "also_in": also,
        "cells": {ds: cells[ds].to_dict() if ds in cells else {"status": "not run"} for ds in DATASETS},
    }  # fmt: skip


def build(results: Path = RESULTS) -> dict[str, Any]:
    """The table's rows from the files under ``results``, and what was read (no environment)."""
    load.cache_clear()
    baselines: dict[str, dict[str, float]] = {}
    rows = [build_row(results, s, baselines) for s in specs(results)]
    used = {s for r in rows for s in r["sources"]}
    expected = {d for dirs in EVAL_DIRS.values() for d in dirs} | {
        dirs[0] + "-mpnet" for dirs in EVAL_DIRS.values()
    }
    expected |= {f"train/{g}.json" for gs in (*GRIDS.values(), *PSEUDO_GRIDS.values(), STS_GRIDS) for g in gs}
    expected |= {"search_fusion.json", "prf.json", "perf.json", "head_latency.json", TWO_ENCODER}
    return {
        "command": "python benchmarks/what_works.py",
        "datasets": DATASETS,
        "sections": SECTIONS,
        "rows": rows,
        "cosine_by_source": baselines,
        "missing_sources": sorted(p for p in expected if not (results / p).exists()),
        "not_tabulated": {k: v for k, v in NOT_TABULATED.items() if (results / k).exists() and k not in used},
    }


def _delta_text(delta: float, mark: str, tested: bool) -> str:
    return f"{delta:+.2f}{mark}" + ("" if tested else " n.t.")


def cell_text(cell: Mapping[str, Any], baseline: bool) -> str:
    """``value ± SE (Δ vs cosine; vs MiniLM Δ)``, or "not run"."""
    if "status" in cell:
        return cell["status"]
    text = f"{cell['value']:.2f}" + (f" ± {cell['se']:.2f}" if "se" in cell else "")
    parts = [] if baseline else [_delta_text(cell["delta"], cell.get("mark", ""), cell.get("tested", False))]
    if "vs_minilm" in cell:
        v = cell["vs_minilm"]
        parts.append("vs MiniLM " + _delta_text(v["delta"], v["mark"], v["tested"]))
    return text + (f" ({'; '.join(parts)})" if parts else "")


def params_text(params: Any) -> str:
    if params is None:
        return "not run"
    if isinstance(params, str):
        return params
    return " / ".join(f"{p:,}" for p in params) if isinstance(params, list) else f"{params:,}"


def table_lines(payload: Mapping[str, Any]) -> list[str]:
    """The one table: a bold line per section, a line per row."""
    cols = ["method", *payload["datasets"].values(), "trainable params", "extra ms/query", "sources"]
    lines = ["| " + " | ".join(cols) + " |", "|---|" + "---:|" * (len(cols) - 3) + "---:|---|"]
    for key, title in payload["sections"].items():
        rows = [r for r in payload["rows"] if r["section"] == key]
        if not rows:
            continue
        lines.append(f"| **{title}** |" + " |" * (len(cols) - 1))
        for r in rows:
            cells = [cell_text(r["cells"][ds], r["baseline"]) for ds in payload["datasets"]]
            cost = r["cost"]["text"] if r["cost"] else "not measured"
            sources = ", ".join(r["sources"]) or "—"
            lines.append(
                f"| {r['method']} | " + " | ".join([*cells, params_text(r["params"]), cost, sources]) + " |"
            )
    return lines


def _setting_text(setting: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items())


def settings_lines(payload: Mapping[str, Any]) -> list[str]:
    """Per row, the settings its files record (chosen tau/alpha/weight, seeds, training share)."""
    out = []
    for r in payload["rows"]:
        per = {
            payload["datasets"][ds]: _setting_text(c["setting"])
            for ds, c in r["cells"].items()
            if c.get("setting")
        }
        if not per:
            continue
        same = len(set(per.values())) == 1 and len(per) > 1
        text = (
            f"all cells: {next(iter(per.values()))}"
            if same
            else "; ".join(f"{k}: {v}" for k, v in per.items())
        )
        out.append(f"- {r['method']} ({r['section']}): {text}")
    return out


def check_lines(payload: Mapping[str, Any]) -> list[str]:
    """Cosine as each file records it, and cells another file holds with a different value."""
    out = []
    for ds, by_source in payload["cosine_by_source"].items():
        groups: dict[str, list[str]] = {}
        for src, v in by_source.items():
            groups.setdefault(f"{v:.2f}", []).append(src)
        flag = "" if len(groups) == 1 else " ← differ"
        out.append(
            f"- {payload['datasets'][ds]}: "
            + "; ".join(f"{v} ({', '.join(s)})" for v, s in groups.items())
            + flag
        )
    pairs: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
    for r in payload["rows"]:
        for ds, others in r["also_in"].items():
            mine = r["cells"][ds]
            for src, v in others.items():
                pairs.setdefault((ds, mine["source"], src), []).append((r["method"], abs(v - mine["value"])))
    for (ds, used, other), rows in pairs.items():
        names = "; ".join(m for m, _ in rows)
        worst = max(d for _, d in rows)
        out.append(
            f"- {payload['datasets'][ds]}: {used} used, {other} also holds {names} (largest |difference| {worst:.2f})"
        )
    return out


LEGEND = [
    "Scores x100; in brackets the difference from the cosine baseline of the same file. ▲/▼: a significant "
    "paired difference as the file records it (qrerank eval, search_fusion, prf, train grids: paired t-test "
    "p < 0.05 and a bootstrap 95% CI excluding 0; STS-B eval: the bootstrap CI excludes 0; STS-B heads: every "
    "seed's bootstrap CI is on the same side of 0). n.t.: the file holds only the means, no paired test. "
    "± : standard error over seeds. not run: no results file holds that cell.",
    "",
    "Trained heads on SciFact rerank the top 100 of untrained cosine (the eval rows search the whole corpus; "
    "cosine scores the same either way, see the checks); on DL they rerank the BM25 top 100 and train on "
    "the other year, as the eval rows tune tau/alpha on it. External runs rank their own candidates. mpnet cells: Δ vs mpnet cosine, then "
    "vs MiniLM cosine (paired only where both eval folders hold per_query.json). Two-encoder cells: Δ vs "
    "MiniLM cosine on the same candidates, ▲/▼ as two_encoder.json records it; there, SciFact reranks the "
    "union of the MiniLM, mpnet and BM25 top 100 over the full corpus (tuned on the 809 train claims) and "
    "DL reranks the BM25 top 100 (tuned on the other year).",
]


def render(payload: Mapping[str, Any]) -> str:
    """The Markdown page: the table, its legend, settings, cost definitions, checks and files."""
    measured = [r for r in payload["rows"] if r["cost"] and "source" in r["cost"]]
    md = ["# What works", "", f"Built by `{payload['command']}` from benchmarks/results/ (no model run).", ""]
    md += [*table_lines(payload), "", *LEGEND, "", "Extra ms/query, as measured:", ""]
    md += [f"- {r['method']}: {r['cost']['definition']} ({r['cost']['source']})" for r in measured]
    md += ["", "Settings the files record, per row:", "", *settings_lines(payload), ""]
    md += [
        "Cross-file checks (cosine as each file records it; the same cell in two files):",
        "",
        *check_lines(payload),
    ]
    md += [
        "",
        "Sources not found (their cells say not run): " + (", ".join(payload["missing_sources"]) or "none"),
        "",
    ]
    md += ["Read but not tabulated:", "", *[f"- {k}: {v}" for k, v in payload["not_tabulated"].items()]]
    return "\n".join(md) + "\n"


def main() -> int:
    payload = build()
    md = render(payload)
    write_results(OUT.with_suffix(".json"), payload)
    OUT.with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
