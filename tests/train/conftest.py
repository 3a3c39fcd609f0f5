"""A tiny synthetic BEIR folder: keyword topics, one relevant document per query."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

TOPICS = {
    "qubit": "qubit bloch sphere superposition fidelity entanglement",
    "bread": "bread yeast flour dough oven bake",
    "ocean": "ocean wave tide salt coral reef",
    "engine": "engine piston fuel torque cylinder gear",
    "forest": "forest tree moss fern canopy bark",
    "music": "music melody chord rhythm tempo harmony",
    "stars": "stars galaxy nebula orbit telescope comet",
    "chess": "chess bishop knight rook pawn gambit",
}
FILLER = ["the", "a", "of", "and", "with", "about", "from", "into", "over", "under", "some", "many"]


def _write_beir(root: Path, n_queries: int = 40, seed: int = 0) -> Path:
    rng = random.Random(seed)
    (root / "qrels").mkdir(parents=True)
    corpus, queries, qrels = [], [], []
    for topic, words in TOPICS.items():
        vocab = words.split()
        for j in range(6):
            text = " ".join(rng.choice(vocab + FILLER) for _ in range(12)) + f" {topic}{j} marker{j}"
            corpus.append({"_id": f"{topic}-{j}", "title": topic, "text": text})
    for i in range(n_queries):
        topic = rng.choice(list(TOPICS))
        j = rng.randrange(6)
        vocab = TOPICS[topic].split()
        queries.append({"_id": f"q{i}", "text": " ".join(rng.sample(vocab, 2)) + f" {topic}{j} marker{j}"})
        qrels.append((f"q{i}", f"{topic}-{j}", 1))
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels" / "train.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    )
    return root


@pytest.fixture
def beir_dir(tmp_path: Path) -> Path:
    return _write_beir(tmp_path / "toy")
