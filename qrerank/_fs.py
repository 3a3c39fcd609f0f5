"""Crash-safe file system helpers shared by index and head persistence.

Indexes use :func:`writer_lock` and :func:`replace_file` (through ``qrerank.index.versions``),
so readers never see a swap half-done. Heads use :func:`atomic_dir`, whose two renames leave
the name absent for a moment: fine for files written once by one trainer, not for an index
that a service reloads while it is rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qrerank.errors import IndexBusyError

log = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then the directories, deepest first."""
    for dirpath, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def replace_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees either the old or the new content, whole."""
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


@contextmanager
def writer_lock(lock_path: Path, *, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path``; wait up to ``timeout`` s, else IndexBusyError.

    flock locks belong to the open file, so two threads of one process exclude each other too,
    and the kernel drops the lock when its holder dies (a SIGKILLed build never wedges it).
    """
    try:
        import fcntl
    except ImportError:  # Windows: no flock; one writer at a time is then the caller's job
        log.warning("no fcntl on this platform: %s is not locked against concurrent writers", lock_path)
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusyError(
                        f"another process is writing {lock_path.parent} (it holds {lock_path.name}); "
                        f"gave up after {timeout:g}s: retry when that build has finished"
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a temp sibling of ``out`` to fill; on success it replaces ``out`` (used for heads).

    The swap is two renames (``out`` aside, temp in), so ``out`` is briefly absent; if the
    second rename fails the old ``out`` is put back. On error the temp dir is removed and an
    existing ``out`` is left untouched.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            if old is not None:
                old.rename(out)  # roll back: the previous version stays in place
            raise
        fsync_path(out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
