"""``qrerank index SRC --out INDEX_DIR``: embed a corpus and write an index directory."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Iterator

from qrerank.cli._common import add_runtime_arg, number, out_dir, positive_float, positive_int, write
from qrerank.cli._updates import add_update_args, resolve_model, run_update
from qrerank.corpus import iter_corpus
from qrerank.embed.base import Encoder
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.errors import InputError
from qrerank.index.directory import INDEX_KINDS, build_index
from qrerank.index.manifest import DTYPES, SPACES
from qrerank.types import Document


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``qrerank index`` and its options to the subcommand parsers ``sub``."""
    p = sub.add_parser("index", help="index a JSONL file, a BEIR corpus or a folder of .txt/.md files")
    p.add_argument("src", help="docs.jsonl, a BEIR dataset dir (corpus.jsonl) or a folder of text files")
    p.add_argument("--out", required=True, help="index directory to write (replaced atomically)")
    _add_storage_args(p)
    _add_ann_args(p)
    add_update_args(p)
    _add_encode_args(p)
    p.set_defaults(func=run)


def _add_storage_args(p: argparse.ArgumentParser) -> None:
    """The encoder and what the index stores: kind, search space, tau, raw vectors, BM25, dtype."""
    p.add_argument(
        "--model",
        default=None,
        help=f"encoder name or path (default {DEFAULT_MODEL}; with --append the index's own)",
    )
    p.add_argument("--kind", choices=INDEX_KINDS, default=None, help="vector index (default flat)")
    p.add_argument(
        "--space",
        choices=SPACES,
        default=None,
        help="what the first stage searches (default cosine): cosine of the embeddings, or angles: "
        "top log-fidelity via FAISS L2 on the Bloch angles, scored exactly (needs a FAISS kind)",
    )
    p.add_argument("--tau", type=positive_float, default=None, help="Bloch temperature for stored angles")
    p.add_argument(
        "--raw", action="store_true", help="store unnormalised pooled embeddings (the paper's input)"
    )
    p.add_argument(
        "--no-lexical",
        action="store_true",
        help="skip the BM25 index (then search --method lexical|fused is unavailable)",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default=None,
        help="storage dtype of the embeddings (default float32; float16: half the size; see BENCHMARKS.md)",
    )


def _add_ann_args(p: argparse.ArgumentParser) -> None:
    """The FAISS settings stored in the index (HNSW links and search width, IVF lists and probes)."""
    ann = p.add_argument_group("ANN settings (stored in the index; defaults: FAISS's, see BENCHMARKS.md)")
    ann.add_argument(
        "--hnsw-m",
        type=number(int, "an integer in 4..256", low=4, high=256),
        default=None,
        metavar="M",
        help="hnsw: links per node (default 32)",
    )
    ann.add_argument(
        "--ef-search",
        type=number(int, "an integer in 1..65536", low=1, high=1 << 16),
        default=None,
        metavar="N",
        help="hnsw: candidate list of a search (default 512; wider: higher recall, slower)",
    )
    ann.add_argument(
        "--nlist",
        type=number(int, "an integer in 1..1048576", low=1, high=1 << 20),
        default=None,
        metavar="N",
        help="ivf: inverted lists (default ~4 sqrt(n), at most n/39)",
    )
    ann.add_argument(
        "--nprobe",
        type=number(int, "an integer in 1..1048576", low=1, high=1 << 20),
        default=None,
        metavar="N",
        help="ivf: lists searched per query (default 16)",
    )


def _add_encode_args(p: argparse.ArgumentParser) -> None:
    """Where and how the corpus is encoded: batch size, device, runtime, a Ray cluster."""
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    add_runtime_arg(p)
    p.add_argument(
        "--ray",
        default=None,
        metavar="auto|ADDRESS",
        help="encode on a Ray cluster (auto: the running one, else a local one); needs qrerank[ray]",
    )
    p.add_argument("--ray-actors", type=positive_int, default=None, help="encoder actors (default 1)")
    p.add_argument("--ray-gpus-per-actor", type=positive_float, default=None, help="GPUs each actor reserves")


# flag attribute -> (FaissIndex parameter, the kind it belongs to)
ANN_FLAGS = {
    "hnsw_m": ("m", "hnsw"),
    "ef_search": ("ef_search", "hnsw"),
    "nlist": ("nlist", "ivf"),
    "nprobe": ("nprobe", "ivf"),
}


def index_params(args: argparse.Namespace) -> dict[str, int]:
    """The ANN flags given, as FaissIndex parameters; InputError for a flag of another kind."""
    params = {}
    for attr, (key, kind) in ANN_FLAGS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        flag = "--" + attr.replace("_", "-")
        if args.append:
            raise InputError(f"--append keeps the index's ANN settings; drop {flag}")
        if (args.kind or "flat") != kind:
            raise InputError(f"{flag} applies to --kind {kind}, not {args.kind or 'flat'}")
        params[key] = int(value)
    return params


def _encoder(args: argparse.Namespace) -> Encoder:
    """The local encoder, or with ``--ray`` the same encoder fanned out over Ray actors."""
    if args.ray is None:
        if args.ray_actors is not None or args.ray_gpus_per_actor is not None:
            raise InputError("--ray-actors and --ray-gpus-per-actor need --ray auto|ADDRESS")
        return load_encoder(args.model, device=args.device, normalize=not args.raw, runtime=args.runtime)
    from qrerank.embed.ray import load_ray_encoder

    return load_ray_encoder(
        args.model,
        address=args.ray,
        actors=args.ray_actors or 1,
        gpus_per_actor=args.ray_gpus_per_actor or 0.0,
        device=args.device,
        normalize=not args.raw,
        runtime=args.runtime,
    )


class _Counted:
    """An iterable of documents that counts what was read from it (SRC is read lazily, once)."""

    def __init__(self, docs: Iterable[Document]) -> None:
        self.docs, self.n = docs, 0

    def __iter__(self) -> Iterator[Document]:
        for d in self.docs:
            self.n += 1
            yield d


def run(args: argparse.Namespace) -> int:
    """Runs ``qrerank index`` with the parsed ``args``; returns the exit code.

    SRC is streamed: documents are read as the build stages them (``build_index``), not loaded
    into a list first, except for ``--embeddings``, which pairs rows with ids.
    """
    out = out_dir(args.out)
    docs = _Counted(iter_corpus(args.src))  # a missing SRC fails here; a bad line when read
    resolve_model(args)
    params = index_params(args)
    t0 = time.perf_counter()
    index = run_update(args, docs, lambda: _encoder(args), params)  # --append, --embeddings
    if index is None:
        index = build_index(
            docs,
            _encoder(args),
            out,
            kind=args.kind or "flat",
            tau=args.tau,
            batch_size=args.batch_size,
            show_progress=True,
            lexical=not args.no_lexical,
            dtype=args.dtype or "float32",
            space=args.space or "cosine",
            index_params=params,
        )
    lexical = "" if index.lexical is None else ", BM25"
    kind = index.manifest["index"]["kind"] + (", angle space" if index.space == "angles" else "")
    done = (
        f"appended {docs.n} documents, now {len(index)},"
        if args.append
        else f"indexed {len(index)} documents"
    )
    write(
        f"{done} with {index.model} ({index.dim}-d, {kind}{lexical}) "
        f"in {time.perf_counter() - t0:.1f}s -> {index.path}"
    )
    return 0
