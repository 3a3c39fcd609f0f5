"""ServeBatcher: serve.batch gathers concurrent requests; a bad one fails alone; limits hold.

serve.batch is plain asyncio, so these run without Ray; outside a replica only the replica
context it reads max_ongoing_requests from is missing, and the fixture stands one in.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="the Ray tests need qrerank[ray]")

from qrerank.embed.hashing import HashingEncoder
from qrerank.service.batcher import BatcherClosedError, EncodeError, QueueFullError
from qrerank.service.ray import ServeBatcher

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


@pytest.fixture(autouse=True)
def replica_context(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray import serve

    context = SimpleNamespace(_deployment_config=SimpleNamespace(max_ongoing_requests=1000))
    monkeypatch.setattr(serve, "get_replica_context", lambda: context)


class Recording:
    """HashingEncoder(32) that records each call and refuses the text "boom"."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.inner = HashingEncoder(32)

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if "boom" in texts:
            raise ValueError("boom")
        return self.inner.encode(texts)


def test_concurrent_requests_share_batches_and_a_bad_one_fails_alone() -> None:
    enc = Recording()

    async def main() -> list[np.ndarray | BaseException]:
        b = ServeBatcher(enc, max_batch=100, max_wait_ms=50, max_queue=100)
        b.start()
        jobs = [b.encode([f"text {i}", "shared"]) for i in range(8)] + [b.encode(["boom"])]
        out = await asyncio.gather(*jobs, return_exceptions=True)
        await b.stop()
        return out

    out = asyncio.run(main())
    assert isinstance(out[-1], EncodeError) and isinstance(out[-1].__cause__, ValueError)
    for i, rows in enumerate(out[:-1]):
        assert isinstance(rows, np.ndarray)
        np.testing.assert_allclose(rows, enc.inner.encode([f"text {i}", "shared"]))
    first = enc.calls[0]
    assert len(first) == 10 and first.count("shared") == 1  # one batch, each text once


def test_queue_limit_and_stopped_batcher() -> None:
    async def main() -> None:
        b = ServeBatcher(Recording(), max_batch=10, max_wait_ms=20, max_queue=2)
        with pytest.raises(BatcherClosedError):
            await b.encode(["x"])
        b.start()
        results = await asyncio.gather(*(b.encode([f"t{i}"]) for i in range(3)), return_exceptions=True)
        assert sum(isinstance(r, QueueFullError) for r in results) == 1
        await b.stop()
        with pytest.raises(BatcherClosedError):
            await b.encode(["x"])

    asyncio.run(main())
