"""``qrerank search INDEX_DIR "query"``: retrieve top-k, rerank, print top-n."""

from __future__ import annotations

import argparse

from qrerank.cli._common import add_scoring_args, positive_int, print_hits, require_text
from qrerank.rerank.pipeline import SearchPipeline


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an index directory and rerank the candidates")
    p.add_argument("index_dir", help="directory written by `qrerank index`")
    p.add_argument("query")
    p.add_argument("--k", type=positive_int, default=100, help="candidates retrieved (default 100)")
    add_scoring_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    query = require_text(args.query, "query")
    pipe = SearchPipeline(args.index_dir, method=args.method, alpha=args.alpha, tau=args.tau, head=args.head)
    hits = pipe.search(query, k=args.k, top_n=args.top_n)
    print_hits(hits, args.json, show_id=True)
    return 0
