"""Base class of trainable heads, and the simplest one: Bloch encoding with a learnable tau."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn

from qrerank.core.encoding import bloch_angles, bloch_states, default_tau
from qrerank.core.similarity import Form, Kind, similarity, similarity_matrix


class Head(nn.Module):
    """A map from embeddings ``[..., in_dim]`` to ``[..., out_dim]`` vectors or product states.

    ``kind == "vector"`` outputs ``[..., out_dim]`` compared by cosine; ``kind == "state"``
    outputs ``[..., out_dim, 2]`` qubit amplitudes compared by fidelity.
    """

    name: ClassVar[str]
    kind: ClassVar[Kind]
    in_dim: int
    out_dim: int

    def get_config_dict(self) -> dict[str, Any]:
        """Constructor kwargs: ``type(self)(**cfg)`` rebuilds the architecture."""
        raise NotImplementedError

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def similarity(self, q: torch.Tensor, d: torch.Tensor, form: Form = "log") -> torch.Tensor:
        """Pairwise (broadcast) similarity of the outputs: ``[..., in_dim] x [..., in_dim] -> [...]``.

        Cosine of vector outputs, log F (or F, ``form="linear"``) of state outputs: the one
        formula by which a head scores, in training validation, eval, STS-B and reranking.
        """
        return similarity(self(q), self(d), self.kind, form)

    def similarity_matrix(self, q: torch.Tensor, d: torch.Tensor, form: Form = "log") -> torch.Tensor:
        """All-pairs :meth:`similarity`: ``[Q, in_dim] x [D, in_dim] -> [Q, D]`` (batched kernels)."""
        return similarity_matrix(self(q), self(d), self.kind, form)


class LearnableTau(nn.Module):
    """A positive temperature stored as log(tau) so gradient steps keep it positive."""

    def __init__(self, tau: float, learn: bool = True) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau}")
        self.log_tau = nn.Parameter(torch.tensor(math.log(tau)), requires_grad=learn)

    def forward(self) -> torch.Tensor:
        return self.log_tau.exp()


class BlochHead(Head):
    """No projection: the paper's Bloch encoding with a learnable temperature (1 parameter).

    ``[..., d] -> [..., d, 2]``, theta = tanh(u/tau) pi/2 + pi/2, phi = pi.
    """

    name = "bloch"
    kind = "state"

    def __init__(self, in_dim: int, tau: float | None = None, learn_tau: bool = True) -> None:
        super().__init__()
        self.in_dim = self.out_dim = in_dim
        self.tau = LearnableTau(tau if tau is not None else default_tau(in_dim), learn_tau)
        self._learn_tau = learn_tau

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return bloch_states(bloch_angles(u, self.tau()))

    def get_config_dict(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim, "tau": float(self.tau().detach()), "learn_tau": self._learn_tau}


class IdentityHead(Head):
    """No projection and no parameters: the embedding itself, compared by cosine.

    ``[..., d] -> [..., d]``. With ``qrerank train --head cosine --train-layers N`` it is the
    paper's BT baseline (the encoder trained with cosine logits, nothing on top).
    """

    name = "identity"
    kind = "vector"

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.in_dim = self.out_dim = in_dim

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u

    def get_config_dict(self) -> dict[str, Any]:
        return {"in_dim": self.in_dim}
