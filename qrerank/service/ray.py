"""The service on Ray Serve [ray]: replicas of the same FastAPI app, batched by ``serve.batch``.

Each replica builds :func:`~qrerank.service.app.create_app` from the same
:class:`~qrerank.service.config.Settings` (``serve.ingress`` with a builder, so the app, its
model and its metrics are made inside the replica, not pickled), so routes, request and
response shapes, limits, API key and errors are those of ``qrerank serve``. The one difference
is batching: concurrent requests of a replica are gathered by ``serve.batch`` (at most
``max_batch`` texts, waiting at most ``max_wait_ms``) instead of the in-process MicroBatcher;
the same :func:`~qrerank.service.batcher.encode_groups` encodes them, so one bad request still
fails alone. Ray Serve's proxy spreads requests over the replicas.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from qrerank import _ray
from qrerank._optional import require
from qrerank.service.batcher import (
    BatcherClosedError,
    BatchHook,
    EncodeError,
    EncodeFn,
    QueueFullError,
    encode_groups,
)
from qrerank.service.config import Settings

log = logging.getLogger(__name__)

APP_NAME = "qrerank"


class ServeBatcher:
    """The engine's batcher on ``serve.batch`` (see :class:`~qrerank.service.batcher.TextBatcher`).

    A request counts ``len(texts)`` (at most ``max_batch``) towards ``max_batch``, so one
    request larger than a batch is encoded alone, as with MicroBatcher. ``depth`` counts the
    requests waiting or encoding; one more than ``max_queue`` raises QueueFullError (429).
    """

    def __init__(
        self,
        encode: EncodeFn,
        *,
        max_batch: int = 512,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
        on_batch: BatchHook | None = None,
    ) -> None:
        serve = require("ray.serve", _ray.EXTRA)
        self._encode, self._on_batch = encode, on_batch
        self.max_batch, self.max_queue = max_batch, max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qrerank-encode")
        self._pending = 0
        self._closed = True
        self._batched = serve.batch(
            max_batch_size=max_batch,
            batch_wait_timeout_s=max_wait_ms / 1000.0,
            batch_size_fn=self._size,
        )(self._encode_requests)

    @property
    def depth(self) -> int:
        return self._pending

    def start(self) -> None:
        self._closed = False

    async def stop(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _size(self, requests: list[list[str]]) -> int:
        return sum(min(len(texts), self.max_batch) for texts in requests)

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), d]`` embeddings, encoded together with the replica's concurrent requests."""
        if self._closed:
            raise BatcherClosedError("batcher is not running")
        if self._pending >= self.max_queue:
            raise QueueFullError(f"{self.max_queue} requests are already waiting; retry later")
        self._pending += 1
        try:
            result: np.ndarray | EncodeError = await self._batched(list(texts))
        finally:
            self._pending -= 1
        if isinstance(result, EncodeError):
            raise result
        return result

    async def _encode_requests(self, requests: list[list[str]]) -> list[np.ndarray | EncodeError]:
        """One ``serve.batch`` batch: every request's rows, or its EncodeError."""
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()

        async def run(texts: list[str]) -> np.ndarray:
            return np.asarray(await loop.run_in_executor(self._executor, self._encode, texts))

        results = await encode_groups(run, requests)
        if self._on_batch is not None:
            distinct = len({t for texts in requests for t in texts})
            self._on_batch(len(requests), distinct, time.perf_counter() - t0)
        return results


def deployment(settings: Settings, *, replicas: int = 1, cpus_per_replica: float = 1.0) -> Any:
    """The bound Ray Serve application: ``replicas`` copies of the service app for ``settings``."""
    serve = require("ray.serve", _ray.EXTRA)

    def build_app() -> Any:  # runs in each replica: its own model, index, metrics
        from qrerank.service.app import create_app

        return create_app(settings, batcher=ServeBatcher)

    @serve.deployment(
        name=APP_NAME,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica},
        # Serve's default of 5 in flight per replica would leave nothing to batch; the app's own
        # queue limit (max_queue, then 429) is the one that applies, as in `qrerank serve`.
        # (At least max_batch: serve.batch warns when that is above it, counting requests.)
        max_ongoing_requests=max(settings.max_queue, settings.max_batch) + 1,
    )
    @serve.ingress(build_app)
    class Qrerank:
        """One replica of the qrerank HTTP service."""

    return Qrerank.bind()  # type: ignore[attr-defined]  # serve.deployment made it a Deployment


def free_port(host: str) -> int:
    """A TCP port free on ``host`` now (Serve's proxy needs a number; port 0 asks for one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start(
    settings: Settings, *, replicas: int = 1, address: str = _ray.AUTO, cpus_per_replica: float = 1.0
) -> str:
    """Deploy the service on Ray (joining ``address``) and return its base URL once it answers.

    The HTTP proxy binds ``settings.host``:``settings.port`` (a free port for 0). Stop it with
    :func:`stop`.
    """
    _ray.connect(address)
    serve = require("ray.serve", _ray.EXTRA)
    port = settings.port or free_port(settings.host)
    serve.start(http_options={"host": settings.host, "port": port})
    serve.run(
        deployment(settings, replicas=replicas, cpus_per_replica=cpus_per_replica),
        name=APP_NAME,
        route_prefix="/",
    )
    return f"http://{settings.host}:{port}"


def stop() -> None:
    """Remove the deployment and stop Serve (the Ray cluster stays up)."""
    serve = require("ray.serve", _ray.EXTRA)
    serve.shutdown()


def serve_forever(
    settings: Settings, *, replicas: int = 1, address: str = _ray.AUTO, cpus_per_replica: float = 1.0
) -> None:
    """:func:`start`, then block until interrupted (Ctrl-C), then :func:`stop`."""
    url = start(settings, replicas=replicas, address=address, cpus_per_replica=cpus_per_replica)
    log.info("qrerank serve: %d replica(s) on Ray at %s (Ctrl-C stops)", replicas, url)
    try:
        while True:
            time.sleep(3600)
    finally:
        stop()
