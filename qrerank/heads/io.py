"""Head persistence: ``weights.safetensors`` + ``config.json`` (+ ``README.md`` card), atomic.

Weights are read with safetensors only (no pickle), so loading a head from an untrusted
folder cannot execute code. A head trained with ``--train-layers N`` also carries the weights of
the encoder layers it fine-tuned (``encoder.safetensors``, the last N layers only); use
:func:`load_head_encoder` to get that encoder back.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from qrerank._fs import atomic_dir
from qrerank.core.angles import AngleHead
from qrerank.core.compression import QuantumCompressionHead
from qrerank.core.head import BlochHead, Head, IdentityHead
from qrerank.core.linear import LinearHead
from qrerank.embed.base import Encoder
from qrerank.errors import InputError

HEADS: dict[str, type[Head]] = {
    h.name: h for h in (BlochHead, IdentityHead, LinearHead, QuantumCompressionHead, AngleHead)
}
ENCODER_FILE = "encoder.safetensors"
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
    encoder_state: dict[str, torch.Tensor] | None = None,
    encoder_info: dict[str, Any] | None = None,
) -> Path:
    """Write ``head`` to directory ``out`` atomically; ``extra`` lands in config.json (model, metrics).

    ``encoder_state`` (fine-tuned encoder layers, by state-dict name) goes to ``encoder.safetensors``
    and ``encoder_info`` (``model``, ``normalized``, ``train_layers``) to config.json's ``encoder``.
    """
    out = Path(out)
    if (encoder_state is None) != (encoder_info is None):
        raise ValueError("encoder_state and encoder_info go together")
    with atomic_dir(out) as tmp:
        tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
        save_file(tensors, str(tmp / "weights.safetensors"))
        encoder: dict[str, Any] = {}
        if encoder_state is not None:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in encoder_state.items()}, str(tmp / ENCODER_FILE)
            )
            digest = hashlib.sha256((tmp / ENCODER_FILE).read_bytes()).hexdigest()
            encoder = {"encoder": {**(encoder_info or {}), "file": ENCODER_FILE, "sha256": digest}}
        config = {
            "format_version": HEAD_FORMAT_VERSION,
            "head": head.name,
            "config": head.get_config_dict(),
            "parameters": head.num_parameters(),
            **(extra or {}),
            **encoder,
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


def head_encoder_info(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """config.json's ``encoder`` entry of a head with fine-tuned encoder layers, else None."""
    cfg_path = Path(path) / "config.json"
    if not cfg_path.is_file():
        return None  # not a head at all: load_head says so
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{cfg_path} is not a valid head config: {exc}") from exc
    info = cfg.get("encoder")
    if info is not None and not (isinstance(info, dict) and isinstance(info.get("model"), str)):
        raise InputError(f"{cfg_path}: 'encoder' must be an object naming its base 'model'")
    return info


def _model_key(name: str) -> str:
    """A model name without its hub namespace, so "sentence-transformers/x" matches "x"."""
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


def load_head_encoder(
    path: str | os.PathLike[str], *, device: str | None = None, cache: bool = True, model: str | None = None
) -> Encoder | None:
    """The fine-tuned encoder a head was trained with (``--train-layers N``), or None.

    Loads the base model named in config.json and writes the saved layers into it. Its name
    carries the weights' hash, so on-disk embedding caches never mix it with the base model.
    ``model``, when given, must name that base model: a user who asked for another encoder
    gets an error rather than silently the head's.
    """
    path = Path(path)
    info = head_encoder_info(path)
    if info is None:
        return None
    if model is not None and _model_key(model) != _model_key(info["model"]):
        raise InputError(
            f"head {path} was trained with fine-tuned layers of {info['model']}, not {model}; "
            "leave the model unset to use the head's own encoder"
        )
    weights = path / str(info.get("file", ENCODER_FILE))
    if not weights.is_file():
        raise InputError(f"{path} names a fine-tuned encoder but {weights.name} is missing")
    blob = weights.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if info.get("sha256") not in (None, digest):
        raise InputError(f"{weights} does not match the sha256 in config.json: the head is corrupt")
    from safetensors.torch import load as load_bytes

    from qrerank.embed.cache import CachedEncoder, EmbeddingCache
    from qrerank.train.tuning import apply_tuned_state, base_encoder

    base = base_encoder(info["model"], normalized=bool(info.get("normalized", True)), device=device)
    try:
        state = load_bytes(blob)
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise InputError(f"{weights} is not a valid safetensors file: {exc}") from exc
    apply_tuned_state(base.model, {k: v.to(base.device) for k, v in state.items()})
    base.model.eval()
    base.name = f"{base.name}+tuned-{digest[:12]}"
    if not cache:
        return base
    return CachedEncoder(base, EmbeddingCache(base.name, base.dim))
