"""Blocks, product statevectors and shot statistics: torch only, hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from qrerank.quantum.product import (
    FLOOR,
    MAX_BLOCK,
    bernoulli_variance,
    blocks,
    combine_blocks,
    product_statevector,
)


def test_blocks_cover_the_qubits() -> None:
    assert blocks(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert blocks(3, 8) == [slice(0, 3)]
    with pytest.raises(ValueError, match="block_size"):
        blocks(4, MAX_BLOCK + 1)
    with pytest.raises(ValueError, match="qubit"):
        blocks(0)


def test_product_statevector_endianness() -> None:
    zero, one = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    states = torch.stack((one, zero, zero))  # qubit 0 in |1>
    # big-endian |100> is index 4; little-endian (qubit 0 = least significant bit) is index 1
    assert product_statevector(states, little_endian=False).argmax() == 4
    assert product_statevector(states, little_endian=True).argmax() == 1


def test_combine_blocks_hand_computed() -> None:
    est = combine_blocks(torch.tensor([[0.5, 0.8]]), torch.tensor([[0.01, 0.04]]), shots=100)
    # mean 0.5 * 0.8; Var = (0.25 + 0.01)(0.64 + 0.04) - 0.4^2 = 0.1768 - 0.16
    torch.testing.assert_close(est.fidelity, torch.tensor([0.4]))
    torch.testing.assert_close(est.stderr, torch.tensor([math.sqrt(0.0168)]))
    assert est.n_blocks == 2 and est.shots == 100


def test_zero_estimate_is_floored_in_log() -> None:
    est = combine_blocks(torch.tensor([[0.0, 0.9]]), torch.zeros(1, 2), shots=10)
    torch.testing.assert_close(est.log_fidelity(), torch.tensor([math.log(FLOOR)]))


def test_bernoulli_variance() -> None:
    expected = torch.tensor([0.25 * 0.75 / 48])
    torch.testing.assert_close(bernoulli_variance(torch.tensor([0.25]), 48), expected)
    with pytest.raises(ValueError, match="shots"):
        bernoulli_variance(torch.tensor([0.5]), 0)
