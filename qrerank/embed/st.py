"""sentence-transformers encoder [st]: batched, GPU and fp16 when present, offline loading.

``runtime="onnx"`` / ``"onnx-int8"`` [onnx] run the same model's transformer on ONNX Runtime
(CPU only; exported once from these weights, see :mod:`qrerank.embed.onnx`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qrerank._optional import require
from qrerank.embed.identity import hub_snapshot, weights_fingerprint
from qrerank.embed.runtime import Runtime, parse_runtime
from qrerank.errors import InputError, ModelNotFoundError

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


def _onnx_device(runtime: Runtime, device: str | None, fp16: bool | None) -> str:
    """The device of an onnx runtime, the CPU; a missing extra or a GPU/fp16 ask fails before any load."""
    from qrerank.embed import onnx

    require("onnxruntime", onnx.EXTRA)
    if device not in (None, "cpu") or fp16:
        raise InputError(
            f"runtime {runtime.value} runs on the CPU in float32/int8; use --runtime torch "
            f"for device {device!r}{' and fp16' if fp16 else ''}"
        )
    return "cpu"


def _stay_offline() -> None:
    """Never reach for the hub at run time: weights come from packages or local folders."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _quiet_transformers()


def _load_model(st: Any, model: str | os.PathLike[str], device: str) -> Any:
    """``st.SentenceTransformer(model)`` on ``device``; any failure is a ModelNotFoundError."""
    try:
        return st.SentenceTransformer(str(model), device=device)
    except Exception as exc:  # hub/OS/config errors all mean "cannot load this model offline"
        raise ModelNotFoundError(
            f"cannot load sentence-transformers model {str(model)!r} offline ({exc.__class__.__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Give a local model folder, a model in the "
            "local Hugging Face cache, or a packaged model: see qrerank.embed.models.PACKAGED_MODELS"
        ) from exc


def _embedding_dim(model: Any) -> int:
    """The model's output dim (``get_embedding_dimension`` in newer sentence-transformers)."""
    get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get_dim())


def _model_source(model: str | os.PathLike[str], name: str | None) -> tuple[str, Path | str]:
    """The base name (``name``, a local folder's absolute path, or ``model``) and where the weights are."""
    local = Path(model).expanduser()
    if local.exists():
        # A local folder is named by its absolute path: unambiguous, and loadable from any cwd.
        return name or str(local.resolve()), local
    return name or str(model), str(model)


class SentenceTransformerEncoder:
    """Any sentence-transformers model, by hub name (from the local HF cache) or local folder.

    ``normalize=False`` drops the model's Normalize module and returns the unnormalised pooled
    outputs the paper Bloch-encodes; ``normalize=True`` returns unit vectors. ``runtime`` picks
    the engine (:class:`~qrerank.embed.runtime.Runtime`); the onnx runtimes run on the CPU and
    ``quantization`` names the int8 preset (default: the one for this CPU).
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
        runtime: Runtime | str = Runtime.TORCH,
        quantization: str | None = None,
    ) -> None:
        st = require("sentence_transformers", "st")
        self.runtime = parse_runtime(runtime)
        if self.runtime.is_onnx:
            device = _onnx_device(self.runtime, device, fp16)
        _stay_offline()
        self.device = pick_device(device)
        self.model = _load_model(st, model, self.device)
        self._set_normalize(normalize)
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        if not self.runtime.is_onnx and (fp16 if fp16 is not None else self.device.startswith("cuda")):
            self.model.half()
        self.dim = _embedding_dim(self.model)
        base, source = _model_source(model, name)
        self.name = base + ("" if normalize else "-raw")
        self.weights = weights_fingerprint(source)
        self.onnx: dict[str, object] | None = None  # the export's identity, for the cache key
        if self.runtime.is_onnx:
            self._use_onnx(model, base, quantization)
        log.info("loaded %s (dim %d) on %s, runtime %s", self.name, self.dim, self.device, self.runtime.value)

    def _set_normalize(self, normalize: bool) -> None:
        """Keep unit vectors (the model's Normalize, else ``encode`` renormalises) or drop Normalize."""
        normalizers = [i for i, m in enumerate(self.model) if type(m).__name__ == "Normalize"]
        if not normalize:
            for i in reversed(normalizers):
                del self.model[i]
        self.normalized = normalize
        self._renormalize = normalize and not normalizers

    def _use_onnx(self, model: str | os.PathLike[str], base: str, quantization: str | None) -> None:
        """Swap the transformer for its ONNX export (made once from the weights just loaded)."""
        from qrerank.embed import onnx
        from qrerank.embed.cache import file_label

        if self.weights is None:  # the export is cached by fingerprint: without one it could go stale
            source = Path(model) if Path(model).exists() else hub_snapshot(str(model))
            raise ModelNotFoundError(
                f"cannot fingerprint the weights of {str(model)!r} ({source or 'no local folder'}), "
                f"which runtime {self.runtime.value} needs to cache its export; use --runtime torch"
            )
        export = onnx.ensure_export(
            self.model, self.weights, self.runtime, label=file_label(base), quantization=quantization
        )
        onnx.use_onnx(self.model, export.path)
        self.onnx = export.identity

    def cache_identity(self) -> dict[str, Any]:
        """Name, weights fingerprint and the settings that change the vectors (see CacheIdentity)."""
        dtype = next((str(p.dtype) for p in self.model.parameters()), "none")
        # The torch runtime adds no key, so caches written before runtimes existed stay valid;
        # an onnx runtime adds its export's identity (runtime, quantization preset, onnxruntime).
        runtime = {"runtime": self.runtime.value, "onnx": self.onnx} if self.runtime.is_onnx else {}
        return {
            **runtime,
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
