"""Training examples: (query, positives, hard negatives) from a BEIR folder or a triples JSONL.

Two input layouts:

- a BEIR dataset folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/SPLIT.tsv``
  (``query-id corpus-id score``); a document is a positive when its score is ``>= rel_level``
  (1 by default; 2 for graded TREC qrels where 1 means "partially relevant");
- a JSONL file of ``{"query": str, "pos": str | [str], "neg": [str]}`` objects; every distinct
  text becomes a corpus document (id ``d0``, ``d1``, ...), listed negatives count as judged
  non-relevant;
- an STS-B folder (``sts-SPLIT.tsv``, gold similarity 0-5): each distinct ``sentence1`` is a
  query and the ``sentence2`` column is the corpus; a pair scored ``>= 4`` ("mostly equivalent"
  in the STS guidelines) is a positive, one scored ``<= 1`` a judged negative, and the rounded
  score is the nDCG gain on validation.

Hard negatives are mined by :func:`mine_negatives` from first-stage cosine retrieval over the
corpus embeddings (the top-ranked documents not judged relevant), after any judged-non-relevant
documents (qrels score ``<= 0`` or JSONL ``neg``). A seeded share of queries is held out for
validation before ``frac`` subsamples the rest, so runs with different ``frac`` share one
validation set.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from qrerank.core.similarity import cosine_matrix
from qrerank.corpus import iter_jsonl, read_jsonl
from qrerank.errors import InputError
from qrerank.judgments import read_qrels, read_sts


@dataclass(frozen=True, slots=True, kw_only=True)
class Example:
    """One training or validation query.

    ``relevance`` holds every judgement for the query (doc_id -> graded score, used as nDCG
    gains); ``positives`` are the ids judged ``>= rel_level``; ``judged_negatives`` the ids judged
    ``<= 0``; ``negatives`` starts as the judged negatives and is filled by mining.
    """

    query_id: str
    query: str
    positives: tuple[str, ...]
    relevance: dict[str, int]
    judged_negatives: tuple[str, ...] = ()
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingData:
    """Corpus texts (doc_id -> embedded content) and the train/validation query split."""

    docs: dict[str, str]
    train: list[Example]
    val: list[Example]
    source: str
    info: dict[str, object] = field(default_factory=dict)


def split_examples(
    examples: list[Example], *, frac: float, val_frac: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """(train, val): a seeded ``val_frac`` of the queries held out, then ``frac`` of the rest."""
    if not 0.0 < frac <= 1.0:
        raise InputError(f"frac must be in (0, 1], got {frac}")
    if not 0.0 <= val_frac < 1.0:
        raise InputError(f"val_frac must be in [0, 1), got {val_frac}")
    if len(examples) < 2:
        raise InputError(f"need at least 2 queries with positives to train and validate, got {len(examples)}")
    order = sorted(examples, key=lambda e: e.query_id)
    random.Random(seed).shuffle(order)
    n_val = min(max(1, round(val_frac * len(order))), len(order) - 1) if val_frac > 0 else 0
    val, rest = order[:n_val], order[n_val:]
    n_train = max(1, round(frac * len(rest)))
    return rest[:n_train], val


def load_beir(
    root: str | os.PathLike[str],
    *,
    split: str = "train",
    rel_level: int = 1,
    frac: float = 1.0,
    val_frac: float = 0.1,
    seed: int = 42,
) -> TrainingData:
    """Queries of ``qrels/SPLIT.tsv`` with at least one positive, split into train and validation."""
    root = Path(root)
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        have = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
        raise InputError(f"no qrels split {split!r} in {root} (have: {', '.join(have) or 'none'})")
    qrels = read_qrels(qrels_path)
    docs = {d.doc_id: d.content for d in read_jsonl(root / "corpus.jsonl")}
    queries = {q.doc_id: q.text for q in read_jsonl(root / "queries.jsonl")}
    examples: list[Example] = []
    for qid, judged in sorted(qrels.items()):
        judged = {d: s for d, s in judged.items() if d in docs}
        positives = tuple(sorted(d for d, s in judged.items() if s >= rel_level))
        if qid not in queries or not positives:
            continue
        negatives = tuple(sorted(d for d, s in judged.items() if s <= 0))
        examples.append(
            Example(
                query_id=qid,
                query=queries[qid],
                positives=positives,
                relevance=judged,
                judged_negatives=negatives,
                negatives=negatives,
            )
        )
    train, val = split_examples(examples, frac=frac, val_frac=val_frac, seed=seed)
    info = {"split": split, "rel_level": rel_level, "queries_with_positives": len(examples)}
    return TrainingData(docs=docs, train=train, val=val, source=str(root), info=info)


def load_triples(
    path: str | os.PathLike[str], *, frac: float = 1.0, val_frac: float = 0.1, seed: int = 42
) -> TrainingData:
    """A JSONL of ``{"query", "pos", "neg"}``; distinct texts become documents ``d0, d1, ...``."""
    path = Path(path)
    ids: dict[str, str] = {}

    def doc_id(text: str) -> str:
        return ids.setdefault(text, f"d{len(ids)}")

    examples: list[Example] = []
    for lineno, obj in iter_jsonl(path):
        obj = obj if isinstance(obj, dict) else {}  # a non-object line fails the check below
        pos = obj.get("pos")
        pos = [pos] if isinstance(pos, str) else pos
        neg = obj.get("neg", [])
        neg = [neg] if isinstance(neg, str) else neg
        if (
            not isinstance(obj.get("query"), str)
            or not isinstance(pos, list)
            or not pos
            or not isinstance(neg, list)
            or not all(isinstance(t, str) for t in pos + neg)
        ):
            raise InputError(f"{path}:{lineno}: expected {{'query': str, 'pos': str | [str], 'neg': [str]}}")
        positives = tuple(dict.fromkeys(doc_id(t) for t in pos))
        negatives = tuple(d for d in dict.fromkeys(doc_id(t) for t in neg) if d not in positives)
        relevance = {d: 1 for d in positives} | {d: 0 for d in negatives}
        examples.append(
            Example(
                query_id=f"q{len(examples)}",
                query=obj["query"],
                positives=positives,
                relevance=relevance,
                judged_negatives=negatives,
                negatives=negatives,
            )
        )
    docs = {d: t for t, d in ids.items()}
    train, val = split_examples(examples, frac=frac, val_frac=val_frac, seed=seed)
    return TrainingData(docs=docs, train=train, val=val, source=str(path), info={"format": "triples"})


STS_POSITIVE = 4.0  # STS-B annotation: 4 = "mostly equivalent", 5 = "completely equivalent"
STS_NEGATIVE = 1.0  # 1 = "not equivalent, but on the same topic"; 0 = "on different topics"


def load_sts(
    root: str | os.PathLike[str],
    *,
    split: str = "train",
    frac: float = 1.0,
    val_frac: float = 0.1,
    seed: int = 42,
) -> TrainingData:
    """STS-B pairs as retrieval: find the paraphrases of ``sentence1`` among all ``sentence2``."""
    root = Path(root)
    s1, s2, gold = read_sts(root / f"sts-{split}.tsv")
    doc_id = {t: f"s{i}" for i, t in enumerate(dict.fromkeys(s2))}
    judged: dict[str, dict[str, float]] = {}
    for a, b, g in zip(s1, s2, gold.tolist(), strict=True):
        scores = judged.setdefault(a, {})
        scores[doc_id[b]] = max(g, scores.get(doc_id[b], g))  # a pair listed twice: keep the higher
    examples = []
    for i, (query, scores) in enumerate(judged.items()):
        positives = tuple(sorted(d for d, g in scores.items() if g >= STS_POSITIVE))
        if not positives:
            continue
        relevance = {d: round(g) for d, g in scores.items()}
        if query in doc_id:  # the very sentence sits in the corpus: it is no negative
            relevance[doc_id[query]] = 5
        negatives = tuple(sorted(d for d, g in scores.items() if g <= STS_NEGATIVE))
        examples.append(
            Example(
                query_id=f"q{i}", query=query, positives=positives, relevance=relevance,
                judged_negatives=negatives, negatives=negatives,
            )
        )  # fmt: skip
    train, val = split_examples(examples, frac=frac, val_frac=val_frac, seed=seed)
    docs = {d: t for t, d in doc_id.items()}
    info = {"format": "sts", "split": split, "pairs": len(gold), "queries_with_positives": len(examples)}
    return TrainingData(docs=docs, train=train, val=val, source=str(root), info=info)


def load_training_data(
    src: str | os.PathLike[str],
    *,
    split: str = "train",
    rel_level: int = 1,
    frac: float = 1.0,
    val_frac: float = 0.1,
    seed: int = 42,
) -> TrainingData:
    """A BEIR folder (has ``corpus.jsonl``), an STS-B folder (``sts-*.tsv``) or a triples ``.jsonl``."""
    src = Path(src)
    if src.is_dir():
        if not (src / "corpus.jsonl").is_file():
            if any(src.glob("sts-*.tsv")):
                return load_sts(src, split=split, frac=frac, val_frac=val_frac, seed=seed)
            raise InputError(
                f"{src} is neither a BEIR dataset folder (no corpus.jsonl) nor STS-B (no sts-*.tsv)"
            )
        return load_beir(src, split=split, rel_level=rel_level, frac=frac, val_frac=val_frac, seed=seed)
    if src.is_file():
        return load_triples(src, frac=frac, val_frac=val_frac, seed=seed)
    raise InputError(f"no such file or directory: {src}")


def cosine_candidates(q: torch.Tensor, d: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Indices ``[Q, min(k, D)]`` of the top-``k`` documents by cosine, best first."""
    k = min(k, d.shape[0])
    out = [cosine_matrix(q[i : i + chunk], d).topk(k, dim=-1).indices for i in range(0, q.shape[0], chunk)]
    return torch.cat(out) if out else torch.empty(0, k, dtype=torch.long)


def mine_negatives(
    examples: list[Example],
    query_emb: torch.Tensor,
    doc_emb: torch.Tensor,
    doc_ids: list[str],
    *,
    depth: int = 30,
) -> list[Example]:
    """Examples whose ``negatives`` = judged negatives, then the top-``depth`` cosine hits not judged relevant.

    ``query_emb[i]`` embeds ``examples[i].query``; ``doc_emb[j]`` embeds document ``doc_ids[j]``.
    """
    top = cosine_candidates(query_emb, doc_emb, depth + 32)
    mined = []
    for ex, row in zip(examples, top.tolist(), strict=True):
        relevant = {d for d, s in ex.relevance.items() if s > 0}
        hard = [doc_ids[j] for j in row if doc_ids[j] not in relevant][:depth]
        negatives = tuple(dict.fromkeys([*ex.judged_negatives, *hard]))
        mined.append(
            Example(
                query_id=ex.query_id,
                query=ex.query,
                positives=ex.positives,
                relevance=ex.relevance,
                judged_negatives=ex.judged_negatives,
                negatives=negatives,
            )
        )
    return mined
