"""Index storage: bytes per document, cold open + first answer, build time and peak RSS, old vs new.

    python benchmarks/index_storage.py [--sizes 100000 1000000] [--work DIR] [--no-quality]
    python benchmarks/index_storage.py --texts [--text-sizes 100000 300000] [--tree NAME=PATH ...]

For each size, synthetic unit vectors (384-d, float32, seed 0, a memory-mapped .npy) and tiny
texts ("doc i") are indexed as ``flat`` without BM25 (the vectors are what is measured):

* **format 1** by the qrerank of commit ``OLD_COMMIT`` (its source unpacked from git into the
  work folder and run in a child process), through its ``build_index`` with an encoder that
  hands back the precomputed rows: vectors.faiss + embeddings and angles;
* **format 2** (float32 and float16) by this tree's ``build_index_from_embeddings``.

Every build, open and verify runs in a fresh Python process. Before each open the index files
are dropped from the page cache (``posix_fadvise(DONTNEED)``), so "cold" means read from disk.
An open row reports the import of qrerank, ``DocumentIndex.load`` (each format's default: the
old one re-hashed every file, the new one checks sizes, headers and schema), the first
``SearchPipeline.search`` (hashing query encoder, hybrid rerank of k = 100, top 10), and a
second query; each is the median of REPEATS runs, "cold" after dropping the files from the
page cache, "warm" with them cached (a service restart). ``faiss-flat`` opens format 2 and rebuilds a FAISS IndexFlatIP from the
embeddings before the first query (the alternative to searching the mapped matrix in place).

With ``--quality`` (default), the float16 cost on SciFact: test nDCG@10 of cosine and hybrid
search over a flat index of all-MiniLM-L6-v2 embeddings (from the embedding cache), float32 vs
float16 storage. Prints tables and writes ``benchmarks/results/index_storage.json`` with
hardware, versions and git commit.

``--texts`` measures instead what the documents themselves cost a build: a synthetic JSONL of
realistic ~1 KB texts (``TEXT_WORDS`` Zipf-distributed pseudo-words from a fixed vocabulary,
seed 0) is indexed by ``qrerank index SRC --out DIR --model hashing-384`` (the CLI, run in a
fresh process with an empty embedding cache), with and without BM25, at each ``--text-sizes``.
Each ``--tree NAME=PATH`` names a qrerank source tree to run it from (default: this one), e.g. a
``git worktree`` of an older commit, so a change's before and after run on the same corpora. The
peak RSS (VmHWM) and its growth per document between the sizes go to
``benchmarks/results/index_storage_texts.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from qrerank.eval.meta import environment, write_results

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
OUT = ROOT / "results" / "index_storage.json"
DATA = REPO.parent / "shared" / "data" / "scifact"
OLD_COMMIT = "9b22038"  # the last commit that wrote index format 1
DIM = 384
REPEATS = 3
TEXTS_OUT = ROOT / "results" / "index_storage_texts.json"
TEXT_WORDS = 160  # words per synthetic document: ~1.1 KB of text
TEXT_VOCAB = 30_000

BUILD_OLD = """
import json, sys, time
import numpy as np
def hwm():  # VmHWM: this process's peak RSS (ru_maxrss would inherit the parent's across exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
from qrerank.index.directory import build_index
from qrerank.types import Document
n, npy, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
emb = np.load(npy, mmap_mode="r")
class Precomputed:  # row i for text "doc i": the old build_index takes only an encoder
    name, dim, normalized = "hashing-384", emb.shape[1], True
    def encode(self, texts, **kw):
        return np.asarray(emb[[int(t.rsplit(" ", 1)[1]) for t in texts]], dtype=np.float32)
docs = [Document(doc_id=f"d{i}", text=f"doc {i}") for i in range(n)]
t = time.perf_counter()
build_index(docs, Precomputed(), out, kind="flat", lexical=False)
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": hwm()}))
"""

BUILD_NEW = """
import json, sys, time
import numpy as np
def hwm():  # VmHWM: this process's peak RSS (ru_maxrss would inherit the parent's across exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
from qrerank.index.build import build_index_from_embeddings
from qrerank.types import Document
n, npy, out, dtype = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
docs = [Document(doc_id=f"d{i}", text=f"doc {i}") for i in range(n)]
base = hwm()
t = time.perf_counter()
build_index_from_embeddings(docs, np.load(npy, mmap_mode="r"), out, model="hashing-384", kind="flat",
                            lexical=False, dtype=dtype)
print(json.dumps({"seconds": time.perf_counter() - t, "rss_before_build_mb": base, "peak_rss_mb": hwm()}))
"""

OPEN = """
import time
t0 = time.perf_counter()
import json, sys
import numpy as np
from qrerank.index.directory import DocumentIndex
from qrerank.rerank.pipeline import SearchPipeline
out, variant = sys.argv[1], sys.argv[2]
t1 = time.perf_counter()
index = DocumentIndex.load(out)
if variant == "faiss-flat":
    from qrerank.index.faiss import FaissIndex
    from qrerank.index.matrix import iter_blocks, unit_rows
    flat = FaissIndex(index.dim, "flat")
    for block in iter_blocks(index.embeddings):
        flat.add(unit_rows(block))
    index.vectors = flat
t2 = time.perf_counter()
pipe = SearchPipeline(index)
hits = pipe.search("doc 12345 quantum fidelity", k=100, top_n=10, method="hybrid")
t3 = time.perf_counter()
pipe.search("another question about vectors", k=100, top_n=10, method="hybrid")
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_s": t2 - t1, "first_query_s": t3 - t2, "second_query_s": t4 - t3,
                  "open_and_first_query_s": t3 - t1, "hits": len(hits)}))
"""

VERIFY = """
import json, sys, time
from qrerank.index.directory import verify_index
t = time.perf_counter()
verify_index(sys.argv[1]).close()
print(json.dumps({"verify_s": time.perf_counter() - t}))
"""


BUILD_TEXTS = """
import json, sys, time
def hwm():  # VmHWM: this process's peak RSS
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
import qrerank
from qrerank.cli import main
src, out, lexical = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
argv = ["index", src, "--out", out, "--model", "hashing-384"] + ([] if lexical else ["--no-lexical"])
base = hwm()
t = time.perf_counter()
rc = main(argv)
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t, "rss_before_build_mb": base,
                  "peak_rss_mb": hwm(), "qrerank": qrerank.__file__}))
"""


def child(code: str, pythonpath: Path, *args: object, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter with ``pythonpath`` first; its last stdout line is JSON."""
    env = os.environ | (env or {}) | {"PYTHONPATH": str(pythonpath), "PYTHONWARNINGS": "ignore"}
    with tempfile.TemporaryDirectory() as cwd:  # not the repo: '' on sys.path must not shadow PYTHONPATH
        proc = subprocess.run(
            [sys.executable, "-c", code, *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True
        )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def evict(folder: Path) -> None:
    """Drop every file under ``folder`` from the page cache, so the next read comes from disk."""
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def version_folder(out: Path) -> Path:
    return out / (out / "CURRENT").read_text().strip()


def sizes(out: Path, n: int) -> dict[str, Any]:
    folder = version_folder(out)
    files = {p.name: p.stat().st_size for p in folder.iterdir()}
    vectors = sum(v for k, v in files.items() if k.startswith(("vectors.", "embeddings.")))
    return {
        "files": files,
        "vector_bytes_per_doc": vectors / n,
        "total_bytes_per_doc": sum(files.values()) / n,
    }


def synthetic(n: int, path: Path) -> None:
    """``[n, DIM]`` random unit float32 rows, written block by block into a .npy."""
    rng = np.random.default_rng(0)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for s in range(0, n, 1 << 16):
        x = rng.standard_normal((min(1 << 16, n - s), DIM), dtype=np.float32)
        mm[s : s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    mm.flush()
    del mm


def old_source(work: Path) -> Path:
    """This repository's qrerank package at OLD_COMMIT, unpacked under ``work``."""
    dest = work / f"qrerank-{OLD_COMMIT}"
    if not (dest / "qrerank").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", OLD_COMMIT, "qrerank"], capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def storage_rows(n: int, work: Path, old_src: Path) -> list[dict[str, Any]]:
    npy = work / f"emb-{n}.npy"
    if not npy.exists():
        synthetic(n, npy)
    rows = []
    for fmt, dtype in (("format 1 (old)", "float32"), ("format 2", "float32"), ("format 2", "float16")):
        out = work / f"idx-{n}-{'old' if fmt.startswith('format 1') else dtype}"
        if out.exists():
            subprocess.run(["rm", "-rf", str(out)], check=True)
        if fmt.startswith("format 1"):
            build = child(BUILD_OLD, old_src, n, npy, out)
        else:
            build = child(BUILD_NEW, REPO, n, npy, out, dtype)
        row = {"docs": n, "format": fmt, "dtype": dtype, "build": build, **sizes(out, n)}
        variants = ["memmap", "faiss-flat"] if fmt == "format 2" and dtype == "float32" else ["default"]
        row["open"] = {}
        src = old_src if fmt.startswith("format 1") else REPO
        for variant in variants:  # medians of REPEATS opens each (the 2 cores are shared)
            for cache in ("cold", "warm"):  # warm: the files are in the page cache, as after a restart
                runs = []
                for _ in range(REPEATS):
                    if cache == "cold":
                        evict(out)
                    runs.append(child(OPEN, src, out, variant))
                runs.sort(key=lambda o: o["open_and_first_query_s"])
                mid = runs[len(runs) // 2] | {"repeats": [o["open_and_first_query_s"] for o in runs]}
                row["open"][f"{variant} {cache}"] = mid
        if fmt == "format 2":
            evict(out)
            row["verify"] = child(VERIFY, REPO, out)
        rows.append(row)
        print(f"  {n:>9,} {fmt} {dtype}: built in {build['seconds']:.1f}s", flush=True)
        subprocess.run(["rm", "-rf", str(out)], check=True)
    npy.unlink()
    return rows


def quality() -> dict[str, Any]:
    """SciFact test nDCG@10 of cosine and hybrid search, float32 vs float16 storage."""
    from qrerank.corpus import load_corpus
    from qrerank.embed.models import DEFAULT_MODEL, load_encoder
    from qrerank.eval.datasets import load_dataset
    from qrerank.index.directory import build_index
    from qrerank.metrics import per_query
    from qrerank.rerank.pipeline import SearchPipeline
    from qrerank.rerank.reranker import Reranker

    encoder = load_encoder(DEFAULT_MODEL)
    test = load_dataset(DATA, split="test")
    docs = load_corpus(DATA / "corpus.jsonl")
    out: dict[str, Any] = {"model": DEFAULT_MODEL, "queries": len(test.queries), "docs": len(docs)}
    runs: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float16"):
            index = build_index(docs, encoder, Path(tmp) / dtype, kind="flat", lexical=False, dtype=dtype)
            out[f"{dtype}_embeddings_bytes"] = (index.version_dir / "embeddings.safetensors").stat().st_size  # type: ignore[operator]
            pipe = SearchPipeline(index, Reranker(encoder))
            for method in ("cosine", "hybrid"):
                run = {
                    qid: {
                        h.doc_id: float(h.score) for h in pipe.search(text, k=100, top_n=100, method=method)
                    }
                    for qid, text in test.queries.items()
                }
                runs.setdefault(method, {})[dtype] = run
                pq = per_query(test.qrels, run, list(test.queries), test.rel_level)["nDCG@10"]
                out.setdefault(method, {})[dtype] = float(np.mean(list(pq.values())))
    for method, by_dtype in runs.items():
        a, b = by_dtype["float32"], by_dtype["float16"]
        top10 = [
            list(sorted(a[q], key=a[q].get, reverse=True))[:10]
            == list(sorted(b[q], key=b[q].get, reverse=True))[:10]
            for q in a
        ]
        diffs = [abs(a[q][d] - b[q][d]) for q in a for d in a[q] if d in b[q]]
        out[method]["same_top10_fraction"] = float(np.mean(top10))
        out[method]["max_abs_score_diff"] = float(max(diffs))
        out[method]["delta_x100"] = 100 * (out[method]["float16"] - out[method]["float32"])
    return out


def synthetic_texts(n: int, path: Path) -> None:
    """``n`` JSONL documents of TEXT_WORDS pseudo-words (Zipf over TEXT_VOCAB words, seed 0)."""
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = np.array(["".join(rng.choice(letters, k)) for k in rng.integers(2, 10, TEXT_VOCAB)])
    p = 1.0 / np.arange(1, TEXT_VOCAB + 1)
    p /= p.sum()
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for s in range(0, n, 10_000):
            picks = words[rng.choice(TEXT_VOCAB, size=(min(10_000, n - s), TEXT_WORDS), p=p)]
            for i, row in enumerate(picks, start=s):
                f.write(json.dumps({"_id": f"doc{i}", "title": f"title {i}", "text": " ".join(row)}) + "\n")
    tmp.replace(path)


def text_rows(counts: list[int], trees: dict[str, Path], work: Path) -> list[dict[str, Any]]:
    """Peak RSS of ``qrerank index`` over synthetic ~1 KB texts, per tree, size and BM25 on/off."""
    rows = []
    for n in counts:
        src = work / f"texts-{n}.jsonl"
        if not src.exists():
            synthetic_texts(n, src)
        for lexical in (True, False):
            for name, tree in trees.items():
                out, cache = work / f"tidx-{n}", work / f"cache-{n}"
                subprocess.run(["rm", "-rf", str(out), str(cache)], check=True)
                build = child(
                    BUILD_TEXTS, tree, src, out, int(lexical), env={"QRERANK_CACHE_DIR": str(cache)}
                )
                if build["rc"] != 0:
                    raise RuntimeError(f"qrerank index failed in {tree}: {build}")
                row = {"docs": n, "tree": name, "path": str(tree), "lexical": lexical, "build": build}
                row.update(sizes(out, n), corpus_bytes=src.stat().st_size)
                rows.append(row)
                print(
                    f"  {n:>9,} {name:<8} bm25={lexical!s:<5} peak {build['peak_rss_mb']:8.0f} MB "
                    f"({build['seconds']:.1f}s)",
                    flush=True,
                )
                subprocess.run(["rm", "-rf", str(out), str(cache)], check=True)
    return rows


def text_growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Peak RSS growth per document between the smallest and largest size, per tree and BM25 setting."""
    out = []
    for key in sorted({(r["tree"], r["lexical"]) for r in rows}):
        mine = sorted((r for r in rows if (r["tree"], r["lexical"]) == key), key=lambda r: r["docs"])
        if len(mine) > 1:
            lo, hi = mine[0], mine[-1]
            per_doc = (
                (hi["build"]["peak_rss_mb"] - lo["build"]["peak_rss_mb"]) * 2**20 / (hi["docs"] - lo["docs"])
            )
            out.append({"tree": key[0], "lexical": key[1], "peak_rss_bytes_per_doc": per_doc})
    return out


def run_texts(args: argparse.Namespace) -> int:
    trees = dict(t.split("=", 1) for t in args.tree) if args.tree else {"this": str(REPO)}
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    work = args.work or Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    rows = text_rows(args.text_sizes, {k: Path(v).resolve() for k, v in trees.items()}, work)
    growth = text_growth(rows)
    print(f"{'docs':>9}  {'tree':<8} {'BM25':<5} {'peak RSS MB':>11} {'before build MB':>15} {'build s':>7}")
    for r in rows:
        b = r["build"]
        print(
            f"{r['docs']:>9,}  {r['tree']:<8} {r['lexical']!s:<5} {b['peak_rss_mb']:11.0f} "
            f"{b['rss_before_build_mb']:15.0f} {b['seconds']:7.1f}"
        )
    for g in growth:
        print(f"growth {g['tree']:<8} BM25={g['lexical']!s:<5} {g['peak_rss_bytes_per_doc']:7.0f} B/doc")
    result = {
        "benchmark": "index_storage_texts",
        "command": "python benchmarks/index_storage.py " + " ".join(sys.argv[1:]),
        "text_words": TEXT_WORDS,
        "text_vocab": TEXT_VOCAB,
        "trees": trees,
        "rows": rows,
        "growth": growth,
        "seconds": time.perf_counter() - t0,
        "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
        "environment": environment(),
    }
    out = args.out if args.out != OUT else TEXTS_OUT
    write_results(out, result)
    print(f"wrote {out}")
    return 0


def print_tables(rows: list[dict[str, Any]], q: dict[str, Any] | None) -> None:
    print(
        f"{'docs':>9}  {'format':<15} {'dtype':<7} {'vec B/doc':>9} {'all B/doc':>9} {'build s':>7} {'peak RSS MB':>11}"
        f"  {'open':<16} {'import s':>8} {'open s':>7} {'1st q s':>7} {'open+1st':>8} {'2nd q s':>7} {'verify s':>8}"
    )
    for r in rows:
        for variant, o in r["open"].items():
            verify = f"{r['verify']['verify_s']:8.2f}" if "verify" in r else f"{'-':>8}"
            print(
                f"{r['docs']:>9,}  {r['format']:<15} {r['dtype']:<7} {r['vector_bytes_per_doc']:9.0f} "
                f"{r['total_bytes_per_doc']:9.0f} {r['build']['seconds']:7.1f} {r['build']['peak_rss_mb']:11.0f}  "
                f"{variant:<16} {o['import_s']:8.2f} {o['open_s']:7.3f} {o['first_query_s']:7.3f} "
                f"{o['open_and_first_query_s']:8.3f} {o['second_query_s']:7.3f} {verify}"
            )
    if q:
        print(f"\nSciFact test ({q['queries']} queries, {q['docs']} docs, {q['model']}), nDCG@10 x100")
        print(
            f"{'method':<8} {'float32':>8} {'float16':>8} {'delta':>7} {'same top-10':>11} {'max |score diff|':>16}"
        )
        for m in ("cosine", "hybrid"):
            r = q[m]
            print(
                f"{m:<8} {100 * r['float32']:8.2f} {100 * r['float16']:8.2f} {r['delta_x100']:+7.2f} "
                f"{r['same_top10_fraction']:11.3f} {r['max_abs_score_diff']:16.2e}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--no-quality", action="store_true", help="skip the SciFact float16 measurement")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--texts", action="store_true", help="measure builds from ~1 KB texts instead")
    parser.add_argument("--text-sizes", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument(
        "--tree",
        action="append",
        default=None,
        metavar="NAME=PATH",
        help="qrerank tree(s) to run --texts from",
    )
    args = parser.parse_args()
    if args.texts:
        return run_texts(args)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        old_src = old_source(work)
        rows = [row for n in args.sizes for row in storage_rows(n, work, old_src)]
    q = None if args.no_quality else quality()
    print_tables(rows, q)
    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    result = {
        "benchmark": "index_storage",
        "command": "python benchmarks/index_storage.py " + " ".join(sys.argv[1:]),
        "old_commit": OLD_COMMIT,
        "dim": DIM,
        "rows": rows,
        "float16_quality": q,
        "seconds": time.perf_counter() - t0,
        "load_average_1_5_15": {"before": load_before, "after": load_after},
        "environment": environment(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
