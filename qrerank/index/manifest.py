"""The index manifest: a fixed schema, checked field by field before anything it names is read.

The loader decides which files an index has (from its kind, and the ``lexical`` flag), not the
manifest: the manifest only supplies each one's size and sha256, and an entry for any other
name is an error. ``lexical`` is absent or null for an index without a BM25 index (built with
``--no-lexical``, or before qrerank stored one); an object describing it otherwise, and then
``lexical.safetensors`` is required like every other file.

Format versions: 1 stored ``vectors.faiss``/``vectors.safetensors`` for every kind and
``embeddings.safetensors`` with "embeddings" and "angles" (float32). 2 stores each vector once:
``embeddings.safetensors`` holds only "embeddings" in the manifest's ``dtype`` (float32 or
float16), angles are computed from them, and only the approximate kinds (hnsw, ivf) keep a
``vectors.faiss``. Both are read; writers write version 2.

``index.space`` (format 2; absent means "cosine") names what the first stage searches:
"cosine" the unit embeddings by inner product, "angles" the Bloch angles by L2 (a FAISS file
for every kind but exact, which has no angle search; see ``qrerank.index.directory``).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any

from qrerank.errors import IndexFormatError
from qrerank.index.faiss import FAISS_KINDS

FORMAT = "qrerank-index"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
DTYPES = ("float32", "float16")  # storage dtypes of "embeddings" (format 2); format 1 is float32
INDEX_KINDS = (*FAISS_KINDS, "exact")  # the FAISS registry's kinds, and exact (no FAISS structure)
SPACES = ("cosine", "angles")  # first-stage search spaces (module docstring)
SPACE_METRICS = {"cosine": "ip", "angles": "l2"}  # the FAISS metric of each space's vectors
MANIFEST = "manifest.json"
DATA_FILE = "embeddings.safetensors"
DOCS_FILE = "docs.sqlite"
LEXICAL_FILE = "lexical.safetensors"
MAX_DIM = 1 << 16
MAX_COUNT = (1 << 31) - 1  # FAISS HNSW stores neighbour ids as int32
MAX_MANIFEST_BYTES = 1 << 20
FAISS_PARAMS = ("nlist", "nprobe", "m", "ef_search")
_MAX_PARAM = 1 << 24
# The BM25 index: token ids are int32 in bm25s; the file's exact size is checked against these
# counts before it is read, so the caps only keep the arithmetic sane.
MAX_VOCAB = (1 << 31) - 2
MAX_NNZ = 1 << 40
# The one tokenisation and scoring qrerank builds and reproduces at query time (qrerank.index.lexical).
LEXICAL_FIXED = {"kind": "bm25", "method": "lucene", "stopwords": "en", "stemmer": "english"}
_LEXICAL_KEYS = {*LEXICAL_FIXED, "k1", "b", "vocab", "nnz", "vocab_bytes", "library", "library_version"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def vector_file(kind: str, version: int = FORMAT_VERSION, space: str = "cosine") -> str | None:
    """The ANN file of ``kind``; None where format ``version`` searches the embeddings themselves."""
    if version >= 2:
        return None if kind in ("flat", "exact") and space == "cosine" else "vectors.faiss"
    return "vectors.safetensors" if kind == "exact" else "vectors.faiss"


def required_files(
    kind: str, lexical: bool = False, version: int = FORMAT_VERSION, space: str = "cosine"
) -> tuple[str, ...]:
    """The files an index of ``kind`` (with a BM25 index if ``lexical``) consists of, beside manifest.json."""
    vectors = vector_file(kind, version, space)
    return (*((vectors,) if vectors else ()), DATA_FILE, DOCS_FILE, *((LEXICAL_FILE,) if lexical else ()))


def index_space(manifest: dict[str, Any]) -> str:
    """The first-stage search space of a validated manifest: "cosine" (the default) or "angles"."""
    return str(manifest["index"].get("space", "cosine"))


def stored_dtype(manifest: dict[str, Any]) -> str:
    """The dtype "embeddings" are stored in (a validated manifest; format 1 is float32)."""
    return str(manifest.get("dtype", "float32"))


def has_lexical(manifest: dict[str, Any]) -> bool:
    """Whether a validated manifest describes a BM25 index."""
    return manifest.get("lexical") is not None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int | float)) and not isinstance(v, bool)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def nofollow_opener(path: str, flags: int) -> int:
    """An ``open(..., opener=)`` that refuses to follow a symlink at the last path component."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def regular_file_size(path: Path) -> int:
    """Size of ``path``, which must be a regular file (not a symlink, folder or device)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise IndexFormatError(f"{path.parent} is incomplete: {path.name} is missing") from None
    if stat.S_ISLNK(st.st_mode):
        raise IndexFormatError(f"{path} is a symbolic link; index files must be regular files in the index")
    if not stat.S_ISREG(st.st_mode):
        raise IndexFormatError(f"{path} is not a regular file")
    return st.st_size


def read_manifest(path: Path) -> dict[str, Any]:
    """Parse and validate ``manifest.json``; every problem is an IndexFormatError naming the field."""
    size = regular_file_size(path)
    if size > MAX_MANIFEST_BYTES:
        raise IndexFormatError(f"{path} is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}")
    try:
        with open(path, "rb", opener=nofollow_opener) as f:
            manifest = json.loads(f.read(MAX_MANIFEST_BYTES + 1))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise IndexFormatError(f"{path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise IndexFormatError(f"cannot read {path}: {exc}") from exc
    return validate_manifest(manifest, path)


def validate_manifest(m: Any, where: Path) -> dict[str, Any]:
    """Check the schema and values of a parsed manifest; returns it unchanged."""
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise IndexFormatError(f"{where} is not a qrerank index manifest")
    version: Any = m.get("format_version")
    if not _is_int(version) or version not in READ_VERSIONS:
        raise IndexFormatError(
            f"{where.parent} has index format version {_short(version)}, this qrerank reads versions "
            f"{', '.join(map(str, READ_VERSIONS))}; rebuild it with `qrerank index`"
        )
    _check_identity(m, where)
    index: Any = m.get("index")
    space = _check_index(index, version, where)
    if version >= 2 and m.get("dtype") not in DTYPES:
        raise _bad(m, "dtype", f"one of {', '.join(DTYPES)}", where)
    if version == 1 and "dtype" in m:
        raise _bad(m, "dtype", "absent in format version 1 (float32)", where)
    if m.get("lexical") is not None:
        _check_lexical(m["lexical"], where)
    _check_files(m.get("files"), index["kind"], where, lexical=has_lexical(m), version=version, space=space)
    return m


def _bad(m: dict[str, Any], field: str, want: str, where: Path) -> IndexFormatError:
    """The error for a top-level manifest field ``field`` that is not ``want``."""
    return IndexFormatError(f"{where}: field {field!r} must be {want}, got {_short(m.get(field))}")


def _check_identity(m: dict[str, Any], where: Path) -> None:
    """The fields describing the vectors: model, dim, count, normalized, tau, and the strings."""
    if not isinstance(m.get("model"), str) or not 0 < len(m["model"]) <= 1000:
        raise _bad(m, "model", "a non-empty string", where)
    if not _is_int(m.get("dim")) or not 0 < m["dim"] <= MAX_DIM:
        raise _bad(m, "dim", f"an integer in 1..{MAX_DIM}", where)
    if not _is_int(m.get("count")) or not 0 < m["count"] <= MAX_COUNT:
        raise _bad(m, "count", f"an integer in 1..{MAX_COUNT}", where)
    if not isinstance(m.get("normalized"), bool):
        raise _bad(m, "normalized", "true or false", where)
    tau = m.get("tau")
    if not _is_number(tau) or not math.isfinite(tau) or tau <= 0:
        raise _bad(m, "tau", "a finite number > 0", where)
    for field in ("qrerank_version", "created"):
        if field in m and not isinstance(m[field], str):
            raise _bad(m, field, "a string", where)
    if "encode_seconds" in m and not (_is_number(m["encode_seconds"]) and math.isfinite(m["encode_seconds"])):
        raise _bad(m, "encode_seconds", "a number", where)


def _check_index(index: Any, version: int, where: Path) -> str:
    """The ``index`` object: its kind, params and first-stage space; returns the space."""
    if not isinstance(index, dict) or index.get("kind") not in INDEX_KINDS:
        raise IndexFormatError(
            f"{where}: field 'index' must be an object whose 'kind' is one of {', '.join(INDEX_KINDS)}, "
            f"got {_short(index)}"
        )
    _check_params(index.get("params", {}), index["kind"], where)
    space: str = index.get("space", "cosine")
    if space not in SPACES:
        raise IndexFormatError(
            f"{where}: field 'index.space' must be one of {', '.join(SPACES)}, got {_short(space)}"
        )
    if space == "angles" and (version < 2 or index["kind"] == "exact"):
        raise IndexFormatError(
            f"{where}: field 'index.space' is 'angles', which needs format 2 and a flat, ivf or hnsw index"
        )
    return space


def _check_lexical(lex: Any, where: Path) -> None:
    """The ``lexical`` object: fixed tokenisation, finite BM25 parameters, bounded array sizes."""
    if not isinstance(lex, dict):
        raise IndexFormatError(f"{where}: field 'lexical' must be an object or null, got {_short(lex)}")

    def bad(key: str, want: str) -> IndexFormatError:
        return IndexFormatError(f"{where}: field 'lexical.{key}' must be {want}, got {_short(lex.get(key))}")

    for key, value in LEXICAL_FIXED.items():
        if lex.get(key) != value:
            raise bad(key, repr(value))
    k1: Any = lex.get("k1")
    b: Any = lex.get("b")
    if not _is_number(k1) or not math.isfinite(k1) or k1 < 0:
        raise bad("k1", "a finite number >= 0")
    if not _is_number(b) or not 0 <= b <= 1:
        raise bad("b", "a number in [0, 1]")
    for key, high in (("vocab", MAX_VOCAB), ("nnz", MAX_NNZ), ("vocab_bytes", MAX_NNZ)):
        if not _is_int(lex.get(key)) or not 0 <= lex[key] <= high:
            raise bad(key, f"an integer in 0..{high}")
    for key in ("library", "library_version"):
        if key in lex and not isinstance(lex[key], str):
            raise bad(key, "a string")
    unknown = set(lex) - _LEXICAL_KEYS
    if unknown:
        raise IndexFormatError(f"{where}: field 'lexical' has unknown keys {sorted(map(_short, unknown))}")


def _check_params(params: Any, kind: str, where: Path) -> None:
    if not isinstance(params, dict):
        raise IndexFormatError(f"{where}: field 'index.params' must be an object, got {_short(params)}")
    for key, value in params.items():
        if kind == "exact":  # ignored when loading, but still plain data
            ok = value is None or isinstance(value, str | bool) or (_is_number(value) and math.isfinite(value))
            want = "a string, number, boolean or null"
        else:  # passed to FaissIndex as keyword arguments
            ok = key in FAISS_PARAMS and (value is None or (_is_int(value) and 0 < value <= _MAX_PARAM))
            want = f"one of {', '.join(FAISS_PARAMS)} with an integer in 1..{_MAX_PARAM} or null"
        if not ok:
            raise IndexFormatError(
                f"{where}: field 'index.params' entry {_short(key)}: {_short(value)} is invalid; "
                f"each must be {want}"
            )


def _check_files(files: Any, kind: str, where: Path, *, lexical: bool, version: int, space: str) -> None:
    required = required_files(kind, lexical, version, space)
    if not isinstance(files, dict):
        raise IndexFormatError(f"{where}: field 'files' must be an object, got {_short(files)}")
    for name in files:
        if name not in required:
            raise IndexFormatError(
                f"{where}: field 'files' names {_short(name)}, which is not a file of a {kind!r} index "
                f"{'with' if lexical else 'without'} a lexical index ({', '.join(required)})"
            )
    for name in required:
        entry = files.get(name)
        if entry is None:
            raise IndexFormatError(f"{where}: field 'files' has no entry for {name}")
        if not isinstance(entry, dict):
            raise IndexFormatError(f"{where}: field 'files.{name}' must be an object, got {_short(entry)}")
        if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
            raise IndexFormatError(f"{where}: field 'files.{name}.sha256' must be 64 lowercase hex digits")
        if not _is_int(entry.get("bytes")) or entry["bytes"] < 0:
            raise IndexFormatError(f"{where}: field 'files.{name}.bytes' must be an integer >= 0")
