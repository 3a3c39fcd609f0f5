"""Vector indexes (exact, FAISS) and the on-disk document index directory.

Indexes must come from trusted sources: loading validates every file, but FAISS files are not
a safe format to parse from strangers.
"""

from qrerank.index.base import VectorIndex
from qrerank.index.directory import DocumentIndex, build_index
from qrerank.index.exact import ExactIndex

__all__ = ["DocumentIndex", "ExactIndex", "VectorIndex", "build_index"]
