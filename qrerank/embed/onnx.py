"""ONNX Runtime for sentence-transformers encoders [onnx]: export once, quantize, run on the CPU.

Why not sentence-transformers' own ``backend="onnx"``: it loads through ``optimum.onnxruntime``,
and the only optimum-onnx on PyPI (0.1.0) requires ``transformers<4.58`` while
sentence-transformers 6 requires ``transformers>=5``, so the two cannot be installed together.
qrerank therefore does the three steps itself, with torch and onnxruntime only:

1. **export** the transformer of the model already loaded from its packaged weights with
   ``torch.onnx.export`` (offline; nothing is downloaded), dynamic batch and sequence axes, in
   the eager attention form, then **fuse** it with onnxruntime's own transformer optimizer
   (attention, skip-layer-norm, bias-GELU and embedding-layer-norm kernels), kept only if the
   fused graph gives the same hidden states (max abs difference <= ``FUSE_ATOL``) on a sample;
2. **quantize** (``onnx-int8``) with ``onnxruntime.quantization.quantize_dynamic``: int8
   per-channel weights for every weight MatMul and fused attention's QKV projection,
   activations quantized per batch at run time; kept only if its mean-pooled vectors stay within
   ``INT8_MIN_COSINE`` of fp32's on the bundled demo passages, else again with the FFN output
   projections in fp32 (mpnet needs that), else refused;
3. **run** it: an ONNX Runtime session stands in for the transformers model inside
   sentence-transformers' Transformer module, so tokenisation, truncation, pooling and
   normalisation stay sentence-transformers' own and the vectors match the torch runtime.

Exports live in ``<cache>/models/onnx/<label>-<digest>/`` (``$QRERANK_CACHE_DIR`` or
``~/.cache/qrerank``): one folder per weights fingerprint, runtime and onnxruntime version (and
quantization preset for int8), holding the ``.onnx`` file and ``export.json``. A folder is
built under a lock in a temporary sibling, fsynced and renamed into place, so it is either
absent or complete; temporaries of a killed export are removed by the next one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from qrerank._fs import fsync_path, fsync_tree, writer_lock
from qrerank._optional import require
from qrerank.embed.cache import default_cache_dir
from qrerank.embed.runtime import Runtime
from qrerank.errors import InputError

log = logging.getLogger(__name__)

EXTRA = "onnx"
# Bump to re-export everything after a change of the export itself (3: fused graphs, QAttention;
# 4: int8 checked against fp32, FFN output projections kept in fp32 where int8 distorts them).
FORMAT = 4
FUSE_ATOL = 1e-4  # fp32 fusion reorders sums: differences ~1e-6; anything larger is refused
# int8 is kept only if every check text's mean-pooled vector has cosine >= this to fp32's.
# MiniLM, all weights int8: 0.991 on SciFact; mpnet, all weights int8: 0.82 (0.99 with its
# FFN output projections in fp32, whose post-GELU inputs have outliers a per-batch scale crushes).
INT8_MIN_COSINE = 0.98
OPSET = 17
MARKER = "export.json"
FP32_FILE = "model.onnx"
LOCK_TIMEOUT = 600.0  # an mpnet export takes about a minute on two cores


@dataclass(frozen=True, kw_only=True, slots=True)
class QuantPreset:
    """How ``onnx-int8`` quantizes: weight type, per output channel, 7-bit range."""

    weight_type: str  # onnxruntime.quantization.QuantType member name
    per_channel: bool = True
    reduce_range: bool = False


# Named as in sentence-transformers/optimum. Per-channel weights: per-tensor scales cost MiniLM
# 0.06-0.35 cosine on short texts. avx2 without VNNI multiplies u8 x s8 with VPMADDUBSW,
# which can saturate, so it uses u8 weights (u8 x u8 is exact, a little slower).
PRESETS: dict[str, QuantPreset] = {
    "avx512_vnni": QuantPreset(weight_type="QInt8"),
    "avx2": QuantPreset(weight_type="QUInt8"),
    "arm64": QuantPreset(weight_type="QInt8"),
}


def cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def default_preset() -> str:
    """The quantization preset for this CPU: arm64, avx512_vnni (VNNI present), else avx2."""
    if platform.machine().lower() in ("arm64", "aarch64"):
        return "arm64"
    flags = cpu_flags()
    return "avx512_vnni" if flags & {"avx512_vnni", "avx_vnni"} else "avx2"


def onnx_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``<cache_dir or $QRERANK_CACHE_DIR or ~/.cache/qrerank>/models/onnx``."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / "models" / "onnx"


@dataclass(frozen=True, kw_only=True, slots=True)
class OnnxExport:
    """Where one export lives and what it is (``identity`` goes into the embedding cache key)."""

    folder: Path
    file_name: str
    identity: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.folder / self.file_name


def plan_export(
    fingerprint: str,
    runtime: Runtime,
    *,
    label: str,
    quantization: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> OnnxExport:
    """The export folder and file of ``runtime`` for weights ``fingerprint`` (nothing is written)."""
    if not runtime.is_onnx:
        raise ValueError("the torch runtime has no ONNX export")
    ort = require("onnxruntime", EXTRA)
    # Another onnxruntime may fuse or quantize differently: its vectors must not share a cache file.
    identity: dict[str, Any] = {
        "format": FORMAT,
        "weights": fingerprint,
        "runtime": runtime.value,
        "onnxruntime": ort.__version__,
    }
    file_name = FP32_FILE
    if runtime is Runtime.ONNX_INT8:
        preset = quantization or default_preset()
        if preset not in PRESETS:
            raise InputError(f"unknown quantization preset {preset!r}; choose one of {', '.join(PRESETS)}")
        identity |= {"quantization": preset}
        file_name = f"model_qint8_{preset}.onnx"
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return OnnxExport(
        folder=onnx_root(cache_dir) / f"{label}-{digest}", file_name=file_name, identity=identity
    )


def ensure_export(
    st_model: Any,
    fingerprint: str,
    runtime: Runtime,
    *,
    label: str,
    quantization: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> OnnxExport:
    """The export of ``runtime`` for the sentence-transformers model ``st_model``, built on first use.

    ``st_model`` must be the torch model loaded from the weights ``fingerprint`` names; int8
    quantizes the fp32 export (which is built, and kept, first).
    """
    require("onnxruntime", EXTRA)
    plan = plan_export(fingerprint, runtime, label=label, quantization=quantization, cache_dir=cache_dir)
    if runtime is Runtime.ONNX:
        build: Callable[[Path], dict[str, Any] | None] = lambda tmp: export_fp32(st_model, tmp / FP32_FILE)  # noqa: E731
    else:
        fp32 = ensure_export(st_model, fingerprint, Runtime.ONNX, label=label, cache_dir=cache_dir)
        preset = PRESETS[plan.identity["quantization"]]
        # The check texts are tokenised only when an export is built, not at every load.
        build = lambda tmp: quantize_checked(fp32.path, tmp / plan.file_name, preset, check_feeds(st_model))  # noqa: E731
    publish(plan, build)
    return plan


def is_complete(folder: Path, file_name: str) -> bool:
    """True if ``folder`` holds a finished export of ``file_name`` (marker and size agree)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        size = (folder / file_name).stat().st_size
    except (OSError, ValueError):
        return False
    return isinstance(marker, dict) and marker.get("file") == file_name and marker.get("bytes") == size


def publish(plan: OnnxExport, build: Callable[[Path], dict[str, Any] | None]) -> Path:
    """Run ``build(tmp)`` to write ``plan.file_name`` into a temp folder, then rename it to ``plan.folder``.

    What ``build`` returns (a dict, or None) is recorded in the folder's ``export.json``.

    Returns at once when the folder is already complete. Builds under an exclusive lock, so
    concurrent processes export once; the lock holder first removes temporaries that killed
    exports left behind (no live export can own them while it holds the lock).
    """
    target = plan.folder
    if is_complete(target, plan.file_name):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with writer_lock(target.parent / f".{target.name}.lock", timeout=LOCK_TIMEOUT):
        if is_complete(target, plan.file_name):  # another process finished while we waited
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            log.info("removing %s, left by an interrupted export", stale)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            tmp.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache's export from other users
            start = time.perf_counter()
            log.info("exporting %s to %s (once)", plan.identity["runtime"], target)
            built = build(tmp) or {}
            marker = {
                **plan.identity,
                **built,
                "file": plan.file_name,
                "bytes": (tmp / plan.file_name).stat().st_size,
                "torch": torch.__version__,
                "seconds": round(time.perf_counter() - start, 2),
            }
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
            fsync_tree(tmp)
            if target.exists():  # a folder without a valid marker is no export of ours: replace it
                shutil.rmtree(target)
            os.rename(tmp, target)
            fsync_path(target.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("exported %s in %.1fs", target.name, marker["seconds"])
    return target


# --------------------------------------------------------------------------- export and quantize


def _text_transformer(st_model: Any) -> Any:
    """The Transformer module (first module) of a text sentence-transformers model, or InputError."""
    first = st_model[0]
    text = getattr(first, "modality_config", {}).get("text", {})
    if getattr(first, "model", None) is None or text.get("method") != "forward":
        raise InputError(
            f"the onnx runtimes need a text transformer as the model's first module, not {type(first).__name__}; "
            "use --runtime torch"
        )
    return first


class _Traceable(torch.nn.Module):
    """The transformers model as a function of positional tensors, returning the token embeddings."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, tensors, strict=True)), return_dict=True).last_hidden_state


def export_fp32(st_model: Any, out: Path) -> None:
    """Export ``st_model``'s transformer (inputs as its tokenizer gives them) to ONNX at ``out``, fused.

    The graph is traced with eager attention, whose pattern onnxruntime's optimizer recognises
    (the SDPA form is left unfused), then fused by :func:`fuse`.
    """
    module = _text_transformer(st_model)
    sample = st_model.preprocess(["a short text", "a"])  # two lengths: the trace pads one
    names = [k for k, v in sample.items() if isinstance(v, torch.Tensor)]
    traced = out.with_name(out.stem + ".unfused.onnx")
    with _eager_attention(module.model):
        _trace(module.model, sample, names, traced)
    fuse(traced, out, module.model.config, {n: sample[n].numpy() for n in names})
    traced.unlink()


@contextlib.contextmanager
def _eager_attention(model: Any) -> Iterator[None]:
    """Run ``model`` with eager attention inside the block (when it can switch), then restore."""
    before = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switch = getattr(model, "set_attn_implementation", None)
    switched = False
    if before not in (None, "eager") and switch is not None:
        try:
            switch("eager")
            switched = True
        except (ValueError, ImportError):  # a model without an eager form is exported as it is
            pass
    try:
        yield
    finally:
        if switched:
            switch(before)


def _trace(model: torch.nn.Module, sample: dict[str, Any], names: list[str], out: Path) -> None:
    traceable = _Traceable(model, names).eval()
    dynamic = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is the one that needs neither onnxscript nor a graph rewrite;
        # its deprecation and tracer warnings say nothing a user can act on.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            traceable, tuple(sample[n] for n in names), str(out), dynamo=False, input_names=names,
            output_names=["last_hidden_state"], dynamic_axes=dynamic, opset_version=OPSET,
            do_constant_folding=True,
        )  # fmt: skip


def fuse(src: Path, out: Path, config: Any, feeds: dict[str, Any]) -> bool:
    """Write ``src`` fused by onnxruntime's transformer optimizer to ``out`` if it computes the same.

    The fused graph is kept only if its hidden states on ``feeds`` are within ``FUSE_ATOL`` of
    the unfused graph's; otherwise (or if the optimizer fails) ``src`` is copied as it is.
    Returns whether the fused graph was kept.
    """
    heads = getattr(config, "num_attention_heads", 0)
    hidden = getattr(config, "hidden_size", 0)
    try:
        optimizer = require("onnxruntime.transformers.optimizer", EXTRA)
        with _quiet_root_logger():
            fused = optimizer.optimize_model(
                str(src), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=1
            )
            fused.save_model_to_file(str(out))
        diff = _max_abs_diff(src, out, feeds)
    except Exception as exc:  # any optimizer failure leaves the plain export
        log.warning("onnxruntime could not fuse %s (%s): keeping the unfused graph", src.name, exc)
        diff = math.inf
    if diff <= FUSE_ATOL:
        log.info("fused %s (max abs difference %.2g)", src.name, diff)
        return True
    if math.isfinite(diff):
        log.warning("fused %s differs by %.2g > %g: keeping the unfused graph", src.name, diff, FUSE_ATOL)
    shutil.copyfile(src, out)
    return False


def hidden_states(path: Path, feeds: dict[str, Any]) -> Any:
    """``[B, L, H]`` hidden states of the ONNX model at ``path`` on ``feeds`` (inputs it lacks are dropped)."""
    ort = require("onnxruntime", EXTRA)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    (hidden,) = session.run(["last_hidden_state"], {k: v for k, v in feeds.items() if k in names})
    return hidden


def pooled_vectors(path: Path, feeds: dict[str, Any]) -> Any:
    """``[B, H]`` unit mean-pooled hidden states (the mask of ``feeds``), as sentence-transformers pools."""
    mask = feeds["attention_mask"][..., None].astype("float32")
    v = (hidden_states(path, feeds) * mask).sum(axis=1) / mask.sum(axis=1)
    return v / (((v**2).sum(axis=1, keepdims=True)) ** 0.5 + 1e-12)


def _max_abs_diff(a: Path, b: Path, feeds: dict[str, Any]) -> float:
    """Max abs difference of the hidden states of ONNX models ``a`` and ``b`` on ``feeds``."""
    return float(abs(hidden_states(a, feeds) - hidden_states(b, feeds)).max())


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer warns on the root logger about optional pre-processing; mute that."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def check_feeds(st_model: Any) -> dict[str, Any]:
    """The tokenised check texts (the 40 bundled demo passages) as ONNX feeds, with their mask."""
    from importlib import resources

    lines = (
        (resources.files("qrerank") / "data" / "demo_corpus.jsonl").read_text(encoding="utf-8").splitlines()
    )
    texts = [f"{d.get('title', '')} {d['text']}".strip() for d in map(json.loads, lines)]
    sample = st_model.preprocess(texts)
    return {k: v.numpy() for k, v in sample.items() if isinstance(v, torch.Tensor)}


def quantize_checked(src: Path, out: Path, preset: QuantPreset, feeds: dict[str, Any]) -> dict[str, Any]:
    """Quantize ``src`` to ``out`` and keep it only if it stays within INT8_MIN_COSINE of fp32 on ``feeds``.

    First every weight MatMul is int8; if a check text's cosine falls below the bound, the
    MatMuls fed by a GELU (the FFN output projections) stay fp32 and the check runs again; if it
    still fails, InputError (this model has no accurate int8 form here: use ``--runtime onnx``).
    Returns what ``export.json`` records: the fp32 MatMuls kept and the worst cosine.
    """
    quantize(src, out, preset)
    worst = min_pooled_cosine(src, out, feeds)
    kept: list[str] = []
    if worst < INT8_MIN_COSINE:
        kept = gelu_fed_matmuls(src)
        log.warning(
            "int8 %s: cosine to fp32 %.3f < %g; keeping its %d FFN output projections in fp32",
            src.parent.name, worst, INT8_MIN_COSINE, len(kept),
        )  # fmt: skip
        quantize(src, out, preset, exclude=kept)
        worst = min_pooled_cosine(src, out, feeds)
    if worst < INT8_MIN_COSINE:
        raise InputError(
            f"int8 quantization moves this model's vectors too far from fp32 (cosine {worst:.3f} < "
            f"{INT8_MIN_COSINE:g} on the check texts, FFN outputs kept in fp32): use --runtime onnx"
        )
    return {"int8_min_cosine": round(worst, 5), "fp32_matmuls": len(kept)}


def min_pooled_cosine(a: Path, b: Path, feeds: dict[str, Any]) -> float:
    """The smallest cosine between the mean-pooled hidden states of ONNX models ``a`` and ``b``."""
    return float((pooled_vectors(a, feeds) * pooled_vectors(b, feeds)).sum(axis=1).min())


GELU_OPS = frozenset({"Gelu", "BiasGelu", "FastGelu", "Erf"})
ELEMENTWISE = frozenset({"Mul", "Add", "Div", "Cast", "Identity"})  # what lies between an Erf and its MatMul


def gelu_fed_matmuls(src: Path) -> list[str]:
    """Names of the MatMuls whose activation input is a GELU's output: the FFN output projections.

    Structural, not by name: the input is made by a fused Gelu/BiasGelu/FastGelu, or by the erf
    form x * 0.5 * (1 + erf(x / sqrt 2)), whose Erf sits up to 3 elementwise steps back. The
    walk stops at anything else (a MatMul, a layer norm), so the next layer's projections are
    not caught.
    """
    onnx = require("onnx", EXTRA)
    graph = onnx.load(str(src)).graph
    producer = {o: n for n in graph.node for o in n.output}

    def from_gelu(name: str, depth: int) -> bool:
        node = producer.get(name)
        if node is None:
            return False
        if node.op_type in GELU_OPS:
            return True
        return depth > 0 and node.op_type in ELEMENTWISE and any(from_gelu(i, depth - 1) for i in node.input)

    return [n.name for n in graph.node if n.op_type == "MatMul" and from_gelu(n.input[0], 3)]


def quantize(src: Path, out: Path, preset: QuantPreset, exclude: list[str] | None = None) -> None:
    """Dynamically quantize the weight MatMuls and attention projections of ``src`` to int8 at ``out``.

    ``exclude``: node names left in fp32.
    """
    q = require("onnxruntime.quantization", EXTRA)
    with _quiet_root_logger():
        q.quantize_dynamic(
            str(src), str(out), op_types_to_quantize=["MatMul", "Attention"], per_channel=preset.per_channel,
            reduce_range=preset.reduce_range, weight_type=getattr(q.QuantType, preset.weight_type),
            nodes_to_exclude=exclude or [],
            # Only MatMuls with a constant (weight) operand: quantizing the attention products
            # QK^T and AV, both activations, costs accuracy and saves little time. The fused
            # Attention's QKV projection (a weight) is quantized too (QAttention): on MiniLM
            # 37 -> 44 passages/s, query 4.1 -> 3.2 ms, cosine to torch >= 0.991. Shape
            # inference gives no type to the outputs of fused (com.microsoft) kernels: float.
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": 1},  # TensorProto.FLOAT
        )  # fmt: skip


# --------------------------------------------------------------------------- running


class OnnxTransformerModel(torch.nn.Module):
    """Stands in for the transformers model in sentence-transformers' Transformer module.

    Called like it (``input_ids``, ``attention_mask``, ...), it runs the ONNX session and returns
    ``{"last_hidden_state": [batch, seq, hidden]}``. ``intra_op_threads`` defaults to torch's
    thread count, so both runtimes use the same cores and compare fairly.
    """

    def __init__(self, path: Path, config: Any, *, intra_op_threads: int | None = None) -> None:
        super().__init__()
        ort = require("onnxruntime", EXTRA)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1  # one graph, run sequentially: no second pool competing
        # ORT's workers spin after each run by default; torch's scoring right after a query
        # encode then shares the cores with them (measured on 2 cores: 100-candidate fidelity
        # 0.9 ms -> 3-4 ms, the encode itself no faster), so they sleep instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = config

    def forward(self, **inputs: Any) -> dict[str, torch.Tensor]:
        feeds = {name: inputs[name].detach().cpu().numpy() for name in self.input_names}
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return {"last_hidden_state": torch.from_numpy(hidden)}


def use_onnx(st_model: Any, path: Path) -> None:
    """Make ``st_model`` (torch, on the CPU) run its transformer from the ONNX file ``path``."""
    module = _text_transformer(st_model)
    module.model = OnnxTransformerModel(path, module.model.config)
