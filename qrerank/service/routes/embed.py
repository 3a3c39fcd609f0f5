"""``/embed``: unit embeddings of texts, optionally with their Bloch angles."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from qrerank.service import schemas as s
from qrerank.service.routes._deps import POST, EngineDep

router = APIRouter(tags=["embed"])


@router.post("/embed", response_model=s.EmbedResponse, **POST)
async def embed(body: s.EmbedRequest, engine: EngineDep) -> s.EmbedResponse:
    """Embeddings of ``texts`` (unit vectors), optionally with their Bloch angles."""
    emb, theta, tau = await engine.embed(body.texts, tau=body.tau, angles=body.angles, truncate=body.truncate)
    return s.EmbedResponse(
        model=engine.reranker.encoder.name,
        dim=int(emb.shape[1]),
        tau=tau if body.angles else None,
        data=[
            s.Embedding(
                index=i,
                embedding=np.nan_to_num(row).tolist(),
                angles=None if theta is None else np.nan_to_num(theta[i]).tolist(),
            )
            for i, row in enumerate(emb)
        ],
    )
