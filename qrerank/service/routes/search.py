"""``/search``: retrieve candidates from the loaded index, rerank them, return the best."""

from __future__ import annotations

from fastapi import APIRouter

from qrerank.service import schemas as s
from qrerank.service.engine import Hit, finite
from qrerank.service.routes._deps import POST, EngineDep

router = APIRouter(tags=["search"])


def _hit(h: Hit) -> s.SearchHit:
    return s.SearchHit(
        index=h.doc.index,
        rank=h.doc.rank,
        doc_id=h.doc.doc_id,
        title=h.doc.title,
        text=h.doc.text,
        metadata=h.doc.metadata,
        score=finite(h.doc.score),
        relevance_score=h.relevance,
        **h.signals(),
        bm25=finite(h.doc.bm25) if h.doc.bm25 is not None else None,
    )


@router.post("/search", response_model=s.SearchResponse, **POST)
async def search(body: s.SearchRequest, engine: EngineDep) -> s.SearchResponse:
    """Retrieve ``k`` candidates from the loaded index by cosine, rerank, return ``top_n``.

    ``method: lexical`` ranks the BM25 top-k instead; ``fused`` fuses the dense and the BM25
    rankings over the union of both top-k lists (``fusion``, ``lexical_weight``).
    """
    hits = await engine.search(
        body.query, k=body.k, top_n=body.top_n, method=body.method, alpha=body.alpha,
        lexical_weight=body.lexical_weight, fusion=body.fusion,
    )  # fmt: skip
    return s.SearchResponse(
        model=engine.reranker.encoder.name,
        method=engine.search_method(body.method),
        results=[_hit(h) for h in hits],
    )
