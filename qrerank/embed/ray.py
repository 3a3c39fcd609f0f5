"""An Encoder that fans texts out over a pool of Ray actors [ray], one model copy per actor.

``RayEncoder(load)`` has the identity of the encoder ``load()`` returns (name, dim, runtime,
:func:`~qrerank.embed.cache.cache_key`), so its vectors are interchangeable with the local
encoder's: the same embedding-cache file, the same index manifest. Texts become a Ray Data
dataset cut into shards of ``shard_size``; ``map_batches`` runs each shard through an actor
pool (each actor calls ``load()`` once, then encodes its shards batched) and
:meth:`RayEncoder.encode_shards` yields every shard the moment it is done. Wrapped in a
:class:`~qrerank.embed.cache.CachedEncoder`, each finished shard is committed to the cache
as it arrives, so a rerun after a killed worker or driver encodes only the missing shards.

``load`` runs inside the actors, on whichever node they land: it must load from local paths
(packaged weights or a folder present on every node); qrerank never downloads. An actor whose
model has another identity than the driver's (other weights on that node) fails the job.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from qrerank import _ray
from qrerank._optional import require
from qrerank.embed.base import Encoder
from qrerank.errors import ModelNotFoundError, QrerankError

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 512  # texts per shard: the unit of work, of retry and of commit


class ShardsFailedError(QrerankError):
    """Some shards failed on the workers; the others were delivered (and, when cached, kept)."""


@contextlib.contextmanager
def _data_context(data: ModuleType, **settings: Any) -> Iterator[None]:
    """Ray Data's process-wide context with ``settings`` for the block, restored after it."""
    ctx = data.DataContext.get_current()
    saved = {name: getattr(ctx, name) for name in settings}
    for name, value in settings.items():
        setattr(ctx, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)


def _last_line(exc: BaseException) -> str:
    """The last non-empty line of a Ray error (the worker's own exception), without colour codes."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return re.sub(r"\x1b\[[0-9;]*m", "", lines[-1]) if lines else type(exc).__name__


class _EncodeShard:
    """The actor-side callable of ``map_batches``: one model load, then one shard per call."""

    def __init__(self, load: Callable[[], Encoder], identity: str, batch_size: int) -> None:
        from qrerank.embed.cache import cache_key

        _limit_torch_threads()
        self.encoder = load()
        self.batch_size = batch_size
        if cache_key(self.encoder) != identity:
            raise ModelNotFoundError(
                f"a Ray worker loaded {self.encoder.name!r} with another identity than the driver "
                f"({cache_key(self.encoder)} vs {identity}); every node needs the same model files"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.encoder.encode(texts, batch_size=self.batch_size)
        return {"row": batch["row"], "embedding": np.asarray(vectors, dtype=np.float32)}


def _limit_torch_threads() -> None:
    """One torch thread per CPU Ray gave this actor: N actors on N cores must not each spawn N."""
    import ray

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    if cpus:
        import torch

        torch.set_num_threads(max(1, int(cpus)))


def _describe(load: Callable[[], Encoder]) -> tuple[str, int, bool, Any, str]:
    """``(name, dim, normalized, runtime, cache key)`` of the encoder ``load`` returns."""
    from qrerank.embed.cache import cache_key

    encoder = load()
    return (
        encoder.name,
        encoder.dim,
        encoder.normalized,
        getattr(encoder, "runtime", None),
        cache_key(encoder),
    )


class RayEncoder:
    """Texts -> ``[n, dim]`` float32, encoded by ``actors`` Ray actors, rows in input order.

    Args:
        load: picklable zero-argument callable returning the encoder (called once here, for the
            identity, and once in each actor), e.g. ``functools.partial(load_encoder, name, cache=False)``.
        address: the cluster to use (see :func:`qrerank._ray.connect`), joined on first encode.
        actors: size of the actor pool.
        shard_size: texts per shard.
        cpus_per_actor / gpus_per_actor: what Ray reserves for each actor.
    """

    def __init__(
        self,
        load: Callable[[], Encoder],
        *,
        address: str = _ray.AUTO,
        actors: int = 1,
        shard_size: int = DEFAULT_SHARD_SIZE,
        cpus_per_actor: float = 1.0,
        gpus_per_actor: float = 0.0,
    ) -> None:
        if actors < 1 or shard_size < 1:
            raise ValueError(f"actors and shard_size must be >= 1, got {actors} and {shard_size}")
        self.address = _ray.check_address(address)
        self._load = load
        self.actors, self.shard_size = actors, shard_size
        self.cpus_per_actor, self.gpus_per_actor = cpus_per_actor, gpus_per_actor
        # The identity of what the actors will load. On GPUs (fp16 there) only a worker with the
        # same resources can tell it; on CPUs a local load is cheaper than a Ray task.
        if gpus_per_actor > 0:
            ray = _ray.connect(self.address)
            probe = ray.remote(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor)(_describe)
            described = ray.get(probe.remote(load))
        else:
            described = _describe(load)
        self.name, self.dim, self.normalized, self.runtime, self._key = described

    def cache_identity(self) -> dict[str, Any]:
        """The wrapped encoder's identity, so Ray and local vectors share one cache file."""
        identity: dict[str, Any] = json.loads(self._key)
        return identity

    def encode_shards(
        self, texts: Sequence[str], *, batch_size: int = 32
    ) -> Iterator[tuple[list[str], np.ndarray]]:
        """``(shard texts, [len, dim] vectors)`` per shard, in the order shards finish."""
        if not texts:
            return
        ray = _ray.connect(self.address)
        data = require("ray.data", _ray.EXTRA)
        n_shards = -(-len(texts) // self.shard_size)
        items = [{"row": i, "text": t} for i, t in enumerate(texts)]
        done = 0
        # A failed shard must not discard the others: Ray Data skips it (max_errored_blocks) and
        # the others still reach the caller, who commits them; the error comes once, at the end.
        with _data_context(data, max_errored_blocks=-1, enable_progress_bars=False):
            encoded = data.from_items(items, override_num_blocks=n_shards).map_batches(
                _EncodeShard,
                fn_constructor_kwargs={"load": self._load, "identity": self._key, "batch_size": batch_size},
                batch_size=self.shard_size,
                batch_format="numpy",
                compute=data.ActorPoolStrategy(size=min(self.actors, n_shards)),
                num_cpus=self.cpus_per_actor,
                num_gpus=self.gpus_per_actor or None,
            )
            try:
                for batch in encoded.iter_batches(batch_size=None, batch_format="numpy"):
                    rows = batch["row"].tolist()
                    done += len(rows)
                    yield [texts[i] for i in rows], np.asarray(batch["embedding"], dtype=np.float32)
            except ray.exceptions.ActorDiedError as exc:  # the model did not load on a worker
                raise ShardsFailedError(
                    f"a Ray worker could not start the encoder: {_last_line(exc)}; {done} of "
                    f"{len(texts)} texts were encoded (and, when cached, kept)"
                ) from exc
        if done < len(texts):
            raise ShardsFailedError(
                f"{len(texts) - done} of {len(texts)} texts were not encoded: shards failed on the Ray "
                "workers (their error is in the log above); the finished shards are kept in the "
                "embedding cache, so running the command again encodes only the missing ones"
            )

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        """Every text encoded once (repeats share a row), returned in input order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        lookup: dict[str, np.ndarray] = {}
        for chunk, vectors in self.encode_shards(unique, batch_size=batch_size):
            lookup.update(zip(chunk, vectors, strict=True))
        return np.stack([lookup[t] for t in texts]).astype(np.float32, copy=False)


def load_ray_encoder(
    name: str,
    *,
    address: str = _ray.AUTO,
    actors: int = 1,
    gpus_per_actor: float = 0.0,
    shard_size: int = DEFAULT_SHARD_SIZE,
    device: str | None = None,
    normalize: bool = True,
    runtime: str | None = None,
    cache: bool = True,
    cache_dir: str | None = None,
) -> Encoder:
    """:func:`~qrerank.embed.models.load_encoder`'s encoder ``name``, encoded on Ray actors.

    With ``cache`` (default) it sits behind the same embedding cache as the local encoder, which
    commits every finished shard: a rerun after a failure encodes only the missing shards.
    """
    from qrerank.embed.cache import CachedEncoder, EmbeddingCache
    from qrerank.embed.models import load_encoder
    from qrerank.embed.runtime import parse_runtime

    _ray.import_ray()  # a missing extra fails before any model loads
    load = functools.partial(
        load_encoder,
        name,
        device=device,
        normalize=normalize,
        cache=False,
        runtime=parse_runtime(runtime),
    )
    encoder = RayEncoder(
        load, address=address, actors=actors, shard_size=shard_size, gpus_per_actor=gpus_per_actor
    )
    return CachedEncoder(encoder, EmbeddingCache.for_encoder(encoder, cache_dir)) if cache else encoder
