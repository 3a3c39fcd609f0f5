"""Contrastive loss for heads: softmax cross-entropy over one positive and N hard negatives.

For a query ``q`` with positive ``d+`` and hard negatives ``d1- .. dN-``::

    logits_j = scale * sim(h(q), h(d_j)),   j = 0 (positive), 1..N (negatives)
    loss     = -log softmax(logits)_0 = -scale * sim(q, d+) + log sum_j exp(scale * sim(q, d_j))

``sim`` is the head's similarity (:func:`qrerank.core.similarity.similarity`): cosine for
``kind == "vector"`` heads; for ``kind == "state"`` heads either the fidelity ``F`` of the
product states (``form="linear"``; the paper trains on ``20 * F``) or ``log F`` (``form="log"``),
which does not saturate to 0 when many qubits make F tiny.

Reference: "Quantum-inspired Embeddings Projection and Similarity Metrics for Representation
Learning", arXiv 2501.04591 (BEC / QBEC heads, logits 20 * F). The same loss with cosine is
the multiple-negatives ranking loss of sentence-transformers (scale 20).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as nnf
from torch import nn

from qrerank.core.head import Head
from qrerank.core.similarity import Form, similarity


class HardNegativeLoss(nn.Module):
    """``(query [B, d], docs [B, 1 + N, d]) -> scalar``; ``docs[:, 0]`` is the positive.

    Inputs are encoder embeddings: the head is applied inside, so the loss owns the
    head's similarity ``kind`` and the chosen ``form``.
    """

    def __init__(self, head: Head, *, scale: float = 20.0, form: Form = "log") -> None:
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        if form not in ("log", "linear"):
            raise ValueError(f"unknown similarity form {form!r}; choose 'log' or 'linear'")
        self.head, self.scale, self.form = head, scale, form

    def logits(self, query: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
        """``[B, 1 + N]`` scaled similarities of each query to its candidates."""
        hq = self.head(query).unsqueeze(1)  # [B, 1, ...]
        hd = self.head(docs)  # [B, 1 + N, ...]
        return self.scale * similarity(hq, hd, self.head.kind, self.form)

    def forward(self, query: torch.Tensor, docs: torch.Tensor) -> torch.Tensor:
        logits = self.logits(query, docs)
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return nnf.cross_entropy(logits, target)

    def get_config_dict(self) -> dict[str, Any]:
        return {"loss": "softmax_ce_hard_negatives", "scale": self.scale, "form": self.form}
