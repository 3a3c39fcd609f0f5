"""The load benchmark's workload and report helpers (the benchmark itself is not run here)."""

from __future__ import annotations

import json
import random

from benchmarks import load
from benchmarks import reliability_service as bench


def test_workload_is_100_docs_of_about_60_words_and_fresh_per_request() -> None:
    rng, words = random.Random(0), load.vocabulary()
    first, second = (json.loads(load.make_body(rng, words, 100, 60)) for _ in range(2))
    assert len(first["documents"]) == 100
    assert all(55 <= len(d.split()) <= 65 for d in first["documents"])
    assert first["query"].strip() and not set(first["documents"]) & set(second["documents"])


def test_table_reports_speed_up_against_the_baseline() -> None:
    row = {"requests": 8, "ok": 8, "errors": {}, "docs_per_s": 1.0, "p50_ms": 1.0, "p99_ms": 2.0}
    rows = [
        {"server": "baseline", "concurrency": 8, "throughput_rps": 1.0, **row},
        {"server": "qrerank", "concurrency": 8, "throughput_rps": 1.5, **row},
    ]
    text = load.table(rows)
    assert "| 8 | qrerank |" in text and "1.50x" in text and "1.00x" in text
    int8 = {"server": load.server_name("onnx-int8"), "concurrency": 8, "throughput_rps": 3.0, **row}
    lines = load.table([*rows, int8]).splitlines()[2:]
    assert [line.split("|")[2].strip() for line in lines] == ["qrerank", "qrerank-onnx-int8", "baseline"]
    assert "3.00x" in lines[1] and load.server_name("torch") == "qrerank"


def test_reliability_workload_poisons_one_percent_and_the_verdict_needs_every_target() -> None:
    workload = bench.make_requests(random.Random(0), ["alpha", "beta", "gamma"], 200, 0.01, 5)
    poisoned = [body for body, bad in workload if bad]
    assert len(workload) == 200 and len(poisoned) == 2
    assert all(sum(bench.MARKER in d for d in body["documents"]) == 1 for body in poisoned)
    assert not any(bench.MARKER in d for body, bad in workload if not bad for d in body["documents"])
    row = {"clean_failed": 0, "clean_wrong_ranking": 0, "poisoned_errored": 2, "poisoned": 2}
    assert bench.passed(row)
    assert not bench.passed({**row, "clean_failed": 1})
    assert not bench.passed({**row, "poisoned_errored": 1})
