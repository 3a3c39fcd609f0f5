"""BEIR-layout datasets on disk: corpus, queries, qrels, TREC run files, relevance level.

A dataset folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``), ``qrels/<split>.tsv`` (``query-id corpus-id score``, header optional) and
optionally ``runs/<name>.trec`` (``qid Q0 docid rank score tag``). Nothing is downloaded.

Every reader raises :class:`~qrerank.errors.InputError` with the file and 1-based line number of
the first bad line, so the CLI can print one clear message. Qrels files are read by
:func:`qrerank.judgments.read_qrels`, which training shares.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from qrerank.corpus import read_jsonl
from qrerank.errors import InputError
from qrerank.judgments import Qrels, read_qrels
from qrerank.types import Document

log = logging.getLogger(__name__)

Run = dict[str, dict[str, float]]

# "Relevance >=2 counts as relevant" (TREC DL PROVENANCE.md) -> binary metrics use rel >= 2.
_REL_LEVEL = re.compile(r"relevance\s*(?:>=|≥)\s*(\d+)", re.IGNORECASE)


def read_run(path: str | os.PathLike[str]) -> dict[str, list[tuple[str, float]]]:
    """A TREC run file -> ``{qid: [(docid, score), ...]}`` sorted as trec_eval ranks it.

    Score descending; the file's rank column breaks ties.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no run file: {path}")
    rows: dict[str, list[tuple[float, int, str]]] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 6:
                raise InputError(
                    f"{path}:{lineno}: expected 'qid Q0 docid rank score tag', got {line.strip()!r}"
                )
            qid, _, docid, rank, score, _ = parts
            try:
                rows.setdefault(qid, []).append((float(score), int(rank), docid))
            except ValueError:
                raise InputError(f"{path}:{lineno}: rank/score are not numbers: {line.strip()!r}") from None
    if not rows:
        raise InputError(f"{path} holds no results")
    return {q: [(d, s) for s, _, d in sorted(r, key=lambda x: (-x[0], x[1]))] for q, r in rows.items()}


def relevant_docs(qrels: Qrels, rel_level: int = 1) -> set[str]:
    """Every document judged with grade >= ``rel_level`` for some query of ``qrels``."""
    return {d for docs in qrels.values() for d, g in docs.items() if g >= rel_level}


def rel_level_from_provenance(root: Path) -> int | None:
    """The binary-relevance threshold a PROVENANCE.md / README.md states ("Relevance >=2"), if any."""
    for name in ("PROVENANCE.md", "README.md"):
        p = root / name
        if p.is_file():
            m = _REL_LEVEL.search(p.read_text(encoding="utf-8", errors="replace"))
            if m:
                return int(m.group(1))
    return None


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """One split of a BEIR-layout folder. ``queries`` holds only the judged queries with text."""

    root: Path
    split: str
    queries: dict[str, str]
    qrels: Qrels
    rel_level: int
    rel_level_source: str
    skipped_queries: list[str] = field(default_factory=list)
    subset: dict[str, object] | None = None  # how ``queries`` was narrowed, e.g. by unseen_from

    @property
    def name(self) -> str:
        return self.root.name

    @cached_property
    def corpus(self) -> dict[str, Document]:
        """doc_id -> Document, read once from corpus.jsonl."""
        return _read_corpus(self.root)

    def runs(self) -> dict[str, Path]:
        """Run files in ``runs/``: name (file stem) -> path."""
        folder = self.root / "runs"
        return {p.stem: p for p in sorted(folder.glob("*.trec"))} if folder.is_dir() else {}

    def run(self, name: str) -> dict[str, list[tuple[str, float]]]:
        """The run ``runs/<name>.trec`` (or a path to a run file)."""
        runs = self.runs()
        if name in runs:
            return read_run(runs[name])
        if Path(name).is_file():
            return read_run(name)
        choices = ", ".join(runs) or "none"
        raise InputError(f"unknown run {name!r} for {self.root}; runs/ holds: {choices}")

    def judged(self, qid: str) -> list[str]:
        """Judged doc ids of ``qid`` that have text in the corpus, in qrels order."""
        corpus = self.corpus
        return [d for d in self.qrels.get(qid, {}) if d in corpus]

    def unseen_from(self, seen: Qrels, *, source: str) -> Dataset:
        """The queries none of whose relevant documents is relevant to a query of ``seen``.

        Relevant means grade >= ``rel_level`` on both sides. A head trained on ``seen`` can learn
        *which documents* get cited rather than how to match a query to a document; this subset is
        where that cannot help (SciFact: 104 of 300 test claims are unseen from train). Queries
        with no relevant document at all stay in the subset (nothing of theirs was seen).
        """
        seen_docs = relevant_docs(seen, self.rel_level)
        keep = [q for q in self.queries if not relevant_docs({q: self.qrels[q]}, self.rel_level) & seen_docs]
        if not keep:
            raise InputError(f"every query of {self.name}/{self.split} has a relevant document of {source}")
        return replace(
            self,
            queries={q: self.queries[q] for q in keep},
            qrels={q: self.qrels[q] for q in keep},
            subset={
                "rule": f"queries none of whose relevant documents (grade >= {self.rel_level}) "
                f"is relevant to a query of {source}",
                "unseen_from": source,
                "n_queries": len(keep),
                "of": len(self.queries),
            },
        )

    def coverage(self) -> dict[str, int]:
        """How many judged pairs (and pairs with grade >= 1) have text: pools rarely hold all."""
        corpus = self.corpus
        pairs = [(d, g) for docs in self.qrels.values() for d, g in docs.items()]
        return {
            "judged_pairs": len(pairs),
            "judged_pairs_with_text": sum(d in corpus for d, _ in pairs),
            "relevant_pairs": sum(g >= 1 for _, g in pairs),
            "relevant_pairs_with_text": sum(g >= 1 and d in corpus for d, g in pairs),
        }


def _read_corpus(root: Path) -> dict[str, Document]:
    docs = read_jsonl(root / "corpus.jsonl")
    if not docs:
        raise InputError(f"{root / 'corpus.jsonl'} holds no documents")
    corpus = {d.doc_id: d for d in docs}
    if len(corpus) != len(docs):
        raise InputError(f"{root / 'corpus.jsonl'}: {len(docs) - len(corpus)} duplicate _id values")
    return corpus


def _read_queries(path: Path) -> dict[str, str]:
    return {q.doc_id: q.text for q in read_jsonl(path)}


def read_split_qrels(root: str | os.PathLike[str], split: str) -> Qrels:
    """``root/qrels/<split>.tsv``; a missing split names the splits the folder has."""
    root = Path(root)
    path = root / "qrels" / f"{split}.tsv"
    if not path.is_file():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise InputError(f"no qrels for split {split!r}: {path} is missing (splits: {', '.join(have) or 'none'})")
    return read_qrels(path)


def load_dataset(
    root: str | os.PathLike[str], *, split: str = "test", rel_level: int | None = None
) -> Dataset:
    """Load and validate one split of a BEIR-layout folder.

    ``rel_level`` (binary metrics count grade >= rel_level as relevant) defaults to what the
    folder's PROVENANCE.md states, else 1. Raises InputError for a missing folder or file, qrels
    that name no query of queries.jsonl, or qrels none of whose doc ids are in corpus.jsonl.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"no such dataset folder: {root}")
    for name in ("corpus.jsonl", "queries.jsonl"):
        if not (root / name).is_file():
            raise InputError(f"{root} is not a BEIR dataset folder: {name} is missing")
    qrels_path = root / "qrels" / f"{split}.tsv"
    qrels = read_split_qrels(root, split)
    all_queries = _read_queries(root / "queries.jsonl")
    queries = {q: all_queries[q] for q in qrels if q in all_queries}
    skipped = [q for q in qrels if q not in all_queries]
    if not queries:
        raise InputError(f"{qrels_path} names no query of {root / 'queries.jsonl'}")
    if skipped:
        log.warning("%s: %d judged queries have no text and are skipped", qrels_path, len(skipped))
    source = "--rel-level"
    if rel_level is None:
        rel_level = rel_level_from_provenance(root)
        source = "PROVENANCE.md" if rel_level is not None else "default"
        rel_level = rel_level if rel_level is not None else 1
    if rel_level < 1:
        raise InputError(f"rel_level must be >= 1, got {rel_level}")
    ds = Dataset(
        root=root,
        split=split,
        queries=queries,
        qrels={q: qrels[q] for q in queries},
        rel_level=rel_level,
        rel_level_source=source,
        skipped_queries=skipped,
    )
    if ds.coverage()["judged_pairs_with_text"] == 0:
        raise InputError(f"{qrels_path} names no document of {root / 'corpus.jsonl'}: wrong corpus or qrels?")
    return ds
