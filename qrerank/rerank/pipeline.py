"""Retrieve top-K from a document index, rerank them, return the top-n.

Search methods (``SearchPipeline.search(method=...)``):

=========  ================================================================================
cosine     dense top-k by cosine, ranked by cosine
fidelity   the same candidates ranked by log-fidelity of their Bloch states
hybrid     the same candidates ranked by alpha * minmax(cos) + (1 - alpha) * minmax(log F)
lexical    BM25 top-k over the whole corpus (the index's lexical file), ranked by BM25
fused      candidates = dense top-k UNION BM25 top-k; each scored by the reranker's own method
           (hybrid by default: the "dense" score) and by BM25, then fused over the union:
           ``rrf``    1 / (60 + rank_dense) + 1 / (60 + rank_bm25)   (default)
           ``convex`` w * minmax(bm25) + (1 - w) * minmax(dense), w = ``lexical_weight``
=========  ================================================================================

The dense candidates ("dense top-k" above) come from the index's first-stage space: by cosine,
or in an index built with ``--space angles`` by log-fidelity (``DocumentIndex.search``), so
``fidelity`` then ranks the corpus's top-k fidelity documents, not cosine's.

``fused`` raises first-stage recall: a document that shares the query's words but that the
encoder places far away is still a candidate. Documents with BM25 = 0 share no query term and
are never lexical candidates. The lexical methods need an index built with its BM25 file
(``qrerank index`` without ``--no-lexical``); others raise NoLexicalIndexError saying so.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import torch

from qrerank.core.fusion import RRF_K, convex_fusion, reciprocal_rank_fusion
from qrerank.errors import IndexFormatError, InputError
from qrerank.index.directory import DocumentIndex
from qrerank.index.lexical import top_rows
from qrerank.rerank.methods import (
    Fusion,
    Method,
    SearchMethod,
    parse_fusion,
    parse_method,
    parse_search_method,
)
from qrerank.rerank.reranker import Reranker, ranked
from qrerank.rerank.scoring import Scores
from qrerank.types import RankedDoc

# Weight of BM25 in convex fusion, chosen on SciFact's 809 train claims in this search path
# (benchmarks/search_fusion.py: 0.5 best of 0.1..0.9; held out, 300 test claims 73.19 vs cosine
# 64.51, the 104 unseen ones 74.66 vs 67.58). Convex beat RRF there (train 73.84 vs 71.75), so
# fused search uses it unless asked for rrf.
LEXICAL_WEIGHT = 0.5


class SearchPipeline:
    """Query -> first-stage top-``k`` (cosine or fidelity) -> rerank stored embeddings -> top-``n``.

    Candidates are never re-encoded: their embeddings and Bloch angles are read from the index.
    The reranker's encoder must be the model the index was built with, on the same runtime:
    ``runtime`` None loads it on the index's, another one is refused (InputError).
    """

    def __init__(
        self,
        index: DocumentIndex | str | os.PathLike[str],
        reranker: Reranker | None = None,
        *,
        runtime: str | None = None,
        **reranker_kwargs: object,
    ) -> None:
        from qrerank.embed.runtime import encoder_runtime, runtime_for_index

        self.index = index if isinstance(index, DocumentIndex) else DocumentIndex.load(index)
        if reranker is None:
            from qrerank.embed.models import load_encoder

            encoder = load_encoder(
                self.index.model,
                normalize=self.index.normalized,
                runtime=runtime_for_index(self.index.runtime, runtime, self.index.path),
            )
            reranker = Reranker(encoder, **reranker_kwargs)  # type: ignore[arg-type]
        elif encoder_runtime(reranker.encoder) is not None:
            runtime_for_index(self.index.runtime, encoder_runtime(reranker.encoder), self.index.path)
        if reranker.encoder.name != self.index.model or reranker.encoder.dim != self.index.dim:
            raise IndexFormatError(
                f"index {self.index.path} was built with {self.index.model} ({self.index.dim}-d); "
                f"the query encoder is {reranker.encoder.name} ({reranker.encoder.dim}-d)"
            )
        self.reranker = reranker

    def search(
        self,
        query: str,
        *,
        k: int = 100,
        top_n: int = 10,
        method: SearchMethod | Method | str | None = None,
        alpha: float | None = None,
        lexical_weight: float | None = None,
        fusion: Fusion | str | None = None,
    ) -> list[RankedDoc]:
        """Top-``top_n`` of ``k`` candidates, reranked; ``index`` is the index row (module docstring).

        ``method`` defaults to the reranker's. ``lexical_weight`` (in [0, 1], default
        LEXICAL_WEIGHT) and ``fusion`` (rrf | convex) apply to ``fused`` only; hits of
        ``lexical`` and ``fused`` carry their BM25 score in ``bm25``.
        """
        if not isinstance(query, str) or not query.strip():
            raise InputError("query must be a non-empty string")
        if k < 1 or top_n < 1:
            raise InputError(f"k and top_n must be >= 1, got k={k}, top_n={top_n}")
        m = parse_search_method(method if method is not None else self.reranker.method)
        if m not in (SearchMethod.LEXICAL, SearchMethod.FUSED):
            if lexical_weight is not None or fusion is not None:
                raise InputError(f"lexical_weight and fusion apply to method 'fused', not {m.value!r}")
            return self._dense_search(query, k, top_n, parse_method(m.value), alpha)
        if lexical_weight is not None and not 0.0 <= lexical_weight <= 1.0:
            raise InputError(f"lexical_weight must be in [0, 1], got {lexical_weight}")
        bm25 = self.index.bm25()  # NoLexicalIndexError before any encoding
        if m is SearchMethod.LEXICAL:
            if lexical_weight is not None or fusion is not None:
                raise InputError("lexical_weight and fusion apply to method 'fused', not 'lexical'")
            return self._lexical_search(query, bm25.scores(query), k, top_n)
        how = parse_fusion(fusion, lexical_weight)
        return self._fused_search(query, bm25.scores(query), k, top_n, alpha, how, lexical_weight)

    def _dense_search(
        self, query: str, k: int, top_n: int, method: Method, alpha: float | None
    ) -> list[RankedDoc]:
        q = self.reranker.embed([query])
        rows_list, first = self._dense_rows(q, k)
        if not rows_list:
            return []
        # An angle-space first stage has already scored these rows by exact log F.
        logf = torch.from_numpy(first) if self.index.space == "angles" else None
        scores = self._score_rows(q, rows_list, method, alpha, logf)
        hits = ranked(self.index.documents(rows_list), scores, top_n)
        return [replace(hit, index=rows_list[hit.index]) for hit in hits]

    def _dense_rows(self, q: torch.Tensor, k: int) -> tuple[list[int], np.ndarray]:
        """First-stage rows for ``q`` ``[1, d]`` and their scores (cosine, or exact log F in an angle index)."""
        scores, rows = self.index.search(q.numpy(), k)
        keep = rows[0] >= 0  # IVF may return -1 for empty slots
        return [int(r) for r in rows[0][keep]], scores[0][keep]

    def _score_rows(
        self,
        q: torch.Tensor,
        rows_list: list[int],
        method: Method | None,
        alpha: float | None,
        first_logf: torch.Tensor | None = None,
    ) -> Scores:
        """The reranker's scores of index rows for query embedding ``q`` ``[1, d]``.

        ``first_logf``: the angle index's log F of these rows, at the index's tau.
        """
        idx = np.asarray(rows_list)
        docs_emb = torch.from_numpy(self.index.embeddings_of(idx))  # float32 whatever the storage dtype
        # Queries are encoded at the tau the stored angles use, unless the caller overrides it.
        tau = self.reranker.tau if self.reranker.tau is not None else self.index.tau
        angles = logf = None
        if tau == self.index.tau and self.reranker.head is None:
            logf = first_logf
            if logf is None:
                angles = torch.from_numpy(self.index.angles_of(idx))  # of these rows only
        return self.reranker.score_embeddings(
            q[0], docs_emb, method=method, alpha=alpha, doc_angles=angles, tau=tau, log_fidelity=logf
        )

    def _lexical_search(self, query: str, bm25: np.ndarray, k: int, top_n: int) -> list[RankedDoc]:
        """BM25 top-k over the corpus, ranked by BM25; cosine and log F are filled in for show."""
        rows_list = top_rows(bm25, k).tolist()
        if not rows_list:
            return []
        dense = self._score_rows(self.reranker.embed([query]), rows_list, None, None)
        lexical = torch.from_numpy(bm25[rows_list])
        scores = dense.with_score(lexical)
        return self._hits(rows_list, scores, lexical, top_n)

    def _fused_search(
        self,
        query: str,
        bm25: np.ndarray,
        k: int,
        top_n: int,
        alpha: float | None,
        fusion: Fusion,
        lexical_weight: float | None,
    ) -> list[RankedDoc]:
        """Union of dense and BM25 top-k, scored by both, fused (see the module docstring)."""
        q = self.reranker.embed([query])
        dense_rows, _ = self._dense_rows(q, k)
        seen = set(dense_rows)
        rows_list = dense_rows + [r for r in top_rows(bm25, k).tolist() if r not in seen]
        if not rows_list:
            return []
        dense = self._score_rows(q, rows_list, None, alpha)  # the reranker's method, hybrid by default
        lexical = torch.from_numpy(bm25[rows_list])
        if fusion is Fusion.RRF:
            fused = reciprocal_rank_fusion(dense.score, lexical, k=RRF_K)
        else:
            weight = LEXICAL_WEIGHT if lexical_weight is None else lexical_weight
            fused = convex_fusion(lexical, dense.score, weight)
        scores = dense.with_score(fused)
        return self._hits(rows_list, scores, lexical, top_n)

    def _hits(
        self, rows_list: list[int], scores: Scores, lexical: torch.Tensor, top_n: int
    ) -> list[RankedDoc]:
        hits = ranked(self.index.documents(rows_list), scores, top_n)
        return [replace(h, index=rows_list[h.index], bm25=float(lexical[h.index])) for h in hits]
