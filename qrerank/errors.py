"""Exceptions users can catch. The CLI maps every ``QrerankError`` to exit code 2."""

from __future__ import annotations


class QrerankError(Exception):
    """Base class for errors caused by input, files or configuration (not by bugs)."""


class InputError(QrerankError, ValueError):
    """Bad user input: missing file, empty corpus, malformed JSONL line, wrong shape."""


class ModelNotFoundError(QrerankError, LookupError):
    """An encoder name or path that cannot be loaded offline."""


class IndexFormatError(QrerankError):
    """An index directory that is corrupt, incomplete, from another version or another model."""


class IndexBusyError(QrerankError, TimeoutError):
    """Another process holds an index directory's writer lock for longer than the caller waits."""


class MissingExtraError(QrerankError, ImportError):
    """An optional backend is not installed; the message names the pip extra that provides it."""
