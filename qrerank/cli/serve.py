"""``qrerank serve``: the HTTP service on uvicorn (flags override QRERANK_* variables).

Everything that can be wrong with the settings or the index is found here, before uvicorn
starts, and reported as one line with exit code 2 (see :mod:`qrerank.cli`), not as uvicorn's
startup traceback.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from qrerank._optional import require
from qrerank.cli._common import add_runtime_arg, positive_int
from qrerank.errors import InputError
from qrerank.rerank.methods import METHODS

# Float flags are read as text and parsed by the service's Settings, the one place that
# checks them (finite and in range): a bad value is then one line naming the setting.
FLOAT_FLAGS = {
    "alpha": "hybrid weight of cosine, in [0, 1] (default 0.5)",
    "tau": "Bloch temperature, > 0 (default 1/sqrt(d))",
    "max_wait_ms": "how long a micro-batch waits for more requests (default 2)",
    "request_timeout_s": "seconds a request may wait for the encoder before 503 (default 60)",
}


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``qrerank serve`` and its options to the subcommand parsers ``sub``."""
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
    p.add_argument("--method", choices=METHODS, default=None, help="default signal")
    for name, text in FLOAT_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), default=None, metavar="X", help=text)
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (not on /health)")
    p.add_argument("--workers", type=positive_int, default=None, help="processes, each with its own model")
    add_runtime_arg(p, default="the index's, else torch; QRERANK_RUNTIME")
    p.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="serve replicas on Ray Serve (no value or auto: the running cluster, else a local one); "
        "needs qrerank[ray]",
    )
    p.add_argument("--replicas", type=positive_int, default=None, help="Ray Serve replicas (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``qrerank serve`` with the parsed ``args``; returns the exit code."""
    from qrerank.service.config import Settings

    floats: dict[str, Any] = {
        name: Settings.parse(name, raw, "--" + name.replace("_", "-"))
        for name in FLOAT_FLAGS
        if (raw := getattr(args, name)) is not None
    }
    settings = Settings.from_env(
        host=args.host,
        port=args.port,
        model=args.model,
        index=args.index,
        head=args.head,
        method=args.method,
        api_key=args.api_key,
        workers=args.workers,
        runtime=args.runtime,
        **floats,
    )
    if args.ray is None and args.replicas is not None:
        raise InputError("--replicas needs --ray (for one machine without Ray, use --workers)")
    if args.ray is not None and settings.workers > 1:
        raise InputError("--workers is for uvicorn; with --ray use --replicas")
    require("uvicorn", "service")
    from qrerank.service.engine import load_index, reranker_for
    from qrerank.service.server import serve

    logging.getLogger("qrerank").setLevel(logging.INFO)
    # Load (and so verify) the index and, for one process, the model now: a corrupt index or
    # an unknown model is an IndexFormatError / ModelNotFoundError here, one line and exit 2.
    index = load_index(settings.index) if settings.index else None
    if args.ray is not None:  # each replica loads its own copies; the checks above ran here
        from qrerank._ray import check_address
        from qrerank.service import ray as ray_serve

        address = check_address(args.ray)
        reranker_for(settings, index)  # an unknown model is one line here, not a replica crash loop
        ray_serve.serve_forever(settings, replicas=args.replicas or 1, address=address)
        return 0
    if settings.workers > 1:  # each worker loads its own copies
        return serve(settings)
    return serve(settings, reranker=reranker_for(settings, index), index=index)
