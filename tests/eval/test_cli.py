"""``qrerank eval`` through the CLI: exit 0 with outputs, exit 2 with one line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qrerank.cli import main
from tests.eval.test_metrics import BM25_EXPECTED


def eval_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "eval",
        str(data),
        "--out",
        str(out),
        "--model",
        "hashing-64",
        "--no-progress",
        "--bootstrap",
        "200",
        *extra,
    ]


def test_cli_eval_writes_metrics(tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = eval_args(
        tiny, out, "--protocol", "rerank", "--methods", "bm25,cosine,fidelity,hybrid,rrf,run:bm25"
    )
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run:bm25"] == pytest.approx(BM25_EXPECTED)
    assert {"bm25", "cosine", "fidelity", "hybrid", "rrf"} <= set(metrics)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["rel_level"] == 2 and meta["model"] == "hashing-64"
    assert (out / "runs" / "hybrid.trec").is_file() and (out / "tau_sweep.png").is_file()
    assert "| run:bm25 | 71.57" in capsys.readouterr().out


def test_cli_rel_level_flag(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        main(eval_args(tiny, out, "--protocol", "judged", "--methods", "run:bm25", "--rel-level", "1")) == 0
    )
    assert json.loads((out / "metrics.json").read_text())["run:bm25"]["RR@10"] == pytest.approx(0.75)
    assert json.loads((out / "meta.json").read_text())["rel_level_source"] == "--rel-level"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--protocol", "rerank", "--split", "dev"], "no qrels for split 'dev'"),
        (["--protocol", "rerank", "--run", "nope"], "unknown run 'nope'"),
        (["--protocol", "rerank", "--methods", "cosine,run:nope"], "unknown run 'nope'"),
        (["--protocol", "rerank", "--methods", "cosine,dense"], "unknown method 'dense'"),
        (["--protocol", "full", "--tune-split", "test"], "refusing to tune"),
        (["--protocol", "full", "--methods", "head:/no/such/head"], "no head at"),
        (["--protocol", "full", "--alphas", "0.5,2"], "alphas must lie in [0, 1]"),
    ],
)
def test_cli_bad_input_exits_2(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(eval_args(tiny, tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("qrerank eval: error: ") and message in err and err.count("\n") == 1


def test_cli_qrels_naming_no_known_doc(
    tiny_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tiny_copy / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tnot-a-doc\t1\n")
    assert main(eval_args(tiny_copy, tmp_path / "out", "--protocol", "full")) == 2
    assert "names no document of" in capsys.readouterr().err


def test_cli_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(eval_args(tmp_path / "nope", tmp_path / "out", "--protocol", "full")) == 2
    assert "no such dataset folder" in capsys.readouterr().err


def test_cli_sts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.eval.conftest import TINY_STS

    out = tmp_path / "sts"
    assert main(eval_args(TINY_STS, out, "--protocol", "sts", "--tune-split", "dev")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["cosine"]) == {"spearman", "pearson"}
    assert (out / "tau_sweep.png").is_file() and "Spearman" in capsys.readouterr().out


def test_cli_sts_with_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qrerank.heads.io import save_head
    from qrerank.train import build_head
    from tests.eval.conftest import TINY_STS

    head = save_head(build_head("linear", 64, 8), tmp_path / "lin")
    out = tmp_path / "sts"
    assert main(eval_args(TINY_STS, out, "--protocol", "sts", "--methods", f"cosine,head:{head}")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["head:lin"]) == {"spearman", "pearson"}
    assert "`head:lin` (trained)" in capsys.readouterr().out
    assert main(eval_args(TINY_STS, out, "--protocol", "sts", "--methods", f"head:{tmp_path / 'nope'}")) == 2
    assert "no head at" in capsys.readouterr().err


def test_cli_unseen_from(tiny_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tiny_copy / "qrels" / "seen.tsv").write_text("query-id\tcorpus-id\tscore\nt1\td4\t2\n")
    out = tmp_path / "out"
    assert main(eval_args(tiny_copy, out, "--protocol", "rerank", "--methods", "cosine", "--unseen-from", "seen")) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_queries"] == 1 and meta["subset"]["of"] == 2
    assert "1 queries of 2, unseen from tiny_beir/seen" in (out / "table.md").read_text()
    capsys.readouterr()
    assert main(eval_args(tiny_copy, out, "--protocol", "rerank", "--unseen-from", "train")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "relevant document" in err[0]
