"""Style gates of issue 13 item 5, run by the README's test command (and so by CI).

ruff (docstring and complexity rules among them) on the package, tests and benchmarks, and mypy
strict on ``qrerank/core`` and ``qrerank/rerank``, both configured in ``pyproject.toml``. The
tools come with the ``dev`` extra: a missing one fails here rather than skipping.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(tool: str, *args: str) -> None:
    if importlib.util.find_spec(tool) is None:
        pytest.fail(f"{tool} is not installed: pip install -e '.[dev]' (it is in the dev extra)")
    proc = subprocess.run(
        [sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        pytest.fail(f"`{tool} {' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")


def test_ruff() -> None:
    _run("ruff", "check", "--no-fix", "--output-format", "concise", "qrerank", "tests", "benchmarks")


def test_mypy_strict_on_core_and_rerank() -> None:
    # Strict flags for these two packages come from [[tool.mypy.overrides]]; the modules they
    # import are read for their types only. The cache stays in the ignored .mypy_cache.
    _run("mypy", "qrerank/core", "qrerank/rerank")
