"""Document texts and metadata beside the vectors, in SQLite (row id = vector row)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from qrerank.errors import IndexFormatError, InputError
from qrerank.types import Document

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
  row INTEGER PRIMARY KEY,
  doc_id TEXT NOT NULL UNIQUE,
  title TEXT NOT NULL,
  text TEXT NOT NULL,
  metadata TEXT NOT NULL
)
"""
_COLUMNS = ["row", "doc_id", "title", "text", "metadata"]
# CASE, not OR: SQLite does not promise to short-circuit, and json_type raises on malformed JSON.
_BAD_ROW = """
SELECT row FROM docs
WHERE typeof(doc_id) != 'text' OR typeof(title) != 'text' OR typeof(text) != 'text'
   OR NOT CASE WHEN typeof(metadata) = 'text' AND json_valid(metadata)
               THEN json_type(metadata) = 'object' ELSE 0 END
LIMIT 1
"""


def write_store(path: Path, docs: Iterable[Document]) -> int:
    """Write documents to a new SQLite file, rows numbered from 0 in order; returns the row count.

    ``docs`` is consumed one document at a time (one transaction; SQLite's page cache, about
    2 MB, bounds what is held), so an iterator streams any number of documents to disk. Ids are
    unique by the table's own UNIQUE index, on disk: a repeat is an InputError naming it, with
    no per-document set in memory.
    """
    count = 0
    last = ""

    def rows() -> Iterator[tuple[int, str, str, str, str]]:
        nonlocal count, last
        for i, d in enumerate(docs):
            count, last = i + 1, d.doc_id
            yield i, d.doc_id, d.title, d.text, json.dumps(d.metadata)

    conn = sqlite3.connect(path)
    try:
        conn.execute(_SCHEMA)
        with conn:
            conn.executemany(
                "INSERT INTO docs (row, doc_id, title, text, metadata) VALUES (?, ?, ?, ?, ?)", rows()
            )
    except sqlite3.IntegrityError as exc:  # the one constraint a new row can break: doc_id UNIQUE
        raise InputError(f"duplicate document id {last!r}") from exc
    finally:
        conn.close()
    return count


def copy_store(src: Path, dst: Path, *, drop: Iterable[int] = (), append: Iterable[Document] = ()) -> int:
    """Write a new store ``dst``: the rows of ``src`` except ``drop``, then ``append``.

    Rows are renumbered from 0, order kept; SQLite copies the kept rows itself. Returns the row
    count.
    """
    conn = sqlite3.connect(dst)
    try:
        conn.execute(_SCHEMA)
        conn.execute("ATTACH DATABASE ? AS old", (read_only_uri(src),))
        with conn:
            conn.execute("CREATE TEMP TABLE dropped (row INTEGER PRIMARY KEY)")
            conn.executemany("INSERT INTO temp.dropped (row) VALUES (?)", ((int(r),) for r in drop))
            conn.execute(
                "INSERT INTO docs (row, doc_id, title, text, metadata) "
                "SELECT ROW_NUMBER() OVER (ORDER BY row) - 1, doc_id, title, text, metadata FROM old.docs "
                "WHERE row NOT IN (SELECT row FROM temp.dropped)"
            )
            (start,) = conn.execute("SELECT COUNT(*) FROM docs").fetchone()
            conn.executemany(
                "INSERT INTO docs (row, doc_id, title, text, metadata) VALUES (?, ?, ?, ?, ?)",
                (
                    (start + i, d.doc_id, d.title, d.text, json.dumps(d.metadata))
                    for i, d in enumerate(append)
                ),
            )
            (count,) = conn.execute("SELECT COUNT(*) FROM docs").fetchone()
        conn.execute("DETACH DATABASE old")
    finally:
        conn.close()
    return int(count)


def read_only_uri(path: Path) -> str:
    """A SQLite URI for ``path`` opened read-only and immutable.

    ``as_uri`` percent-encodes the path, so ``#``, ``?`` and ``%`` in folder names stay part
    of the path instead of starting a fragment or query (which made SQLite open, or create,
    another file). ``immutable=1``: a published index version never changes, so SQLite may
    skip locking and journal checks; the open file also stays readable if a writer retires it.
    """
    return f"{path.absolute().as_uri()}?mode=ro&immutable=1"


class DocStore:
    """Read-only access to a document SQLite file.

    With ``count``, the schema and the first and last row (0 and count-1) are checked on
    opening; with ``verify`` also that no row is missing and every row's field types and
    metadata JSON (one scan in SQLite). Reads check each row they return either way.
    """

    def __init__(self, path: Path, *, count: int | None = None, verify: bool = False) -> None:
        self.path = path
        # check_same_thread=False: the service reads from worker threads; reads only.
        try:
            self._conn = sqlite3.connect(read_only_uri(path), uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise IndexFormatError(f"cannot open document store {path}: {exc}") from exc
        try:
            if count is not None:
                self._check(count, verify)
        except BaseException:
            self._conn.close()
            raise

    def _check(self, count: int, verify: bool) -> None:
        try:
            columns = [r[1] for r in self._conn.execute("PRAGMA table_info(docs)")]
            if columns != _COLUMNS:
                raise IndexFormatError(f"{self.path} has no docs table with columns {', '.join(_COLUMNS)}")
            # MIN and MAX of the integer primary key are two B-tree lookups; COUNT(*) reads the whole
            # table (0.4 s cold at 1M rows), so only verify counts (a hole fails its read anyway).
            lo, hi = self._conn.execute("SELECT MIN(row), MAX(row) FROM docs").fetchone()
            n = self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0] if verify else count
            if (lo, hi, n) != (0, count - 1, count):
                found = f"{n} rows numbered" if verify else "rows numbered"
                raise IndexFormatError(
                    f"{self.path} must hold rows 0..{count - 1} for the manifest's {count} documents, "
                    f"found {found} {lo}..{hi}"
                )
            bad = self._conn.execute(_BAD_ROW).fetchone() if verify else None
        except sqlite3.Error as exc:
            raise IndexFormatError(f"{self.path} is not a readable document store: {exc}") from exc
        if bad is not None:
            raise IndexFormatError(
                f"{self.path}: row {bad[0]} is malformed (doc_id, title and text must be text, "
                "metadata a JSON object)"
            )

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def rows_of(self, doc_ids: Iterable[str]) -> dict[str, int]:
        """The row of each of ``doc_ids`` that the store holds (absent ids are left out)."""
        found: dict[str, int] = {}
        ids = list(dict.fromkeys(doc_ids))
        try:
            for i in range(0, len(ids), 900):  # SQLite caps bound parameters per statement
                chunk = ids[i : i + 900]
                marks = ",".join("?" * len(chunk))
                for doc_id, row in self._conn.execute(
                    f"SELECT doc_id, row FROM docs WHERE doc_id IN ({marks})", chunk
                ):
                    found[str(doc_id)] = int(row)
        except sqlite3.Error as exc:
            raise IndexFormatError(f"cannot read document ids from {self.path}: {exc}") from exc
        return found

    def all_documents(self) -> list[Document]:
        """Every document in row order (:meth:`iter_documents` streams them instead)."""
        return list(self.iter_documents())

    def iter_documents(self, start: int = 0, stop: int | None = None) -> Iterator[Document]:
        """The documents of rows ``start:stop`` in row order, read as they are consumed."""
        try:
            rows = self._conn.execute(
                "SELECT row, doc_id, title, text, metadata FROM docs WHERE row >= ? AND row < ? ORDER BY row",
                (start, (1 << 62) if stop is None else stop),
            )
            for r, i, t, x, m in rows:
                yield self._document(r, i, t, x, m)
        except sqlite3.Error as exc:
            raise IndexFormatError(f"cannot read documents from {self.path}: {exc}") from exc

    def get(self, rows: Sequence[int]) -> list[Document]:
        """Documents for vector rows, in the given order."""
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        try:
            found = {
                r: self._document(r, i, t, x, m)
                for r, i, t, x, m in self._conn.execute(
                    f"SELECT row, doc_id, title, text, metadata FROM docs WHERE row IN ({marks})",
                    [int(r) for r in rows],
                )
            }
        except sqlite3.Error as exc:
            raise IndexFormatError(f"cannot read documents from {self.path}: {exc}") from exc
        missing = [int(r) for r in rows if int(r) not in found]
        if missing:
            raise IndexFormatError(f"{self.path}: row {missing[0]} is missing")
        return [found[int(r)] for r in rows]

    def _document(self, row: int, doc_id: object, title: object, text: object, meta: object) -> Document:
        # Checked here too, so an index loaded with verify=False fails clearly, not deep in a caller.
        try:
            metadata = json.loads(meta) if isinstance(meta, str) else None
        except ValueError:
            metadata = None
        if not (
            isinstance(doc_id, str) and isinstance(title, str) and isinstance(text, str)
        ) or not isinstance(metadata, dict):
            raise IndexFormatError(f"{self.path}: row {row} is malformed (metadata must be a JSON object)")
        return Document(doc_id=doc_id, title=title, text=text, metadata=metadata)

    def close(self) -> None:
        self._conn.close()
