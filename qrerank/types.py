"""Typed results shared by the reranker, the search pipeline, the CLI and the service."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

QuantumKind = Literal["log_fidelity", "head_cosine"]
"""What :attr:`RankedDoc.quantum` holds: log F of product states (the Bloch encoding, or a state
head's output states), or the cosine of a vector head's projections."""


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
    value the ranking was sorted by, ``cosine`` (of the embeddings) and ``quantum`` the two raw
    signals, ``quantum_kind`` what ``quantum`` is (``log_fidelity`` of the states, or
    ``head_cosine`` with a vector head), and ``bm25`` the document's BM25 score when a lexical
    search method ranked it (else None).
    """

    index: int
    rank: int
    score: float
    cosine: float
    quantum: float
    quantum_kind: QuantumKind = "log_fidelity"
    text: str
    doc_id: str = ""
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    bm25: float | None = None

    @property
    def log_fidelity(self) -> float:
        """Deprecated alias of :attr:`quantum` (which is a cosine for vector heads)."""
        warnings.warn(
            "RankedDoc.log_fidelity is deprecated: read .quantum (and .quantum_kind)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.quantum

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; ``log_fidelity`` repeats ``quantum`` for readers of the 0.1 format."""
        extra = {"bm25": self.bm25} if self.bm25 is not None else {}
        return {
            "index": self.index,
            "rank": self.rank,
            "score": self.score,
            "cosine": self.cosine,
            "quantum": self.quantum,
            "quantum_kind": self.quantum_kind,
            "log_fidelity": self.quantum,
            "doc_id": self.doc_id,
            "title": self.title,
            "text": self.text,
            "metadata": self.metadata,
            **extra,
        }
