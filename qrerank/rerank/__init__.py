"""Reranking: score candidates by cosine, fidelity or a blend; retrieve-then-rerank pipeline."""

from qrerank.rerank.methods import METHODS
from qrerank.rerank.pipeline import SearchPipeline
from qrerank.rerank.reranker import Reranker
from qrerank.rerank.scoring import Scores, score_candidates

__all__ = ["METHODS", "Reranker", "Scores", "SearchPipeline", "score_candidates"]
