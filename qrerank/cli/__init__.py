"""``qrerank`` command line: thin argparse shells over the library.

Every command module exposes ``register(subparsers)``; errors caused by input (QrerankError, a
missing optional extra) print one line to stderr and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from qrerank import __version__
from qrerank.cli import demo, eval, index, rerank, search, serve, train
from qrerank.errors import QrerankError

COMMANDS = (demo, index, search, rerank, eval, train, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qrerank", description="Quantum-inspired semantic reranking for RAG (arXiv 2501.04591)."
    )
    parser.add_argument("--version", action="version", version=f"qrerank {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except QrerankError as exc:  # bad input or a missing extra; a bug still shows its traceback
        sys.stderr.write(f"qrerank {args.command}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
