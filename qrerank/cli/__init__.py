"""``qrerank`` command line: thin argparse shells over the library.

Every command module exposes ``register(subparsers)``; errors caused by input (QrerankError, a
missing optional extra) print one line to stderr and exit with code 2, never a traceback. So do
errors of the environment (OSError: disk full, permission denied) and, as a last net under the
checks where input enters, text that cannot be encoded or JSON nested too deeply.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from qrerank import __version__
from qrerank.cli import delete, demo, eval, index, rerank, search, serve, train, verify
from qrerank.errors import QrerankError

COMMANDS = (demo, index, delete, search, rerank, eval, train, serve, verify)


def build_parser() -> argparse.ArgumentParser:
    """The ``qrerank`` parser with one subcommand per module of ``COMMANDS``."""
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
    """The ``qrerank`` entry point: parses ``argv``, runs the subcommand, returns the exit code.

    0 on success, 2 with a one-line message on bad input or a failed file operation, 130 on
    Ctrl-C, 141 when stdout closes early.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except QrerankError as exc:  # bad input or a missing extra; a bug still shows its traceback
        return _fail(args.command, str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `qrerank search ... | head` closed stdout: not an error of ours
        _silence_stdout()
        return 141
    except OSError as exc:
        return _fail(args.command, describe_os_error(exc))
    except UnicodeError as exc:
        return _fail(args.command, f"text that is not valid Unicode ({exc})")
    except RecursionError:
        return _fail(args.command, "input nested too deeply to process")


def describe_os_error(exc: OSError) -> str:
    """``No space left on device: /path`` rather than ``[Errno 28] ...: '/path'``."""
    what = exc.strerror or str(exc) or type(exc).__name__
    return f"{what}: {exc.filename}" if exc.filename else what


def _fail(command: str, message: str) -> int:
    # One line, always: a multi-line message (e.g. from a library) is folded.
    sys.stderr.write(f"qrerank {command}: error: {' '.join(message.split())}\n")
    return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is no real file (e.g. in a test)
        pass
