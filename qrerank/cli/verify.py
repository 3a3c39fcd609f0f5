"""``qrerank verify INDEX_DIR``: re-hash every file of the live version against its manifest."""

from __future__ import annotations

import argparse

from qrerank.cli._common import write


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``qrerank verify`` and its options to the subcommand parsers ``sub``."""
    p = sub.add_parser(
        "verify",
        help="check an index fully: sha256 of every file, finite vectors, every document row",
        description="Exit 0 when the index is intact; exit 2 with one line naming the bad file otherwise. "
        "Loading an index (search, serve) checks sizes, headers and schema only.",
    )
    p.add_argument("index", help="index directory written by `qrerank index`")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``qrerank verify`` with the parsed ``args``; returns the exit code."""
    from qrerank.index.directory import verify_index

    index = verify_index(args.index)  # IndexFormatError -> one line, exit 2
    try:
        files = ", ".join(sorted(index.manifest["files"]))
        where = index.version_dir.name if index.version_dir is not None else index.path
        write(f"ok: {args.index} ({where}, {len(index)} documents; sha256 of {files} match)")
    finally:
        index.close()
    return 0
