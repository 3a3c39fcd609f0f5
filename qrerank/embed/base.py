"""The Encoder protocol every text encoder implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Maps texts to float32 embeddings ``[n, dim]``.

    ``name`` identifies the model *and* its output settings (e.g. normalisation): it keys the
    embedding cache and is recorded in index manifests, so two encoders with the same name must
    produce the same vectors.
    """

    name: str
    dim: int
    normalized: bool

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray: ...
