"""qrerank: quantum-inspired semantic reranking for retrieval-augmented generation.

Embeddings become separable qubit states on the Bloch sphere (arXiv 2501.04591) and candidates
are ranked by state fidelity, cosine, or a blend of both.

>>> from qrerank import Reranker
>>> rr = Reranker(method="hybrid", alpha=0.5)                         # doctest: +SKIP
>>> rr.rank("what is a qubit?", ["A qubit is ...", "Paris is ..."])   # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Document",
    "DocumentIndex",
    "RankedDoc",
    "Reranker",
    "SearchPipeline",
    "__version__",
    "build_index",
    "load_encoder",
    "load_head",
]

# Public names resolve lazily so `import qrerank` stays light (no torch/faiss/ST import cost
# for the CLI's --help) and optional backends load only when used.
_LAZY = {
    "Document": "qrerank.types",
    "RankedDoc": "qrerank.types",
    "DocumentIndex": "qrerank.index.directory",
    "build_index": "qrerank.index.directory",
    "Reranker": "qrerank.rerank.reranker",
    "SearchPipeline": "qrerank.rerank.pipeline",
    "load_encoder": "qrerank.embed.models",
    "load_head": "qrerank.heads.io",
}

if TYPE_CHECKING:
    from qrerank.embed.models import load_encoder
    from qrerank.heads.io import load_head
    from qrerank.index.directory import DocumentIndex, build_index
    from qrerank.rerank.pipeline import SearchPipeline
    from qrerank.rerank.reranker import Reranker
    from qrerank.types import Document, RankedDoc


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qrerank' has no attribute {name!r}")
