"""The head-kind registry: every kind once, aliases build the same head, saved heads still load."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import qrerank.core
from qrerank.cli import build_parser
from qrerank.core.head import Head
from qrerank.errors import InputError
from qrerank.heads.io import HEAD_FIELDS, HEADS, load_head, make_head
from qrerank.heads.kinds import HEAD_KINDS, HEAD_NAMES, head_kind
from qrerank.train.trainer import TrainConfig, build_head

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "heads_v1"
KINDS = ("bloch", "identity", "linear", "qbec", "qbec-mix", "angle", "rotation")
V1_KINDS = ("bloch", "identity", "linear", "qbec", "angle", "rotation")  # in tests/fixtures/heads_v1
ALIASES = {"none": "bloch", "cosine": "identity"}  # the names training used before the registry


def _head_classes() -> set[type[Head]]:
    """Every Head subclass with a name in qrerank.core (its modules imported first)."""
    for mod in pkgutil.iter_modules(qrerank.core.__path__):
        importlib.import_module(f"qrerank.core.{mod.name}")
    found, todo = set(), [Head]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("qrerank.core.") and "name" in vars(sub):
                found.add(sub)
    return found


def test_the_registry_lists_every_kind_once() -> None:
    assert tuple(HEAD_KINDS) == KINDS
    assert {k.head for k in HEAD_KINDS.values()} == _head_classes()
    assert all(name == k.head.name for name, k in HEAD_KINDS.items())
    assert set(HEADS) == set(HEAD_FIELDS) == set(KINDS)  # the loader's classes and schema agree
    names = {**{k: k for k in KINDS}, **ALIASES}
    assert names == HEAD_NAMES


@pytest.mark.parametrize(("alias", "name"), sorted(ALIASES.items()))
def test_an_alias_builds_the_same_head_as_the_canonical_name(alias: str, name: str) -> None:
    assert head_kind(alias) is head_kind(name)
    torch.manual_seed(0)
    a = build_head(alias, 8, 4)
    torch.manual_seed(0)
    b = build_head(name, 8, 4)
    assert type(a) is type(b) and a.name == name
    assert a.get_config_dict() == b.get_config_dict()
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert type(make_head(alias, in_dim=8)) is type(a)


@pytest.mark.parametrize("name", [*KINDS, *ALIASES])
def test_train_config_and_the_cli_accept_every_name(name: str) -> None:
    layers = 1 if head_kind(name).name == "identity" else 0  # identity has nothing else to train
    assert TrainConfig(head=name, train_layers=layers).head == name  # recorded as given
    args = build_parser().parse_args(["train", "data", "--out", "o", "--head", name])
    assert args.head == name


@pytest.mark.parametrize("name", ["identity", "cosine"])
def test_identity_without_train_layers_is_refused_by_either_name(name: str) -> None:
    with pytest.raises(InputError, match=f"--head {name} has no parameters"):
        TrainConfig(head=name)


def test_out_dim_applies_only_to_the_projecting_kinds() -> None:
    for name, kind in HEAD_KINDS.items():
        head = build_head(name, 8, 4)
        assert head.out_dim == (4 if kind.takes_out_dim else 8), name


@pytest.mark.parametrize(
    "make",
    [
        lambda: build_head("bogus", 8, 4),
        lambda: TrainConfig(head="bogus"),
        lambda: make_head("bogus", in_dim=8),
        lambda: head_kind("bogus"),
    ],
)
def test_an_unknown_kind_names_the_choices(make: object) -> None:
    with pytest.raises(InputError, match="unknown head 'bogus'") as err:
        make()  # type: ignore[operator]
    assert all(n in str(err.value) for n in HEAD_NAMES)


def test_the_cli_refuses_an_unknown_kind_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "data", "--out", "o", "--head", "bogus"])
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and all(n in err for n in HEAD_NAMES)


@pytest.mark.parametrize("name", V1_KINDS)
def test_saved_heads_of_every_kind_still_load(name: str) -> None:
    """tests/fixtures/heads_v1: written before the registry; same head, same outputs."""
    head = load_head(FIXTURES / name, in_dim=6)
    assert type(head) is HEAD_KINDS[name].head
    outputs = load_file(str(FIXTURES / "outputs.safetensors"))
    with torch.no_grad():
        y = head(outputs["input"])
    y = torch.view_as_real(y) if y.is_complex() else y
    torch.testing.assert_close(y, outputs[name])
