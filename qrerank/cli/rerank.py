"""``qrerank rerank "query" DOCS.jsonl``: rank the documents of a JSONL file for a query."""

from __future__ import annotations

import argparse

from qrerank.cli._common import add_runtime_arg, add_scoring_args, positive_int, print_hits, require_text
from qrerank.corpus import read_jsonl
from qrerank.embed.models import DEFAULT_MODEL
from qrerank.errors import InputError
from qrerank.rerank.reranker import Reranker

BACKENDS = ("closed-form", "qiskit", "pennylane")


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``qrerank rerank`` and its options to the subcommand parsers ``sub``."""
    p = sub.add_parser("rerank", help="rerank the documents of a JSONL file for a query")
    p.add_argument("query")
    p.add_argument("docs", help='JSONL, one {"text": ...} or BEIR {"_id", "title", "text"} per line')
    p.add_argument(
        "--model", default=None,
        help=f"encoder name or path (default: a tuned --head's own encoder, else {DEFAULT_MODEL})",
    )  # fmt: skip
    p.add_argument("--backend", choices=BACKENDS, default="closed-form", help="how fidelity is computed")
    p.add_argument("--shots", type=positive_int, default=None, help="shots for simulator backends")
    add_scoring_args(p)
    add_runtime_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``qrerank rerank`` with the parsed ``args``; returns the exit code."""
    query = require_text(args.query, "query")
    docs = read_jsonl(args.docs)
    if not docs:
        raise InputError(f"{args.docs} holds no documents")
    # The JSON contract: index = 0-based position among the file's documents.
    reranker = Reranker(
        args.model,
        method=args.method,
        alpha=args.alpha,
        tau=args.tau,
        head=args.head,
        backend=args.backend,
        shots=args.shots,
        runtime=args.runtime,
    )
    print_hits(reranker.rank(query, docs, top_n=args.top_n), args.json)
    return 0
