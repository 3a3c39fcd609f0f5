"""How far int8 moves each packaged model's vectors from fp32, and what keeping the FFN outputs in fp32 buys.

    python benchmarks/int8_accuracy.py [--models all-MiniLM-L6-v2,all-mpnet-base-v2] [--passages 100]

For each model: the fp32 ONNX export (whose vectors equal torch's to 1e-5, tests/unit/test_runtime.py)
is quantized three ways with ``qrerank.embed.onnx.quantize`` (the avx512_vnni or avx2 preset of
this CPU): every weight MatMul int8 (the export before format 4), the GELU-fed MatMuls (FFN
output projections, ``gelu_fed_matmuls``) left fp32 (what the export now falls back to), and the
FFN input projections left fp32 instead (a control). It reports the min and mean cosine between
each int8 graph's mean-pooled vectors and fp32's on every 20th of the first passages of the TREC
DL 2019 pool, and on the 40 bundled demo passages the export itself checks. Writes
``benchmarks/results/int8_accuracy.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from qrerank.embed import onnx as qonnx
from qrerank.embed.models import load_encoder
from qrerank.embed.runtime import Runtime
from qrerank.eval.meta import environment, write_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "trec-dl-2019-passage" / "corpus.jsonl"
OUT = Path(__file__).resolve().parent / "results" / "int8_accuracy.json"


def feeds_of(st_model: Any, texts: list[str], batch: int = 16) -> list[dict[str, Any]]:
    """Tokenised batches of ``texts`` as ONNX feeds."""
    out = []
    for i in range(0, len(texts), batch):
        sample = st_model.preprocess(texts[i : i + batch])
        out.append({k: v.numpy() for k, v in sample.items() if hasattr(v, "numpy")})
    return out


def cosines(a: Path, b: Path, batches: list[dict[str, Any]]) -> dict[str, float]:
    c = np.concatenate(
        [(qonnx.pooled_vectors(a, f) * qonnx.pooled_vectors(b, f)).sum(axis=1) for f in batches]
    )
    return {"min": float(c.min()), "mean": float(c.mean()), "n": len(c)}


def measure(model: str, passages: list[str], work: Path) -> dict[str, Any]:
    """The three int8 variants of ``model`` against its fp32 export, on DL passages and the check texts."""
    enc = load_encoder(model, cache=False)  # the torch model: the export is made from it (once)
    st = enc.model  # type: ignore[attr-defined]
    fp32 = qonnx.ensure_export(st, enc.weights, Runtime.ONNX, label=model).path  # type: ignore[attr-defined]
    preset = qonnx.PRESETS[qonnx.default_preset()]
    ffn_out = qonnx.gelu_fed_matmuls(fp32)
    import onnx

    graph = onnx.load(str(fp32)).graph
    ffn_in = [n.name for n in graph.node if n.op_type == "MatMul" and "intermediate" in n.name]
    variants = {"all int8": [], "FFN outputs fp32": ffn_out, "FFN inputs fp32 (control)": ffn_in}
    dl, check = feeds_of(st, passages), [qonnx.check_feeds(st)]
    rows = {}
    for name, exclude in variants.items():
        out = work / f"{model}-{len(rows)}.onnx"
        qonnx.quantize(fp32, out, preset, exclude=exclude)
        rows[name] = {
            "fp32_matmuls": len(exclude),
            "dl": cosines(fp32, out, dl),
            "check": cosines(fp32, out, check),
        }
        r = rows[name]
        print(
            f"{model:20s} {name:26s} fp32 MatMuls {len(exclude):3d}  DL min {r['dl']['min']:.4f} mean "
            f"{r['dl']['mean']:.4f}  check min {r['check']['min']:.4f}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="all-MiniLM-L6-v2,all-mpnet-base-v2")
    p.add_argument("--passages", type=int, default=100)
    args = p.parse_args(argv)
    with open(DATA, encoding="utf-8") as f:
        rows = itertools.islice(f, 0, 20 * args.passages, 20)
        passages = [json.loads(line)["text"] for line in rows]
    with tempfile.TemporaryDirectory() as tmp:
        results = {m: measure(m, passages, Path(tmp)) for m in args.models.split(",")}
    write_results(OUT, {
        "command": "python benchmarks/int8_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "passages": len(passages), "threshold": qonnx.INT8_MIN_COSINE, "preset": qonnx.default_preset(),
        "results": results, "environment": environment(["onnxruntime", "onnx"]),
    })  # fmt: skip
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
