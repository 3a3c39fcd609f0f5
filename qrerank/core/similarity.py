"""Similarity of head outputs: cosine for vectors, (log-)fidelity for product states.

Two forms of the quantum similarity:
- ``"log"``: log F (sum of per-qubit log-overlaps). Does not saturate at large n.
- ``"linear"``: F itself, as in the paper's training logits 20 * F (arXiv 2501.04591).
  With hundreds of qubits F is ~0 for all but near-duplicates, so its gradient vanishes.
Both are monotone in F, so they rank one candidate list identically; they differ as training
logits and inside a blend.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as nnf

from qrerank.core.fidelity import log_fidelity, log_fidelity_matrix

Form = Literal["log", "linear"]
Kind = Literal["vector", "state"]


def cosine_matrix(q: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``[Q, dim] x [D, dim] -> [Q, D]``."""
    return nnf.normalize(q, dim=-1) @ nnf.normalize(d, dim=-1).T


def _form(log_f: torch.Tensor, form: Form) -> torch.Tensor:
    if form == "log":
        return log_f
    if form == "linear":
        return torch.exp(log_f)
    raise ValueError(f"unknown similarity form {form!r}; choose 'log' or 'linear'")


def similarity_matrix(q: torch.Tensor, d: torch.Tensor, kind: Kind, form: Form = "log") -> torch.Tensor:
    """All-pairs similarity of head outputs: ``[Q, ...] x [D, ...] -> [Q, D]``."""
    if kind == "vector":
        return cosine_matrix(q, d)
    if kind == "state":
        return _form(log_fidelity_matrix(q, d), form)
    raise ValueError(f"unknown output kind {kind!r}")


def similarity(a: torch.Tensor, b: torch.Tensor, kind: Kind, form: Form = "log") -> torch.Tensor:
    """Pairwise (broadcast) similarity of head outputs: ``[..., *] x [..., *] -> [...]``."""
    if kind == "vector":
        return nnf.cosine_similarity(a, b, dim=-1)
    if kind == "state":
        return _form(log_fidelity(a, b), form)
    raise ValueError(f"unknown output kind {kind!r}")
