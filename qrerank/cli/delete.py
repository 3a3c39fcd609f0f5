"""``qrerank delete INDEX_DIR ID... [--delete-ids FILE]``: remove documents, publishing a new version."""

from __future__ import annotations

import argparse

from qrerank.cli._common import write
from qrerank.cli._updates import load_ids
from qrerank.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``qrerank delete`` and its options to the subcommand parsers ``sub``."""
    p = sub.add_parser(
        "delete",
        help="remove documents by id from an index (nothing is re-encoded; BM25 is rebuilt)",
        description="Every id must be in the index; otherwise nothing is written and the unknown ids "
        "are named (exit 2).",
    )
    p.add_argument("index", help="index directory written by `qrerank index`")
    p.add_argument("ids", nargs="*", metavar="ID", help="document ids to remove")
    p.add_argument("--delete-ids", default=None, metavar="FILE", help="more ids to remove, one per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``qrerank delete`` with the parsed ``args``; returns the exit code."""
    from qrerank.index.update import delete_documents

    ids = [*args.ids, *(load_ids(args.delete_ids) if args.delete_ids is not None else [])]
    if not ids:
        raise InputError("name the document ids to delete (ID... or --delete-ids FILE)")
    index = delete_documents(args.index, ids)
    write(f"deleted {len(set(ids))} documents, {len(index)} left -> {index.path}")
    index.close()
    return 0
