"""Shared fixtures: an isolated cache dir per test session and seeded generators."""

from __future__ import annotations

import pytest
import torch

# The contract base classes live outside test files: rewrite their asserts too (before any import).
pytest.register_assert_rewrite("tests.contracts")


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # Tests never read or write the user's ~/.cache/qrerank.
    mp = pytest.MonkeyPatch()
    mp.setenv("QRERANK_CACHE_DIR", str(tmp_path_factory.mktemp("qrerank-cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    yield
    mp.undo()


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
