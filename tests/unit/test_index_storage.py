"""Format 2 storage: one copy of each vector, computed angles, float16, old indexes, verify."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from qrerank.cli import main
from qrerank.core.encoding import bloch_angles
from qrerank.embed.hashing import HashingEncoder
from qrerank.errors import IndexFormatError
from qrerank.index.directory import DocumentIndex, build_index, verify_index
from qrerank.index.formats import write_matrix
from qrerank.types import Document

N, DIM = 12, 64
V1 = Path(__file__).resolve().parents[1] / "fixtures" / "index_v1"


def corpus(n: int = N) -> list[Document]:
    """The documents the format-1 fixture holds (tests/fixtures/index_v1)."""
    return [
        Document(doc_id=f"d{i}", title=f"T{i}", text=f"doc {i} word{i % 5}", metadata={"i": i})
        for i in range(n)
    ]


@pytest.mark.parametrize("kind", ["exact", "flat"])
def test_flat_and_exact_store_each_vector_once(tmp_path: Path, kind: str) -> None:
    index = build_index(corpus(), HashingEncoder(DIM), tmp_path / "idx", kind=kind)
    assert index.version_dir is not None
    files = sorted(p.name for p in index.version_dir.iterdir())
    assert files == ["docs.sqlite", "embeddings.safetensors", "lexical.safetensors", "manifest.json"]
    stored = load_file(str(index.version_dir / "embeddings.safetensors"))  # a plain safetensors file
    assert list(stored) == ["embeddings"]
    assert (index.version_dir / "embeddings.safetensors").stat().st_size <= 4 * N * DIM + 128
    emb = HashingEncoder(DIM).encode([d.content for d in corpus()])
    np.testing.assert_array_equal(stored["embeddings"], emb)
    expected = bloch_angles(torch.from_numpy(emb), index.tau).numpy()
    np.testing.assert_array_equal(index.angles_of([3, 0]), expected[[3, 0]])
    np.testing.assert_array_equal(index.angles, expected)
    assert not index.embeddings.flags.writeable  # memory-mapped, read-only


@pytest.mark.parametrize("kind", ["exact", "flat"])
def test_old_format_loads_and_answers_like_the_new(tmp_path: Path, kind: str) -> None:
    if kind == "flat":
        pytest.importorskip("faiss")
    old = DocumentIndex.load(V1 / kind, verify=True)
    assert old.manifest["format_version"] == 1 and old.dtype == "float32"
    new = build_index(corpus(), HashingEncoder(DIM), tmp_path / "idx", kind=kind)
    np.testing.assert_allclose(old.angles, new.angles, atol=1e-6)
    q = HashingEncoder(DIM).encode(["doc 3 word3", "word1"])
    s_old, r_old = old.search(q, 5)
    s_new, r_new = new.search(q, 5)
    np.testing.assert_allclose(s_old, s_new, atol=1e-6)
    if kind == "exact":  # FAISS (format-1 flat) orders ties its own way
        np.testing.assert_array_equal(r_old, r_new)
    assert old.documents([4]) == new.documents([4]) == [corpus()[4]]


def test_building_into_an_old_index_converts_it(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    shutil.copytree(V1 / "exact", out)
    index = build_index(corpus(N + 1), HashingEncoder(DIM), out, kind="exact")
    assert index.manifest["format_version"] == 2 and len(index) == N + 1
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("v-")) == [".lock", "CURRENT"]


def test_float16_halves_the_file_and_keeps_rankings_close(tmp_path: Path) -> None:
    docs = [Document(doc_id=f"d{i}", text=f"doc {i} word{i % 7} term{i % 11}") for i in range(200)]
    enc = HashingEncoder(DIM)
    f32 = build_index(docs, enc, tmp_path / "f32", kind="flat", lexical=False)
    f16 = build_index(docs, enc, tmp_path / "f16", kind="flat", lexical=False, dtype="float16")
    assert f16.dtype == "float16" and f16.embeddings.dtype == np.float16
    size = lambda ix: (ix.version_dir / "embeddings.safetensors").stat().st_size  # noqa: E731
    assert size(f16) < 0.51 * size(f32)
    assert f16.embeddings_of([5]).dtype == np.float32
    np.testing.assert_allclose(f16.embeddings_of(range(200)), f32.embeddings_of(range(200)), atol=1e-3)
    q = enc.encode([d.text for d in docs[:20]])
    s16, r16 = f16.search(q, 1)
    s32, r32 = f32.search(q, 1)
    np.testing.assert_array_equal(r16, r32)
    np.testing.assert_allclose(s16, s32, atol=2e-3)


def test_verify_command_and_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "idx"
    index = build_index(corpus(), HashingEncoder(DIM), out, kind="exact")
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {out}")
    data = index.version_dir / "embeddings.safetensors"  # type: ignore[operator]
    raw = bytearray(data.read_bytes())
    raw[-5] ^= 0x40  # one bit of one vector, size unchanged
    data.write_bytes(bytes(raw))
    DocumentIndex.load(out).close()  # the fast default does not read the vectors
    with pytest.raises(IndexFormatError, match=r"embeddings\.safetensors is corrupt: its sha256"):
        DocumentIndex.load(out, verify=True)
    assert main(["verify", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "embeddings.safetensors is corrupt" in err[0]
        and err[0].startswith("qrerank verify: error:")
    )
    assert main(["verify", str(tmp_path)]) == 2
    assert "not a qrerank index" in capsys.readouterr().err


def test_verify_index_checks_values_behind_a_resealed_manifest(tmp_path: Path) -> None:
    out = tmp_path / "idx"
    index = build_index(corpus(), HashingEncoder(DIM), out, kind="exact")
    root = index.version_dir
    assert root is not None
    emb = load_file(str(root / "embeddings.safetensors"))["embeddings"].copy()
    emb[2, 7] = np.inf
    write_matrix(root / "embeddings.safetensors", "embeddings", emb.shape, "float32", [emb])
    manifest = json.loads((root / "manifest.json").read_text())
    f = root / "embeddings.safetensors"
    manifest["files"][f.name] = {
        "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
        "bytes": f.stat().st_size,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="'embeddings' has NaN or infinite"):
        verify_index(out)


def test_cli_dtype_flag(tmp_path: Path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"_id": d.doc_id, "text": d.text}) + "\n" for d in corpus()))
    args = ["index", str(src), "--out", str(tmp_path / "idx"), "--model", f"hashing-{DIM}", "--no-lexical"]
    assert main([*args, "--dtype", "float16"]) == 0
    assert DocumentIndex.load(tmp_path / "idx").manifest["dtype"] == "float16"
