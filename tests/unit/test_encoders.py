"""The Encoder contract (tests/contracts.py) on the encoders without extras: hashing, and cached.

The sentence-transformers encoder runs it in test_model_identity.py (a tiny random model),
test_runtime.py (its onnx runtimes) and tests/integration/test_minilm.py (the real MiniLM);
the Ray encoder in tests/ray/test_index.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from qrerank.embed.base import Encoder
from qrerank.embed.cache import CachedEncoder, EmbeddingCache
from qrerank.embed.hashing import HashingEncoder
from tests.contracts import EncoderContract


class TestHashingEncoderContract(EncoderContract):
    def make_encoder(self) -> Encoder:
        return HashingEncoder(64)


class TestRawHashingEncoderContract(EncoderContract):
    def make_encoder(self) -> Encoder:
        return HashingEncoder(64, normalized=False)


class TestCachedEncoderContract(EncoderContract):
    """A fresh cache per test: each test's first encode misses, its later ones hit."""

    @pytest.fixture
    def encoder(self, tmp_path: Path) -> Encoder:
        inner = HashingEncoder(64)
        return CachedEncoder(inner, EmbeddingCache.for_encoder(inner, tmp_path), chunk_size=3)
