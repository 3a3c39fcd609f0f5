"""A saved head with the encoder it scores: the one way to load a head for use.

A head trained on frozen embeddings scores the vectors of any encoder of its input width (the
model it was trained on gives the numbers it was trained for). A head trained with
``--train-layers N`` scores only the vectors of its own fine-tuned encoder, saved beside it.
Which of the two a head is comes from its ``config.json`` (the ``encoder`` entry), never from an
encoder's name. :func:`load_head_bundle` reads that once and returns a :class:`HeadBundle`; the
Reranker, the service, the IR evaluator and the STS evaluator all load heads through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qrerank.core.head import Head
from qrerank.embed.base import Encoder
from qrerank.embed.runtime import Runtime, parse_runtime
from qrerank.errors import InputError
from qrerank.heads.io import head_config, load_head, load_head_encoder


@dataclass(frozen=True, kw_only=True, slots=True)
class HeadBundle:
    """A loaded head, its fine-tuned encoder if it has one, and the model it was trained on.

    Attributes:
        head: the head, in eval mode.
        encoder: the fine-tuned encoder saved with the head; None for a head trained on frozen
            embeddings, or when loaded with ``with_encoder=False``.
        base_model: the model the head was trained on (config.json's ``encoder.model``, else its
            ``model``); None when the config names none.
        tuned: config.json records fine-tuned encoder layers, so the head scores only the
            embeddings of that encoder.
        path: the head folder.
    """

    head: Head
    encoder: Encoder | None
    base_model: str | None
    tuned: bool
    path: Path


def _base_model(cfg: dict[str, Any]) -> str | None:
    """The model a head config names: its fine-tuned encoder's base, else the training model."""
    info = cfg.get("encoder")
    model = info["model"] if info is not None else cfg.get("model")
    return model if isinstance(model, str) and model.strip() else None


def load_head_bundle(
    path: str | os.PathLike[str],
    *,
    in_dim: int | None = None,
    model: str | None = None,
    device: str | None = None,
    cache: bool = True,
    runtime: Runtime | str | None = None,
    with_encoder: bool = True,
) -> HeadBundle:
    """The head saved at ``path`` with its fine-tuned encoder, if it has one.

    Args:
        path: a head folder written by ``qrerank train`` or :func:`qrerank.heads.io.save_head`.
        in_dim: the width of the embeddings it will score, checked against the head's.
        model: a model the caller asked for; a head with fine-tuned layers refuses any other
            base model (see :func:`qrerank.heads.io.load_head_encoder`).
        device: where the fine-tuned encoder runs.
        cache: wrap the fine-tuned encoder in the on-disk embedding cache.
        runtime: the encoder runtime asked for; fine-tuned layers run on torch only, so an ONNX
            runtime is refused for such a head.
        with_encoder: load the fine-tuned encoder (False: only say whether there is one).

    Raises:
        HeadFormatError: the folder is not a valid head, or ``in_dim`` does not match.
        InputError: an ONNX ``runtime`` or another ``model`` for a head with fine-tuned layers.
    """
    path = Path(path)
    head = load_head(path, in_dim=in_dim)
    cfg = head_config(path)
    tuned = cfg.get("encoder") is not None
    rt = parse_runtime(runtime)
    if tuned and rt.is_onnx:
        raise InputError(
            f"head {path} was trained with fine-tuned encoder layers, which run on torch only; "
            f"use runtime torch, not {rt.value}"
        )
    encoder = (
        load_head_encoder(path, device=device, cache=cache, model=model) if tuned and with_encoder else None
    )
    return HeadBundle(head=head, encoder=encoder, base_model=_base_model(cfg), tuned=tuned, path=path)
