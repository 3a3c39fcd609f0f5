"""Rerank routes: ``/v1/rerank`` ``/v2/rerank`` (Cohere), ``/tei/rerank`` (TEI), ``/rerank`` (either)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import Discriminator, Tag

from qrerank.service import schemas as s
from qrerank.service.engine import Engine, Hit, finite
from qrerank.service.routes._deps import POST, EngineDep

router = APIRouter(tags=["rerank"])


def _shape(body: Any) -> str:
    if isinstance(body, dict):
        return "tei" if "texts" in body and "documents" not in body else "cohere"
    return "tei" if isinstance(body, s.TEIRerankRequest) else "cohere"


# The tags are errors.UNION_TAGS, which a validation error's field name leaves out.
AnyRerankRequest = Annotated[
    Annotated[s.CohereRerankRequest, Tag("cohere")] | Annotated[s.TEIRerankRequest, Tag("tei")],
    Discriminator(_shape),
]


def _cohere(
    hits: list[Hit], engine: Engine, method: Any, alpha: Any, return_documents: bool
) -> s.CohereRerankResponse:
    m = engine.method(method)
    return s.CohereRerankResponse(
        id=str(uuid.uuid4()),
        results=[
            s.CohereResult(
                index=h.doc.index,
                relevance_score=h.relevance,
                document=s.RerankDocument(text=h.doc.text) if return_documents else None,
                **h.signals(),
            )
            for h in hits
        ],
        meta=s.CohereMeta(model=engine.reranker.encoder.name, method=m, alpha=engine.alpha(alpha)),
    )


async def _cohere_rerank(engine: Engine, body: s.CohereRerankRequest) -> s.CohereRerankResponse:
    hits = await engine.rerank(
        body.query,
        body.documents,
        top_n=body.top_n,
        method=body.method,
        alpha=body.alpha,
        truncate=body.truncate,
    )
    return _cohere(hits, engine, body.method, body.alpha, body.return_documents)


async def _tei_rerank(engine: Engine, body: s.TEIRerankRequest) -> list[s.TEIRank]:
    hits = await engine.rerank(
        body.query,
        body.texts,
        method=body.method,
        alpha=body.alpha,
        truncate=body.truncate,
        left=body.truncation_direction.lower() == "left",
    )
    return [
        s.TEIRank(
            index=h.doc.index,
            score=finite(h.doc.score) if body.raw_scores else h.relevance,
            text=h.doc.text if body.return_text else None,
            **h.signals(),
        )
        for h in hits
    ]


async def cohere_rerank(body: s.CohereRerankRequest, engine: EngineDep) -> s.CohereRerankResponse:
    """Cohere-compatible rerank: results sorted by ``relevance_score`` (in [0, 1]), best first."""
    return await _cohere_rerank(engine, body)


for _version in ("v1", "v2"):
    router.add_api_route(
        f"/{_version}/rerank",
        cohere_rerank,
        methods=["POST"],
        response_model=s.CohereRerankResponse,
        operation_id=f"cohere_rerank_{_version}",
        **POST,
    )


@router.post("/tei/rerank", response_model=list[s.TEIRank], **POST)
async def tei_rerank(body: s.TEIRerankRequest, engine: EngineDep) -> list[s.TEIRank]:
    """text-embeddings-inference-compatible rerank: ``[{index, score, text?}]``, best first."""
    return await _tei_rerank(engine, body)


@router.post("/rerank", response_model=s.CohereRerankResponse | list[s.TEIRank], **POST)
async def rerank(body: AnyRerankRequest, engine: EngineDep) -> s.CohereRerankResponse | list[s.TEIRank]:
    """Cohere shape (``documents``) or TEI shape (``texts``), answered in the same shape."""
    if isinstance(body, s.TEIRerankRequest):
        return await _tei_rerank(engine, body)
    return await _cohere_rerank(engine, body)
