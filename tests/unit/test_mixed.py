"""Mixed-state PRF queries (qrerank.core.mixed) against explicit density matrices."""

from __future__ import annotations

import pytest
import torch

from qrerank.core.encoding import bloch_states
from qrerank.core.fidelity import log_fidelity_angles_matrix
from qrerank.core.mixed import log_fidelity_mixed_matrix, mixed_bloch_vectors


def _angles(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen, dtype=torch.float64) * torch.pi


def test_beta_zero_is_the_pure_state_log_fidelity() -> None:
    gen = torch.Generator().manual_seed(0)
    q, fb, d = _angles(gen, 3, 16), _angles(gen, 3, 4, 16), _angles(gen, 7, 16)
    r = mixed_bloch_vectors(q, fb, 0.0)
    torch.testing.assert_close(log_fidelity_mixed_matrix(*r, d), log_fidelity_angles_matrix(q, d))


@pytest.mark.parametrize("beta", [0.2, 0.5, 1.0])
def test_matches_the_density_matrix_expectation(beta: float) -> None:
    gen = torch.Generator().manual_seed(1)
    n, m = 5, 3
    q, fb, d = _angles(gen, 2, n), _angles(gen, 2, m, n), _angles(gen, 4, n)
    got = log_fidelity_mixed_matrix(*mixed_bloch_vectors(q, fb, beta), d, chunk=3)

    def proj(theta: torch.Tensor) -> torch.Tensor:  # [..., n] -> [..., n, 2, 2] pure-state projectors
        s = bloch_states(theta).to(torch.complex128)
        return s[..., :, None] * s[..., None, :].conj()

    for a in range(2):
        rho = (1 - beta) * proj(q[a]) + beta * proj(fb[a]).mean(0)  # [n, 2, 2]
        assert torch.allclose(torch.einsum("nii->n", rho).real, torch.ones(n, dtype=torch.float64))
        for b in range(4):
            s = bloch_states(d[b]).to(torch.complex128)
            expect = torch.einsum("ni,nij,nj->n", s.conj(), rho, s).real.log().sum()
            assert got[a, b].item() == pytest.approx(expect.item(), rel=1e-10)


def test_rejects_bad_beta_and_shapes() -> None:
    q = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="beta"):
        mixed_bloch_vectors(q, torch.zeros(2, 3, 4), 1.5)
    with pytest.raises(ValueError, match=r"\[Q, m, n\]"):
        mixed_bloch_vectors(q, torch.zeros(2, 4), 0.5)
    with pytest.raises(ValueError, match="shapes"):
        log_fidelity_mixed_matrix(q, q, torch.zeros(3, 5))
