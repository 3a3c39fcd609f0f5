"""Hostile input to the command line: one line on stderr and exit code 2, never a traceback.

Covers JSONL that is binary, not UTF-8, deeply nested, holds a 5,000-digit number or a lone
surrogate; output paths that are files; bad ``hashing-DIM``; a full disk; a corrupt embedding
cache (a miss: re-encoded and rewritten, with a warning); a directory given as a JSONL file.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import sqlite3
import sys
from pathlib import Path

import pytest

from qrerank.cli import main

pytest.importorskip("faiss")

MODEL = ["--model", "hashing-64"]


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    p = tmp_path / "docs.jsonl"
    texts = [
        "Bread rises because yeast ferments sugar.",
        "A qubit lives on the Bloch sphere.",
        "The cat sat.",
    ]
    p.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return p


def error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The single stderr line of a failed command (asserting it is one line, no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"qrerank {command}: error: "), err
    return lines[0]


def _jsonl(tmp_path: Path, body: bytes) -> Path:
    p = tmp_path / "hostile.jsonl"
    p.write_bytes(b'{"text": "fine"}\n' + body + b"\n")
    return p


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"text": "caf\xe9"}', "hostile.jsonl:2: not UTF-8 text (byte 0xe9"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8", "hostile.jsonl:2: not UTF-8 text"),
        (b'{"_id": ' + b"7" * 5000 + b', "text": "x"}', "hostile.jsonl:2: invalid JSON (Exceeds the limit"),
        (b'{"text": "x", "m": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "invalid JSON (nested too deeply)"),
        (
            b'{"text": "lone \\ud800 surrogate"}',
            "hostile.jsonl:2: a string holds an unpaired UTF-16 surrogate",
        ),
        (b'{"_id": {"a": 1}, "text": "x"}', "hostile.jsonl:2: the document id must be a string or a number"),
    ],
    ids=["latin1", "binary", "5000-digit-id", "deep-nesting", "lone-surrogate", "object-id"],
)
@pytest.mark.parametrize("command", ["rerank", "index"])
def test_hostile_jsonl_is_one_line_exit_2(
    tmp_path: Path, command: str, body: bytes, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _jsonl(tmp_path, body)
    argv = (
        ["rerank", "q", str(src), *MODEL]
        if command == "rerank"
        else ["index", str(src), "--out", str(tmp_path / "idx"), *MODEL]
    )
    assert main(argv) == 2
    assert message in error_line(capsys, command)
    assert not (tmp_path / "idx").exists()


def test_paired_surrogate_escapes_are_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _jsonl(tmp_path, b'{"text": "smile \\ud83d\\ude00 qubit"}')
    assert main(["rerank", "qubit", str(src), *MODEL, "--json", "--method", "cosine"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["text"] == "smile \U0001f600 qubit"


def test_query_with_undecodable_argv_bytes(docs_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # On POSIX, argv bytes that are not UTF-8 arrive as lone surrogates (surrogateescape).
    assert main(["rerank", "caf\udce9", str(docs_file), *MODEL]) == 2
    assert "query is not valid UTF-8 text" in error_line(capsys, "rerank")


def test_directory_as_jsonl_says_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rerank", "q", str(tmp_path), *MODEL]) == 2
    line = error_line(capsys, "rerank")
    assert "is a directory, not a JSONL file" in line and "no such file" not in line


@pytest.mark.parametrize("command", ["index", "train", "eval"])
def test_out_naming_an_existing_file(
    tmp_path: Path, docs_file: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken.txt"
    taken.write_text("keep me\n")
    argv = {
        "index": ["index", str(docs_file), "--out", str(taken), *MODEL],
        "train": ["train", str(docs_file), "--out", str(taken), *MODEL],
        "eval": ["eval", str(tmp_path), "--protocol", "full", "--out", str(taken), *MODEL],
    }[command]
    assert main(argv) == 2
    assert f"--out {taken} is an existing file, not a directory" in error_line(capsys, command)
    assert taken.read_text() == "keep me\n"
    assert main(["index", str(docs_file), "--out", str(taken / "idx"), *MODEL]) == 2
    assert "which is a file" in error_line(capsys, "index")


@pytest.mark.parametrize(
    "model", ["hashing-0", "hashing-99999999", "hashing-" + "9" * 5000], ids=["zero", "huge", "5000-digits"]
)
def test_bad_hashing_dim(docs_file: Path, model: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rerank", "q", str(docs_file), "--model", model]) == 2
    assert "hashing encoder dim must be in 1..65536" in error_line(capsys, "rerank")


def test_disk_full_while_writing_the_index(
    tmp_path: Path, docs_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import qrerank.index.build as build

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "idx"))

    monkeypatch.setattr(build, "write_matrix", full)  # the embeddings write
    assert main(["index", str(docs_file), "--out", str(tmp_path / "idx"), *MODEL]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # Encoding progress may precede it on stderr; the error itself is one line, the last.
    errors = [line for line in err.splitlines() if line.startswith("qrerank index: error: ")]
    assert errors == [f"qrerank index: error: No space left on device: {tmp_path / 'idx'}"]
    assert err.rstrip("\n").endswith(errors[0])


def test_deeply_nested_index_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["search", str(idx), "q"]) == 2
    error_line(capsys, "search")


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/x/y"), "Permission denied: /x/y"),
        (UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"), "not valid Unicode"),
        (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
    ],
    ids=["oserror", "unicode", "recursion"],
)
def test_last_resort_mapping_in_main(
    docs_file: Path,
    exc: BaseException,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import qrerank.cli.rerank as rerank

    def fail(args: object) -> int:
        raise exc

    monkeypatch.setattr(rerank, "run", fail)  # whatever a command hits underneath
    assert main(["rerank", "q", str(docs_file)]) == 2
    assert message in error_line(capsys, "rerank")


def test_closed_stdout_pipe_is_quiet(
    docs_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["rerank", "q", str(docs_file), *MODEL]) == 141
    assert capsys.readouterr().err == ""


def _cache_files(cache: Path) -> list[Path]:
    return sorted((cache / "embeddings").glob("*.sqlite"))


def test_corrupt_cache_file_is_a_miss_and_is_rewritten(
    tmp_path: Path,
    docs_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("QRERANK_CACHE_DIR", str(cache))
    argv = ["rerank", "qubit bloch", str(docs_file), *MODEL, "--json"]
    assert main(argv) == 0
    expected = json.loads(capsys.readouterr().out)
    gc.collect()  # close the first run's SQLite connection, as a process exit would
    [db] = _cache_files(cache)
    for side in ("-wal", "-shm"):
        Path(f"{db}{side}").unlink(missing_ok=True)
    db.write_bytes(b"this is not a database, it is garbage" * 100)

    with caplog.at_level(logging.WARNING, logger="qrerank"):
        assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert any("is corrupt" in r.getMessage() for r in caplog.records)
    gc.collect()
    with sqlite3.connect(db) as conn:  # a valid cache again, holding the re-encoded texts
        assert conn.execute("SELECT COUNT(*) FROM emb").fetchone()[0] == 4  # 3 docs + the query

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="qrerank"):
        assert main(argv) == 0  # and the next command is simply a hit
    assert json.loads(capsys.readouterr().out) == expected
    assert not caplog.records


def test_damaged_cache_entry_is_re_encoded(
    tmp_path: Path,
    docs_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("QRERANK_CACHE_DIR", str(cache))
    argv = ["rerank", "qubit bloch", str(docs_file), *MODEL, "--json"]
    assert main(argv) == 0
    expected = json.loads(capsys.readouterr().out)
    gc.collect()
    [db] = _cache_files(cache)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE emb SET vec = x'00ff00'")  # 3 bytes: no 64-d float32 vector

    with caplog.at_level(logging.WARNING, logger="qrerank"):
        assert main(argv) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert any("damaged entries" in r.getMessage() for r in caplog.records)
    gc.collect()
    with sqlite3.connect(db) as conn:
        assert {n for (n,) in conn.execute("SELECT length(vec) FROM emb")} == {64 * 4}


def test_unusable_cache_dir_only_disables_the_cache(
    tmp_path: Path,
    docs_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    not_a_dir = tmp_path / "cache-is-a-file"
    not_a_dir.write_text("")
    monkeypatch.setenv("QRERANK_CACHE_DIR", str(not_a_dir))
    with caplog.at_level(logging.WARNING, logger="qrerank"):
        assert main(["rerank", "qubit bloch", str(docs_file), *MODEL, "--json", "--top-n", "1"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["doc_id"] == "d1"
    assert any("embedding cache disabled" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_non_finite_tau_flag_exits_2(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "a qubit"}\n{"text": "a cat"}\n')
    with pytest.raises(SystemExit) as exc:  # argparse: usage line + the error, exit 2
        main(["rerank", "qubit", str(docs), "--model", "hashing-64", f"--tau={value}"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --tau: expected a positive number" in err and "Traceback" not in err


@pytest.mark.parametrize("tau", [float("nan"), float("inf"), -1.0, 0.0])
def test_reranker_refuses_non_finite_tau(tau: float) -> None:
    from qrerank.errors import InputError
    from qrerank.rerank.reranker import Reranker

    with pytest.raises(InputError, match="tau must be a positive finite number"):
        Reranker("hashing-64", tau=tau)
