"""Hardware and software versions recorded beside every evaluation (meta.json, benchmarks)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PACKAGES = (
    "qrerank",
    "torch",
    "numpy",
    "sentence-transformers",
    "transformers",
    "ir-measures",
    "pytrec-eval-terrier",
    "bm25s",
    "PyStemmer",
    "scipy",
    "matplotlib",
)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment(packages: Sequence[str] = ()) -> dict[str, Any]:
    """Platform, CPU, core count, load, GPU (if any), Python and package versions, git commit.

    ``packages`` adds versions beyond :data:`PACKAGES` (a benchmark's optional backends).
    """
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # The machine may be shared: a load above the core count means timings include contention.
        "load_average_1_5_15min": [round(x, 2) for x in os.getloadavg()],
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {p: _version(p) for p in dict.fromkeys((*PACKAGES, *packages))},
        "git_commit": _git_commit(),
    }


def write_results(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write a benchmark's results as JSON atomically (a killed run leaves the old file).

    The payload gets the environment of :func:`environment` unless it carries its own; returns
    the path.
    """
    from qrerank._fs import replace_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "environment": payload.get("environment") or environment()}
    replace_file(path, (json.dumps(payload, indent=2, default=float) + "\n").encode())
    return path
