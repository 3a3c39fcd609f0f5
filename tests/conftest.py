"""Shared fixtures (an isolated cache dir per test session, seeded generators) and ``--slow``.

Tests marked ``slow`` (the real packaged MiniLM model, ``../shared/data``, torch.compile) are
skipped unless pytest runs with ``--slow``: a quick local loop by default, the full suite
explicitly. The README's test command and CI pass ``--slow``.
"""

from __future__ import annotations

import pytest
import torch

# The contract base classes live outside test files: rewrite their asserts too (before any import).
pytest.register_assert_rewrite("tests.contracts")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", default=False, help="also run the tests marked slow (as CI does)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (the README's test command does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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
