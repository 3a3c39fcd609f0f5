"""sentence-transformers encoder [st]: batched, GPU and fp16 when present, offline loading."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qrerank._optional import require
from qrerank.embed.identity import weights_fingerprint
from qrerank.errors import ModelNotFoundError

log = logging.getLogger(__name__)


def pick_device(device: str | None) -> str:
    """``device`` if given, else "cuda" when available, else "cpu"."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _quiet_transformers() -> None:
    """Silence transformers' per-load progress bar; our own progress bars cover long jobs."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


class SentenceTransformerEncoder:
    """Any sentence-transformers model, by hub name (from the local HF cache) or local folder.

    ``normalize=False`` drops the model's Normalize module and returns the unnormalised pooled
    outputs the paper Bloch-encodes; ``normalize=True`` returns unit vectors.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        name: str | None = None,
        device: str | None = None,
        normalize: bool = True,
        fp16: bool | None = None,
        max_seq_length: int | None = None,
    ) -> None:
        st = require("sentence_transformers", "st")
        # Never reach for the hub at run time: weights come from packages or local folders.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        _quiet_transformers()
        self.device = pick_device(device)
        try:
            self.model = st.SentenceTransformer(str(model), device=self.device)
        except Exception as exc:  # hub/OS/config errors all mean "cannot load this model offline"
            raise ModelNotFoundError(
                f"cannot load sentence-transformers model {str(model)!r} offline ({exc.__class__.__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}). Give a local model folder, a model in the "
                "local Hugging Face cache, or a packaged model: see qrerank.embed.models.PACKAGED_MODELS"
            ) from exc
        normalizers = [i for i, m in enumerate(self.model) if type(m).__name__ == "Normalize"]
        if not normalize:
            for i in reversed(normalizers):
                del self.model[i]
        self.normalized = normalize
        self._renormalize = normalize and not normalizers
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        if fp16 if fp16 is not None else self.device.startswith("cuda"):
            self.model.half()
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())
        local = Path(model).expanduser()
        # A local folder is named by its absolute path: unambiguous, and loadable from any cwd.
        base = name or (str(local.resolve()) if local.exists() else str(model))
        self.name = base + ("" if normalize else "-raw")
        self.weights = weights_fingerprint(local if local.exists() else str(model))
        log.info("loaded %s (dim %d) on %s", self.name, self.dim, self.device)

    def cache_identity(self) -> dict[str, Any]:
        """Name, weights fingerprint and the settings that change the vectors (see CacheIdentity)."""
        dtype = next((str(p.dtype) for p in self.model.parameters()), "none")
        return {
            "encoder": "sentence-transformers",
            "name": self.name,
            "weights": self.weights,
            "dim": self.dim,
            "max_seq_length": self.model.max_seq_length,
            "dtype": dtype,
            "normalized": self.normalized,
            "renormalize": self._renormalize,
        }

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=self._renormalize,
        )
        return np.asarray(vecs, dtype=np.float32)
