"""The --ray flags without starting Ray: bad values and a missing [ray] extra are one line, exit 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from qrerank._ray import check_address
from qrerank.cli import main
from qrerank.errors import InputError, MissingExtraError

DEMO = str(Path(__file__).resolve().parents[2] / "qrerank" / "data" / "demo_corpus.jsonl")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index", DEMO, "--out", "{tmp}/i", "--ray-actors", "2"], "need --ray"),
        (["index", DEMO, "--out", "{tmp}/i", "--ray", "nohost"], "--ray must be 'auto', HOST:PORT"),
        (["index", DEMO, "--out", "{tmp}/i", "--ray", "h:99999"], "--ray must be 'auto', HOST:PORT"),
        (["serve", "--replicas", "2"], "--replicas needs --ray"),
        (["serve", "--ray", "--workers", "2"], "with --ray use --replicas"),
    ],
)
def test_bad_ray_flags_exit_2(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_ray_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    argv = ["index", DEMO, "--out", str(tmp_path / "i"), "--model", "hashing-16", "--ray", "auto"]
    assert main(argv) == 2
    assert "pip install 'qrerank[ray]'" in capsys.readouterr().err
    from qrerank.embed.hashing import HashingEncoder
    from qrerank.embed.ray import RayEncoder

    with pytest.raises(MissingExtraError, match=r"qrerank\[ray\]"):
        RayEncoder(lambda: HashingEncoder(16)).encode(["x"])


@pytest.mark.parametrize("address", ["auto", "10.0.0.5:6379", "ray://head:10001", " auto "])
def test_cluster_addresses(address: str) -> None:
    assert check_address(address) == address.strip()


@pytest.mark.parametrize("address", ["", "local", "head", ":6379", "head:", "head:0", "ray://head"])
def test_bad_cluster_addresses(address: str) -> None:
    with pytest.raises(InputError):
        check_address(address)
