"""Encoder runtimes (torch, onnx, onnx-int8): parsing, errors, identity, the cached export.

Tiny random sentence-transformers folders stand in for models (an export takes well under a
second); the real MiniLM appears only in the ``slow`` agreement test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from qrerank.cli import main
from qrerank.embed import onnx as qonnx
from qrerank.embed.base import Encoder
from qrerank.embed.cache import EmbeddingCache, cache_key
from qrerank.embed.models import load_encoder
from qrerank.embed.runtime import RUNTIMES, Runtime, parse_runtime, runtime_for_index
from qrerank.errors import IndexFormatError, InputError, MissingExtraError
from qrerank.index.directory import DocumentIndex
from qrerank.service.config import Settings
from tests.contracts import EncoderContract
from tests.unit.test_model_identity import _tiny_st_folder

pytest.importorskip("sentence_transformers")
pytest.importorskip("onnxruntime")

TEXTS = ["qubit bloch sphere", "bread yeast", "cat", "qubit cat bread"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_st_folder(tmp_path_factory.mktemp("rt-models"), 7)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache dir: every test exports anew."""
    monkeypatch.setenv("QRERANK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    p = tmp_path / "docs.jsonl"
    p.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    return p


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts real export and quantize runs (the functions still run)."""
    counts = {"export": 0, "quantize": 0}
    export, quantize = qonnx.export_fp32, qonnx.quantize

    def counted_export(*args: object, **kwargs: object) -> None:
        counts["export"] += 1
        export(*args, **kwargs)  # type: ignore[arg-type]

    def counted_quantize(*args: object, **kwargs: object) -> None:
        counts["quantize"] += 1
        quantize(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(qonnx, "export_fp32", counted_export)
    monkeypatch.setattr(qonnx, "quantize", counted_quantize)
    return counts


# --------------------------------------------------------------------------- parsing and errors


def test_parse_runtime() -> None:
    assert RUNTIMES == ("torch", "onnx", "onnx-int8")
    assert parse_runtime(None) is Runtime.TORCH
    assert parse_runtime("onnx-int8") is Runtime.ONNX_INT8
    assert parse_runtime(Runtime.ONNX) is Runtime.ONNX
    with pytest.raises(InputError, match="torch, onnx, onnx-int8"):
        parse_runtime("int4")


@pytest.mark.parametrize(
    "argv",
    [
        ["rerank", "q", "{docs}", "--model", "hashing-8", "--runtime", "tpu"],
        ["index", "{docs}", "--out", "{tmp}/idx", "--model", "hashing-8", "--runtime", "tpu"],
        ["eval", "{tmp}", "--protocol", "full", "--out", "{tmp}/out", "--runtime", "tpu"],
        ["train", "{tmp}", "--out", "{tmp}/head", "--runtime", "tpu"],
        ["serve", "--runtime", "tpu"],
    ],
)
def test_unknown_runtime_is_one_line_exit_2(
    argv: list[str], docs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(docs=docs_file, tmp=tmp_path) for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tpu" in err and "onnx-int8" in err


def test_missing_extra_names_it(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    with pytest.raises(MissingExtraError, match=r"qrerank\[onnx\]") as exc:
        load_encoder(str(tiny), runtime="onnx", cache=False)
    assert isinstance(exc.value, ImportError)


def test_missing_extra_cli_exit_2(
    tiny: Path, docs_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert main(["rerank", "q", str(docs_file), "--model", str(tiny), "--runtime", "onnx-int8"]) == 2
    assert "qrerank[onnx]" in capsys.readouterr().err


def test_onnx_refuses_hashing_and_gpu(tiny: Path) -> None:
    with pytest.raises(InputError, match="one runtime"):
        load_encoder("hashing-8", runtime="onnx")
    with pytest.raises(InputError, match="CPU"):
        load_encoder(str(tiny), runtime="onnx", device="cuda", cache=False)


def test_train_layers_need_torch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", str(tmp_path), "--out", str(tmp_path / "h"), "--train-layers", "1", "--runtime", "onnx"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--train-layers 1" in err and "torch" in err


def test_runtime_for_index() -> None:
    assert runtime_for_index(None, None, "i") is Runtime.TORCH  # an index from before runtimes
    assert runtime_for_index("onnx-int8", None, "i") is Runtime.ONNX_INT8
    assert runtime_for_index("onnx", "onnx", "i") is Runtime.ONNX
    with pytest.raises(InputError, match="built with runtime onnx-int8, not torch"):
        runtime_for_index("onnx-int8", "torch", "i")


def test_service_setting() -> None:
    assert Settings.from_env({"QRERANK_RUNTIME": "onnx-int8"}).runtime is Runtime.ONNX_INT8
    assert Settings.from_env({}).runtime is None
    assert Settings.from_env({"QRERANK_RUNTIME": "onnx"}).to_env()["QRERANK_RUNTIME"] == "onnx"
    with pytest.raises(InputError, match="runtime must be one of torch, onnx, onnx-int8"):
        Settings.from_env({"QRERANK_RUNTIME": "gpu"})


# --------------------------------------------------------------------------- identity and vectors


def test_cache_key_differs_per_runtime(tiny: Path, cache_dir: Path) -> None:
    encoders = {rt: load_encoder(str(tiny), runtime=rt, cache=False) for rt in RUNTIMES}
    keys = {rt: cache_key(e) for rt, e in encoders.items()}
    assert len(set(keys.values())) == 3
    # torch keeps the key it had before runtimes existed: no runtime entry, old caches stay valid
    assert "runtime" not in json.loads(keys["torch"])
    assert json.loads(keys["onnx-int8"])["onnx"]["quantization"] == qonnx.default_preset()
    paths = {EmbeddingCache.for_encoder(e, cache_dir).path for e in encoders.values()}
    assert len(paths) == 3


def test_onnx_vectors_match_torch(tiny: Path, cache_dir: Path) -> None:
    ref = load_encoder(str(tiny), cache=False).encode(TEXTS)
    for rt, tol in (("onnx", 1e-5), ("onnx-int8", 0.05)):
        enc = load_encoder(str(tiny), runtime=rt, cache=False)
        assert enc.runtime is Runtime(rt)  # type: ignore[attr-defined]
        vecs = enc.encode(TEXTS)
        assert vecs.shape == ref.shape and vecs.dtype == np.float32
        assert np.abs(vecs - ref).max() < tol


def _op_types(path: Path) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _fp32_export(cache_dir: Path) -> Path:
    (path,) = qonnx.onnx_root(cache_dir).glob(f"*/{qonnx.FP32_FILE}")
    return path


def test_export_is_fused_and_the_torch_model_keeps_its_attention(tiny: Path, cache_dir: Path) -> None:
    load_encoder(str(tiny), runtime="onnx", cache=False)
    ops = _op_types(_fp32_export(cache_dir))
    # onnxruntime's fused kernels replace the traced attention and layer norms
    assert {"Attention", "SkipLayerNormalization"} <= ops
    assert "Softmax" not in ops
    torch_model = load_encoder(str(tiny), cache=False)
    assert torch_model.model[0].model.config._attn_implementation != "eager"  # type: ignore[attr-defined]
    load_encoder(str(tiny), runtime="onnx-int8", cache=False)
    (int8,) = qonnx.onnx_root(cache_dir).glob("*/model_qint8_*.onnx")
    assert "QAttention" in _op_types(int8)  # the attention's QKV projection is int8 too


@pytest.mark.parametrize("failure", ["optimizer raises", "fused graph differs"])
def test_a_fusion_that_fails_or_differs_keeps_the_unfused_graph(
    tiny: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    if failure == "optimizer raises":
        import onnxruntime.transformers.optimizer as optimizer

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("no pattern")

        monkeypatch.setattr(optimizer, "optimize_model", broken)
    else:
        monkeypatch.setattr(qonnx, "_max_abs_diff", lambda *args: 1.0)
    ref = load_encoder(str(tiny), cache=False).encode(TEXTS)
    vecs = load_encoder(str(tiny), runtime="onnx", cache=False).encode(TEXTS)
    assert "Attention" not in _op_types(_fp32_export(cache_dir))
    assert np.abs(vecs - ref).max() < 1e-5


def _int8_marker(cache_dir: Path) -> dict[str, object]:
    (folder,) = [p.parent for p in qonnx.onnx_root(cache_dir).glob("*/model_qint8_*.onnx")]
    return json.loads((folder / qonnx.MARKER).read_text())


def test_gelu_fed_matmuls_are_the_ffn_output_projections(tiny: Path, cache_dir: Path) -> None:
    load_encoder(str(tiny), runtime="onnx", cache=False)
    import onnx

    path = _fp32_export(cache_dir)
    names = qonnx.gelu_fed_matmuls(path)
    graph = onnx.load(str(path)).graph
    weights = {i.name for i in graph.initializer}
    matmuls = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    assert len(names) == 1 and len(matmuls) >= 2  # one layer: one FFN output among its weight MatMuls
    (ffn_out,) = [n for n in matmuls if n.name in names]
    assert "output/dense" in ffn_out.name  # BERT's name for the FFN's second projection


def test_int8_is_checked_against_fp32_and_recorded(tiny: Path, cache_dir: Path) -> None:
    ref = load_encoder(str(tiny), runtime="onnx", cache=False).encode(TEXTS)
    vecs = load_encoder(str(tiny), runtime="onnx-int8", cache=False).encode(TEXTS)
    marker = _int8_marker(cache_dir)
    assert marker["fp32_matmuls"] == 0 and float(marker["int8_min_cosine"]) >= qonnx.INT8_MIN_COSINE  # type: ignore[arg-type]
    assert float((vecs * ref).sum(axis=1).min()) > 0.95


def test_int8_that_distorts_keeps_the_ffn_outputs_in_fp32(
    tiny: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str] | None] = []
    quantize = qonnx.quantize

    def recorded(src: Path, out: Path, preset: object, exclude: list[str] | None = None) -> None:
        seen.append(exclude)
        quantize(src, out, preset, exclude)  # type: ignore[arg-type]

    worst = iter([0.5, 0.99])  # all-int8 distorts; with the FFN outputs in fp32 it passes
    monkeypatch.setattr(qonnx, "quantize", recorded)
    monkeypatch.setattr(qonnx, "min_pooled_cosine", lambda *args: next(worst))
    load_encoder(str(tiny), runtime="onnx-int8", cache=False)
    assert seen[0] is None and seen[1] == qonnx.gelu_fed_matmuls(_fp32_export(cache_dir)) != []
    assert _int8_marker(cache_dir)["fp32_matmuls"] == 1


def test_int8_that_distorts_even_then_is_refused(
    tiny: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(qonnx, "min_pooled_cosine", lambda *args: 0.5)
    with pytest.raises(InputError, match="use --runtime onnx"):
        load_encoder(str(tiny), runtime="onnx-int8", cache=False)
    assert not list(qonnx.onnx_root(cache_dir).glob("*/model_qint8_*.onnx"))  # nothing published
    assert load_encoder(str(tiny), runtime="onnx", cache=False).encode(TEXTS).shape == (4, 8)


def test_onnx_workers_sleep_between_runs(tiny: Path, cache_dir: Path) -> None:
    # spinning ORT workers slow the torch scoring that follows a query encode (qrerank.embed.onnx)
    enc = load_encoder(str(tiny), runtime="onnx-int8", cache=False)
    session = qonnx._text_transformer(enc.model).model.session  # type: ignore[attr-defined]
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_export_is_written_once_and_reused(tiny: Path, cache_dir: Path, calls: dict[str, int]) -> None:
    load_encoder(str(tiny), runtime="onnx-int8", cache=False)
    assert calls == {"export": 1, "quantize": 1}  # int8 is quantized from the (kept) fp32 export
    load_encoder(str(tiny), runtime="onnx-int8", cache=False)
    load_encoder(str(tiny), runtime="onnx", cache=False)
    assert calls == {"export": 1, "quantize": 1}
    root = qonnx.onnx_root(cache_dir)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    assert len(folders) == 2 and not list(root.glob(".*.tmp-*"))
    for folder in folders:
        marker = json.loads((folder / qonnx.MARKER).read_text())
        assert qonnx.is_complete(folder, marker["file"])


def test_stale_temp_and_incomplete_folder_are_replaced(
    tiny: Path, cache_dir: Path, calls: dict[str, int]
) -> None:
    enc = load_encoder(str(tiny), cache=False)
    plan = qonnx.plan_export(enc.weights, Runtime.ONNX, label="m")  # type: ignore[attr-defined]
    plan.folder.parent.mkdir(parents=True)
    stale = plan.folder.parent / f".{plan.folder.name}.tmp-killed"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half an export")
    plan.folder.mkdir()  # a folder without its marker: not a finished export
    (plan.folder / "model.onnx").write_bytes(b"junk")
    qonnx.ensure_export(enc.model, enc.weights, Runtime.ONNX, label="m")  # type: ignore[attr-defined]
    assert calls["export"] == 1 and not stale.exists()
    assert qonnx.is_complete(plan.folder, qonnx.FP32_FILE)
    assert (plan.folder / "model.onnx").stat().st_size > 1000


def test_failed_export_leaves_nothing(tiny: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(st_model: object, out: Path) -> None:
        out.write_bytes(b"partial")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(qonnx, "export_fp32", broken)
    with pytest.raises(RuntimeError, match="crashed"):
        load_encoder(str(tiny), runtime="onnx", cache=False)
    root = qonnx.onnx_root(cache_dir)
    assert not [p for p in root.iterdir() if p.is_dir()]


# --------------------------------------------------------------------------- index and search


def test_index_records_runtime_and_search_follows_it(
    tiny: Path, docs_file: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    idx = tmp_path / "idx"
    assert (
        main(["index", str(docs_file), "--out", str(idx), "--model", str(tiny), "--runtime", "onnx-int8"])
        == 0
    )
    index = DocumentIndex.load(idx)
    assert index.runtime == "onnx-int8" and index.manifest["runtime"] == "onnx-int8"
    index.close()
    capsys.readouterr()
    assert main(["search", str(idx), "bread", "--json", "--top-n", "2"]) == 0  # the index's runtime
    hits = json.loads(capsys.readouterr().out)  # random weights: the ranking itself means nothing
    assert len(hits) == 2 and {h["text"] for h in hits} <= set(TEXTS)
    assert main(["search", str(idx), "bread", "--runtime", "torch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "built with runtime onnx-int8, not torch" in err


def test_hashing_index_records_no_runtime(docs_file: Path, tmp_path: Path) -> None:
    assert main(["index", str(docs_file), "--out", str(tmp_path / "h"), "--model", "hashing-8"]) == 0
    index = DocumentIndex.load(tmp_path / "h")
    assert index.runtime is None
    index.manifest["runtime"] = "int4"
    with pytest.raises(IndexFormatError, match="runtime"):
        _ = index.runtime
    index.close()


# --------------------------------------------------------------------------- the Encoder contract


class TestOnnxEncoderContract(EncoderContract):
    """The tiny model on the onnx runtime (exported once for the class)."""

    runtime = "onnx"

    @pytest.fixture(scope="class")
    def encoder(self, tiny: Path) -> Encoder:
        return load_encoder(str(tiny), runtime=self.runtime, cache=False)


class TestOnnxInt8EncoderContract(TestOnnxEncoderContract):
    runtime = "onnx-int8"
    # activations are quantized per batch at run time, so a row moves with its batch-mates,
    # within the int8 error test_onnx_vectors_match_torch allows (1.3e-5 here at batch 1 vs 8)
    batch_atol = 0.05


# --------------------------------------------------------------------------- the real model


@pytest.mark.slow
def test_minilm_onnx_agrees_with_torch(cache_dir: Path) -> None:
    """8 short texts: onnx fp32 is the same function; int8 within its quantization error."""
    texts = [
        "what is a qubit?",
        "How do vaccines work?",
        "Paris is the capital of France.",
        "the cat sat on the mat",
        "vitamin D deficiency and bone density",
        "A man is playing a guitar.",
        "quantum computing basics",
        "side effects of aspirin",
    ]
    ref = load_encoder(cache=False).encode(texts)
    for rt, floor in (("onnx", 0.9999), ("onnx-int8", 0.99)):
        vecs = load_encoder(runtime=rt, cache=False).encode(texts)
        cos = (vecs * ref).sum(1) / np.linalg.norm(vecs, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() > floor, (rt, cos.round(5).tolist())
