"""Index reliability under concurrent rebuilds and kill -9 (a recorded run, not a test).

1. readers: 2 reader processes load and query the index in a loop while this process rebuilds
   it ``--rebuilds`` times (tiny corpus, hashing encoder); every failed read counts (target 0)
   and every loaded index must be one build, whole (all its files and rows agree).
2. writers: 2 writer processes rebuild the same index at once; every failed write counts.
3. kill -9: ``--kills`` times a build subprocess (a larger corpus, so the kill lands in
   encoding, writing or the swap) is SIGKILLed at a random moment; after each, the index must
   load whole, and the next build must leave only the live and the previous version.

    python benchmarks/reliability_index.py     # writes benchmarks/results/reliability_index.json
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "results" / "reliability_index.json"
DIM = 64


def corpus(build: int, base: int = 8) -> list[Any]:
    """Docs whose ids carry the build number; sizes differ between consecutive builds."""
    from qrerank.types import Document

    n = base + 4 * (build % 3)
    return [Document(doc_id=f"b{build}-{i}", text=f"build {build} doc {i} word{i % 7}") for i in range(n)]


def check_whole(index: Any, base: int = 8) -> int:
    """The build number every part of ``index`` comes from; AssertionError if they disagree."""
    from qrerank.embed.hashing import HashingEncoder

    n = len(index)
    first, last = index.documents([0, n - 1])
    build = int(first.doc_id.split("-")[0][1:])
    assert len(corpus(build, base)) == n and last.doc_id == f"b{build}-{n - 1}", "documents of two builds"
    assert index.embeddings.shape == (n, DIM) and index.vectors.ntotal == n, "files of two builds"
    _, rows = index.search(HashingEncoder(DIM).encode([f"build {build} doc 3 word3"]), 1)
    assert rows[0][0] == 3, "vectors do not match the documents"
    return build


def reader(out: str, barrier: Any, stop: Any, results: Any) -> None:
    from qrerank.index.directory import DocumentIndex

    loads, errors, seen = 0, Counter[str](), set()
    barrier.wait()
    while not stop.is_set():
        try:
            index = DocumentIndex.load(out)
            seen.add(check_whole(index))
            index.close()
            loads += 1
        except Exception as exc:  # every failure counts, whatever its type
            errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
    results.put({"loads": loads, "failures": sum(errors.values()), "errors": dict(errors), "seen": len(seen)})


def writer(out: str, first: int, count: int, barrier: Any, results: Any) -> None:
    from qrerank.embed.hashing import HashingEncoder
    from qrerank.index.directory import build_index

    errors = Counter[str]()
    barrier.wait()
    for k in range(first, first + 2 * count, 2):
        try:
            build_index(corpus(k), HashingEncoder(DIM), out, kind="exact")
        except Exception as exc:
            errors[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
    results.put({"writes": count, "failures": sum(errors.values()), "errors": dict(errors)})


def leftovers(out: Path) -> list[str]:
    """Entries beyond the pointer, the lock, the live and the previous version."""
    names = sorted(p.name for p in out.iterdir())
    versions = [n for n in names if n.startswith("v-")]
    extra = [n for n in names if n not in ("CURRENT", ".lock") and not n.startswith("v-")]
    return extra + (versions if len(versions) > 2 else [])


def run_readers(root: Path, rebuilds: int) -> dict[str, Any]:
    from qrerank.embed.hashing import HashingEncoder
    from qrerank.index.directory import build_index

    out = root / "readers"
    build_index(corpus(0), HashingEncoder(DIM), out, kind="exact")
    ctx = mp.get_context("spawn")
    barrier, stop, results = ctx.Barrier(3), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=reader, args=(str(out), barrier, stop, results)) for _ in range(2)]
    for p in procs:
        p.start()
    barrier.wait()
    t0, write_errors = time.perf_counter(), Counter[str]()
    for k in range(1, rebuilds + 1):
        try:
            build_index(corpus(k), HashingEncoder(DIM), out, kind="exact")
        except Exception as exc:
            write_errors[f"{type(exc).__name__}: {exc}"] += 1
    seconds = time.perf_counter() - t0
    stop.set()
    per_reader = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    return {
        "rebuilds": rebuilds,
        "rebuild_seconds": round(seconds, 2),
        "write_failures": sum(write_errors.values()),
        "reads": sum(r["loads"] + r["failures"] for r in per_reader),
        "read_failures": sum(r["failures"] for r in per_reader),
        "versions_seen_per_reader": [r["seen"] for r in per_reader],
        "errors": [r["errors"] for r in per_reader] + [dict(write_errors)],
        "leftovers": leftovers(out),
    }


def run_writers(root: Path, per_writer: int) -> dict[str, Any]:
    from qrerank.index.directory import DocumentIndex

    out = root / "writers"
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=writer, args=(str(out), f, per_writer, barrier, results)) for f in (0, 1)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    per = [results.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(30)
    try:
        check_whole(DocumentIndex.load(out))
        final_ok = True
    except Exception:
        final_ok = False
    return {
        "writers": 2,
        "writes": sum(r["writes"] for r in per),
        "write_failures": sum(r["failures"] for r in per),
        "errors": [r["errors"] for r in per],
        "final_index_loads": final_ok,
        "leftovers": leftovers(out),
        "seconds": round(time.perf_counter() - t0, 2),
    }


KILLED = """
import sys
from qrerank.embed.hashing import HashingEncoder
from qrerank.index.directory import build_index
from qrerank.types import Document

out, build = sys.argv[1], int(sys.argv[2])
docs = [Document(doc_id=f"b{build}-{i}", text=f"build {build} doc {i} word{i % 7}") for i in range(4000 + 4 * (build % 3))]
print("ready", flush=True)
build_index(docs, HashingEncoder(64), out, kind="exact")
print("done", flush=True)
"""


def run_kills(root: Path, kills: int, seed: int) -> dict[str, Any]:
    from qrerank.embed.hashing import HashingEncoder
    from qrerank.index.directory import DocumentIndex, build_index

    base = 4000
    out = root / "kills"
    build_index(corpus(0, base), HashingEncoder(DIM), out, kind="exact")
    t0 = time.perf_counter()
    build_index(corpus(0, base), HashingEncoder(DIM), out, kind="exact")  # warm: what a child's build takes
    build_s = time.perf_counter() - t0
    rng = random.Random(seed)
    rows = []
    for k in range(1, kills + 1):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED, str(out), str(2 * k - 1)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        delay = rng.uniform(0, build_s)  # anywhere from encoding to the pointer swap
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        finished = proc.stdout.read().strip() == "done"
        stale = [p.name for p in out.iterdir() if ".tmp-" in p.name]
        try:
            loaded = check_whole(DocumentIndex.load(out), base)
            load_error = None
        except Exception as exc:
            loaded, load_error = None, f"{type(exc).__name__}: {exc}"
        build_index(corpus(2 * k, base), HashingEncoder(DIM), out, kind="exact")
        rows.append(
            {
                "kill_after_s": round(delay, 3),
                "build_had_finished": finished,
                "temp_left_by_kill": bool(stale),
                "loaded_build": loaded,
                "load_error": load_error,
                "leftovers_after_next_build": leftovers(out),
            }
        )
    return {"corpus": base, "build_seconds": round(build_s, 3), "kills": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuilds", type=int, default=100)
    parser.add_argument("--writes-per-writer", type=int, default=25)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from qrerank.eval.meta import environment, write_results

    root = Path(tempfile.mkdtemp(prefix="qrerank-reliability-"))
    t0 = time.perf_counter()
    try:
        readers = run_readers(root, args.rebuilds)
        writers = run_writers(root, args.writes_per_writer)
        kills = run_kills(root, args.kills, args.seed)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    k = kills["kills"]
    table = [
        ("readers vs rebuilds", f"{readers['rebuilds']} rebuilds, 2 readers", f"{readers['reads']} reads",
         readers["read_failures"] + readers["write_failures"] + len(readers["leftovers"]),
         f"versions seen per reader {readers['versions_seen_per_reader']}"),
        ("concurrent writers", "2 writer processes", f"{writers['writes']} writes",
         writers["write_failures"] + len(writers["leftovers"]) + (not writers["final_index_loads"]),
         f"final index loads: {writers['final_index_loads']}"),
        ("kill -9 mid-build", f"{len(k)} kills", f"{sum(r['temp_left_by_kill'] for r in k)} left a temp dir",
         sum(r["load_error"] is not None for r in k) + sum(bool(r["leftovers_after_next_build"]) for r in k),
         f"{sum(r['build_had_finished'] for r in k)} builds had finished first"),
    ]
    print(f"{'check':22} {'setup':28} {'volume':22} {'failures':>8}  notes")
    for row in table:
        print(f"{row[0]:22} {row[1]:28} {row[2]:22} {row[3]:>8}  {row[4]}")
    result = {
        "benchmark": "reliability_index",
        "seconds": round(time.perf_counter() - t0, 1),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"},
        "table": [dict(zip(["check", "setup", "volume", "failures", "notes"], r, strict=True)) for r in table],
        "readers": readers,
        "writers": writers,
        "kills": kills,
        "environment": environment(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.out, result)
    print(f"wrote {args.out} in {result['seconds']}s")


if __name__ == "__main__":
    main()
