"""Reading documents from disk: JSONL (plain or BEIR corpus.jsonl) or a folder of .txt/.md files.

Each reader has a list form (``read_jsonl``, ``read_folder``, ``load_corpus``) and an iterator
form that reads as it is consumed (``iter_jsonl_documents``, ``iter_folder``, ``iter_corpus``),
which ``qrerank index`` streams into a build without holding the texts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qrerank.errors import InputError
from qrerank.types import Document

TEXT_SUFFIXES = (".txt", ".md")
# A \uD800-\uDFFF escape may leave an unpaired surrogate: such a str cannot be written as
# UTF-8 (to SQLite, the cache, stdout), so it is refused where it enters. Cheap prefilter.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _decode_line(where: str, lineno: int, raw: bytes) -> str:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
        ) from None
    return line.removeprefix("\ufeff") if lineno == 1 else line  # a BOM some editors write


def _parse_line(where: str, line: str) -> Any:
    """One non-blank JSONL line -> value; every way hostile text can fail is an InputError."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise InputError(f"{where}: invalid JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more than sys.get_int_max_str_digits() digits
        raise InputError(f"{where}: invalid JSON ({str(exc).split(';')[0]})") from None
    if _SURROGATE_ESCAPE.search(line):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                f"{where}: a string holds an unpaired UTF-16 surrogate escape (e.g. \\ud800)"
            ) from None
    return value


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """(1-based line number, parsed value) per non-blank line; InputError names a bad line."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory, not a JSONL file")
    if not path.exists():
        raise InputError(f"no such file: {path}")
    try:
        f = path.open("rb")  # bytes: a decoding error can then name its line
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    with f:
        for lineno, raw in enumerate(f, start=1):
            line = _decode_line(f"{path}:{lineno}", lineno, raw)
            if line.strip():
                yield lineno, _parse_line(f"{path}:{lineno}", line)


def iter_jsonl_documents(path: str | os.PathLike[str]) -> Iterator[Document]:
    """The documents of a JSONL file, read one line at a time (see :func:`read_jsonl`)."""
    for n, (lineno, obj) in enumerate(iter_jsonl(path)):
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise InputError(f"{path}:{lineno}: expected an object with a string 'text' field")
        doc_id = obj.get("_id", obj.get("id", obj.get("doc_id", n)))
        if isinstance(doc_id, bool) or not isinstance(doc_id, str | int | float):
            raise InputError(f"{path}:{lineno}: the document id must be a string or a number")
        meta = {k: v for k, v in obj.items() if k not in ("_id", "id", "doc_id", "title", "text")}
        yield Document(doc_id=str(doc_id), title=str(obj.get("title") or ""), text=obj["text"], metadata=meta)


def read_jsonl(path: str | os.PathLike[str]) -> list[Document]:
    """One ``{"text", "title"?, "_id"|"id"?, ...}`` object per line; doc_id defaults to the line index.

    Blank lines are skipped; a malformed line raises InputError naming its 1-based line number.
    """
    return list(iter_jsonl_documents(path))


def text_files(folder: Path) -> Iterator[Path]:
    """The .txt/.md files below ``folder`` in the order of ``sorted(folder.rglob("*"))``.

    Depth first with each directory's names sorted: a path sorts by its parts, so that is the
    same order, with only the listing of the directories on the current path in memory. Like
    ``rglob``, it does not descend into symlinked directories and skips unreadable ones.
    """
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except PermissionError:
        return
    for entry in entries:
        path = folder / entry.name
        if entry.is_dir(follow_symlinks=False):
            yield from text_files(path)
        elif path.suffix.lower() in TEXT_SUFFIXES and path.is_file():
            yield path


def iter_folder(path: str | os.PathLike[str]) -> Iterator[Document]:
    """The documents of a folder, one file at a time (see :func:`read_folder`).

    Files come in sorted-path order from :func:`text_files`, which holds one directory's listing
    at a time, not the corpus's paths.
    """
    root = Path(path)
    for p in text_files(root):
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{p}: not UTF-8 text") from None
        except OSError as exc:
            raise InputError(f"cannot read {p}: {exc.strerror or exc}") from None
        if text.strip():
            rel = p.relative_to(root).as_posix()
            yield Document(doc_id=rel, title=p.stem, text=text.strip(), metadata={"path": rel})


def read_folder(path: str | os.PathLike[str]) -> list[Document]:
    """Every .txt/.md file below ``path`` (sorted), doc_id = relative path, title = file stem."""
    return list(iter_folder(path))


def iter_corpus(src: str | os.PathLike[str]) -> Iterator[Document]:
    """The documents of ``src`` (as :func:`load_corpus` reads it), one at a time.

    A missing ``src`` is an InputError at once; a bad line or file when the reading reaches it,
    and a source without documents when the iterator ends empty.
    """
    src = Path(src)
    if not src.exists():
        raise InputError(f"no such file or directory: {src}")
    if not src.is_dir():
        return _nonempty(src, iter_jsonl_documents(src))
    if (src / "corpus.jsonl").is_file():
        return _nonempty(src, iter_jsonl_documents(src / "corpus.jsonl"))
    return _nonempty(src, iter_folder(src))


def _nonempty(src: Path, docs: Iterator[Document]) -> Iterator[Document]:
    empty = True
    for doc in docs:
        empty = False
        yield doc
    if empty:
        raise InputError(f"{src} holds no documents")


def load_corpus(src: str | os.PathLike[str]) -> list[Document]:
    """A JSONL file, a BEIR dataset folder (reads its corpus.jsonl) or a folder of text files."""
    return list(iter_corpus(src))
