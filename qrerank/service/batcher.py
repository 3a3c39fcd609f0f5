"""Dynamic micro-batching: texts of concurrent requests are encoded together in one thread.

Requests ``await batcher.encode(texts)``. A single worker task takes the first waiting request,
then keeps taking requests until the batch holds ``max_batch`` texts or ``max_wait_ms`` has
passed, de-duplicates the texts, encodes them in one call on a dedicated thread (the event loop
stays free to accept and parse requests meanwhile) and hands each request its rows. While one
batch is encoding the next one fills up, so under load batches grow by themselves and the wait
costs nothing. The queue is bounded: when ``max_queue`` requests are already waiting,
:class:`QueueFullError` is raised at once (the service answers 429) instead of queueing forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]
BatchHook = Callable[[int, int, float], None]


class QueueFullError(RuntimeError):
    """The batcher already holds ``max_queue`` waiting requests."""


class BatcherClosedError(RuntimeError):
    """The batcher is stopped (server shutting down)."""


@dataclass(slots=True)
class _Job:
    texts: list[str]
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Collects ``encode`` calls into batches of at most ``max_batch`` texts.

    Args:
        encode: texts -> ``[n, d]`` float32 array; called on the batcher's own thread.
        max_batch: most texts per encode call (a larger single request is encoded alone).
        max_wait_ms: how long to wait for more requests once one is waiting.
        max_queue: most requests waiting; one more raises QueueFullError.
        on_batch: optional hook ``(n_requests, n_texts, seconds)`` after each batch (metrics).
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
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and max_wait_ms >= 0")
        self._encode = encode
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait_ms / 1000.0, max_queue
        self._on_batch = on_batch
        self._waiting: deque[_Job] = deque()
        self._waiting_texts = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qrerank-encode")
        self._worker: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def depth(self) -> int:
        """Requests waiting (not counting the batch being encoded)."""
        return len(self._waiting)

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="qrerank-batcher")

    async def stop(self) -> None:
        """Stop the worker; requests still waiting fail with BatcherClosedError."""
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._waiting:
            job = self._waiting.popleft()
            if not job.future.done():
                job.future.set_exception(BatcherClosedError("server is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), d]`` embeddings, encoded together with concurrent requests."""
        if self._closed or self._worker is None:
            raise BatcherClosedError("batcher is not running")
        if len(self._waiting) >= self.max_queue:
            raise QueueFullError(f"{self.max_queue} requests are already waiting; retry later")
        job = _Job(list(texts), asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        self._waiting_texts += len(job.texts)
        self._wakeup.set()
        return await job.future

    async def _next_batch(self) -> list[_Job]:
        while not self._waiting:
            self._wakeup.clear()
            await self._wakeup.wait()
        # Wait for company until the batch is full or the oldest request has waited max_wait.
        deadline = self._waiting[0].enqueued + self.max_wait
        while self._waiting_texts < self.max_batch:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
        batch: list[_Job] = []
        size = 0
        # Always take the oldest request (even one larger than max_batch), then whatever fits.
        while self._waiting and (not batch or size + len(self._waiting[0].texts) <= self.max_batch):
            job = self._waiting.popleft()
            self._waiting_texts -= len(job.texts)
            if job.future.done():  # cancelled: the client went away
                continue
            batch.append(job)
            size += len(job.texts)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            unique = list(dict.fromkeys(t for job in batch for t in job.texts))
            t0 = time.perf_counter()
            try:
                vectors = await loop.run_in_executor(self._executor, self._encode, unique)
            except asyncio.CancelledError:
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(BatcherClosedError("server is shutting down"))
                raise
            except Exception as exc:  # the encoder failed: every request of the batch learns why
                log.exception("encoding a batch of %d texts failed", len(unique))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            seconds = time.perf_counter() - t0
            row = {t: i for i, t in enumerate(unique)}
            for job in batch:
                if not job.future.done():
                    job.future.set_result(vectors[[row[t] for t in job.texts]])
            if self._on_batch is not None:
                self._on_batch(len(batch), len(unique), seconds)
