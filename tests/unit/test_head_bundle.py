"""load_head_bundle: a head with its fine-tuned encoder, tuned-ness read from config.json only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from qrerank.core.compression import QuantumCompressionHead
from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import InputError
from qrerank.heads import HeadBundle, HeadFormatError, load_head_bundle
from qrerank.heads.io import save_head
from qrerank.rerank.reranker import Reranker

ENCODER_INFO = {"model": "all-MiniLM-L6-v2", "normalized": True, "train_layers": 1}


@pytest.fixture
def frozen(tmp_path: Path) -> Path:
    """A head trained on frozen hashing-64 embeddings."""
    return save_head(QuantumCompressionHead(64, 16), tmp_path / "frozen", extra={"model": "hashing-64"})


@pytest.fixture
def tuned(tmp_path: Path) -> Path:
    """A head whose config records fine-tuned encoder layers (their weights are never loaded here)."""
    return save_head(
        QuantumCompressionHead(64, 16), tmp_path / "tuned",
        encoder_state={"layer.weight": torch.zeros(2)}, encoder_info=ENCODER_INFO,
    )  # fmt: skip


def test_frozen_head_bundle(frozen: Path) -> None:
    bundle = load_head_bundle(frozen, in_dim=64, runtime="onnx-int8")
    assert isinstance(bundle, HeadBundle) and isinstance(bundle.head, QuantumCompressionHead)
    assert (bundle.tuned, bundle.encoder, bundle.base_model, bundle.path) == (False, None, "hashing-64", frozen)
    assert not bundle.head.training
    with pytest.raises(dataclasses.FrozenInstanceError):
        bundle.tuned = True  # type: ignore[misc]
    with pytest.raises(HeadFormatError, match="expects 64-d embeddings but the encoder gives 128-d"):
        load_head_bundle(frozen, in_dim=128)
    rr = Reranker(HashingEncoder(64), head=bundle, method="fidelity")
    assert rr.head is bundle.head and len(rr.rank("qubit", ["a qubit", "bread"])) == 2


def test_tuned_head_is_known_from_its_config(tuned: Path) -> None:
    bundle = load_head_bundle(tuned, with_encoder=False)
    assert (bundle.tuned, bundle.encoder, bundle.base_model) == (True, None, "all-MiniLM-L6-v2")
    with pytest.raises(InputError, match="run on torch only"):
        load_head_bundle(tuned, runtime="onnx")
    with pytest.raises(InputError, match="loaded without its encoder"):
        Reranker(head=bundle)


def test_encoder_name_does_not_decide(tuned: Path) -> None:
    """An encoder object is never taken for a head's fine-tuned encoder, whatever its name."""
    impostor = HashingEncoder(64)
    impostor.name = "all-MiniLM-L6-v2+tuned-0123456789ab"
    for encoder in (HashingEncoder(64), impostor):
        with pytest.raises(InputError, match="fine-tuned encoder layers; pass a model name"):
            Reranker(encoder, head=tuned)
    with pytest.raises(InputError, match="run on torch only"):
        Reranker("all-MiniLM-L6-v2", head=tuned, runtime="onnx")
