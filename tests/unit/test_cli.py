"""The command-line contract: outputs, JSON shape and exit code 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qrerank.cli import main

pytest.importorskip("faiss")


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    p = tmp_path / "docs.jsonl"
    lines = [
        {"text": "Bread rises because yeast ferments sugar."},
        {"_id": "q1", "title": "Qubits", "text": "A qubit lives on the Bloch sphere."},
        {"text": "The cat sat on the mat."},
    ]
    p.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return p


def test_rerank_json_contract(docs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rerank", "bloch sphere qubit", str(docs_file), "--model", "hashing-128", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["index"] == 1  # 0-based line index among documents
    assert {"index", "score", "text"} <= set(rows[0])
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert (
        main(
            ["rerank", "cat", str(docs_file), "--model", "hashing-128", "--method", "cosine", "--top-n", "1"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "cat sat" in out and "Bread" not in out


def test_index_then_search(tmp_path: Path, docs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx = tmp_path / "idx"
    assert main(["index", str(docs_file), "--out", str(idx), "--model", "hashing-128"]) == 0
    assert "indexed 3 documents" in capsys.readouterr().out
    assert (
        main(["search", str(idx), "yeast bread", "--k", "3", "--top-n", "2", "--json", "--method", "hybrid"])
        == 0
    )
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 2 and hits[0]["text"].startswith("Bread")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rerank", "q", "{missing}"], "no such file"),
        (["rerank", "", "{docs}"], "query must not be empty"),
        (["rerank", "q", "{bad}"], "bad.jsonl:2: invalid JSON"),
        (["index", "{empty}", "--out", "{tmp}/i"], "holds no documents"),
        (["search", "{tmp}", "q"], "not a qrerank index"),
        (["rerank", "q", "{docs}", "--model", "no-such-model-xyz"], "not in the local Hugging Face cache"),
        (["rerank", "q", "{docs}", "--head", "{tmp}"], "not a saved head"),
    ],
)
def test_bad_input_exits_2_with_message(
    tmp_path: Path, docs_file: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{oops\n')
    (tmp_path / "empty.jsonl").write_text("")
    paths = {
        "missing": tmp_path / "nope.jsonl",
        "docs": docs_file,
        "bad": tmp_path / "bad.jsonl",
        "empty": tmp_path / "empty.jsonl",
        "tmp": tmp_path,
    }
    argv = [a.format(**paths) for a in argv]
    if "--model" not in argv and argv[0] == "rerank":
        argv += ["--model", "hashing-64"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["search"],
        ["rerank", "q", "d.jsonl", "--alpha", "3"],
        ["rerank", "q", "d", "--method", "bm25"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2


@pytest.mark.parametrize("backend", ["qiskit", "pennylane"])
def test_simulator_backends_rank_like_the_closed_form(
    backend: str, docs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip({"qiskit": "qiskit_aer", "pennylane": "pennylane"}[backend])
    base = [
        "rerank",
        "bloch sphere qubit yeast",
        str(docs_file),
        "--model",
        "hashing-8",
        "--method",
        "fidelity",
        "--json",
    ]
    assert main(base) == 0
    closed = json.loads(capsys.readouterr().out)
    assert main([*base, "--backend", backend]) == 0
    simulated = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in simulated] == [r["index"] for r in closed]
    for a, b in zip(simulated, closed, strict=True):
        assert a["log_fidelity"] == pytest.approx(b["log_fidelity"], abs=1e-5)


def test_missing_backend_extra_exits_2(
    docs_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "qiskit", None)  # import of qiskit now raises ImportError
    monkeypatch.setitem(sys.modules, "qiskit_aer", None)
    assert main(["rerank", "q", str(docs_file), "--model", "hashing-8", "--backend", "qiskit"]) == 2
    assert "qrerank[qiskit]" in capsys.readouterr().err
