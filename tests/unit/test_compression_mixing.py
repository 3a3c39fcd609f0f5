"""QBEC's optional input mixing: a fixed random orthogonal rotation before the cascade (qbec-mix)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from qrerank.core.compression import MixingCompressionHead, QuantumCompressionHead, random_orthogonal
from qrerank.core.encoding import default_tau
from qrerank.heads.io import load_head, save_head
from qrerank.train.trainer import build_head


def _pair(in_dim: int, out_dim: int, seed: int = 0) -> tuple[QuantumCompressionHead, QuantumCompressionHead]:
    """An unmixed and a mixed head with the same gates and tau (init_std 1: gates far from I)."""
    torch.manual_seed(seed)
    plain = QuantumCompressionHead(in_dim, out_dim, init_std=1.0)
    torch.manual_seed(seed)
    mixed = MixingCompressionHead(in_dim, out_dim, init_std=1.0, mixing_seed=seed)
    return plain, mixed


@pytest.mark.parametrize("dim", [1, 5, 384])
def test_rotation_is_orthogonal_and_fixed_by_its_seed(dim: int) -> None:
    r = random_orthogonal(dim, seed=3)
    assert r.shape == (dim, dim) and r.dtype == torch.float32
    torch.testing.assert_close(r @ r.T, torch.eye(dim), atol=1e-5, rtol=0)
    torch.testing.assert_close(r.T @ r, torch.eye(dim), atol=1e-5, rtol=0)
    assert torch.equal(r, random_orthogonal(dim, seed=3))
    if dim > 1:
        assert not torch.allclose(r, random_orthogonal(dim, seed=4))


def test_rotation_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(11)
    expected = torch.randn(3)
    torch.manual_seed(11)
    random_orthogonal(16, seed=0)
    assert torch.equal(torch.randn(3), expected)


def test_mixing_none_is_the_paper_head() -> None:
    """Default and mixing="none": same weights, same outputs, no extra tensor in the state dict."""
    torch.manual_seed(0)
    default = QuantumCompressionHead(12, 4)
    torch.manual_seed(0)
    none = QuantumCompressionHead(12, 4, mixing="none")
    assert default.rotation is None and none.rotation is None
    assert set(default.state_dict()) == {"tau.log_tau", "raw"}  # what heads_v1 saved
    u = torch.randn(5, 12)
    assert torch.equal(default(u), none(u))
    assert default.mix(u) is u


def test_mixed_head_is_the_unmixed_head_on_rotated_input() -> None:
    plain, mixed = _pair(12, 4)
    assert torch.equal(plain.raw, mixed.raw)  # the rotation does not draw from the global RNG
    assert mixed.rotation is not None
    u = torch.randn(7, 12)
    torch.testing.assert_close(mixed(u), plain(u @ mixed.rotation), atol=0, rtol=0)
    assert not torch.allclose(mixed(u), plain(u))


@pytest.mark.parametrize(("in_dim", "out_dim"), [(12, 4), (10, 4), (384, 128)])
def test_output_is_a_separable_state_of_unit_qubits(in_dim: int, out_dim: int) -> None:
    head = MixingCompressionHead(in_dim, out_dim)
    u = torch.nn.functional.normalize(torch.randn(3, in_dim), dim=-1)
    y = head(u)
    assert y.shape == (3, out_dim, 2) and not y.is_complex()
    torch.testing.assert_close(y.norm(dim=-1), torch.ones(3, out_dim), atol=1e-5, rtol=0)


def test_trainable_parameters_are_unchanged_by_mixing() -> None:
    plain, mixed = QuantumCompressionHead(384, 128), build_head("qbec-mix", 384, 128)
    assert plain.num_parameters() == mixed.num_parameters() == 2 * 3 * 128 * 4 + 1  # gates + tau
    assert mixed.rotation is not None and not mixed.rotation.requires_grad
    assert "rotation" in dict(mixed.named_buffers())
    # an orthogonal R keeps |u|, so the per-coordinate scale default_tau assumes is unchanged
    assert float(mixed.tau().detach()) == pytest.approx(default_tau(384))
    u = torch.nn.functional.normalize(torch.randn(200, 384), dim=-1)
    torch.testing.assert_close(mixed.mix(u).norm(dim=-1), torch.ones(200), atol=1e-5, rtol=0)


def test_save_and_load_give_the_same_head(tmp_path: Path) -> None:
    head = MixingCompressionHead(12, 4, mixing_seed=7)
    with torch.no_grad():
        head.raw.add_(0.3)  # trained-looking weights, not the seeded init
    folder = save_head(head, tmp_path / "h")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["head"] == "qbec-mix"
    assert cfg["config"]["mixing"] == "orthogonal" and cfg["config"]["mixing_seed"] == 7
    assert cfg["parameters"] == head.num_parameters()
    loaded = load_head(folder, in_dim=12)
    assert type(loaded) is MixingCompressionHead and loaded.get_config_dict() == head.get_config_dict()
    assert loaded.rotation is not None and head.rotation is not None
    assert torch.equal(loaded.rotation, head.rotation)
    u = torch.randn(4, 12)
    with torch.no_grad():
        assert torch.equal(loaded(u), head(u))


def test_a_saved_rotation_is_the_one_used(tmp_path: Path) -> None:
    """The buffer, not the seed, decides: a loaded head keeps the exact R it was saved with."""
    head = MixingCompressionHead(12, 4)
    assert head.rotation is not None
    head.rotation.copy_(random_orthogonal(12, seed=99))
    loaded = load_head(save_head(head, tmp_path / "h"))
    assert loaded.rotation is not None
    assert torch.equal(loaded.rotation, random_orthogonal(12, seed=99))


def test_gradients_reach_the_gates_tau_and_input_but_not_the_rotation() -> None:
    head = MixingCompressionHead(12, 4, init_std=1.0)
    q, d = torch.randn(3, 12, requires_grad=True), torch.randn(3, 12)
    head.similarity(q, d).sum().backward()
    assert head.raw.grad is not None and head.raw.grad.abs().sum() > 0
    assert head.tau.log_tau.grad is not None and head.tau.log_tau.grad != 0
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert head.rotation is not None and head.rotation.grad is None


def test_gradcheck_float64() -> None:
    head = MixingCompressionHead(6, 2, init_std=1.0).double()
    u = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: head(x), (u,))


def _moved_qubits(head: QuantumCompressionHead, u: torch.Tensor, dim: int) -> set[int]:
    """The output qubits whose state changes when input dimension ``dim`` is nudged."""
    du = torch.zeros_like(u)
    du[dim] = 0.05
    with torch.no_grad():
        change = (head(u + du) - head(u)).abs().amax(dim=-1)
    return {i for i, c in enumerate(change.tolist()) if c > 1e-7}


@pytest.mark.parametrize(("in_dim", "out_dim"), [(12, 4), (10, 4)])
def test_without_mixing_one_input_moves_one_qubit_with_mixing_all(in_dim: int, out_dim: int) -> None:
    """The cascade never mixes positions: dimension j reaches output qubit j mod k only, so each
    qubit sees ceil(d/k) dimensions. After the rotation every dimension reaches every qubit."""
    plain, mixed = _pair(in_dim, out_dim, seed=1)
    u = torch.nn.functional.normalize(torch.randn(in_dim), dim=0)
    for j in range(in_dim):
        assert _moved_qubits(plain, u, j) == {j % out_dim}, j
        assert _moved_qubits(mixed, u, j) == set(range(out_dim)), j
    seen = [sum(1 for j in range(in_dim) if j % out_dim == i) for i in range(out_dim)]
    assert max(seen) == math.ceil(in_dim / out_dim)


def test_unknown_mixing_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown mixing 'hadamard'; choose one of none, orthogonal"):
        QuantumCompressionHead(12, 4, mixing="hadamard")


def test_the_shape_check_on_meta_computes_no_rotation() -> None:
    """load_head sizes a head on the meta device before its config's size is checked."""
    with torch.device("meta"):
        head = MixingCompressionHead(64, 8)
    assert head.rotation is not None and head.rotation.device.type == "meta"
    assert head.rotation.shape == (64, 64)


def test_the_cli_trains_qbec_mix() -> None:
    from qrerank.cli import build_parser

    assert build_parser().parse_args(["train", "data", "--out", "o", "--head", "qbec-mix"]).head == "qbec-mix"
