"""Vector indexes (exact, FAISS) and the on-disk document index directory.

Indexes must come from trusted sources: loading validates every file, but FAISS files are not
a safe format to parse from strangers.
"""

from qrerank.index.base import VectorIndex
from qrerank.index.build import build_index_from_embeddings
from qrerank.index.directory import DocumentIndex, build_index, verify_index
from qrerank.index.exact import ExactIndex
from qrerank.index.update import append_documents, delete_documents

__all__ = [
    "DocumentIndex",
    "ExactIndex",
    "VectorIndex",
    "append_documents",
    "build_index",
    "build_index_from_embeddings",
    "delete_documents",
    "verify_index",
]
