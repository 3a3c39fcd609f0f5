"""What an encoder's vectors depend on: a cheap fingerprint of its weights on disk.

A model's *name* says where to load it from; the fingerprint says which weights were there, so
the embedding cache re-encodes when a folder is retrained, replaced or copied over.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# Hashing whole multi-GB weight files on every load would cost more than encoding a query;
# their size plus the first MiB (safetensors/pickle headers, embeddings) changes on any retrain.
HEAD_BYTES = 1 << 20
MAX_FILES = 1000  # a "model folder" with more files is not one; stop walking it
SKIPPED = {"README.md"}  # model cards do not change the vectors


def folder_fingerprint(root: str | os.PathLike[str]) -> str:
    """sha256 over (relative path, size, sha256 of the first MiB) of every file under ``root``.

    Hidden files and folders (``.git``, ``.cache``) and model cards are skipped; the order is
    sorted, so a copy of the folder elsewhere has the same fingerprint.
    """
    root = Path(root)
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name not in SKIPPED
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    for p in files[:MAX_FILES]:
        with p.open("rb") as f:
            head = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()
        digest.update(f"{p.relative_to(root).as_posix()}\0{p.stat().st_size}\0{head}\n".encode())
    return digest.hexdigest()


def hub_snapshot(repo_id: str) -> Path | None:
    """The local Hugging Face cache snapshot folder ``repo_id`` loads from, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    candidates = [repo_id] if "/" in repo_id else [repo_id, f"sentence-transformers/{repo_id}"]
    for repo in candidates:
        try:
            found = try_to_load_from_cache(repo, "config.json")
        except ValueError:  # not a valid repo id
            continue
        if isinstance(found, str):
            return Path(found).parent
    return None


def weights_fingerprint(model: str | os.PathLike[str]) -> str | None:
    """:func:`folder_fingerprint` of a local model folder or of its hub-cache snapshot; None if neither."""
    path = Path(model)
    try:
        folder = path if path.is_dir() else hub_snapshot(str(model))
        return folder_fingerprint(folder) if folder is not None else None
    except OSError:  # unreadable file: the name alone keys the cache
        return None
