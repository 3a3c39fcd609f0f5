"""``qrerank demo``: index the bundled corpus, answer its queries, show quantum vs cosine ranks."""

from __future__ import annotations

import argparse
import time
from importlib import resources

from qrerank.cli._common import clip, out_dir, positive_int, write
from qrerank.corpus import read_jsonl
from qrerank.embed.cache import default_cache_dir
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.index.directory import build_index
from qrerank.rerank.pipeline import SearchPipeline
from qrerank.rerank.reranker import Reranker


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``qrerank demo`` and its options to the subcommand parsers ``sub``."""
    p = sub.add_parser("demo", help="index the bundled corpus and compare quantum and cosine rankings")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"encoder (default {DEFAULT_MODEL})")
    p.add_argument("--top-n", type=positive_int, default=3, help="results per query (default 3)")
    p.add_argument("--out", default=None, help="where to write the demo index (default: the cache dir)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``qrerank demo`` with the parsed ``args``; returns the exit code."""
    out = out_dir(args.out) if args.out else default_cache_dir() / "demo-index"
    data = resources.files("qrerank") / "data"
    with (
        resources.as_file(data / "demo_corpus.jsonl") as corpus,
        resources.as_file(data / "demo_queries.jsonl") as queries_file,
    ):
        docs, queries = read_jsonl(corpus), read_jsonl(queries_file)
    encoder = load_encoder(args.model)
    t0 = time.perf_counter()
    index = build_index(docs, encoder, out, lexical=False)  # the demo compares dense signals only
    write(
        f"indexed {len(index)} bundled documents with {index.model} in {time.perf_counter() - t0:.1f}s -> {out}"
    )
    pipe = SearchPipeline(index, Reranker(encoder, method="fidelity"))
    write(
        f"Bloch encoding tau = {index.tau:.4f} (1/sqrt({index.dim})); log F = sum_i log cos^2(dtheta_i / 2)\n"
    )
    for q in queries:
        by_fid = pipe.search(q.text, k=len(index), top_n=len(index), method="fidelity")
        by_cos = pipe.search(q.text, k=len(index), top_n=len(index), method="cosine")
        cos_rank = {h.doc_id: h.rank for h in by_cos}
        write(f"query: {q.text}")
        write(
            f"  {'rank':>4}  {'fidelity top':<36} {'log F':>8}  {'cos rank':>8}  |  {'cosine top':<36} {'cos':>6}"
        )
        for h_f, h_c in zip(by_fid[: args.top_n], by_cos[: args.top_n], strict=True):
            write(
                f"  {h_f.rank:>4}  {clip(h_f.title, 36):<36} {h_f.quantum:8.3f}  {cos_rank[h_f.doc_id]:>8}  |  "
                f"{clip(h_c.title, 36):<36} {h_c.cosine:6.3f}"
            )
        write("")
    return 0
