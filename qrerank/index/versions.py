"""Versioned index directories: immutable version folders behind an atomically replaced pointer.

Layout of an index path ``OUT``::

    OUT/CURRENT               one line: the name of the live version
    OUT/v-<UTC time>-<hex>/   one complete, never modified index (manifest.json and its files)
    OUT/.lock                 writers hold an flock on it while they publish
    OUT/.tmp-<hex>/           a version being written; exists only while its writer holds the lock
    OUT/.staging/             finished chunks of a build in progress (``qrerank.index.staging``)

A writer fills a temp folder under the lock, fsyncs it, renames it to a fresh version name and
then replaces ``CURRENT`` with one ``os.replace``. A reader reads ``CURRENT`` once and opens only
files of that version, so it sees the old index or the new one, never a mix and never a gap.
If anything fails before the pointer moves, the folder is removed and the old version stays live.

Retention: after a swap the writer deletes every version except the new one and the one it
replaced (a reader may have resolved the pointer to it a moment ago), plus whatever a killed
writer left behind (temp folders, versions that never became current, pointer temp files).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qrerank._fs import fsync_path, fsync_tree, replace_file, writer_lock
from qrerank.errors import IndexFormatError

log = logging.getLogger(__name__)

POINTER = "CURRENT"
LOCK = ".lock"
STAGING = ".staging"
_VERSION = re.compile(r"v-[0-9]{8}T[0-9]{6}-[0-9a-f]{12}")
_TEMP = re.compile(rf"\.tmp-[0-9a-f]{{32}}|{POINTER}\.tmp-[0-9a-f]{{32}}")
_POINTER_MAX = 256


def is_own_entry(name: str) -> bool:
    """Whether ``name`` is something a writer of this layout creates inside ``OUT``."""
    return name in (POINTER, LOCK, STAGING) or bool(_VERSION.fullmatch(name) or _TEMP.fullmatch(name))


def current_version(out: Path) -> str | None:
    """The version ``OUT/CURRENT`` names, or None when there is no pointer (old layout or no index).

    Raises IndexFormatError for a pointer that is a link, too large or not a version name, so
    a tampered pointer can never lead the loader outside ``OUT``.
    """
    pointer = out / POINTER
    try:
        fd = os.open(pointer, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a symlink; EISDIR; EACCES
        raise IndexFormatError(f"{pointer} cannot be read as an index pointer: {exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _POINTER_MAX:
            raise IndexFormatError(f"{pointer} is not an index pointer (a small regular file)")
        raw = os.read(fd, _POINTER_MAX)
    finally:
        os.close(fd)
    name = raw.decode("ascii", "replace").strip()
    if not _VERSION.fullmatch(name):
        raise IndexFormatError(f"{pointer} does not name a version folder (got {name[:80]!r})")
    return name


def version_dir(out: Path, name: str) -> Path:
    """``OUT/name``, checked to be a real folder inside ``OUT`` (a symlink could point anywhere)."""
    path = out / name
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise IndexFormatError(f"{out}/{POINTER} names {name}, which does not exist") from None
    if not stat.S_ISDIR(st.st_mode):
        raise IndexFormatError(f"{path} is not a folder (symbolic links are refused)")
    return path


@dataclass
class Draft:
    """A version being written: fill ``tmp``; after the block ``version`` is the published folder."""

    tmp: Path
    version: Path | None = None


def _new_name() -> str:
    return f"v-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:12]}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)  # Windows: a folder a reader holds open stays for later
    else:
        path.unlink(missing_ok=True)


def _pointer_or_none(out: Path) -> str | None:
    try:
        return current_version(out)
    except IndexFormatError:
        return None


@contextmanager
def publish(out: Path, *, lock_timeout: float, legacy_files: Sequence[str] = ()) -> Iterator[Draft]:
    """Write a new version of ``out`` and make it current atomically (see the module docstring).

    ``legacy_files``: files of the old flat layout (``manifest.json`` first) to delete from
    ``out`` once the pointer exists, converting an old index in place.
    """
    out.mkdir(parents=True, exist_ok=True)
    with writer_lock(out / LOCK, timeout=lock_timeout):
        # Temp folders are only made under this lock, so any found now belong to a dead writer.
        for entry in out.iterdir():
            if _TEMP.fullmatch(entry.name):
                _remove(entry)
        previous = _pointer_or_none(out)
        draft = Draft(out / f".tmp-{uuid.uuid4().hex}")
        draft.tmp.mkdir()
        final: Path | None = None
        try:
            yield draft
            fsync_tree(draft.tmp)
            final = out / _new_name()
            os.rename(draft.tmp, final)
            fsync_path(out)
            replace_file(out / POINTER, f"{final.name}\n".encode())
        except BaseException:
            _remove(draft.tmp)
            if final is not None and _pointer_or_none(out) != final.name:
                _remove(final)  # never became current: roll back to ``previous``
            raise
        draft.version = final
        for name in legacy_files:
            (out / name).unlink(missing_ok=True)
        for entry in out.iterdir():
            if _VERSION.fullmatch(entry.name) and entry.name not in (final.name, previous):
                _remove(entry)
        log.debug("published %s (previous %s)", final, previous)
