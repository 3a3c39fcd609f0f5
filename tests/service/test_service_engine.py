"""The Engine serves the Reranker it was given: every setting reaches its search pipeline."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from qrerank.core.compression import QuantumCompressionHead
from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import InputError
from qrerank.heads.io import save_head
from qrerank.index.directory import DocumentIndex
from qrerank.rerank.reranker import Reranker
from qrerank.service.config import Settings
from qrerank.service.engine import Engine, load_reranker


def test_search_pipeline_keeps_backend_shots_and_every_setting(index_dir: Path) -> None:
    """Regression: Engine.start rebuilt the Reranker by hand and dropped backend and shots."""
    served = Reranker(
        HashingEncoder(256), method="fidelity", alpha=0.25, tau=0.3, normalize="none",
        backend="qiskit", shots=128, batch_size=7,
    )  # fmt: skip
    engine = Engine(Settings(), reranker=served, index=DocumentIndex.load(index_dir))

    async def start_and_read() -> Reranker:
        await engine.start()
        try:
            return engine.pipeline.reranker
        finally:
            await engine.stop()

    searcher = asyncio.run(start_and_read())
    assert searcher is not served and searcher.encoder is not served.encoder  # the batching bridge
    assert searcher.encoder.name == served.encoder.name and searcher.encoder.dim == served.encoder.dim
    kept = ("method", "alpha", "tau", "normalize", "head", "backend", "shots", "batch_size")
    assert {k: getattr(searcher, k) for k in kept} == {k: getattr(served, k) for k in kept}
    assert (searcher.backend, searcher.shots) == ("qiskit", 128)


def test_with_encoder_keeps_settings_and_refuses_another_width() -> None:
    rr = Reranker(HashingEncoder(64), method="cosine", backend="pennylane", shots=10)
    other = HashingEncoder(64)
    swapped = rr.with_encoder(other)
    assert swapped.encoder is other and rr.encoder is not other
    assert (swapped.method, swapped.backend, swapped.shots) == (rr.method, "pennylane", 10)
    with pytest.raises(InputError, match="32-d"):
        rr.with_encoder(HashingEncoder(32))


def test_load_reranker_loads_a_saved_head_once(tmp_path: Path) -> None:
    head = QuantumCompressionHead(64, 16)
    save_head(head, tmp_path / "h", extra={"model": "hashing-64"})
    rr = load_reranker(Settings(model="hashing-64", head=str(tmp_path / "h"), method="fidelity"))
    assert rr.head is not None and rr.encoder.name == "hashing-64"
    x = torch.randn(2, 64)
    with torch.no_grad():
        assert torch.equal(rr.head(x), head(x))
    with pytest.raises(InputError, match="expects 64-d"):
        load_reranker(Settings(model="hashing-128", head=str(tmp_path / "h")))
