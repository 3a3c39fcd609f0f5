"""``torch.compile`` on first use, falling back to eager where no compiler toolchain exists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class LazyCompiled:
    """``fn`` compiled by ``torch.compile(fn, **options)`` on the first :meth:`get`, once per process.

    :meth:`get` returns None when compiling fails (no C++ toolchain, an unsupported platform):
    the caller then runs ``fn`` eagerly, which computes the same thing.
    """

    def __init__(self, fn: Callable[..., Any], **options: Any) -> None:
        self.fn, self.options = fn, options
        self._compiled: Any = None
        self.ok = True

    def get(self) -> Any:
        """The compiled function, or None if it could not be built."""
        if self.ok and self._compiled is None:
            try:
                self._compiled = torch.compile(self.fn, **self.options)
            except Exception:  # no compiler toolchain: the eager function computes the same
                self.ok = False
        return self._compiled if self.ok else None
