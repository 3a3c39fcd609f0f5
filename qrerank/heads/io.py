"""Head persistence: ``weights.safetensors`` + ``config.json`` (+ ``README.md`` card), atomic.

Weights are read with safetensors only (no pickle), so loading a head from an untrusted
folder cannot execute code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from qrerank._fs import atomic_dir
from qrerank.core.angles import AngleHead
from qrerank.core.compression import QuantumCompressionHead
from qrerank.core.head import BlochHead, Head
from qrerank.core.linear import LinearHead
from qrerank.errors import InputError

HEADS: dict[str, type[Head]] = {h.name: h for h in (BlochHead, LinearHead, QuantumCompressionHead, AngleHead)}
HEAD_FORMAT_VERSION = 1


def make_head(name: str, **config: Any) -> Head:
    """Instantiate a head by registry name ("bloch", "linear", "qbec", "angle")."""
    if name not in HEADS:
        raise InputError(f"unknown head {name!r}; choose one of {', '.join(sorted(HEADS))}")
    return HEADS[name](**config)


def save_head(
    head: Head,
    out: str | os.PathLike[str],
    *,
    extra: dict[str, Any] | None = None,
    card: str | None = None,
) -> Path:
    """Write ``head`` to directory ``out`` atomically; ``extra`` lands in config.json (model, metrics)."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        save_file(tensors, str(tmp / "weights.safetensors"))
        config = {
            "format_version": HEAD_FORMAT_VERSION,
            "head": head.name,
            "config": head.get_config_dict(),
            "parameters": head.num_parameters(),
            **(extra or {}),
        }
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if card:
            (tmp / "README.md").write_text(card)
    return out


def load_head(path: str | os.PathLike[str], *, in_dim: int | None = None) -> Head:
    """Load a saved head; ``in_dim`` (the encoder's dim) is checked against the head's."""
    path = Path(path)
    cfg_path = path / "config.json"
    if not cfg_path.is_file() or not (path / "weights.safetensors").is_file():
        raise InputError(f"{path} is not a saved head (needs config.json and weights.safetensors)")
    try:
        cfg = json.loads(cfg_path.read_text())
        head = make_head(cfg["head"], **cfg["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"{cfg_path} is not a valid head config: {exc}") from exc
    if in_dim is not None and head.in_dim != in_dim:
        raise InputError(f"head {path} expects {head.in_dim}-d embeddings but the encoder gives {in_dim}-d")
    try:
        head.load_state_dict(load_file(str(path / "weights.safetensors")))
    except (RuntimeError, OSError) as exc:
        raise InputError(f"{path}/weights.safetensors does not match its config: {exc}") from exc
    return head.eval()
