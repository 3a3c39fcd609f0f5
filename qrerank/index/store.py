"""Document texts and metadata beside the vectors, in SQLite (row id = vector row)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

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


def write_store(path: Path, docs: Iterable[Document]) -> None:
    """Write documents to a new SQLite file, rows numbered from 0 in order."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(_SCHEMA)
        with conn:
            conn.executemany(
                "INSERT INTO docs (row, doc_id, title, text, metadata) VALUES (?, ?, ?, ?, ?)",
                ((i, d.doc_id, d.title, d.text, json.dumps(d.metadata)) for i, d in enumerate(docs)),
            )
    finally:
        conn.close()


class DocStore:
    """Read-only access to a document SQLite file."""

    def __init__(self, path: Path) -> None:
        # check_same_thread=False: the service reads from worker threads; reads only.
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def get(self, rows: Sequence[int]) -> list[Document]:
        """Documents for vector rows, in the given order."""
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        found = {
            r: Document(doc_id=i, title=t, text=x, metadata=json.loads(m))
            for r, i, t, x, m in self._conn.execute(
                f"SELECT row, doc_id, title, text, metadata FROM docs WHERE row IN ({marks})",
                [int(r) for r in rows],
            )
        }
        return [found[int(r)] for r in rows]

    def close(self) -> None:
        self._conn.close()
