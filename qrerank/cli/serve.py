"""``qrerank serve``: the HTTP service on uvicorn (flags override QRERANK_* variables)."""

from __future__ import annotations

import argparse
import logging

from qrerank._optional import require
from qrerank.cli._common import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve Cohere/TEI-compatible rerank, search and embed over HTTP",
        description="Every flag also reads QRERANK_<FLAG> (e.g. QRERANK_PORT, QRERANK_API_KEY); "
        "limits and batching are set by QRERANK_MAX_BATCH, QRERANK_MAX_WAIT_MS, QRERANK_MAX_QUEUE, "
        "QRERANK_MAX_DOCUMENTS, QRERANK_MAX_DOC_CHARS, QRERANK_LONG_DOCS, QRERANK_MAX_BODY_BYTES, "
        "QRERANK_CORS_ORIGINS (see qrerank.service.config).",
    )
    p.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--model", default=None, help="encoder (default: the index's, else all-MiniLM-L6-v2)")
    p.add_argument("--index", default=None, metavar="INDEX_DIR", help="index for /search (`qrerank index`)")
    p.add_argument("--head", default=None, metavar="HEAD_DIR", help="trained head from `qrerank train`")
    p.add_argument("--method", choices=("cosine", "fidelity", "hybrid"), default=None, help="default signal")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (not on /health)")
    p.add_argument("--workers", type=positive_int, default=None, help="processes, each with its own model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from qrerank.service.config import Settings

    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        model=args.model,
        index=args.index,
        head=args.head,
        method=args.method,
        api_key=args.api_key,
        workers=args.workers,
    )
    require("uvicorn", "service")
    from qrerank.service.server import serve

    logging.getLogger("qrerank").setLevel(logging.INFO)
    return serve(settings)
