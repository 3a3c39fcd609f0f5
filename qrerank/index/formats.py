"""Bounded, validating readers for the binary files of an index directory.

Every length a file declares is checked against the file's real size and the manifest's
``count`` and ``dim`` before anything is allocated, so a crafted file fails with
IndexFormatError instead of asking for gigabytes. This narrows, but does not close, the risk
of loading foreign files: FAISS's reader is not a hardened parser, so indexes must come from
trusted sources anyway.

:func:`map_tensors` memory-maps the tensors after the same checks (the arrays are read-only
views of the file, paged in on use); :func:`write_matrix` writes one ``[n, d]`` tensor from
blocks, so neither a build nor a load holds a second copy of the embeddings.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import mmap
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from qrerank.errors import IndexFormatError
from qrerank.index.manifest import nofollow_opener

SAFETENSORS_HEADER_MAX = 1 << 16  # ours is ~200 bytes; this bounds the JSON we parse
_F32 = 4


# safetensors dtype code -> little-endian numpy dtype, for the tensors an index stores.
_DTYPES = {"F32": "<f4", "F16": "<f2", "I32": "<i4", "I64": "<i8", "U8": "u1"}
# numpy dtype name -> safetensors code, for the float matrices an index stores.
FLOAT_CODES = {"float32": "F32", "float16": "F16"}
_WHAT = {"F32": "float32", "F16": "float16"}
TensorSpec = tuple[tuple[int, ...], str]  # shape, safetensors dtype code


def read_safetensors(
    path: Path, tensors: dict[str, tuple[int, int]], *, sha256: str | None = None
) -> dict[str, np.ndarray]:
    """Read exactly ``tensors`` (name -> shape), all float32 and finite, from a safetensors file.

    The file is read once into one buffer (hashed on the way when ``sha256`` is given); the
    arrays are writable views of it.
    """
    out = read_tensors(path, {name: (shape, "F32") for name, shape in tensors.items()}, sha256=sha256)
    for name, arr in out.items():
        if not np.isfinite(arr).all():
            raise IndexFormatError(f"{path}: tensor {name!r} has NaN or infinite values")
    return out


def read_tensors(
    path: Path, tensors: dict[str, TensorSpec], *, sha256: str | None = None
) -> dict[str, np.ndarray]:
    """Read exactly ``tensors`` (name -> (shape, dtype code)) from a safetensors file.

    Every shape is fixed by the caller (from the manifest), so the file's size must equal
    8 + header + sum of the tensors' bytes before anything is allocated; values are not checked.
    """
    with open(path, "rb", opener=nofollow_opener) as f:
        head, raw_header, header, data_bytes = _read_header(path, f, tensors)
        buf = bytearray(data_bytes)
        if f.readinto(memoryview(buf)) != data_bytes:
            raise IndexFormatError(f"{path} is truncated")
    if sha256 is not None:
        h = hashlib.sha256(head)
        h.update(raw_header)
        h.update(buf)
        if h.hexdigest() != sha256:
            raise IndexFormatError(f"{path} is corrupt: its sha256 does not match the manifest")
    spans = _check_header(path, header, tensors, data_bytes)
    out = {}
    for name, (shape, dtype) in tensors.items():
        arr = np.frombuffer(buf, dtype=_DTYPES[dtype], count=math.prod(shape), offset=spans[name])
        out[name] = arr.reshape(shape)
    return out


def map_tensors(path: Path, tensors: dict[str, TensorSpec]) -> dict[str, np.ndarray]:
    """Memory-map exactly ``tensors`` (checked as in :func:`read_tensors`); read-only views.

    The map is made from the descriptor that was checked (no second open by name), and its
    length is the size checked against the manifest. Values are not read: see :func:`check_finite`.
    """
    with open(path, "rb", opener=nofollow_opener) as f:
        head, raw_header, header, data_bytes = _read_header(path, f, tensors)
        spans = _check_header(path, header, tensors, data_bytes)
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # stays valid after close
    start = len(head) + len(raw_header)
    return {
        name: np.frombuffer(
            mm, dtype=_DTYPES[dtype], count=math.prod(shape), offset=start + spans[name]
        ).reshape(shape)
        for name, (shape, dtype) in tensors.items()
    }


def _read_header(path: Path, f: BinaryIO, tensors: dict[str, TensorSpec]) -> tuple[bytes, bytes, Any, int]:
    """(length bytes, raw header, parsed header, data bytes) after the size check."""
    data_bytes = sum(
        math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize for shape, dtype in tensors.values()
    )
    size = os.fstat(f.fileno()).st_size
    head = f.read(8)
    n = int.from_bytes(head, "little") if len(head) == 8 else -1
    if not 0 < n <= SAFETENSORS_HEADER_MAX or size != 8 + n + data_bytes:
        want = {name: shape for name, (shape, _) in tensors.items()}
        kinds = "/".join(sorted({dtype for _, dtype in tensors.values()}))
        what = _WHAT.get(kinds, kinds)
        raise IndexFormatError(
            f"{path} is {size} bytes, but {what} tensors {want} need {data_bytes} bytes plus a "
            f"header of at most {SAFETENSORS_HEADER_MAX} (it declares {n}): truncated or foreign"
        )
    raw_header = f.read(n)
    try:
        header = json.loads(raw_header)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise IndexFormatError(f"{path} has a malformed safetensors header: {exc}") from exc
    return head, raw_header, header, data_bytes


def check_finite(path: Path, name: str, matrix: np.ndarray, *, block: int = 1 << 15) -> None:
    """IndexFormatError unless every value of ``matrix`` ``[n, d]`` is finite (read block by block)."""
    for start in range(0, len(matrix), block):
        if not np.isfinite(matrix[start : start + block]).all():
            raise IndexFormatError(f"{path}: tensor {name!r} has NaN or infinite values")


def write_matrix(
    path: Path, name: str, shape: tuple[int, int], dtype: str, blocks: Iterable[np.ndarray]
) -> None:
    """Write one ``shape`` tensor of ``dtype`` (float32 | float16) as safetensors, from row blocks.

    The blocks are converted one at a time, so the matrix is never whole in memory; their rows
    must add up to ``shape[0]`` exactly (else ValueError, and the file is incomplete: callers
    write into a draft folder that is discarded on error).
    """
    code = FLOAT_CODES[dtype]
    np_dtype = np.dtype(_DTYPES[code])
    nbytes = shape[0] * shape[1] * np_dtype.itemsize
    spec = {name: {"dtype": code, "shape": list(shape), "data_offsets": [0, nbytes]}}
    header = json.dumps(spec, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # safetensors pads to 8 bytes: the data stays aligned
    rows = 0
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little"))
        f.write(header)
        for b in blocks:
            if b.ndim != 2 or b.shape[1] != shape[1]:
                raise ValueError(f"block of shape {b.shape}, expected [m, {shape[1]}]")
            rows += len(b)
            if rows > shape[0]:
                raise ValueError(f"more than {shape[0]} rows")
            f.write(np.ascontiguousarray(b, dtype=np_dtype).tobytes())
    if rows != shape[0]:
        raise ValueError(f"{rows} rows written, expected {shape[0]}")


def _check_header(path: Path, header: Any, tensors: dict[str, TensorSpec], data_bytes: int) -> dict[str, int]:
    """Start offset of each tensor, after checking names, dtypes, shapes and non-overlapping spans."""
    if not isinstance(header, dict):
        raise IndexFormatError(f"{path} has a malformed safetensors header (not an object)")
    header = {k: v for k, v in header.items() if k != "__metadata__"}
    if set(header) != set(tensors):
        raise IndexFormatError(f"{path} holds tensors {sorted(header)}, expected {sorted(tensors)}")
    spans: dict[str, int] = {}
    covered = []
    for name, (shape, dtype) in tensors.items():
        t = header[name]
        if not isinstance(t, dict) or t.get("dtype") != dtype:
            found = t.get("dtype") if isinstance(t, dict) else t
            want = f"{dtype} ({_WHAT[dtype]})" if dtype in _WHAT else dtype
            raise IndexFormatError(f"{path}: tensor {name!r} has dtype {found!r}, expected {want}")
        if t.get("shape") != list(shape):
            raise IndexFormatError(
                f"{path}: tensor {name!r} has shape {t.get('shape')}, expected {list(shape)}"
            )
        offs = t.get("data_offsets")
        nbytes = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize
        if (
            not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offs)
            or not 0 <= offs[0] <= offs[1] <= data_bytes
            or offs[1] - offs[0] != nbytes
        ):
            raise IndexFormatError(f"{path}: tensor {name!r} has bad data_offsets {offs!r}")
        spans[name] = offs[0]
        covered.append((offs[0], offs[1]))
    covered.sort()
    if any(a[1] > b[0] for a, b in itertools.pairwise(covered)):
        raise IndexFormatError(f"{path}: tensors overlap")
    return spans


# FAISS's metric codes (METRIC_INNER_PRODUCT, METRIC_L2) by qrerank's metric names.
_FAISS_METRICS = {"ip": (0, "inner product"), "l2": (1, "L2")}


class _Walker:
    """Steps through a FAISS file, checking each declared length against the bytes left."""

    def __init__(self, f: BinaryIO, size: int, path: Path, metric: str = "ip") -> None:
        self.f, self.size, self.path, self.pos = f, size, path, 0
        self.metric = metric

    def fail(self, what: str) -> IndexFormatError:
        return IndexFormatError(
            f"{self.path} is not a valid index for this manifest: {what} (at byte {self.pos})"
        )

    def take(self, n: int) -> bytes:
        if n > self.size - self.pos:
            raise self.fail("file is truncated")
        self.pos += n
        return self.f.read(n)

    def skip(self, n: int) -> None:
        if n > self.size - self.pos:
            raise self.fail("file is truncated")
        self.pos += n
        self.f.seek(n, 1)

    def int(self, nbytes: int, signed: bool = True) -> int:
        return int.from_bytes(self.take(nbytes), "little", signed=signed)

    def length(self, what: str, elem: int, *, max_len: int, exact: int | None = None) -> int:
        """A FAISS ``size_t`` vector length, refused unless ``length * elem`` bytes follow."""
        n = self.int(8, signed=False)
        if (exact is not None and n != exact) or n > max_len or n * elem > self.size - self.pos:
            want = f"{exact}" if exact is not None else f"at most {max_len}"
            raise self.fail(f"{what} declares {n} entries, expected {want}")
        return n

    def vector(self, what: str, elem: int, *, max_len: int, exact: int | None = None) -> int:
        """Skip a FAISS vector (length, then data) and return its length."""
        n = self.length(what, elem, max_len=max_len, exact=exact)
        self.skip(n * elem)
        return n

    def values(self, what: str, dtype: str, *, max_len: int, exact: int | None = None) -> np.ndarray:
        """Read a (small) FAISS vector's values."""
        item = np.dtype(dtype).itemsize
        n = self.length(what, item, max_len=max_len, exact=exact)
        return np.frombuffer(self.take(n * item), dtype=dtype)

    def header(self, fourcc: bytes, dim: int, ntotal: int, what: str) -> None:
        tag = self.take(4)
        if tag != fourcc:
            raise self.fail(f"{what} is a {tag!r} FAISS index, expected {fourcc!r}")
        d, n = self.int(4), self.int(8)
        if d != dim or n != ntotal:
            raise self.fail(f"{what} has dim {d} and {n} vectors, expected {dim} and {ntotal}")
        self.skip(8 + 8 + 1)  # two unused idx_t, is_trained
        metric = self.int(4)
        want, name = _FAISS_METRICS[self.metric]
        if metric != want:
            raise self.fail(f"{what} uses FAISS metric {metric}, expected {name} ({want})")

    def flat(self, dim: int, ntotal: int, what: str) -> None:
        self.header(b"IxFI" if self.metric == "ip" else b"IxF2", dim, ntotal, what)
        self.vector(f"{what} vectors", _F32, max_len=ntotal * dim, exact=ntotal * dim)


def check_faiss_file(
    path: Path, kind: str, dim: int, count: int, *, nlist: int | None = None, metric: str = "ip"
) -> None:
    """Walk a FAISS file of ``kind`` written by qrerank and refuse any length it cannot back.

    Covers IndexFlatIP/IndexFlatL2 ("flat"), IndexHNSWFlat ("hnsw") and IndexIVFFlat with array
    inverted lists ("ivf"), of ``metric`` "ip" or "l2"; the file must end where the structure does.
    """
    size = path.stat().st_size
    with open(path, "rb", opener=nofollow_opener) as f:
        w = _Walker(f, size, path, metric)
        if kind == "flat":
            w.flat(dim, count, "the index")
        elif kind == "hnsw":
            w.header(b"IHNf", dim, count, "the index")
            w.vector("HNSW level probabilities", 8, max_len=64)
            cum = w.values("HNSW neighbours per level", "<i4", max_len=65)
            if len(cum) == 0 or cum[0] != 0 or np.any(np.diff(cum) < 0) or cum[-1] > 1 << 16:
                raise w.fail("HNSW neighbours per level is not an increasing table")
            w.vector("HNSW node levels", 4, max_len=count, exact=count)
            w.vector("HNSW offsets", 8, max_len=count + 1, exact=count + 1)
            w.vector("HNSW neighbours", 4, max_len=count * int(cum[-1]))
            w.skip(5 * 4)  # entry point, max level, efConstruction, efSearch, unused
            w.flat(dim, count, "the HNSW storage")
        elif kind == "ivf":
            w.header(b"IwFl", dim, count, "the index")
            lists = w.int(8, signed=False)
            if not 0 < lists <= count or (nlist is not None and lists != nlist):
                raise w.fail(f"IVF nlist is {lists}, expected {nlist or f'1..{count}'}")
            w.skip(8)  # nprobe: the manifest's value is applied after loading
            w.flat(dim, lists, "the IVF quantizer")
            map_type = w.int(1)
            w.vector("IVF direct map", 8, max_len=count)
            if map_type == 2:  # hashtable direct map: (id, offset) pairs
                w.vector("IVF direct map table", 16, max_len=count)
            if (
                w.take(4) != b"ilar"
                or w.int(8, signed=False) != lists
                or w.int(8, signed=False) != dim * _F32
            ):
                raise w.fail("IVF inverted lists are not array lists of this nlist and dim")
            list_type = w.take(4)
            if list_type == b"full":
                sizes = w.values("IVF list sizes", "<u8", max_len=lists, exact=lists)
                total = int(sizes.sum(dtype=np.uint64)) if np.all(sizes <= count) else count + 1
            elif list_type == b"sprs":
                pairs = w.values("IVF list sizes", "<u8", max_len=2 * lists).reshape(-1, 2)
                if len(pairs) and (np.any(pairs[:, 0] >= lists) or np.any(pairs[:, 1] > count)):
                    raise w.fail("IVF sparse list sizes name lists or sizes out of range")
                total = int(pairs[:, 1].sum(dtype=np.uint64))
            else:
                raise w.fail(f"IVF list type {list_type!r} is not 'full' or 'sprs'")
            if total != count:
                raise w.fail(f"IVF lists hold {total} vectors, expected {count}")
            w.skip(total * (dim * _F32 + 8))  # codes and ids of every list
        else:
            raise IndexFormatError(f"{path}: no FAISS layout for index kind {kind!r}")
        if w.pos != size:
            raise w.fail(f"{size - w.pos} unexpected bytes after the index")
