"""Hostile head folders: every bad config or weights file is a HeadFormatError naming the field.

Nothing is constructed or allocated before the config is validated, and no path in a config
may leave the head folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from qrerank.cli import main
from qrerank.core import AngleHead, BlochHead, LinearHead, QuantumCompressionHead
from qrerank.core.compression import MixingCompressionHead
from qrerank.core.head import Head, IdentityHead
from qrerank.errors import InputError, QrerankError
from qrerank.heads.io import (
    HEAD_FIELDS,
    HEADS,
    HeadFormatError,
    head_encoder_info,
    load_head,
    load_head_encoder,
    save_head,
)


@pytest.fixture
def head_dir(tmp_path: Path) -> Path:
    return save_head(QuantumCompressionHead(16, 4), tmp_path / "head", extra={"model": "hashing-16"})


def _config(head_dir: Path) -> dict[str, Any]:
    return json.loads((head_dir / "config.json").read_text())


def _rewrite(head_dir: Path, **changes: Any) -> None:
    """config.json with top-level keys replaced and ``config`` entries merged in."""
    cfg = _config(head_dir)
    if isinstance(changes.get("config"), dict):
        cfg["config"].update(changes.pop("config"))
    cfg.update(changes)
    (head_dir / "config.json").write_text(json.dumps(cfg))


def test_head_format_error_is_a_qrerank_input_error() -> None:
    assert issubclass(HeadFormatError, InputError) and issubclass(HeadFormatError, QrerankError)


def test_schema_covers_every_registered_head() -> None:
    assert set(HEAD_FIELDS) == set(HEADS)


@pytest.mark.parametrize(
    "head",
    [
        BlochHead(8),
        IdentityHead(8),
        LinearHead(8, 3),
        QuantumCompressionHead(8, 3),
        MixingCompressionHead(8, 3, mixing_seed=5),
        AngleHead(8, 3, hidden=5),
    ],
    ids=lambda h: h.name,
)
def test_every_head_kind_still_round_trips(head: Head, tmp_path: Path) -> None:
    loaded = load_head(save_head(head, tmp_path / "h"), in_dim=8)
    x = torch.randn(2, 8)
    with torch.no_grad():
        assert torch.allclose(loaded(x), head(x))  # complex states compare too


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[1, 2, 3]", "must hold a JSON object, not list"),
        (b'"qbec"', "must hold a JSON object, not str"),
        (b'\xff\xfe{"head": "qbec"}', "is not UTF-8 text"),
        (b"{oops", "is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "is not a valid head config \\(nested too deeply\\)"),
        (b'{"head": "qbec", "config": {"in_dim": ' + b"1" * 5000 + b"}}", "Exceeds the limit"),
    ],
    ids=["list", "string", "not-utf8", "bad-json", "deep", "5000-digits"],
)
def test_unreadable_config(head_dir: Path, raw: bytes, message: str) -> None:
    (head_dir / "config.json").write_bytes(raw)
    with pytest.raises(HeadFormatError, match=message):
        load_head(head_dir)
    with pytest.raises(HeadFormatError, match=message):  # the encoder lookup reads it first
        head_encoder_info(head_dir)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"config": {"out_dim": -1}}, "config.out_dim"),
        ({"config": {"out_dim": 0}}, "config.out_dim"),
        ({"config": {"out_dim": 1e10}}, "config.out_dim"),
        ({"config": {"out_dim": 10**10}}, "config.out_dim"),
        ({"config": {"out_dim": True}}, "config.out_dim"),
        ({"config": {"in_dim": "16"}}, "config.in_dim"),
        ({"config": {"tau": -1}}, "config.tau"),
        ({"config": {"tau": 0}}, "config.tau"),
        ({"config": {"tau": float("nan")}}, "config.tau"),
        ({"config": {"tau": float("inf")}}, "config.tau"),
        ({"config": {"learn_tau": "yes"}}, "config.learn_tau"),
        ({"config": {"init_std": float("-inf")}}, "config.init_std"),
        ({"config": {"mixing": "hadamard"}}, "config.mixing"),
        ({"config": {"mixing": ["orthogonal"]}}, "config.mixing"),
        ({"config": {"mixing_seed": -1}}, "config.mixing_seed"),
        ({"config": {"mixing_seed": 1.5}}, "config.mixing_seed"),
        ({"config": {"evil": 1}}, "unknown field config.evil"),
        ({"config": ["in_dim", 16]}, "field config must be an object"),
        ({"head": "pickle"}, "field head must be one of"),
        ({"head": ["qbec"]}, "field head must be one of"),
        ({"format_version": 99}, "field format_version is 99"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else v,
)
def test_bad_config_values_name_the_field(head_dir: Path, changes: dict[str, Any], field: str) -> None:
    _rewrite(head_dir, **changes)
    with pytest.raises(HeadFormatError, match=field.replace(".", r"\.")):
        load_head(head_dir)


def test_oversized_config_is_refused_unread(head_dir: Path) -> None:
    (head_dir / "config.json").write_bytes(b" " * (2 << 20) + b"{}")
    with pytest.raises(HeadFormatError, match="is larger than 1048576 bytes"):
        load_head(head_dir)


def test_missing_field_is_named(head_dir: Path) -> None:
    cfg = _config(head_dir)
    del cfg["config"]["out_dim"]
    (head_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(HeadFormatError, match=r"config\.out_dim is missing"):
        load_head(head_dir)


def test_cross_field_rule_of_the_head(head_dir: Path) -> None:
    _rewrite(head_dir, config={"out_dim": 16})  # qbec compresses: needs in_dim > out_dim
    with pytest.raises(HeadFormatError, match="invalid qbec head config"):
        load_head(head_dir)


def test_nothing_is_allocated_before_the_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[tuple[int, int]] = []

    class Spy(LinearHead):
        """Records every construction on a real device, and refuses to allocate it."""

        def __init__(self, in_dim: int, out_dim: int) -> None:
            if torch.empty(()).device.type != "meta":
                built.append((in_dim, out_dim))
                raise MemoryError("a test head must not really be allocated at this size")
            super().__init__(in_dim, out_dim)

    head_dir = save_head(LinearHead(16, 4), tmp_path / "h")
    monkeypatch.setitem(HEADS, "linear", Spy)
    _rewrite(head_dir, config={"out_dim": 10**10})  # past the dim bound
    with pytest.raises(HeadFormatError, match=r"config\.out_dim"):
        load_head(head_dir)
    _rewrite(head_dir, config={"in_dim": 65536, "out_dim": 65536})  # each dim fine, 4.3e9 parameters
    with pytest.raises(HeadFormatError, match="exceeds the 50,000,000 limit"):
        load_head(head_dir)
    _rewrite(head_dir, config={"in_dim": 16, "out_dim": 8})  # fits the limits, not the weights file
    with pytest.raises(HeadFormatError, match="does not match its config"):
        load_head(head_dir)
    assert built == []


def test_in_dim_is_checked_before_construction(head_dir: Path) -> None:
    with pytest.raises(HeadFormatError, match="expects 16-d embeddings but the encoder gives 384-d"):
        load_head(head_dir, in_dim=384)


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (b"", "not a valid safetensors file"),
        (b"\x00" * 64, "not a valid safetensors file"),
        (b"PK\x03\x04 a pickle zip is not safetensors", "not a valid safetensors file"),
        (b"\x10\x00\x00\x00\x00\x00\x00\x00{not json header}", "not a valid safetensors file"),
    ],
    ids=["empty", "zeros", "zip", "bad-header"],
)
def test_bad_weights_file(head_dir: Path, weights: bytes, message: str) -> None:
    (head_dir / "weights.safetensors").write_bytes(weights)
    with pytest.raises(HeadFormatError, match=message):
        load_head(head_dir)


def test_weights_of_another_head(head_dir: Path, tmp_path: Path) -> None:
    other = save_head(QuantumCompressionHead(16, 8), tmp_path / "other")
    (head_dir / "weights.safetensors").write_bytes((other / "weights.safetensors").read_bytes())
    with pytest.raises(HeadFormatError, match="does not match its config"):
        load_head(head_dir)


def _with_encoder(head_dir: Path, file: str) -> None:
    cfg = _config(head_dir)
    cfg["encoder"] = {"model": "hashing-16", "normalized": True, "train_layers": 1, "file": file}
    (head_dir / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    ("file", "message"),
    [
        ("/etc/passwd", "must be a relative path inside the head folder"),
        ("../outside.safetensors", "must be a relative path inside the head folder"),
        ("sub/../../outside.safetensors", "must be a relative path inside the head folder"),
        ("C:\\Windows\\win.ini", "must be a relative path inside the head folder"),
        ("", "must be a file name"),
        ("enc\0.safetensors", "must be a file name"),
    ],
    ids=["absolute", "dotdot", "nested-dotdot", "windows", "empty", "nul"],
)
def test_encoder_file_is_confined_to_the_head_folder(
    head_dir: Path, file: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _with_encoder(head_dir, file)
    opened: list[str] = []
    real_read_bytes = Path.read_bytes

    def spy(self: Path) -> bytes:
        opened.append(str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", spy)
    with pytest.raises(HeadFormatError, match=rf"field encoder\.file .*{message}|{message}"):
        load_head_encoder(head_dir, cache=False)
    assert all(p.endswith("config.json") for p in opened)  # only the config was read


def test_symlinks_out_of_the_head_folder_are_refused(head_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not yours")
    os.symlink(secret, head_dir / "enc.safetensors")
    _with_encoder(head_dir, "enc.safetensors")
    with pytest.raises(HeadFormatError, match="resolves outside the head folder"):
        load_head_encoder(head_dir, cache=False)
    moved = tmp_path / "weights-elsewhere.safetensors"
    (head_dir / "weights.safetensors").rename(moved)
    os.symlink(moved, head_dir / "weights.safetensors")
    cfg = _config(head_dir)
    del cfg["encoder"]
    (head_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(HeadFormatError, match=r"weights file .* resolves outside the head folder"):
        load_head(head_dir)


@pytest.mark.parametrize(
    "breakage", ["list-config", "negative-tau", "bad-weights", "etc-passwd"], ids=lambda b: b
)
def test_cli_reports_a_bad_head_in_one_line(
    head_dir: Path, tmp_path: Path, breakage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if breakage == "list-config":
        (head_dir / "config.json").write_text("[]")
    elif breakage == "negative-tau":
        _rewrite(head_dir, config={"tau": -1})
    elif breakage == "bad-weights":
        (head_dir / "weights.safetensors").write_bytes(b"garbage")
    else:
        _with_encoder(head_dir, "/etc/passwd")
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "a qubit"}\n{"text": "bread"}\n')
    assert main(["rerank", "qubit", str(docs), "--model", "hashing-16", "--head", str(head_dir)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("qrerank rerank: error: ")
