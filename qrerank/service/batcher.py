"""Dynamic micro-batching: texts of concurrent requests are encoded together in one thread.

Requests ``await batcher.encode(texts)``. A single worker task takes the first waiting request,
then keeps taking requests until the batch holds ``max_batch`` texts or ``max_wait_ms`` has
passed, de-duplicates the texts, encodes them in one call on a dedicated thread (the event loop
stays free to accept and parse requests meanwhile) and hands each request its rows. While one
batch is encoding the next one fills up, so under load batches grow by themselves and the wait
costs nothing. The queue is bounded: when ``max_queue`` requests are already waiting,
:class:`QueueFullError` is raised at once (the service answers 429) instead of queueing forever;
a request cancelled while waiting (its client timed out) leaves the queue at once, so it never
holds a place it will not use.

One bad text must not fail its neighbours: when encoding a batch raises, the batch is split in
halves and each half encoded again, down to single requests, so only the request(s) whose texts
make the encoder raise fail, with :class:`EncodeError` (the encoder's exception is its
``__cause__``); so does a request one of whose embeddings holds NaN or infinity. With one offender among ``n`` requests that costs about ``2 log2(n)`` extra
encode calls, not ``n``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]
BatchHook = Callable[[int, int, float], None]


class TextBatcher(Protocol):
    """What the engine encodes through: :class:`MicroBatcher`, or Ray Serve's (``qrerank.service.ray``).

    Built as ``factory(encode, max_batch=, max_wait_ms=, max_queue=, on_batch=)`` (see
    :data:`BatcherFactory`); ``encode`` raises QueueFullError, BatcherClosedError or EncodeError
    as MicroBatcher does.
    """

    @property
    def depth(self) -> int: ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def encode(self, texts: Sequence[str]) -> np.ndarray: ...


BatcherFactory = Callable[..., TextBatcher]


class QueueFullError(RuntimeError):
    """The batcher already holds ``max_queue`` waiting requests."""


class BatcherClosedError(RuntimeError):
    """The batcher is stopped (server shutting down)."""


class EncodeError(RuntimeError):
    """The encoder raised on this request's own texts; ``__cause__`` is what it raised."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"the encoder failed on this request's texts: {type(cause).__name__}: {cause}")
        self.__cause__ = cause


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
        try:
            return await job.future
        except asyncio.CancelledError:
            # The caller timed out or went away: free its place in the queue now, not when the
            # worker next gets to it (a slow batch would otherwise turn later requests into 429s).
            self._discard(job)
            raise

    def _discard(self, job: _Job) -> None:
        try:
            self._waiting.remove(job)
        except ValueError:  # already taken into a batch
            return
        self._waiting_texts -= len(job.texts)

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
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                n_texts = await self._encode_batch(batch)
            except asyncio.CancelledError:
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(BatcherClosedError("server is shutting down"))
                raise
            if self._on_batch is not None:
                self._on_batch(len(batch), n_texts, time.perf_counter() - t0)

    async def _encode_batch(self, batch: list[_Job]) -> int:
        """Encode ``batch`` and resolve its futures (see :func:`encode_groups`).

        Returns the number of distinct texts in ``batch`` (for the batch-size metric).
        """
        loop = asyncio.get_running_loop()

        async def run(texts: list[str]) -> np.ndarray:
            return np.asarray(await loop.run_in_executor(self._executor, self._encode, texts))

        live = [job for job in batch if not job.future.done()]
        results = await encode_groups(run, [job.texts for job in live])
        for job, result in zip(live, results, strict=True):
            if job.future.done():  # cancelled while its batch was encoding
                continue
            if isinstance(result, EncodeError):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)
        return len({t for job in batch for t in job.texts})


async def encode_groups(
    run: Callable[[list[str]], Awaitable[np.ndarray]], groups: Sequence[list[str]]
) -> list[np.ndarray | EncodeError]:
    """Each group's ``[len, d]`` rows from one ``run`` call over the groups' distinct texts.

    When ``run`` raises, the groups are split in halves and each half encoded again, down to
    single groups: only a group whose own texts make the encoder raise gets an
    :class:`EncodeError` (the exception its ``__cause__``); so does a group one of whose rows
    holds NaN or infinity. The other groups get their rows.
    """
    unique = list(dict.fromkeys(t for texts in groups for t in texts))
    try:
        vectors = await run(unique)
        if vectors.ndim != 2 or len(vectors) != len(unique):
            raise ValueError(f"the encoder returned shape {vectors.shape} for {len(unique)} texts")
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if len(groups) > 1:
            log.warning(
                "encoding a batch of %d requests failed (%s: %s); retrying in halves to isolate it",
                len(groups), type(exc).__name__, exc,
            )  # fmt: skip
            half = len(groups) // 2
            return [*await encode_groups(run, groups[:half]), *await encode_groups(run, groups[half:])]
        if groups:
            log.error("encoding failed for one request of %d texts", len(groups[0]), exc_info=exc)
        return [EncodeError(exc) for _ in groups]
    row = {t: i for i, t in enumerate(unique)}
    # A NaN/inf row (e.g. a half-precision overflow) would rank garbage without any error:
    # it fails the requests holding that text, like an exception would.
    finite = np.isfinite(vectors).all(axis=1)
    out: list[np.ndarray | EncodeError] = []
    for texts in groups:
        rows = [row[t] for t in texts]
        bad = [i for i, r in enumerate(rows) if not finite[r]]
        if bad:
            log.error("the encoder returned non-finite values for text %d of a request", bad[0])
            out.append(
                EncodeError(FloatingPointError(f"non-finite embedding for text {bad[0]} of the request"))
            )
        else:
            out.append(vectors[rows])
    return out
