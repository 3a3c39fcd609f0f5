"""Rebuilding an index while it is read, by two writers at once, and through crashes.

Each build writes a corpus whose ids carry the build number, so a reader can tell that every
file it loaded came from one build.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import qrerank.index.build as build_module
import qrerank.index.directory as directory
from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import IndexBusyError
from qrerank.index.directory import DocumentIndex, build_index
from qrerank.types import Document

ENC = HashingEncoder(64)


def corpus(build: int) -> list[Document]:
    n = 8 + 4 * (build % 3)  # sizes differ between consecutive builds
    return [Document(doc_id=f"b{build}-{i}", text=f"build {build} doc {i} word{i % 4}") for i in range(n)]


def build(out: Path, number: int, **kw: object) -> DocumentIndex:
    return build_index(corpus(number), ENC, out, kind="exact", **kw)  # type: ignore[arg-type]


def check_consistent(index: DocumentIndex) -> int:
    """The build number all of ``index`` comes from; fails if its parts disagree."""
    n = len(index)
    first, last = index.documents([0, n - 1])
    number = int(first.doc_id.split("-")[0][1:])
    assert len(corpus(number)) == n and last.doc_id == f"b{number}-{n - 1}"
    assert index.embeddings.shape == (n, 64) and index.vectors.ntotal == n
    _, rows = index.search(ENC.encode([f"build {number} doc 3 word3"]), 1)
    assert rows[0][0] == 3
    return number


def entries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def assert_clean(out: Path) -> None:
    """Only the pointer, the lock and at most two versions (live + previous) are left."""
    names = entries(out)
    versions = [n for n in names if n.startswith("v-")]
    assert set(names) - set(versions) <= {"CURRENT", ".lock"}, names
    assert 1 <= len(versions) <= 2, names
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_readers_never_see_a_half_done_swap(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build(out, 0)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[int] = set()
    loads = 0

    def reader() -> None:
        nonlocal loads
        while not stop.is_set():
            try:
                index = DocumentIndex.load(out)
                seen.add(check_consistent(index))
                index.close()
                loads += 1
            except BaseException as exc:  # every failure counts, whatever its type
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    deadline, number = time.monotonic() + 2.5, 0
    try:
        while time.monotonic() < deadline and not errors:
            number += 1
            build(out, number)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, f"{len(errors)} failed reads, first: {errors[0]!r}"
    assert loads >= 10 and len(seen) >= 2 and number >= 5, (loads, seen, number)
    assert_clean(out)


def test_two_concurrent_writers(tmp_path: Path) -> None:
    """Two writers (threads: flock excludes separate opens of the lock file, as across processes)."""
    out = tmp_path / "idx"
    errors: list[BaseException] = []

    def writer(first: int) -> None:
        for k in range(first, first + 20, 2):
            try:
                build(out, k)
            except BaseException as exc:  # every failure counts, whatever its type
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(first,)) for first in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, f"{len(errors)} failed writes, first: {errors[0]!r}"
    assert check_consistent(DocumentIndex.load(out)) in (18, 19)
    assert_clean(out)


def test_second_writer_times_out_with_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build(out, 1)
    with (out / ".lock").open("a") as held:  # another process mid-build
        fcntl.flock(held, fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(IndexBusyError, match="another process is writing"):
            build(out, 2, lock_timeout=0.3)
        assert 0.25 <= time.monotonic() - t0 < 5
    assert check_consistent(DocumentIndex.load(out)) == 1
    build(out, 3, lock_timeout=0.3)  # released: the next writer goes through
    assert_clean(out)


KILLED_BUILD = """
import os, signal, sys
import qrerank.index.build as d
from qrerank.embed.hashing import HashingEncoder
from qrerank.types import Document

real = d.write_store

def die(path, docs):  # SIGKILL with the new version half written
    real(path, docs)
    os.kill(os.getpid(), signal.SIGKILL)

d.write_store = die
d.build_index([Document(doc_id=f"x{i}", text=f"killed {i}") for i in range(30)],
              HashingEncoder(64), sys.argv[1], kind="exact")
"""


def test_sigkilled_build_keeps_old_index_and_next_build_cleans_up(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build(out, 1)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED_BUILD), str(out)], timeout=120)
    assert proc.returncode == -9
    leftovers = [p.name for p in [*out.iterdir(), *tmp_path.iterdir()] if ".tmp-" in p.name]
    assert leftovers, "the killed build should have left its temp folder"
    assert check_consistent(DocumentIndex.load(out)) == 1
    build(out, 2)
    assert check_consistent(DocumentIndex.load(out)) == 2
    assert_clean(out)


def test_stale_leftovers_are_removed_by_the_next_write(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    build(out, 1)
    (out / f".tmp-{'a' * 32}").mkdir()
    (out / f".tmp-{'a' * 32}" / "docs.sqlite").write_bytes(b"half")
    (out / "v-20200101T000000-0123456789ab").mkdir()  # renamed but never made current
    (out / f"CURRENT.tmp-{'b' * 32}").write_text("junk")
    build(out, 2)
    build(out, 3)
    assert check_consistent(DocumentIndex.load(out)) == 3
    assert_clean(out)


def test_failure_mid_write_keeps_the_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "idx"
    build(out, 1)
    before = entries(out)

    def broken_store(path: Path, docs: list[Document]) -> None:
        path.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(build_module, "write_store", broken_store)
    with pytest.raises(OSError, match="disk full"):
        build(out, 2)
    monkeypatch.undo()
    assert check_consistent(DocumentIndex.load(out)) == 1
    assert entries(out) == sorted([*before, ".staging"])  # the encoded chunks stay for a rerun


def test_failed_pointer_swap_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import qrerank.index.versions as versions

    out = tmp_path / "idx"
    build(out, 1)
    before = entries(out)

    def fail(path: Path, data: bytes) -> None:
        raise OSError("rename failed")

    monkeypatch.setattr(versions, "replace_file", fail)
    with pytest.raises(OSError, match="rename failed"):
        build(out, 2)
    monkeypatch.undo()
    assert check_consistent(DocumentIndex.load(out)) == 1
    assert entries(out) == sorted([*before, ".staging"])  # the new version folder is gone too


def test_reader_keeps_serving_a_retired_version(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    old = build(out, 1)
    assert old.version_dir is not None
    build(out, 2)
    build(out, 3)  # retires version 1
    assert not old.version_dir.exists()
    assert check_consistent(old) == 1  # in-memory vectors and an open SQLite file
    assert check_consistent(DocumentIndex.load(out)) == 3


def test_load_retries_when_its_version_is_retired_mid_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "idx"
    build(out, 1)
    real = directory.read_manifest
    calls = []

    def slow_reader(path: Path) -> dict[str, object]:
        calls.append(path.parent.name)
        if len(calls) == 1:  # two rebuilds between resolving the pointer and opening files
            monkeypatch.setattr(directory, "read_manifest", real)
            build(out, 2)
            build(out, 3)
            monkeypatch.setattr(directory, "read_manifest", slow_reader)
        return real(path)

    monkeypatch.setattr(directory, "read_manifest", slow_reader)
    assert check_consistent(DocumentIndex.load(out)) == 3
    assert len(calls) == 2 and calls[0] != calls[1]


def test_old_flat_layout_loads_and_is_converted_by_the_next_build(tmp_path: Path) -> None:
    new = build(tmp_path / "new", 1)
    legacy = tmp_path / "legacy"
    assert new.version_dir is not None
    new.close()
    new.version_dir.rename(legacy)  # manifest.json directly in the folder, as before versioning
    assert check_consistent(DocumentIndex.load(legacy)) == 1
    build(legacy, 2)
    assert check_consistent(DocumentIndex.load(legacy)) == 2
    assert not (legacy / "manifest.json").exists() and not (legacy / "docs.sqlite").exists()
    assert_clean(legacy)


def test_retention_keeps_live_and_previous(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    dirs = [build(out, k).version_dir for k in range(4)]
    assert [d.exists() for d in dirs if d is not None] == [False, False, True, True]
    assert (out / "CURRENT").read_text().strip() == dirs[-1].name  # type: ignore[union-attr]
    assert np.allclose(DocumentIndex.load(out).embeddings, ENC.encode([d.content for d in corpus(3)]))


def test_atomic_dir_rolls_back_a_failed_second_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Heads still use atomic_dir: if the temp folder cannot be renamed in, the old one returns."""
    from qrerank._fs import atomic_dir

    out = tmp_path / "head"
    out.mkdir()
    (out / "config.json").write_text("old")
    real = Path.rename

    def rename(self: Path, target: str | Path) -> Path:
        if self.name.startswith(".head.tmp-"):
            raise OSError("rename failed")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="rename failed"), atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("new")
    monkeypatch.undo()
    assert (out / "config.json").read_text() == "old"
    assert entries(tmp_path) == ["head"]
