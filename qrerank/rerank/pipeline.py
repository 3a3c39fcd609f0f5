"""Retrieve top-K from a document index, rerank them, return the top-n."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import torch

from qrerank.errors import IndexFormatError, InputError
from qrerank.index.directory import DocumentIndex, unit_rows
from qrerank.rerank.reranker import Reranker, ranked
from qrerank.rerank.scoring import Method
from qrerank.types import RankedDoc


class SearchPipeline:
    """Query -> FAISS top-``k`` by cosine -> rerank with stored embeddings/angles -> top-``n``.

    Candidates are never re-encoded: their embeddings and Bloch angles are read from the index.
    The reranker's encoder must be the model the index was built with.
    """

    def __init__(
        self,
        index: DocumentIndex | str | os.PathLike[str],
        reranker: Reranker | None = None,
        **reranker_kwargs: object,
    ) -> None:
        self.index = index if isinstance(index, DocumentIndex) else DocumentIndex.load(index)
        if reranker is None:
            from qrerank.embed.models import load_encoder

            encoder = load_encoder(self.index.model, normalize=bool(self.index.manifest["normalized"]))
            reranker = Reranker(encoder, **reranker_kwargs)  # type: ignore[arg-type]
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
        method: Method | str | None = None,
        alpha: float | None = None,
    ) -> list[RankedDoc]:
        """Top-``top_n`` of the ``k`` nearest documents, reranked; ``index`` is the index row."""
        if not isinstance(query, str) or not query.strip():
            raise InputError("query must be a non-empty string")
        if k < 1 or top_n < 1:
            raise InputError(f"k and top_n must be >= 1, got k={k}, top_n={top_n}")
        q = self.reranker.embed([query])
        _, rows = self.index.search(unit_rows(q.numpy()), k)
        rows_list = [int(r) for r in rows[0] if r >= 0]  # IVF may return -1 for empty slots
        if not rows_list:
            return []
        idx = np.asarray(rows_list)
        docs_emb = torch.from_numpy(self.index.embeddings[idx])
        # Queries are encoded at the tau the stored angles use, unless the caller overrides it.
        tau = self.reranker.tau if self.reranker.tau is not None else self.index.tau
        angles = None
        if tau == self.index.tau and self.reranker.head is None:
            angles = torch.from_numpy(self.index.angles[idx])
        scores = self.reranker.score_embeddings(
            q[0], docs_emb, method=method, alpha=alpha, doc_angles=angles, tau=tau
        )
        hits = ranked(self.index.documents(rows_list), scores, top_n)
        return [replace(hit, index=rows_list[hit.index]) for hit in hits]
