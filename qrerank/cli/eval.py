"""``qrerank eval DATA_DIR --protocol full|rerank|judged|sts --out OUT_DIR``: benchmark the methods.

Writes ``OUT_DIR/metrics.json`` (``{"METHOD": {"nDCG@10": .., "RR@10": .., "R@100": .., "AP": ..}}``),
``meta.json``, ``table.md``, ``runs/*.trec`` and PNG plots; prints the table. ``--protocol sts``
scores an STS-B folder (Spearman/Pearson of cosine, fidelity and hybrid) instead.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from qrerank.cli._common import add_runtime_arg, out_dir, positive_int, write
from qrerank.embed.models import DEFAULT_MODEL
from qrerank.rerank.methods import EVAL_METHODS, PROTOCOLS

DEFAULT_METHODS = ",".join(EVAL_METHODS)


def float_list(value: str) -> tuple[float, ...]:
    """Argparse type: ``"0.1,0.5"`` -> ``(0.1, 0.5)``; empty or non-numeric is an ArgumentTypeError."""
    try:
        xs = tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    if not xs:
        raise argparse.ArgumentTypeError("expected at least one number")
    return xs


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``qrerank eval`` and its options to the subcommand parsers ``sub``."""
    p = sub.add_parser(
        "eval",
        help="evaluate ranking methods on a BEIR-layout dataset folder",
        description="Evaluate bm25, cosine, fidelity, hybrid, rrf, trained heads and run files on the same "
        "candidates, with ir-measures metrics and paired significance against cosine.",
    )
    p.add_argument(
        "data_dir", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv[, runs/*.trec]"
    )
    p.add_argument("--protocol", choices=PROTOCOLS, required=True,
                   help="full: whole corpus; rerank: top-K of --run; judged: judged docs with text; sts: STS-B")  # fmt: skip
    p.add_argument("--methods", default=DEFAULT_METHODS,
                   help=f"comma list of bm25,cosine,fidelity,hybrid,rrf,run:NAME,head:PATH; with --protocol rerank also "
                   f"first, rrf-run, fused-run[:W] (the run's own scores, fused with cosine) (default {DEFAULT_METHODS})")  # fmt: skip
    p.add_argument("--out", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument("--split", default="test", help="qrels split to evaluate (default test)")
    p.add_argument(
        "--run", default="bm25", help="run file of runs/ reranked by --protocol rerank (default bm25)"
    )
    p.add_argument(
        "--k", type=positive_int, default=100, help="candidates per query / retrieval depth (default 100)"
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"encoder name or path (default {DEFAULT_MODEL})")
    p.add_argument("--rel-level", type=positive_int, default=None,
                   help="grade counted relevant by RR/R/AP (default: from PROVENANCE.md, else 1)")  # fmt: skip
    p.add_argument("--tune-split", default=None, help="split that picks tau and alpha (e.g. train; sts: dev)")
    p.add_argument(
        "--tune-data", default=None, metavar="DIR", help="dataset folder of --tune-split (default DATA_DIR)"
    )
    p.add_argument("--unseen-from", default=None, metavar="SPLIT",
                   help="evaluate only the queries none of whose relevant documents is relevant to a query "
                   "of qrels/SPLIT.tsv (e.g. train): held out from what a head trained on SPLIT saw")  # fmt: skip
    p.add_argument("--taus", type=float_list, default=None, help="tau sweep (default 0.25..8 x 1/sqrt(d))")
    p.add_argument("--alphas", type=float_list, default=None, help="alpha sweep (default 0, 0.1, ..., 1)")
    p.add_argument("--tau", type=float, default=None, help="tau without --tune-split (default 1/sqrt(d))")
    p.add_argument("--alpha", type=float, default=0.5, help="alpha without --tune-split (default 0.5)")
    p.add_argument("--rrf-k", type=positive_int, default=60, help="RRF constant (default 60)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="encoding batch size (default 64)")
    p.add_argument(
        "--bootstrap", type=positive_int, default=None, help="bootstrap resamples (default 10000; sts: 2000)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide encoding progress bars")
    add_runtime_arg(p)
    p.set_defaults(func=run)


def _command_line() -> str | None:
    """The command as typed, for meta.json (None when called as a library, e.g. from tests)."""
    return shlex.join(["qrerank", *sys.argv[1:]]) if sys.argv[1:2] == ["eval"] else None


def run(args: argparse.Namespace) -> int:
    """Runs ``qrerank eval`` with the parsed ``args``; returns the exit code."""
    from qrerank.embed.models import load_encoder
    from qrerank.embed.runtime import parse_runtime
    from qrerank.errors import InputError

    out_dir(args.out)  # refused now, not after the whole evaluation has run
    runtime = parse_runtime(args.runtime)
    for a in args.alphas or ():
        if not 0.0 <= a <= 1.0:
            raise InputError(f"alphas must lie in [0, 1], got {a}")
    if any(t <= 0 for t in (args.taus or ())) or (args.tau is not None and args.tau <= 0):
        raise InputError("tau must be positive")
    if args.protocol == "sts":
        if args.unseen_from:
            raise InputError("--unseen-from needs qrels: it does not apply to --protocol sts")
        from qrerank.eval.methods import parse_methods
        from qrerank.eval.sts import evaluate_sts, format_sts_table, write_sts_outputs
        from qrerank.eval.sweep import ALPHAS
        from qrerank.rerank.methods import Method

        # cosine, fidelity and hybrid always run on STS; head:PATH entries add trained heads.
        heads = [s.arg for s in parse_methods(args.methods) if s.kind is Method.HEAD]
        encoder = load_encoder(args.model, runtime=runtime)
        result = evaluate_sts(
            args.data_dir, encoder=encoder, split=args.split, tune_split=args.tune_split, taus=args.taus,
            alphas=args.alphas or ALPHAS, batch_size=args.batch_size, show_progress=not args.no_progress,
            n_resamples=args.bootstrap or 2000, heads=heads,
        )  # fmt: skip
        result["meta"]["command"] = _command_line()
        result["meta"]["runtime"] = runtime.value
        write_sts_outputs(result, args.out)
        write(format_sts_table(result))
        return 0
    from qrerank.eval.evaluator import EvalConfig, evaluate
    from qrerank.eval.report import format_table, write_outputs
    from qrerank.eval.sweep import ALPHAS

    cfg = EvalConfig(
        data_dir=args.data_dir, protocol=args.protocol, methods=args.methods, split=args.split, run=args.run,
        k=args.k, model=args.model, rel_level=args.rel_level, taus=args.taus, alphas=args.alphas or ALPHAS,
        tau=args.tau, alpha=args.alpha, tune_split=args.tune_split, tune_dir=args.tune_data, rrf_k=args.rrf_k,
        unseen_from=args.unseen_from,
        batch_size=args.batch_size, n_resamples=args.bootstrap or 10_000, show_progress=not args.no_progress,
        extra_meta={"command": _command_line(), "runtime": runtime.value},
    )  # fmt: skip
    # torch: evaluate() loads cfg.model itself, after checking the data; another runtime is
    # loaded here and handed in (the evaluator knows models by name only).
    result = evaluate(cfg, encoder=load_encoder(args.model, runtime=runtime) if runtime.is_onnx else None)
    write_outputs(result, args.out, result["runs"])
    write(format_table(result))
    write(f"wrote {args.out}/metrics.json, meta.json, table.md, runs/, *.png")
    return 0
