"""MicroBatcher: coalescing, limits, dedup, errors, shutdown. Each test runs its own event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from qrerank.service.batcher import BatcherClosedError, EncodeError, MicroBatcher, QueueFullError


class RecordingEncoder:
    """Encodes text ``t`` as ``[len(t), 1.0]``; records every call; optionally waits on a gate."""

    def __init__(self, delay: float = 0.0, gated: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.delay = delay
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.gate.wait(10)
        self.calls.append(list(texts))
        time.sleep(self.delay)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_concurrent_requests_share_batches() -> None:
    enc = RecordingEncoder(delay=0.02)

    async def main():
        b = MicroBatcher(enc, max_batch=1000, max_wait_ms=20, max_queue=100)
        b.start()
        try:
            texts = [[f"q{i}", f"doc {i}", "shared"] for i in range(20)]
            out = await asyncio.gather(*(b.encode(t) for t in texts))
        finally:
            await b.stop()
        return texts, out

    texts, out = run(main())
    for t, rows in zip(texts, out, strict=True):
        np.testing.assert_array_equal(rows[:, 0], [len(x) for x in t])  # each request gets its own rows
    assert len(enc.calls) < 20  # coalesced
    assert sum(c.count("shared") for c in enc.calls) == len(enc.calls)  # de-duplicated per batch


def test_max_batch_bounds_each_call_but_a_large_request_goes_alone() -> None:
    enc = RecordingEncoder(gated=True)

    async def main():
        b = MicroBatcher(enc, max_batch=4, max_wait_ms=50, max_queue=100)
        b.start()
        try:
            jobs = [asyncio.ensure_future(b.encode([f"{i}-{j}" for j in range(3)])) for i in range(5)]
            big = asyncio.ensure_future(b.encode([f"big{j}" for j in range(9)]))
            await asyncio.sleep(0.05)
            enc.gate.set()
            await asyncio.gather(*jobs, big)
        finally:
            await b.stop()

    run(main())
    sizes = [len(c) for c in enc.calls]
    assert 9 in sizes  # the oversized request is encoded on its own
    assert all(s <= 4 for s in sizes if s != 9)
    assert sum(sizes) == 5 * 3 + 9


def test_max_wait_bounds_latency_of_a_lone_request() -> None:
    enc = RecordingEncoder()

    async def main():
        b = MicroBatcher(enc, max_batch=1000, max_wait_ms=30, max_queue=10)
        b.start()
        try:
            t0 = time.perf_counter()
            await b.encode(["alone"])
            return time.perf_counter() - t0
        finally:
            await b.stop()

    elapsed = run(main())
    assert 0.025 <= elapsed < 2.0


def test_full_queue_raises_at_once() -> None:
    enc = RecordingEncoder(gated=True)

    async def main():
        b = MicroBatcher(enc, max_batch=1, max_wait_ms=0, max_queue=2)
        b.start()
        try:
            first = asyncio.ensure_future(b.encode(["a"]))
            await asyncio.sleep(0.05)  # "a" is being encoded (blocked on the gate)
            waiting = [asyncio.ensure_future(b.encode([t])) for t in ("b", "c")]
            await asyncio.sleep(0)
            assert b.depth == 2
            t0 = time.perf_counter()
            with pytest.raises(QueueFullError):
                await b.encode(["d"])
            assert time.perf_counter() - t0 < 0.5
            enc.gate.set()
            await asyncio.gather(first, *waiting)
        finally:
            await b.stop()

    run(main())


def test_a_broken_encoder_fails_every_request_with_its_error() -> None:
    def broken(texts: list[str]) -> np.ndarray:
        raise RuntimeError("boom")

    async def main():
        b = MicroBatcher(broken, max_batch=100, max_wait_ms=10, max_queue=10)
        b.start()
        try:
            return await asyncio.gather(b.encode(["a"]), b.encode(["b"]), return_exceptions=True)
        finally:
            await b.stop()

    results = run(main())
    assert len(results) == 2
    for r in results:  # after bisecting down to each request alone
        assert isinstance(r, EncodeError) and isinstance(r.__cause__, RuntimeError) and "boom" in str(r)


def test_cancelled_requests_are_skipped_and_stop_fails_waiters() -> None:
    enc = RecordingEncoder(gated=True)

    async def main():
        b = MicroBatcher(enc, max_batch=1, max_wait_ms=0, max_queue=10)
        b.start()
        first = asyncio.ensure_future(b.encode(["first"]))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(b.encode(["gone"]))
        later = asyncio.ensure_future(b.encode(["later"]))
        await asyncio.sleep(0)
        gone.cancel()
        enc.gate.set()
        await first
        await later
        assert ["gone"] not in enc.calls
        enc.gate.clear()
        stuck = asyncio.ensure_future(b.encode(["x"]))
        stuck2 = asyncio.ensure_future(b.encode(["y"]))
        await asyncio.sleep(0.05)
        await b.stop()
        enc.gate.set()
        results = await asyncio.gather(stuck, stuck2, return_exceptions=True)
        assert all(isinstance(r, BatcherClosedError) for r in results)
        with pytest.raises(BatcherClosedError):
            await b.encode(["after stop"])

    run(main())


def test_invalid_limits() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(RecordingEncoder(), max_batch=0)
    with pytest.raises(ValueError):
        MicroBatcher(RecordingEncoder(), max_wait_ms=-1)
