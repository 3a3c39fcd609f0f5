"""BEIR folder loading, qrels and run parsing, relevance level, validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrerank.errors import InputError
from qrerank.eval.datasets import load_dataset, read_run, rel_level_from_provenance
from qrerank.judgments import read_qrels


def test_read_qrels_beir_and_trec_formats(tmp_path: Path) -> None:
    beir = tmp_path / "beir.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t0\nq2\td1\t1\n")
    trec = tmp_path / "trec.txt"
    trec.write_text("q1 0 d1 2\nq1 0 d2 0\nq2 0 d1 1\n")
    assert read_qrels(beir) == read_qrels(trec) == {"q1": {"d1": 2, "d2": 0}, "q2": {"d1": 1}}


def test_read_qrels_names_the_bad_line(tmp_path: Path) -> None:
    p = tmp_path / "q.tsv"
    p.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\n")
    with pytest.raises(InputError, match=r"q.tsv:3"):
        read_qrels(p)
    p.write_text("q1\td1\tvery\n")
    with pytest.raises(InputError, match=r"q.tsv:1: relevance grade 'very'"):
        read_qrels(p)


def test_read_run_sorts_by_score_then_rank(tmp_path: Path) -> None:
    p = tmp_path / "r.trec"
    p.write_text("q1 Q0 a 3 1.0 x\nq1 Q0 b 1 5.0 x\nq1 Q0 c 2 1.0 x\n")
    assert read_run(p) == {"q1": [("b", 5.0), ("c", 1.0), ("a", 1.0)]}
    p.write_text("q1 Q0 a 1 1.0 x\nq1 Q0 b one 2.0 x\n")
    with pytest.raises(InputError, match=r"r.trec:2"):
        read_run(p)


def test_load_dataset_keeps_judged_queries_with_text(tiny: Path) -> None:
    ds = load_dataset(tiny)
    assert list(ds.queries) == ["q1", "q2"]  # q3 has no judgements, t1/t2 are train
    assert ds.qrels["q1"]["d7"] == 2  # judged without text: kept, it counts in recall and ideal DCG
    assert ds.judged("q1") == ["d1", "d2", "d3", "d4"]
    assert ds.coverage() == {
        "judged_pairs": 7,
        "judged_pairs_with_text": 6,
        "relevant_pairs": 6,
        "relevant_pairs_with_text": 5,
    }
    assert set(ds.runs()) == {"bm25", "perfect"}
    assert list(load_dataset(tiny, split="train").queries) == ["t1", "t2"]


def test_rel_level_from_provenance_or_flag(tiny: Path, tmp_path: Path) -> None:
    assert rel_level_from_provenance(tiny) == 2
    ds = load_dataset(tiny)
    assert (ds.rel_level, ds.rel_level_source) == (2, "PROVENANCE.md")
    ds = load_dataset(tiny, rel_level=1)
    assert (ds.rel_level, ds.rel_level_source) == (1, "--rel-level")
    assert rel_level_from_provenance(tmp_path) is None


def test_real_provenance_files_give_the_official_levels() -> None:
    data = Path(__file__).resolve().parents[3] / "shared" / "data"
    if not data.is_dir():
        pytest.skip("shared data not present")
    assert rel_level_from_provenance(data / "trec-dl-2019-passage") == 2
    assert rel_level_from_provenance(data / "trec-dl-2020-passage") == 2
    assert rel_level_from_provenance(data / "scifact") is None  # -> 1


def test_missing_files_and_splits(tiny_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such dataset folder"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(InputError, match=r"no qrels for split 'dev'.*splits: test, train"):
        load_dataset(tiny_copy, split="dev")
    (tiny_copy / "queries.jsonl").unlink()
    with pytest.raises(InputError, match=r"queries\.jsonl is missing"):
        load_dataset(tiny_copy)


def test_qrels_naming_no_known_doc_or_query(tiny_copy: Path) -> None:
    (tiny_copy / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tx1\t1\nq2\tx2\t2\n")
    with pytest.raises(InputError, match="names no document of"):
        load_dataset(tiny_copy)
    (tiny_copy / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nzz\td1\t1\n")
    with pytest.raises(InputError, match="names no query of"):
        load_dataset(tiny_copy)


def test_unknown_run_lists_the_choices(tiny: Path) -> None:
    with pytest.raises(InputError, match=r"unknown run 'splade'.*bm25, perfect"):
        load_dataset(tiny).run("splade")
