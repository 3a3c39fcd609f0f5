"""The version lives in one place: ``qrerank.__version__``, read by the build."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import qrerank


def test_version_has_one_source() -> None:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("qrerank") == qrerank.__version__
