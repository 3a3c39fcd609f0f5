"""Typed results shared by the reranker, the search pipeline, the CLI and the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """A document to index or rerank. ``doc_id`` is the caller's id (defaults to its position)."""

    text: str
    doc_id: str = ""
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content(self) -> str:
        """The text that is embedded: title and body, as BEIR models are evaluated."""
        return f"{self.title} {self.text}".strip() if self.title else self.text


@dataclass(frozen=True, slots=True, kw_only=True)
class RankedDoc:
    """One reranked document.

    ``index`` is the position in the caller's input list (Cohere/TEI semantics), ``score`` the
    value the ranking was sorted by, ``cosine`` and ``log_fidelity`` the two raw signals, and
    ``bm25`` the document's BM25 score when a lexical search method ranked it (else None).
    """

    index: int
    rank: int
    score: float
    cosine: float
    log_fidelity: float
    text: str
    doc_id: str = ""
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    bm25: float | None = None

    def to_dict(self) -> dict[str, Any]:
        extra = {"bm25": self.bm25} if self.bm25 is not None else {}
        return {
            "index": self.index,
            "rank": self.rank,
            "score": self.score,
            "cosine": self.cosine,
            "log_fidelity": self.log_fidelity,
            "doc_id": self.doc_id,
            "title": self.title,
            "text": self.text,
            "metadata": self.metadata,
            **extra,
        }
