"""Label-free training data: pseudo-queries cut from the corpus itself, no queries or qrels.

The Inverse Cloze Task (Lee, Chang and Toutanova, ACL 2019, "Latent Retrieval for Weakly
Supervised Open Domain Question Answering"): a sentence of a passage is the query, and the passage
without that sentence is its one positive. Removing the sentence matters: left in, the query is a
substring of its positive and a head learns only to spot copies.

For each sampled passage with at least two sentences (``MIN_QUERY_WORDS`` words in the chosen
one, ``MIN_REST_WORDS`` left), :func:`load_pseudo_queries` replaces the passage's text by the rest
(the id and title stay), so every copy of the query sentence is gone from the training corpus.
BM25 over that corpus then mines hard negatives: the ``bm25_negatives`` best-scoring documents
for the query other than its source, treated as judged non-relevant (a false negative is possible,
as with any mined negative). The training corpus is the sources and their BM25 negatives, so its
size, and the encoding it costs, is bounded by ``n_queries * (1 + bm25_negatives)`` and not by the
corpus. The trainer adds its cosine-mined negatives on top, as for labelled data.

Held out: no label of any split is read. The passages are the evaluated corpus's own, which is
what domain adaptation means here; say so when reporting (``TrainingData.info["format"]``).
"""

from __future__ import annotations

import os
import random
import re

from qrerank.corpus import load_corpus
from qrerank.errors import InputError
from qrerank.index.lexical import BM25Scorer
from qrerank.train.data import Example, TrainingData, split_examples
from qrerank.types import Document

PSEUDO_QUERIES = 2000  # default count of ``--pseudo-queries``
BM25_NEGATIVES = 10  # mined per pseudo-query
MIN_QUERY_WORDS = 6  # a shorter sentence ("See Fig. 2.") is no query
MIN_REST_WORDS = 12  # and the positive must keep some text

# A sentence ends at . ! or ? followed by space and an upper-case letter or a digit, possibly
# after an opening quote or bracket; "e.g. the" and "p < 0.05 in" stay in one sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, stripped, empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def cut_query(doc: Document, rng: random.Random) -> tuple[str, Document] | None:
    """(a sentence of ``doc.text``, ``doc`` without it), or None when ``doc`` has no usable sentence.

    The sentence is drawn with ``rng`` among those of at least MIN_QUERY_WORDS words; the
    title stays with the rest, which must keep MIN_REST_WORDS words.
    """
    sentences = split_sentences(doc.text)
    choices = [i for i, s in enumerate(sentences) if len(s.split()) >= MIN_QUERY_WORDS]
    if len(sentences) < 2 or not choices:
        return None
    i = rng.choice(choices)
    rest = " ".join(sentences[:i] + sentences[i + 1 :])
    if len(rest.split()) < MIN_REST_WORDS:
        return None
    return sentences[i], Document(doc_id=doc.doc_id, title=doc.title, text=rest)


def _cuts(corpus: list[Document], n_queries: int, seed: int) -> dict[int, tuple[str, Document]]:
    """Row -> (query, cut document) for up to ``n_queries`` passages visited in a seeded order."""
    rng = random.Random(seed)
    cuts: dict[int, tuple[str, Document]] = {}
    for row in rng.sample(range(len(corpus)), len(corpus)):
        if len(cuts) == n_queries:
            break
        cut = cut_query(corpus[row], rng)
        if cut is not None:
            cuts[row] = cut
    return cuts


def load_pseudo_queries(
    src: str | os.PathLike[str],
    *,
    n_queries: int = PSEUDO_QUERIES,
    bm25_negatives: int = BM25_NEGATIVES,
    frac: float = 1.0,
    val_frac: float = 0.1,
    seed: int = 42,
) -> TrainingData:
    """Pseudo-query training data from the corpus ``src`` (JSONL, BEIR folder or text folder).

    The whole corpus is read into memory once (BM25 needs every document); ``n_queries`` passages
    become queries. Validation queries are pseudo-queries too, so validation is label-free.
    """
    if n_queries < 2 or bm25_negatives < 1:
        raise InputError(f"need n_queries >= 2 and bm25_negatives >= 1, got {n_queries}, {bm25_negatives}")
    corpus = load_corpus(src)
    seen: set[str] = set()
    for doc in corpus:
        if doc.doc_id in seen:
            raise InputError(f"{src}: document id {doc.doc_id!r} occurs twice")
        seen.add(doc.doc_id)
    cuts = _cuts(corpus, n_queries, seed)
    if len(cuts) < 2:
        raise InputError(
            f"{src}: only {len(cuts)} passage(s) have two sentences of which one has >= "
            f"{MIN_QUERY_WORDS} words: too few for pseudo-queries"
        )
    texts = [cuts[row][1] if row in cuts else doc for row, doc in enumerate(corpus)]
    scorer = BM25Scorer(texts)
    keep: set[int] = set(cuts)
    examples: list[Example] = []
    for row, (query, doc) in cuts.items():
        _, hits = scorer.top_k(query, bm25_negatives + 1)
        negative_rows = [r for r in hits.tolist() if r != row][:bm25_negatives]
        keep.update(negative_rows)
        negatives = tuple(texts[r].doc_id for r in negative_rows)
        examples.append(
            Example(
                query_id=f"pq{len(examples)}",
                query=query,
                positives=(doc.doc_id,),
                relevance={doc.doc_id: 1} | {d: 0 for d in negatives},
                judged_negatives=negatives,
                negatives=negatives,
            )
        )
    train, val = split_examples(examples, frac=frac, val_frac=val_frac, seed=seed)
    docs = {texts[r].doc_id: texts[r].content for r in sorted(keep)}
    info = {
        "format": "pseudo-queries",
        "method": "inverse cloze task: a sentence as query, its passage without it as positive",
        "pseudo_queries": len(examples),
        "bm25_negatives": bm25_negatives,
        "corpus_docs": len(corpus),
        "training_docs": len(docs),
        "qrels": "none",
    }
    return TrainingData(docs=docs, train=train, val=val, source=str(src), info=info)
