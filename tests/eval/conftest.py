"""Shared fixtures of the eval tests: the tiny BEIR folder and an encoder with chosen vectors."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "tiny_beir"
TINY_STS = FIXTURES / "tiny_sts"


class KeyedEncoder:
    """Maps each text to the vector chosen for its first token (texts start with their id)."""

    normalized = True

    def __init__(self, vectors: dict[str, Sequence[float]], name: str = "keyed") -> None:
        self.vectors = {k: np.asarray(v, dtype=np.float32) for k, v in vectors.items()}
        self.dim = len(next(iter(self.vectors.values())))
        self.name = name
        self.calls = 0

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        self.calls += 1
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vectors[t.split()[0]] for t in texts])


def unit(angle: float) -> list[float]:
    return [math.cos(angle), math.sin(angle)]


# Angles on the unit circle: cosine ranks documents by |angle(query) - angle(doc)|.
# q1 (0.0): d1 .1 < d4 .3 < d2 .5 < d3 .7 < d5 .9 < d6 1.5
# q2 (1.05): d5 .15 < d3 .35 < d6 .45 < d2 .55 < d4 .75 < d1 .95
ANGLES = {
    "d1": 0.1, "d4": 0.3, "d2": 0.5, "d3": 0.7, "d5": 0.9, "d6": 1.5,
    "q1": 0.0, "q2": 1.05, "q3": 0.2, "t1": 0.25, "t2": 1.25,
}  # fmt: skip

# STS pairs: a_i at angle 0, b_i at an angle that grows as the gold score falls.
STS_ANGLES = {"b0": 0.0, "b1": 0.3, "b2": 0.6, "b3": 0.9, "b4": 1.2, "b5": 0.2, "b6": 0.7, "b7": 1.1}


@pytest.fixture
def tiny() -> Path:
    return TINY


@pytest.fixture
def tiny_copy(tmp_path: Path) -> Path:
    """A writable copy of the tiny dataset, for tests that break it."""
    dst = tmp_path / "tiny_beir"
    shutil.copytree(TINY, dst)
    return dst


@pytest.fixture
def encoder() -> KeyedEncoder:
    return KeyedEncoder({k: unit(a) for k, a in ANGLES.items()})


@pytest.fixture
def sts_encoder() -> KeyedEncoder:
    vecs = {f"a{i}": unit(0.0) for i in range(8)}
    vecs.update({k: unit(a) for k, a in STS_ANGLES.items()})
    return KeyedEncoder(vecs, name="keyed-sts")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write the user's embedding cache from tests."""
    monkeypatch.setenv("QRERANK_CACHE_DIR", str(tmp_path / "cache"))
