"""Pseudo-query (inverse cloze) training data and ``qrerank train CORPUS --pseudo-queries``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from qrerank.cli import main
from qrerank.errors import InputError
from qrerank.heads import load_head
from qrerank.train.pseudo import cut_query, load_pseudo_queries, split_sentences
from qrerank.types import Document

from .conftest import TOPICS


def _passage(rng: random.Random, topic: str, j: int) -> str:
    vocab = TOPICS[topic].split()
    sentences = [
        f"Sentence {k} of {topic} passage {j} is about " + " ".join(rng.sample(vocab, 4)) + f" {topic}{j}."
        for k in range(4)
    ]
    return " ".join(sentences)


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    """48 four-sentence passages on 8 topics (no queries, no qrels)."""
    rng = random.Random(0)
    rows = [{"_id": f"{t}-{j}", "title": t, "text": _passage(rng, t, j)} for t in TOPICS for j in range(6)]
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_split_sentences_keeps_abbreviations_and_decimals() -> None:
    text = 'Cells grew (e.g. the HeLa line) at p < 0.05 in vitro. Then 3 mice died! Why? "Quoted" ends.'
    assert split_sentences(text) == [
        "Cells grew (e.g. the HeLa line) at p < 0.05 in vitro.",
        "Then 3 mice died!",
        "Why?",
        '"Quoted" ends.',
    ]


def test_cut_query_removes_the_sentence_and_keeps_id_and_title() -> None:
    doc = Document(
        doc_id="d1",
        title="T",
        text="A first sentence that is long enough here. A second sentence with more words in it today. "
        "A third one that is also long enough for the rest.",
    )
    query, rest = cut_query(doc, random.Random(1))
    assert query in doc.text and query not in rest.text
    assert (rest.doc_id, rest.title) == ("d1", "T")
    assert sorted([query, *split_sentences(rest.text)]) == sorted(split_sentences(doc.text))


@pytest.mark.parametrize(
    "text",
    [
        "Only one sentence, however long it is, cannot be split into a query and a rest.",
        "Short one. Tiny. Two.",  # no sentence of MIN_QUERY_WORDS words
        "This sentence is long enough to be a query. Too short rest.",  # the rest keeps < 12 words
    ],
)
def test_cut_query_refuses_passages_without_a_usable_sentence(text: str) -> None:
    assert cut_query(Document(doc_id="x", text=text), random.Random(0)) is None


def test_pseudo_queries_never_leave_the_query_in_the_corpus(corpus_file: Path) -> None:
    data = load_pseudo_queries(corpus_file, n_queries=20, bm25_negatives=3, val_frac=0.2, seed=0)
    examples = data.train + data.val
    assert len(examples) == 20 and len(data.val) == 4
    for ex in examples:
        (pos,) = ex.positives
        assert all(ex.query not in text for text in data.docs.values())  # not in its positive, nor elsewhere
        assert ex.query.split()[3] in pos  # "Sentence k of TOPIC ...": cut from its own passage
        assert pos not in ex.negatives and 1 <= len(ex.negatives) <= 3
        assert set(ex.negatives) <= set(data.docs)
    assert data.info["qrels"] == "none" and data.info["pseudo_queries"] == 20
    assert data.info["training_docs"] == len(data.docs) <= 20 * (1 + 3)


def test_pseudo_queries_negatives_are_lexical_neighbours(corpus_file: Path) -> None:
    data = load_pseudo_queries(corpus_file, n_queries=16, bm25_negatives=2, val_frac=0.0, seed=3)
    for ex in data.train:
        topic = ex.positives[0].split("-")[0]
        assert all(n.startswith(topic + "-") for n in ex.negatives)  # BM25 finds the same topic's passages


def test_pseudo_queries_are_seeded(corpus_file: Path) -> None:
    a = load_pseudo_queries(corpus_file, n_queries=10, seed=5)
    b = load_pseudo_queries(corpus_file, n_queries=10, seed=5)
    c = load_pseudo_queries(corpus_file, n_queries=10, seed=6)
    key = lambda d: [(e.query, e.positives, e.negatives) for e in d.train + d.val]  # noqa: E731
    assert key(a) == key(b) and a.docs == b.docs
    assert key(a) != key(c)


def test_pseudo_queries_refuse_duplicate_ids_and_unsplittable_corpora(tmp_path: Path) -> None:
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"_id": "a", "text": "x y z"}\n{"_id": "a", "text": "u v w"}\n')
    with pytest.raises(InputError, match="'a' occurs twice"):
        load_pseudo_queries(dup)
    flat = tmp_path / "flat.jsonl"
    flat.write_text(
        "".join(json.dumps({"_id": str(i), "text": "one sentence only"}) + "\n" for i in range(5))
    )
    with pytest.raises(InputError, match="too few for pseudo-queries"):
        load_pseudo_queries(flat)


def test_cli_trains_a_head_without_qrels(corpus_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "head"
    argv = ["train", str(corpus_file), "--pseudo-queries", "24", "--head", "linear", "--out-dim", "8"]
    argv += ["--epochs", "2", "--model", "hashing-64", "--val-frac", "0.25", "--out", str(out)]
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    training = cfg["training"]
    assert training["pseudo_queries"] == 24 and training["format"] == "pseudo-queries"
    assert training["qrels"] == "none"
    assert "--pseudo-queries 24" in cfg["command"] and "--split" not in cfg["command"]
    assert "pseudo-queries cut from the corpus" in (out / "README.md").read_text()
    assert load_head(out, in_dim=64).out_dim == 8


def test_cli_pseudo_queries_of_one_is_a_clear_error(corpus_file: Path, tmp_path: Path, capsys) -> None:
    argv = ["train", str(corpus_file), "--pseudo-queries", "1", "--model", "hashing-64"]
    assert main([*argv, "--out", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pseudo_queries" in err[0]
