"""LlamaIndex node postprocessor [llamaindex]: rerank retrieved nodes with qrerank.

>>> engine = index.as_query_engine(similarity_top_k=20,                        # doctest: +SKIP
...     node_postprocessors=[QrerankPostprocessor(top_n=3, method="hybrid")])

Returned nodes carry the ranking score as ``NodeWithScore.score``; the node text is read as
LlamaIndex's own rerankers read it (``get_content(metadata_mode=MetadataMode.EMBED)``).
"""

from __future__ import annotations

from typing import Any

from qrerank._optional import require
from qrerank.embed.models import DEFAULT_MODEL
from qrerank.rerank.reranker import Reranker

require("llama_index.core", "llamaindex")

from llama_index.core.bridge.pydantic import PrivateAttr  # noqa: E402
from llama_index.core.postprocessor.types import BaseNodePostprocessor  # noqa: E402
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle  # noqa: E402


class QrerankPostprocessor(BaseNodePostprocessor):
    """Keep the ``top_n`` nodes most relevant to the query, best first.

    Args:
        reranker: a :class:`qrerank.Reranker`; default: one built from ``model`` on first use.
        model: encoder name used when no reranker is given.
        top_n: nodes kept (None keeps all, reordered).
        method: "cosine", "fidelity" or "hybrid"; None uses the reranker's.
        alpha: hybrid weight of cosine; None uses the reranker's.
    """

    model: str = DEFAULT_MODEL
    top_n: int | None = 3
    method: str | None = None
    alpha: float | None = None
    _reranker: Any = PrivateAttr(default=None)

    def __init__(self, reranker: Reranker | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._reranker = reranker

    @classmethod
    def class_name(cls) -> str:
        return "QrerankPostprocessor"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("QrerankPostprocessor needs the query (query_bundle)")
        if not nodes:
            return []
        if self._reranker is None:
            self._reranker = Reranker(self.model)
        texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
        hits = self._reranker.rank(
            query_bundle.query_str, texts, top_n=self.top_n, method=self.method, alpha=self.alpha
        )
        return [NodeWithScore(node=nodes[h.index].node, score=h.score) for h in hits]
