"""``evaluate(EvalConfig)``: every method on the same candidates, metrics, significance, sweeps.

Protocols (how each query's candidate list is built):

- ``full``: the whole corpus (retrieval; SciFact);
- ``rerank``: the top ``k`` of a run file ``runs/<run>.trec`` that have text (TREC DL pools);
- ``judged``: every judged document of the query that has text (arXiv 2501.04591's TREC setup).

Qrels are never filtered: judged documents without text still count in the ideal DCG and in
recall, as in the official evaluation. The cosine baseline always runs, and every method is
compared with it query by query. tau and alpha are chosen on a tuning split (``tune_split``, e.g.
SciFact train, or DL 2019 for DL 2020) when one is given, never on the evaluated queries; the
full sweep curves on the evaluated split are reported beside the chosen values.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qrerank.core.encoding import default_tau
from qrerank.embed.base import Encoder
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.errors import InputError
from qrerank.eval.datasets import Dataset, load_dataset, read_split_qrels
from qrerank.eval.meta import environment
from qrerank.eval.methods import CONVEX_WEIGHT, BM25Scorer, CandidateScorer, parse_methods
from qrerank.eval.significance import paired_comparison
from qrerank.eval.sweep import ALPHAS, Tuned, best, tau_grid, tune_tau_alpha
from qrerank.metrics import PRIMARY_METRIC, evaluate_run, measure_names
from qrerank.rerank.methods import (
    CONVEX_METHODS,
    EVAL_METHODS,
    NEEDS_BM25,
    NEEDS_ENCODER,
    NEEDS_RUN_SCORES,
    Method,
    MethodSpec,
    Protocol,
)

log = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    """What to evaluate. ``taus=None`` sweeps ``TAU_MULTIPLIERS / sqrt(d)``; ``tau=None`` is 1/sqrt(d)."""

    data_dir: str | Path
    protocol: Protocol | str = Protocol.RERANK
    methods: str | tuple[str, ...] = tuple(m.value for m in EVAL_METHODS)
    split: str = "test"
    run: str = "bm25"
    k: int = 100
    model: str = DEFAULT_MODEL
    rel_level: int | None = None
    taus: tuple[float, ...] | None = None
    alphas: tuple[float, ...] = ALPHAS
    tau: float | None = None
    alpha: float = 0.5
    tune_split: str | None = None
    tune_dir: str | Path | None = None
    unseen_from: str | None = None
    rrf_k: int = 60
    batch_size: int = 64
    n_resamples: int = 10_000
    seed: int = 0
    show_progress: bool = True
    extra_meta: dict[str, Any] = field(default_factory=dict)


def parse_protocol(value: Protocol | str) -> Protocol:
    """``value`` as a Protocol; an unknown name is an InputError listing the choices."""
    try:
        return Protocol(value)
    except ValueError:
        raise InputError(
            f"unknown protocol {value!r}; choose one of {', '.join(p.value for p in Protocol)}"
        ) from None


def build_candidates(ds: Dataset, protocol: Protocol, run: str, k: int) -> tuple[dict[str, list[str]], str]:
    """qid -> candidate doc ids, and a one-line description for the report."""
    corpus = ds.corpus
    if protocol is Protocol.FULL:
        ids = list(corpus)
        return {q: ids for q in ds.queries}, f"whole corpus ({len(ids)} docs)"
    if protocol is Protocol.JUDGED:
        cands = {q: ds.judged(q) for q in ds.queries}
        n = sum(map(len, cands.values()))
        return cands, f"judged docs with text ({n} pairs, {n / max(1, len(cands)):.1f} per query)"
    base = ds.run(run)
    cands, missing_text = {}, 0
    for q in ds.queries:
        top = [d for d, _ in base.get(q, [])[:k]]
        cands[q] = [d for d in top if d in corpus]
        missing_text += len(top) - len(cands[q])
    if missing_text:
        log.warning("%d candidates of run %s have no text in corpus.jsonl and are dropped", missing_text, run)
    empty = [q for q, c in cands.items() if not c]
    if len(empty) == len(cands):
        raise InputError(f"run {run!r} has no candidates with text for any query of {ds.root} ({ds.split})")
    note = f", {len(empty)} queries without candidates" if empty else ""
    return cands, f"top-{k} of runs/{run}.trec ({missing_text} without text dropped{note})"


def _embed(
    ds: Dataset, cands: dict[str, list[str]], encoder: Encoder, cfg: EvalConfig
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Encode the queries and the union of candidates (cached on disk by the encoder)."""
    qids = list(ds.queries)
    doc_ids = list(dict.fromkeys(d for c in cands.values() for d in c))
    corpus = ds.corpus
    log.info("%s: encoding %d queries and %d documents", ds.name, len(qids), len(doc_ids))
    q = encoder.encode(
        [ds.queries[x] for x in qids], batch_size=cfg.batch_size, show_progress=cfg.show_progress
    )
    d = encoder.encode(
        [corpus[x].content for x in doc_ids], batch_size=cfg.batch_size, show_progress=cfg.show_progress
    )
    return doc_ids, q, d


def _score(
    scorer: CandidateScorer, ds: Dataset, spec: MethodSpec, depth: int, heads: dict
) -> tuple[Run, dict, dict]:
    run = scorer.run(spec, depth, heads)
    agg, pq = evaluate_run(ds.qrels, run, scorer.qids, ds.rel_level)
    return run, agg, pq


def _tune(
    scorer: CandidateScorer, ds: Dataset, taus: list[float], alphas: tuple[float, ...], depth: int
) -> Tuned:
    """tau and alpha by nDCG@10 on the tuning split (:func:`qrerank.eval.sweep.tune_tau_alpha`)."""

    def ndcg(kind: Method, tau: float, alpha: float | None) -> dict[str, float]:
        return _score(scorer, ds, MethodSpec(kind=kind, tau=tau, alpha=alpha), depth, {})[1]

    return tune_tau_alpha(ndcg, taus, alphas, PRIMARY_METRIC)


def _tune_weight(
    scorer: CandidateScorer, ds: Dataset, kind: Method, tau: float, weights: tuple[float, ...], depth: int
) -> tuple[float, dict[float, dict]]:
    """The BM25 weight of a convex method maximising nDCG@10 on the tuning split, and its curve."""
    curve = {w: _score(scorer, ds, MethodSpec(kind=kind, tau=tau, weight=w), depth, {})[1] for w in weights}
    return best(curve, PRIMARY_METRIC), curve


@dataclass
class _Setup:
    """What the checks and the datasets give before any encoding."""

    protocol: Protocol
    specs: list[MethodSpec]
    ds: Dataset
    tune_ds: Dataset | None
    cands: dict[str, list[str]]
    cand_note: str
    anchors: dict[str, Any]
    needs_run: list[str]


@dataclass
class _Tuning:
    """tau, alpha and the convex weights used on the evaluated split, with their tuning curves."""

    tau: float
    alpha: float
    weights: dict[Method, float]
    info: dict[str, Any]
    tau_curve: dict[float, Any] = field(default_factory=dict)
    alpha_curve: dict[float, Any] = field(default_factory=dict)
    weight_curves: dict[Method, dict[float, Any]] = field(default_factory=dict)


def evaluate(cfg: EvalConfig, *, encoder: Encoder | None = None) -> dict[str, Any]:
    """Run every method of ``cfg`` on one dataset split. See the module docstring.

    Returns a dict with ``primary_metric``, ``metrics`` (method -> metric -> fraction),
    ``main`` (method names of the table), ``labels``, ``per_query``, ``significance`` (vs
    cosine), ``sweeps``, ``meta`` and ``runs`` (method -> TREC run dict, for writing).
    """
    t0 = time.perf_counter()
    setup = _setup(cfg)
    specs, ds = setup.specs, setup.ds
    needs_dense = any(s.kind in NEEDS_ENCODER for s in specs)
    enc = encoder if encoder is not None else (load_encoder(cfg.model) if needs_dense else None)
    t_enc = time.perf_counter()
    scorer, bm25 = _scorer(cfg, setup, enc)
    t_enc = time.perf_counter() - t_enc
    heads = _load_heads(cfg, setup, enc, scorer) if enc is not None else {}
    dim = enc.dim if enc is not None else 0
    taus = tau_grid(dim, cfg.taus) if dim else []
    tuning = _tuning(cfg, setup, enc, bm25, taus)
    if dim and tuning.tau not in taus:
        taus = sorted([*taus, tuning.tau])
    metrics, per_query, runs, main, labels = _main_methods(cfg, setup, scorer, heads, tuning)
    sweeps = _sweeps(cfg, scorer, ds, heads, tuning, taus, dim, metrics, runs)
    significance = {
        name: {
            m: paired_comparison(
                per_query[name][m], per_query["cosine"][m], n_resamples=cfg.n_resamples, seed=cfg.seed
            ).to_dict()
            for m in per_query[name]
        }
        for name in main
        if name != "cosine"
    }
    meta = _meta(
        cfg,
        setup,
        enc,
        bm25,
        tuning.info,
        {"encode": round(t_enc, 2), "total": round(time.perf_counter() - t0, 2)},
    )
    return {
        "primary_metric": PRIMARY_METRIC,
        "metrics": metrics,
        "main": main,
        "labels": labels,
        "per_query": per_query,
        "significance": significance,
        "sweeps": sweeps,
        "meta": meta,
        "runs": runs,
    }


def _setup(cfg: EvalConfig) -> _Setup:
    """Parse and check everything that can fail before encoding; load the split(s) and candidates."""
    protocol = parse_protocol(cfg.protocol)
    if cfg.k < 1:
        raise InputError(f"k must be positive, got {cfg.k}")
    specs = parse_methods(cfg.methods)
    if MethodSpec(kind=Method.COSINE) not in specs:
        specs.insert(0, MethodSpec(kind=Method.COSINE))  # the baseline always runs
    ds = load_dataset(cfg.data_dir, split=cfg.split, rel_level=cfg.rel_level)
    if cfg.unseen_from:
        if cfg.unseen_from == cfg.split:
            raise InputError(f"--unseen-from {cfg.unseen_from!r} is the evaluated split itself")
        ds = ds.unseen_from(read_split_qrels(ds.root, cfg.unseen_from), source=f"{ds.name}/{cfg.unseen_from}")
    anchors = {s.arg: ds.run(s.arg) for s in specs if s.kind is Method.RUN}  # fail early on bad names
    for s in specs:
        if s.kind is Method.HEAD and not Path(s.arg).exists():
            raise InputError(f"no head at {s.arg}")
    needs_run = [s.name for s in specs if s.kind in NEEDS_RUN_SCORES]
    if needs_run and protocol is not Protocol.RERANK:
        raise InputError(
            f"{', '.join(needs_run)} use the --run's first-stage scores: they need --protocol rerank"
        )
    cands, cand_note = build_candidates(ds, protocol, cfg.run, cfg.k)
    return _Setup(protocol, specs, ds, _tune_dataset(cfg, ds), cands, cand_note, anchors, needs_run)


def _tune_dataset(cfg: EvalConfig, ds: Dataset) -> Dataset | None:
    """The tuning split, refused when it is the evaluated split or shares its queries."""
    if not cfg.tune_split:
        return None
    tune_root = Path(cfg.tune_dir) if cfg.tune_dir else Path(cfg.data_dir)
    if tune_root.resolve() == Path(cfg.data_dir).resolve() and cfg.tune_split == cfg.split:
        raise InputError(f"refusing to tune on the evaluated split {cfg.split!r}: give another --tune-split")
    tune_ds = load_dataset(tune_root, split=cfg.tune_split, rel_level=ds.rel_level)
    overlap = set(tune_ds.queries) & set(ds.queries)
    if overlap and tune_ds.root.resolve() == ds.root.resolve():
        raise InputError(f"tuning split {cfg.tune_split!r} shares {len(overlap)} queries with {cfg.split!r}")
    return tune_ds


def _scorer(cfg: EvalConfig, setup: _Setup, enc: Encoder | None) -> tuple[CandidateScorer, BM25Scorer | None]:
    """Encode the queries and candidates (when a dense method runs), index BM25 (when needed)."""
    ds, specs = setup.ds, setup.specs
    q_emb = d_emb = None
    doc_ids: list[str] = []
    if enc is not None:
        doc_ids, q_emb, d_emb = _embed(ds, setup.cands, enc, cfg)
    bm25 = BM25Scorer(list(ds.corpus.values())) if any(s.kind in NEEDS_BM25 for s in specs) else None
    scorer = CandidateScorer(
        qids=list(ds.queries), queries=ds.queries, candidates=setup.cands, doc_ids=doc_ids,
        q_emb=q_emb, d_emb=d_emb, bm25=bm25, rrf_k=cfg.rrf_k,
        run_scores=ds.run(cfg.run) if setup.needs_run else None,
    )  # fmt: skip
    return scorer, bm25


def _load_heads(cfg: EvalConfig, setup: _Setup, enc: Encoder, scorer: CandidateScorer) -> dict[str, Any]:
    """Each ``head:PATH`` method's head (float64), and its fine-tuned encoder's embeddings if any."""
    from qrerank.heads.bundle import load_head_bundle

    heads: dict[str, Any] = {}
    for key in dict.fromkeys(s.arg for s in setup.specs if s.kind is Method.HEAD):
        bundle = load_head_bundle(key, in_dim=enc.dim)
        heads[key] = bundle.head.double()  # float64 like every dense score here (see CandidateScorer)
        if bundle.encoder is not None:
            # A head trained with its encoder's last layers scores that encoder's embeddings.
            log.info("%s: encoding with its fine-tuned encoder %s", key, bundle.encoder.name)
            _, t_q, t_d = _embed(
                setup.ds, setup.cands, bundle.encoder, cfg
            )  # same candidates, same row order
            scorer.set_head_embeddings(key, t_q, t_d)
    return heads


def _tuning(
    cfg: EvalConfig, setup: _Setup, enc: Encoder | None, bm25: BM25Scorer | None, taus: list[float]
) -> _Tuning:
    """tau, alpha and convex weights: chosen on the tuning split when there is one, else the defaults."""
    dim = enc.dim if enc is not None else 0
    weights = {k: CONVEX_WEIGHT for k in CONVEX_METHODS}  # BM25 weight of each convex method
    tune_ds = setup.tune_ds
    if tune_ds is None or enc is None:
        tau = cfg.tau if cfg.tau is not None else (default_tau(dim) if dim else 0.0)
        tuning = _Tuning(tau, cfg.alpha, weights, {"source": "defaults (no tuning split)", "split": None})
    else:
        t_cands, _ = build_candidates(tune_ds, setup.protocol, cfg.run, cfg.k)
        t_doc_ids, t_q, t_d = _embed(tune_ds, t_cands, enc, cfg)
        convex = [s.kind for s in setup.specs if s.kind in CONVEX_METHODS]
        t_bm25 = None
        if convex:
            same = tune_ds.root.resolve() == setup.ds.root.resolve() and bm25 is not None
            t_bm25 = bm25 if same else BM25Scorer(list(tune_ds.corpus.values()))
        t_scorer = CandidateScorer(
            qids=list(tune_ds.queries), queries=tune_ds.queries, candidates=t_cands, doc_ids=t_doc_ids,
            q_emb=t_q, d_emb=t_d, bm25=t_bm25,
        )  # fmt: skip
        tuned = _tune(t_scorer, tune_ds, taus, cfg.alphas, cfg.k)
        info = {
            "source": f"{tune_ds.name} {tune_ds.split} ({len(tune_ds.queries)} queries)",
            "split": f"{tune_ds.name}/{tune_ds.split}",
        }
        tuning = _Tuning(tuned.tau, tuned.alpha, weights, info, tuned.tau_curve, tuned.alpha_curve)
        for kind in convex:
            weights[kind], tuning.weight_curves[kind] = _tune_weight(
                t_scorer, tune_ds, kind, tuned.tau, cfg.alphas, cfg.k
            )
    if dim:
        tuning.info.update(tau=tuning.tau, alpha=tuning.alpha, tau_multiplier=tuning.tau / default_tau(dim))
        used = [k for k in CONVEX_METHODS if any(s.kind is k for s in setup.specs)]
        tuning.info.update({f"{k.value}_weight": weights[k] for k in used})
    return tuning


def _main_methods(
    cfg: EvalConfig, setup: _Setup, scorer: CandidateScorer, heads: dict[str, Any], tuning: _Tuning
) -> tuple[dict[str, dict[str, float]], dict[str, dict], dict[str, Run], list[str], dict[str, str]]:
    """Metrics, per-query values, runs, table order and labels of the requested methods."""
    ds, tau, alpha = setup.ds, tuning.tau, tuning.alpha
    metrics: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict] = {}
    runs: dict[str, Run] = {}
    main: list[str] = []
    labels: dict[str, str] = {}
    for s in setup.specs:
        if s.kind is Method.RUN:
            run = {q: dict(setup.anchors[s.arg].get(q, [])) for q in ds.queries}
            agg, pq = evaluate_run(ds.qrels, run, ds.queries, ds.rel_level)
        else:
            if s.kind is Method.FIDELITY:
                s = MethodSpec(kind=s.kind, tau=tau)
                labels[s.name] = f"fidelity (τ={tau:.4g})"
            elif s.kind is Method.HYBRID:
                s = MethodSpec(kind=s.kind, tau=tau, alpha=alpha)
                labels[s.name] = f"hybrid (τ={tau:.4g}, α={alpha:.2g})"
            elif s.kind in CONVEX_METHODS:
                s = MethodSpec(kind=s.kind, tau=tau, weight=tuning.weights[s.kind])
                labels[s.name] = f"{s.kind.value} (w_bm25={tuning.weights[s.kind]:.2g})"
            run, agg, pq = _score(scorer, ds, s, cfg.k, heads)
            runs[s.name] = run
        metrics[s.name], per_query[s.name] = agg, pq
        main.append(s.name)
    return metrics, per_query, runs, main, labels


def _sweeps(
    cfg: EvalConfig,
    scorer: CandidateScorer,
    ds: Dataset,
    heads: dict[str, Any],
    tuning: _Tuning,
    taus: list[float],
    dim: int,
    metrics: dict[str, dict[str, float]],
    runs: dict[str, Run],
) -> dict[str, list[dict[str, Any]]]:
    """The tau and alpha curves on the evaluated split (beside the tuning split's), filling ``metrics`` and ``runs``."""
    sweeps: dict[str, list[dict[str, Any]]] = {"tau": [], "alpha": []}
    if dim:
        for t in taus:
            spec = MethodSpec(kind=Method.FIDELITY, tau=t, label=f"fidelity[tau={t:.4g}]")
            runs[spec.name], metrics[spec.name], _ = _score(scorer, ds, spec, cfg.k, heads)
            sweeps["tau"].append(
                {
                    "tau": t,
                    "multiplier": t / default_tau(dim),
                    "test": metrics[spec.name],
                    "tune": tuning.tau_curve.get(t),
                }
            )
        for a in cfg.alphas:
            label = f"hybrid[tau={tuning.tau:.4g},alpha={a:.2g}]"
            spec = MethodSpec(kind=Method.HYBRID, tau=tuning.tau, alpha=a, label=label)
            runs[spec.name], metrics[spec.name], _ = _score(scorer, ds, spec, cfg.k, heads)
            sweeps["alpha"].append(
                {"alpha": a, "test": metrics[spec.name], "tune": tuning.alpha_curve.get(a)}
            )
    for kind, curve in tuning.weight_curves.items():  # the convex weights' curves on the tuning split
        sweeps[f"{kind.value}-weight"] = [{"weight": w, "tune": m} for w, m in curve.items()]
    return sweeps


def _meta(
    cfg: EvalConfig,
    setup: _Setup,
    enc: Encoder | None,
    bm25: BM25Scorer | None,
    tuning: dict[str, Any],
    seconds: dict[str, float],
) -> dict[str, Any]:
    """meta.json: what was evaluated, how, with which tuning, on what machine."""
    ds, protocol = setup.ds, setup.protocol
    return {
        "dataset": ds.name,
        "data_dir": str(ds.root),
        "split": ds.split,
        "protocol": protocol.value,
        "run": cfg.run if protocol is Protocol.RERANK else None,
        "k": cfg.k,
        "n_queries": len(ds.queries),
        "subset": ds.subset,
        "skipped_queries_without_text": len(ds.skipped_queries),
        "candidates": setup.cand_note,
        "coverage": ds.coverage(),
        "rel_level": ds.rel_level,
        "rel_level_source": ds.rel_level_source,
        "measures": measure_names(ds.rel_level),
        "primary_metric": PRIMARY_METRIC,
        "model": enc.name if enc is not None else None,
        "dim": enc.dim if enc is not None else None,
        "tuning": tuning,
        "bm25": {"library": "bm25s", "k1": 0.9, "b": 0.4, "method": "lucene", "stemmer": "snowball english"}
        if bm25 is not None
        else None,
        "rrf_k": cfg.rrf_k,
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items() if k != "extra_meta"
        },
        "seconds": seconds,
        "environment": environment(),
        **cfg.extra_meta,
    }
