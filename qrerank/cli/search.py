"""``qrerank search INDEX_DIR "query"``: retrieve top-k, rerank, print top-n.

``--method lexical`` ranks by BM25 alone; ``fused`` (the default where the index has BM25)
fuses cosine with BM25 over the union of both top-k lists (``--fusion convex|rrf``,
``--lexical-weight W``); see ``qrerank.rerank.pipeline``.
"""

from __future__ import annotations

import argparse

from qrerank.cli._common import (
    add_runtime_arg,
    add_scoring_args,
    positive_int,
    print_hits,
    require_text,
    unit_float,
)
from qrerank.rerank.methods import FUSIONS, METHODS, SEARCH_METHODS
from qrerank.rerank.pipeline import LEXICAL_WEIGHT, SearchPipeline


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``qrerank search`` and its options to the subcommand parsers ``sub``."""
    p = sub.add_parser("search", help="search an index directory and rerank the candidates")
    p.add_argument("index_dir", help="directory written by `qrerank index`")
    p.add_argument("query")
    p.add_argument("--k", type=positive_int, default=100, help="candidates retrieved (default 100)")
    add_scoring_args(p, default_method=None, methods=SEARCH_METHODS)
    p.add_argument("--fusion", choices=FUSIONS, default=None,
                   help="fused: convex (default, measured best) or rrf")  # fmt: skip
    p.add_argument("--lexical-weight", type=unit_float, default=None, metavar="W",
                   help=f"fused, convex: W * minmax(bm25) + (1 - W) * minmax(dense) (default {LEXICAL_WEIGHT})")  # fmt: skip
    add_runtime_arg(p, default="the index's; another one is refused")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``qrerank search`` with the parsed ``args``; returns the exit code."""
    query = require_text(args.query, "query")
    # lexical / fused are search methods; fused's dense score is cosine, the combination measured
    # best (benchmarks/search_fusion.py). Without --method: fused where the index has BM25.
    dense = args.method if args.method in METHODS else "cosine"
    pipe = SearchPipeline(
        args.index_dir, runtime=args.runtime, method=dense, alpha=args.alpha, tau=args.tau, head=args.head
    )
    method = args.method or ("fused" if pipe.index.lexical is not None else "hybrid")
    hits = pipe.search(
        query,
        k=args.k,
        top_n=args.top_n,
        method=method,
        lexical_weight=args.lexical_weight,
        fusion=args.fusion,
    )
    print_hits(hits, args.json, show_id=True)
    return 0
