"""Hostile or broken index folders: every one must fail with IndexFormatError naming the problem.

Most cases tamper with a file and then "reseal" the manifest (fix its sizes and sha256), as an
attacker or a buggy tool could, so the checks behind the checksums are what is tested. A default
load checks sizes, headers and schema only; what only a full read can find (a changed byte, a
NaN, a malformed row) is refused by ``verify=True``, and the default load still fails on reading
such a row. Cases about files only format 1 had (vectors.safetensors, a flat vectors.faiss) run
on copies of tests/fixtures/index_v1, written by qrerank before format 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import IndexFormatError
from qrerank.index.directory import DocumentIndex, build_index
from qrerank.types import Document

N, DIM = 12, 64
V1 = Path(__file__).resolve().parents[1] / "fixtures" / "index_v1"  # N docs, DIM-d, hashing encoder


def corpus(n: int = N) -> list[Document]:
    return [Document(doc_id=f"d{i}", title=f"T{i}", text=f"doc {i} word{i % 5}", metadata={"i": i}) for i in range(n)]


def build(tmp_path: Path, kind: str = "exact", n: int = N) -> Path:
    if kind != "exact":
        pytest.importorskip("faiss")
    out = tmp_path / "idx"
    build_index(corpus(n), HashingEncoder(DIM), out, kind=kind)
    return out


def build_v1(tmp_path: Path, kind: str = "exact") -> Path:
    """A copy of the format-1 fixture of ``kind`` (the old flat layout: files directly in the folder)."""
    if kind != "exact":
        pytest.importorskip("faiss")
    out = tmp_path / "idx"
    shutil.copytree(V1 / kind, out)
    return out


def data_dir(out: Path) -> Path:
    """The folder holding the live version's files (``out`` itself for the old flat layout)."""
    pointer = out / "CURRENT"
    return out / pointer.read_text().strip() if pointer.is_file() else out


def manifest_of(out: Path) -> dict[str, Any]:
    return json.loads((data_dir(out) / "manifest.json").read_text())


def write_manifest(out: Path, manifest: Any) -> None:
    (data_dir(out) / "manifest.json").write_text(json.dumps(manifest))


def reseal(out: Path) -> None:
    """Make the manifest's sizes and checksums match the (tampered) files again."""
    manifest = manifest_of(out)
    for name in manifest["files"]:
        f = data_dir(out) / name
        manifest["files"][name] = {"sha256": hashlib.sha256(f.read_bytes()).hexdigest(), "bytes": f.stat().st_size}
    write_manifest(out, manifest)


def refused(out: Path, match: str, **kw: Any) -> None:
    with pytest.raises(IndexFormatError, match=match):
        DocumentIndex.load(out, **kw)


# --- the manifest decides nothing: schema and values ---------------------------------------------


def _set(path: str | tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(m: dict[str, Any]) -> None:
        *parents, last = path.split(".") if isinstance(path, str) else path
        for p in parents:
            m = m[p]
        m[last] = value

    return edit


def _extra_file(m: dict[str, Any]) -> None:
    m["files"]["../outside.txt"] = {"sha256": "0" * 64, "bytes": 1}


def _drop_file(m: dict[str, Any]) -> None:
    del m["files"]["docs.sqlite"]


def _drop_field(m: dict[str, Any]) -> None:
    del m["tau"]


MANIFEST_EDITS = {
    "files empty": (_set("files", {}), "'files' has no entry"),
    "files a list": (_set("files", ["docs.sqlite"]), "'files' must be an object"),
    "file outside": (_extra_file, "names '../outside.txt'"),
    "file entry missing": (_drop_file, "no entry for docs.sqlite"),
    "sha256 not hex": (_set(("files", "docs.sqlite", "sha256"), "abc"), "files.docs.sqlite.sha256"),
    "bytes negative": (_set(("files", "docs.sqlite", "bytes"), -1), "files.docs.sqlite.bytes"),
    "params a list": (_set("index.params", [1, 2]), "index.params"),
    "params nested": (_set("index.params", {"x": {"y": 1}}), "index.params"),
    "kind unknown": (_set("index.kind", "annoy"), "'index'"),
    "index a string": (_set("index", "exact"), "'index'"),
    "tau string": (_set("tau", "abc"), "'tau'"),
    "tau negative": (_set("tau", -1), "'tau'"),
    "tau zero": (_set("tau", 0), "'tau'"),
    "tau NaN": (_set("tau", float("nan")), "'tau'"),
    "tau inf": (_set("tau", float("inf")), "'tau'"),
    "tau bool": (_set("tau", True), "'tau'"),
    "tau missing": (_drop_field, "'tau'"),
    "dim zero": (_set("dim", 0), "'dim'"),
    "dim string": (_set("dim", "64"), "'dim'"),
    "dim float": (_set("dim", 64.0), "'dim'"),
    "dim huge": (_set("dim", 10**9), "'dim'"),
    "count zero": (_set("count", 0), "'count'"),
    "count absurd": (_set("count", 10**12), "'count'"),
    "count mismatch": (_set("count", N + 1), "embeddings.safetensors"),
    "dim mismatch": (_set("dim", 32), "embeddings.safetensors"),
    "model not a string": (_set("model", 5), "'model'"),
    "normalized string": (_set("normalized", "yes"), "'normalized'"),
    "format version string": (_set("format_version", "1"), "format version '1'"),
    "format version 3": (_set("format_version", 3), "format version 3"),
    "dtype unknown": (_set("dtype", "int8"), "'dtype'"),
    "dtype missing": (_set("dtype", None), "'dtype'"),
    "foreign format": (_set("format", "other"), "not a qrerank index manifest"),
    "created not a string": (_set("created", 5), "'created'"),
}


@pytest.mark.parametrize("case", list(MANIFEST_EDITS))
def test_manifest_schema_and_values_are_checked(tmp_path: Path, case: str) -> None:
    out = build(tmp_path)
    edit, match = MANIFEST_EDITS[case]
    manifest = manifest_of(out)
    edit(manifest)
    write_manifest(out, manifest)
    refused(out, match)


def test_faiss_params_must_be_known_positive_ints(tmp_path: Path) -> None:
    out = build(tmp_path, "flat")
    for params in ({"nprobe": "16"}, {"nprobe": -1}, {"evil": 1}, {"m": True}, {"ef_search": 1.5}):
        manifest = manifest_of(out)
        manifest["index"]["params"] = params
        write_manifest(out, manifest)
        refused(out, "index.params")


@pytest.mark.parametrize(
    "payload",
    ["[1, 2]", '"text"', "null", "{bad json", "[" * 100000, "x" * (2 << 20)],
    ids=["list", "string", "null", "bad json", "deep nesting", "2 MiB"],
)
def test_manifest_that_is_not_an_object_or_too_big(tmp_path: Path, payload: str) -> None:
    out = build(tmp_path)
    (data_dir(out) / "manifest.json").write_text(payload)
    refused(out, "manifest")


def test_files_outside_the_index_are_never_read(tmp_path: Path) -> None:
    """A manifest entry with ../ and a correct checksum must not make the loader touch that file."""
    out = build(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    manifest = manifest_of(out)
    rel = os.path.relpath(secret, data_dir(out))
    manifest["files"][rel] = {"sha256": hashlib.sha256(b"outside").hexdigest(), "bytes": 7}
    write_manifest(out, manifest)
    refused(out, "not a file of a 'exact' index")


def test_empty_files_map_does_not_skip_checksums(tmp_path: Path) -> None:
    out = build(tmp_path)
    with (data_dir(out) / "embeddings.safetensors").open("r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x00\x00\xc0\x7f")  # last float -> NaN, size unchanged
    refused(out, "sha256 does not match", verify=True)
    manifest = manifest_of(out)
    manifest["files"] = {}
    write_manifest(out, manifest)
    refused(out, "has no entry")


# --- files: presence, kind, confinement -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name"),
    [
        ("v2", "manifest.json"),
        ("v2", "embeddings.safetensors"),
        ("v2", "docs.sqlite"),
        ("v2", "lexical.safetensors"),
        ("v1", "vectors.safetensors"),
        ("v1", "embeddings.safetensors"),
    ],
)
def test_missing_file(tmp_path: Path, fmt: str, name: str) -> None:
    out = build(tmp_path) if fmt == "v2" else build_v1(tmp_path)
    (data_dir(out) / name).unlink()
    refused(out, f"{name} is missing")


def test_folder_in_place_of_a_file(tmp_path: Path) -> None:
    out = build(tmp_path)
    (data_dir(out) / "docs.sqlite").unlink()
    (data_dir(out) / "docs.sqlite").mkdir()
    refused(out, "not a regular file")


def test_symlink_escaping_the_index_is_refused(tmp_path: Path) -> None:
    out = build(tmp_path)
    target = data_dir(out) / "embeddings.safetensors"
    outside = tmp_path / "elsewhere.safetensors"
    target.rename(outside)
    target.symlink_to(outside)  # same bytes, same checksum: only the link itself is wrong
    refused(out, "symbolic link")


def test_pointer_cannot_lead_outside(tmp_path: Path) -> None:
    out = build(tmp_path)
    version = data_dir(out)
    for bad in ("../other", "/etc", "", "v-" + "x" * 300):
        (out / "CURRENT").write_text(bad)
        refused(out, "CURRENT")
    (out / "CURRENT").unlink()
    (out / "CURRENT").symlink_to(tmp_path / "pointer")
    (tmp_path / "pointer").write_text(version.name)
    refused(out, "CURRENT")


def test_version_folder_that_is_a_symlink_or_gone(tmp_path: Path) -> None:
    out = build(tmp_path)
    version = data_dir(out)
    moved = tmp_path / "moved"
    version.rename(moved)
    refused(out, "does not exist")
    version.symlink_to(moved, target_is_directory=True)
    refused(out, "symbolic links are refused")


# --- bounded reads: sizes are checked before anything is allocated --------------------------------


def _rewrite_safetensors(out: Path, name: str, tensors: dict[str, np.ndarray]) -> None:
    save_file(tensors, str(data_dir(out) / name))
    reseal(out)


def _tensors(out: Path, name: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(data_dir(out) / name))


def test_float64_embeddings(tmp_path: Path) -> None:
    out = build(tmp_path)
    t = _tensors(out, "embeddings.safetensors")
    _rewrite_safetensors(out, "embeddings.safetensors", {k: v.astype(np.float64) for k, v in t.items()})
    refused(out, "embeddings.safetensors")


def test_float64_exact_vectors(tmp_path: Path) -> None:
    out = build_v1(tmp_path)
    t = _tensors(out, "vectors.safetensors")
    _rewrite_safetensors(out, "vectors.safetensors", {"vectors": t["vectors"].astype(np.float64)})
    refused(out, "vectors.safetensors")


def test_wrong_tensor_shape_names_and_values(tmp_path: Path) -> None:
    out = build(tmp_path)
    emb = _tensors(out, "embeddings.safetensors")["embeddings"]
    half = {"embeddings": emb[: N // 2], "other": emb[N // 2 :]}  # the byte count of the real file
    _rewrite_safetensors(out, "embeddings.safetensors", half)
    refused(out, r"holds tensors \['embeddings', 'other'\]")
    # same byte count, other shape: only the header says so
    _rewrite_safetensors(out, "embeddings.safetensors", {"embeddings": emb.reshape(N // 2, 2 * DIM)})
    refused(out, "has shape")
    _rewrite_safetensors(out, "embeddings.safetensors", {"embeddings": emb.astype(np.float16)})
    refused(out, "but float32 tensors")  # the manifest says float32: the size is checked first
    bad = emb.copy()
    bad[3, 5] = np.nan
    _rewrite_safetensors(out, "embeddings.safetensors", {"embeddings": bad})
    refused(out, "NaN or infinite", verify=True)
    index = DocumentIndex.load(out)  # the values are not read: a NaN row only ranks last
    _, rows = index.search(emb[3:4] / np.linalg.norm(emb[3]), N)
    assert rows[0][-1] == 3
    index.close()


def test_old_format_tensors_are_checked(tmp_path: Path) -> None:
    out = build_v1(tmp_path)
    t = _tensors(out, "embeddings.safetensors")
    _rewrite_safetensors(out, "embeddings.safetensors", {"embeddings": t["embeddings"], "other": t["angles"]})
    refused(out, r"holds tensors \['embeddings', 'other'\], expected \['angles', 'embeddings'\]")
    bad = t["angles"].copy()
    bad[3, 5] = np.inf
    _rewrite_safetensors(out, "embeddings.safetensors", {"embeddings": t["embeddings"], "angles": bad})
    refused(out, "tensor 'angles' has NaN or infinite", verify=True)


@pytest.mark.parametrize("cut", [1, 7, 100, 1000])
def test_truncated_safetensors(tmp_path: Path, cut: int) -> None:
    out = build(tmp_path)
    f = data_dir(out) / "embeddings.safetensors"
    f.write_bytes(f.read_bytes()[:-cut])
    reseal(out)
    refused(out, "embeddings.safetensors")


def test_safetensors_header_claiming_gigabytes(tmp_path: Path) -> None:
    out = build(tmp_path)
    f = data_dir(out) / "embeddings.safetensors"
    raw = f.read_bytes()
    f.write_bytes(struct.pack("<Q", 96 << 30) + raw[8:])
    reseal(out)
    refused(out, "embeddings.safetensors")


def _refuse_before_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any call into FAISS's reader fail the test: the walker must refuse first."""
    import faiss

    def boom(*args: Any, **kw: Any) -> None:
        raise AssertionError("faiss.read_index was reached with a crafted file")

    monkeypatch.setattr(faiss, "read_index", boom)


def _patch(f: Path, offset: int, fmt: str, value: int) -> None:
    raw = bytearray(f.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    f.write_bytes(bytes(raw))


HEADER = 4 + 4 + 8 + 8 + 8 + 1 + 4  # fourcc, d, ntotal, 2 unused, is_trained, metric


def test_crafted_flat_faiss_asking_for_96_gib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = build_v1(tmp_path, "flat")
    _patch(data_dir(out) / "vectors.faiss", HEADER, "<Q", (96 << 30) // 4)  # codes length, in floats
    reseal(out)
    _refuse_before_faiss(monkeypatch)
    refused(out, "vectors.faiss .*declares")


def test_faiss_header_disagreeing_with_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = build_v1(tmp_path, "flat")
    f = data_dir(out) / "vectors.faiss"
    good = f.read_bytes()
    _refuse_before_faiss(monkeypatch)
    for offset, fmt, value, match in [
        (8, "<q", N + 1, "vectors"),  # ntotal
        (4, "<i", DIM * 2, "dim"),  # d
        (HEADER - 4, "<i", 1, "metric"),  # L2 instead of inner product
        (0, "<I", int.from_bytes(b"IxF2", "little"), "FAISS index"),
    ]:
        f.write_bytes(good)
        _patch(f, offset, fmt, value)
        reseal(out)
        refused(out, match)
    f.write_bytes(good + b"\x00" * 16)
    reseal(out)
    refused(out, "unexpected bytes")


def test_crafted_hnsw_neighbour_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = build(tmp_path, "hnsw")
    f = data_dir(out) / "vectors.faiss"
    raw = f.read_bytes()
    pos = HEADER
    for elem in (8, 4, 4, 8):  # level probabilities, neighbours per level, levels, offsets
        (n,) = struct.unpack_from("<Q", raw, pos)
        pos += 8 + n * elem
    _patch(f, pos, "<Q", 1 << 39)  # neighbours: ~2 TiB of int32
    reseal(out)
    _refuse_before_faiss(monkeypatch)
    refused(out, "HNSW neighbours declares")


def test_crafted_ivf_nlist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = build(tmp_path, "ivf", n=40)
    _patch(data_dir(out) / "vectors.faiss", HEADER, "<Q", 1 << 40)
    reseal(out)
    _refuse_before_faiss(monkeypatch)
    refused(out, "IVF nlist")


def test_faiss_file_that_is_garbage(tmp_path: Path) -> None:
    out = build(tmp_path, "hnsw")
    (data_dir(out) / "vectors.faiss").write_bytes(b"\x00" * 3)
    reseal(out)
    refused(out, "truncated")


# --- the document store ------------------------------------------------------------------------


def _sql(out: Path, *statements: str) -> None:
    conn = sqlite3.connect(data_dir(out) / "docs.sqlite")
    with conn:
        for s in statements:
            conn.execute(s)
    conn.close()
    reseal(out)


def test_renumbered_rows(tmp_path: Path) -> None:
    out = build(tmp_path)
    _sql(out, "UPDATE docs SET row = row + 100")
    refused(out, "rows 0..11")
    refused(out, "rows 0..11", verify=False)


def test_missing_rows(tmp_path: Path) -> None:
    out = build(tmp_path)
    _sql(out, "DELETE FROM docs WHERE row = 4")
    refused(out, "found 11 rows", verify=True)
    index = DocumentIndex.load(out)  # the count is a full scan: only a read of the hole finds it
    with pytest.raises(IndexFormatError, match="row 4 is missing"):
        index.documents([3, 4])
    index.close()


def test_bad_metadata_json(tmp_path: Path) -> None:
    out = build(tmp_path)
    _sql(out, "UPDATE docs SET metadata = '{bad' WHERE row = 3")
    refused(out, "row 3 is malformed", verify=True)
    index = DocumentIndex.load(out)  # the row scan is skipped, each read still checks
    assert index.documents([2])[0].doc_id == "d2"
    with pytest.raises(IndexFormatError, match="row 3 is malformed"):
        index.documents([3])
    index.close()


@pytest.mark.parametrize(
    "statement",
    ["UPDATE docs SET metadata = '[1, 2]' WHERE row = 1", "UPDATE docs SET text = X'00ff' WHERE row = 1"],
)
def test_wrong_field_types(tmp_path: Path, statement: str) -> None:
    out = build(tmp_path)
    _sql(out, statement)
    refused(out, "row 1 is malformed", verify=True)
    index = DocumentIndex.load(out)
    with pytest.raises(IndexFormatError, match="row 1 is malformed"):
        index.documents([1])
    index.close()


def test_foreign_sqlite_and_garbage(tmp_path: Path) -> None:
    out = build(tmp_path)
    _sql(out, "ALTER TABLE docs RENAME TO other")
    refused(out, "no docs table")
    (data_dir(out) / "docs.sqlite").write_bytes(b"not a database at all" * 100)
    reseal(out)
    refused(out, "docs.sqlite")


# --- the old flat layout goes through the same checks --------------------------------------------


def test_old_layout_is_checked_too(tmp_path: Path) -> None:
    out = build(tmp_path)
    flat = tmp_path / "flat"
    data_dir(out).rename(flat)
    assert len(DocumentIndex.load(flat)) == N
    manifest = json.loads((flat / "manifest.json").read_text())
    manifest["tau"] = float("nan")
    (flat / "manifest.json").write_text(json.dumps(manifest))
    refused(flat, "'tau'")
