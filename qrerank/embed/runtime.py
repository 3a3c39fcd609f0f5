"""Encoder runtimes: which engine runs a sentence-transformers model's transformer.

``torch`` is the model as loaded (GPU and fp16 when present). ``onnx`` runs the same weights,
exported once to ONNX, on ONNX Runtime's CPU kernels; ``onnx-int8`` runs that export with its
weight matrices dynamically quantized to int8 (see :mod:`qrerank.embed.onnx`). The vectors of
``onnx`` match ``torch`` to float rounding; ``onnx-int8`` vectors are close but not equal, so
the runtime is part of an encoder's identity: the embedding cache keys on it and an index
records it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from qrerank.errors import InputError


class Runtime(StrEnum):
    """The engine that runs an encoder (``load_encoder(name, runtime=...)``, ``--runtime``)."""

    TORCH = "torch"
    ONNX = "onnx"
    ONNX_INT8 = "onnx-int8"

    @property
    def is_onnx(self) -> bool:
        return self is not Runtime.TORCH


RUNTIMES: tuple[str, ...] = tuple(r.value for r in Runtime)


def parse_runtime(value: Runtime | str | None, what: str = "runtime") -> Runtime:
    """``value`` as a Runtime (None -> torch); InputError listing the choices otherwise."""
    if value is None:
        return Runtime.TORCH
    try:
        return Runtime(value)
    except ValueError:
        raise InputError(f"unknown {what} {value!r}; choose one of {', '.join(RUNTIMES)}") from None


def encoder_runtime(encoder: Any) -> str | None:
    """The runtime an encoder runs on, or None for encoders that have only one (hashing, fakes)."""
    runtime = getattr(encoder, "runtime", None)
    return str(runtime) if runtime is not None else None


def runtime_for_index(index_runtime: str | None, requested: Runtime | str | None, where: object) -> Runtime:
    """The runtime to encode queries for an index built with ``index_runtime``.

    ``requested`` None means "the index's own" (torch for indexes from before runtimes were
    recorded). A different explicit request is refused: int8 query vectors against fp32
    document vectors (or the reverse) would silently shift every score.
    """
    built = parse_runtime(index_runtime, "runtime in the index manifest")
    if requested is None:
        return built
    asked = parse_runtime(requested)
    if asked is not built:
        raise InputError(
            f"index {where} was built with runtime {built.value}, not {asked.value}: query and "
            f"document vectors must come from the same runtime; drop --runtime (or QRERANK_RUNTIME) "
            f"or rebuild the index with --runtime {asked.value}"
        )
    return built
