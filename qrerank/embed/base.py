"""The Encoder protocol every text encoder implements."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Encoder(Protocol):
    """Maps texts to float32 embeddings ``[n, dim]``.

    ``name`` identifies the model *and* its output settings (e.g. normalisation) unambiguously:
    index manifests record it and :func:`qrerank.load_encoder` loads it back from any working
    directory (a local folder is named by its absolute path). Two encoders with the same name
    must produce the same vectors; the embedding cache also keys on :class:`CacheIdentity`.
    """

    name: str
    dim: int
    normalized: bool

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray: ...


@runtime_checkable
class CacheIdentity(Protocol):
    """An encoder that can list everything its vectors depend on, to key the embedding cache.

    ``cache_identity()`` returns JSON-serialisable values: name, a fingerprint of the weights,
    max sequence length, dtype, normalisation. Encoders without it are keyed by name and dim.
    """

    def cache_identity(self) -> dict[str, Any]: ...


@runtime_checkable
class ShardedEncoder(Encoder, Protocol):
    """An encoder that yields results shard by shard as they finish (e.g. across Ray actors).

    ``encode_shards(texts)`` yields ``(shard texts, [len, dim] vectors)`` covering every text once,
    in any order; :class:`~qrerank.embed.cache.CachedEncoder` commits each shard on arrival.
    """

    def encode_shards(
        self, texts: Sequence[str], *, batch_size: int = 32
    ) -> Iterator[tuple[list[str], np.ndarray]]: ...
