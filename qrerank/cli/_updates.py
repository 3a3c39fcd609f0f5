"""The ``qrerank index`` options that do not encode a whole corpus: --append and --embeddings."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from qrerank.embed.base import Encoder
from qrerank.embed.models import DEFAULT_MODEL
from qrerank.errors import InputError
from qrerank.index.directory import DocumentIndex
from qrerank.types import Document


def add_update_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--append",
        action="store_true",
        help="add SRC's documents (new ids) to the existing index --out, encoding only them",
    )
    p.add_argument(
        "--embeddings",
        default=None,
        metavar="FILE.npy",
        help="precomputed [n, d] float embeddings of SRC's documents (no encoding; --model names their model)",
    )
    p.add_argument(
        "--embedding-ids",
        default=None,
        metavar="FILE",
        help="the document id of each --embeddings row, one per line (default: rows follow SRC's order)",
    )


def resolve_model(args: argparse.Namespace) -> None:
    """``--model`` (and --raw, --runtime) default to the index's own with ``--append``."""
    if args.append:
        if args.embeddings is not None or args.embedding_ids is not None:
            raise InputError("--append encodes the new documents; it cannot take --embeddings")
        index = DocumentIndex.load(args.out)
        try:
            _check_kept_options(args, index)
            args.model = args.model or index.model
            args.raw = args.raw or not index.normalized
            args.runtime = args.runtime or index.runtime
        finally:
            index.close()
    elif args.embedding_ids is not None and args.embeddings is None:
        raise InputError("--embedding-ids names the rows of --embeddings FILE.npy; give that too")
    args.model = args.model or DEFAULT_MODEL


def _check_kept_options(args: argparse.Namespace, index: DocumentIndex) -> None:
    """``--append`` keeps how the index stores and searches: refuse a different setting, not ignore it."""
    kept = {
        "--kind": (args.kind, index.manifest["index"]["kind"]),
        "--dtype": (args.dtype, index.dtype),
        "--space": (args.space, index.space),
        "--tau": (args.tau, index.tau),
    }
    for flag, (given, has) in kept.items():
        if given is not None and given != has:
            raise InputError(
                f"--append keeps the index's settings: it has {flag} {has}, not {given}; "
                f"drop {flag}, or rebuild the index without --append"
            )


def load_embeddings(path: str) -> np.ndarray:
    """``FILE.npy`` memory-mapped (never unpickled); InputError for anything but a float matrix."""
    try:
        emb = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refused
        raise InputError(f"--embeddings {path}: {exc} (an array of numbers is expected)") from None
    except OSError as exc:
        raise InputError(f"--embeddings {path}: cannot read it as .npy ({exc.strerror or exc})") from None
    if not isinstance(emb, np.ndarray):
        raise InputError(f"--embeddings {path}: expected one array in a .npy file, got an archive")
    return emb


def load_ids(path: str) -> list[str]:
    """One id per line (UTF-8; surrounding whitespace stripped, blank lines skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--embedding-ids {path}: cannot read it as UTF-8 text ({exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def run_update(
    args: argparse.Namespace,
    docs: Iterable[Document],
    encoder: Callable[[], Encoder],
    params: dict[str, int] | None = None,
) -> DocumentIndex | None:
    """The index --append or --embeddings writes, or None when neither is given (a normal build).

    ``docs`` is read once; an append streams it, ``--embeddings`` makes it a list (its rows are
    matched to the documents by position or id). ``params`` are the ANN settings of an
    ``--embeddings`` build.
    """
    if args.append:
        from qrerank.index.update import append_documents

        return append_documents(args.out, docs, encoder(), batch_size=args.batch_size, show_progress=True)
    if args.embeddings is None:
        return None
    from qrerank.index.build import build_index_from_embeddings

    ids = load_ids(args.embedding_ids) if args.embedding_ids is not None else None
    return build_index_from_embeddings(
        list(docs),
        load_embeddings(args.embeddings),
        args.out,
        model=args.model,
        ids=ids,
        normalized=not args.raw,
        runtime=args.runtime,
        kind=args.kind or "flat",
        tau=args.tau,
        lexical=not args.no_lexical,
        dtype=args.dtype or "float32",
        space=args.space or "cosine",
        index_params=params,
    )
