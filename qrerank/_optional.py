"""Lazy imports of optional backends, with an error that names the pip extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from qrerank.errors import MissingExtraError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise MissingExtraError (an ImportError) telling the user which extra provides it.

    >>> require("json", "core").dumps([1])
    '[1]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{module!r} is needed for this feature but is not installed; "
            f"install it with: pip install 'qrerank[{extra}]'"
        ) from exc
