"""Reading documents from disk: JSONL (plain or BEIR corpus.jsonl) or a folder of .txt/.md files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qrerank.errors import InputError
from qrerank.types import Document

TEXT_SUFFIXES = (".txt", ".md")


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) per non-blank line; InputError names a bad line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None


def read_jsonl(path: str | os.PathLike[str]) -> list[Document]:
    """One ``{"text", "title"?, "_id"|"id"?, ...}`` object per line; doc_id defaults to the line index.

    Blank lines are skipped; a malformed line raises InputError naming its 1-based line number.
    """
    docs: list[Document] = []
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise InputError(f"{path}:{lineno}: expected an object with a string 'text' field")
        doc_id = obj.get("_id", obj.get("id", obj.get("doc_id", len(docs))))
        meta = {k: v for k, v in obj.items() if k not in ("_id", "id", "doc_id", "title", "text")}
        docs.append(
            Document(doc_id=str(doc_id), title=str(obj.get("title") or ""), text=obj["text"], metadata=meta)
        )
    return docs


def read_folder(path: str | os.PathLike[str]) -> list[Document]:
    """Every .txt/.md file below ``path`` (sorted), doc_id = relative path, title = file stem."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    docs = []
    for p in files:
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{p}: not UTF-8 text") from None
        if text.strip():
            rel = p.relative_to(root).as_posix()
            docs.append(Document(doc_id=rel, title=p.stem, text=text.strip(), metadata={"path": rel}))
    return docs


def load_corpus(src: str | os.PathLike[str]) -> list[Document]:
    """A JSONL file, a BEIR dataset folder (reads its corpus.jsonl) or a folder of text files."""
    src = Path(src)
    if not src.exists():
        raise InputError(f"no such file or directory: {src}")
    if src.is_dir():
        docs = read_jsonl(src / "corpus.jsonl") if (src / "corpus.jsonl").is_file() else read_folder(src)
    else:
        docs = read_jsonl(src)
    if not docs:
        raise InputError(f"{src} holds no documents")
    return docs
