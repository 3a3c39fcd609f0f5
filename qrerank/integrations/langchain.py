"""LangChain document compressor [langchain]: rerank retrieved Documents with qrerank.

>>> from langchain.retrievers import ContextualCompressionRetriever         # doctest: +SKIP
>>> compressor = QrerankCompressor(top_n=3, method="hybrid")                 # doctest: +SKIP
>>> retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=...)  # doctest: +SKIP

Each returned Document is a copy whose metadata gains ``relevance_score`` (the ranking score, as
LangChain's Cohere reranker sets it), ``cosine``, ``quantum`` and ``quantum_kind``
(:class:`qrerank.RankedDoc`), and ``log_fidelity``, the 0.1 name of ``quantum``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qrerank._optional import require
from qrerank.embed.models import DEFAULT_MODEL
from qrerank.rerank.reranker import Reranker

require("langchain_core", "langchain")

from langchain_core.documents import BaseDocumentCompressor  # noqa: E402
from pydantic import ConfigDict  # noqa: E402


class QrerankCompressor(BaseDocumentCompressor):
    """Keep the ``top_n`` documents most relevant to the query, best first.

    Args:
        reranker: a :class:`qrerank.Reranker`; default: one built from ``model`` on first use.
        model: encoder name used when no reranker is given.
        top_n: documents kept (None keeps all, reordered).
        method: "cosine", "fidelity" or "hybrid"; None uses the reranker's.
        alpha: hybrid weight of cosine; None uses the reranker's.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    reranker: Any = None
    model: str = DEFAULT_MODEL
    top_n: int | None = 3
    method: str | None = None
    alpha: float | None = None

    def _get_reranker(self) -> Reranker:
        if self.reranker is None:
            self.reranker = Reranker(self.model)
        return self.reranker

    def compress_documents(
        self, documents: Sequence[Any], query: str, callbacks: Any = None
    ) -> Sequence[Any]:
        if not documents:
            return []
        hits = self._get_reranker().rank(
            query,
            [doc.page_content for doc in documents],
            top_n=self.top_n,
            method=self.method,
            alpha=self.alpha,
        )
        out = []
        for hit in hits:
            doc = documents[hit.index]
            scores = {
                "relevance_score": hit.score,
                "cosine": hit.cosine,
                "quantum": hit.quantum,
                "quantum_kind": hit.quantum_kind,
                "log_fidelity": hit.quantum,
            }
            out.append(doc.model_copy(update={"metadata": {**doc.metadata, **scores}}))
        return out
