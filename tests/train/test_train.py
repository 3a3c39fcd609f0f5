"""Training: data loading and mining, the loss falls for every head, save/reload, CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from qrerank.cli import main
from qrerank.embed.models import load_encoder
from qrerank.errors import InputError
from qrerank.heads.io import load_head
from qrerank.judgments import read_qrels
from qrerank.train import HardNegativeLoss, TrainConfig, build_head, load_training_data, mine_negatives, train

pytest.importorskip("ir_measures")

HEADS = ("none", "linear", "qbec", "angle", "rotation")
# QBEC gates overshoot above ~5e-3
LR = {"none": 0.05, "linear": 0.01, "qbec": 0.003, "angle": 0.01, "rotation": 0.01}


def _embed(texts: list[str]) -> torch.Tensor:
    return torch.from_numpy(load_encoder("hashing-64", cache=False).encode(texts))


def test_beir_split_frac_and_seed(beir_dir: Path) -> None:
    data = load_training_data(beir_dir, val_frac=0.25, seed=7)
    assert len(data.val) == 10 and len(data.train) == 30
    assert not {e.query_id for e in data.val} & {e.query_id for e in data.train}
    half = load_training_data(beir_dir, val_frac=0.25, seed=7, frac=0.5)
    assert [e.query_id for e in half.val] == [e.query_id for e in data.val]  # val fixed across frac
    assert len(half.train) == 15 and {e.query_id for e in half.train} <= {e.query_id for e in data.train}
    other = load_training_data(beir_dir, val_frac=0.25, seed=8)
    assert [e.query_id for e in other.val] != [e.query_id for e in data.val]


def test_graded_qrels_rel_level_and_judged_negatives(beir_dir: Path) -> None:
    (beir_dir / "qrels" / "graded.tsv").write_text(
        "q0\tqubit-0\t2\nq0\tqubit-1\t1\nq0\tqubit-2\t0\nq1\tbread-0\t2\nq1\tbread-1\t0\n"
    )
    data = load_training_data(beir_dir, split="graded", rel_level=2, val_frac=0.0)
    ex = {e.query_id: e for e in data.train}["q0"]
    assert ex.positives == ("qubit-0",) and ex.judged_negatives == ("qubit-2",)
    doc_ids = list(data.docs)
    mined = mine_negatives(
        data.train, _embed([e.query for e in data.train]), _embed(list(data.docs.values())), doc_ids, depth=5
    )
    m = {e.query_id: e for e in mined}["q0"]
    assert m.negatives[0] == "qubit-2"  # judged negatives come first
    assert "qubit-0" not in m.negatives and "qubit-1" not in m.negatives  # partially relevant excluded
    assert len(m.negatives) == 6


def test_triples_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "triples.jsonl"
    rows = [
        {"query": "bloch sphere", "pos": "a qubit on the bloch sphere", "neg": ["yeast bread"]},
        {"query": "bread", "pos": ["yeast bread"], "neg": ["a qubit on the bloch sphere", "coral reef"]},
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_training_data(p, val_frac=0.5, seed=0)
    assert len(data.docs) == 3 and len(data.train) == 1 and len(data.val) == 1
    p.write_text('{"query": "x"}\n')
    with pytest.raises(InputError, match=r"triples\.jsonl:1"):
        load_training_data(p)


def test_read_qrels_trec_layout(tmp_path: Path) -> None:
    p = tmp_path / "q.txt"
    p.write_text("1 0 d1 2\n1 0 d2 0\n".replace(" ", "\t"))
    assert read_qrels(p) == {"1": {"d1": 2, "d2": 0}}


@pytest.mark.parametrize("name", HEADS)
def test_loss_falls_for_every_head(name: str, beir_dir: Path) -> None:
    data = load_training_data(beir_dir, val_frac=0.0)
    doc_ids = list(data.docs)
    q = _embed([e.query for e in data.train])
    d = _embed(list(data.docs.values()))
    mined = mine_negatives(data.train, q, d, doc_ids, depth=7)
    idx = {x: i for i, x in enumerate(doc_ids)}
    docs = d[torch.tensor([[idx[e.positives[0]], *(idx[n] for n in e.negatives[:7])] for e in mined])]
    torch.manual_seed(0)
    head = build_head(name, 64, 16)
    config = TrainConfig(head=name)
    loss_fn = HardNegativeLoss(head, scale=config.logit_scale(head.kind), form="log")
    opt = torch.optim.AdamW(head.parameters(), lr=LR[name])
    first = float(loss_fn(q, docs).detach())
    for _ in range(15):
        opt.zero_grad()
        loss_fn(q, docs).backward()
        opt.step()
    assert float(loss_fn(q, docs).detach()) < first - 1e-3


def test_linear_fidelity_loss_is_finite() -> None:
    torch.manual_seed(0)
    head = build_head("qbec", 64, 16)
    loss = HardNegativeLoss(head, scale=20.0, form="linear")(torch.randn(4, 64), torch.randn(4, 8, 64))
    loss.backward()
    assert torch.isfinite(loss) and all(
        torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None
    )


def test_train_saves_best_head_that_reloads(beir_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(head="qbec", out_dim=16, epochs=2, model="hashing-64", val_frac=0.25, seed=3)
    out = tmp_path / "head"
    result = train(beir_dir, config, out, encoder=load_encoder("hashing-64", cache=False))
    assert 0.0 <= result.best_val_ndcg10 <= 1.0 and result.best_val_ndcg10 >= result.initial_val_ndcg10
    assert [h["epoch"] for h in result.history][:2] == [0, 1]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["head"] == "qbec" and cfg["model"] == "hashing-64"
    assert cfg["metrics"]["val_ndcg@10"] == pytest.approx(result.best_val_ndcg10)
    assert cfg["training"]["seed"] == 3 and cfg["train_seconds"] >= 0
    loaded = load_head(out, in_dim=64)
    x = torch.randn(5, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), result.head(x))


def test_same_seed_same_head(beir_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(head="linear", out_dim=8, epochs=1, model="hashing-64", val_frac=0.25)
    enc = load_encoder("hashing-64", cache=False)
    a = train(beir_dir, config, tmp_path / "a", encoder=enc)
    b = train(beir_dir, config, tmp_path / "b", encoder=enc)
    assert all(
        torch.equal(x, y)
        for x, y in zip(a.head.state_dict().values(), b.head.state_dict().values(), strict=True)
    )


def test_cli_train_writes_head(beir_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-head"
    argv = [
        "train",
        str(beir_dir),
        "--head",
        "none",
        "--epochs",
        "1",
        "--model",
        "hashing-64",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert {"config.json", "weights.safetensors", "README.md"} <= {p.name for p in out.iterdir()}
    assert "val nDCG@10" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    assert "qrerank train" in card and "bloch" in card and "seed" in card
    assert load_head(out, in_dim=64).name == "bloch"


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.mark.parametrize(
    "extra",
    [
        ["--split", "test"],  # no qrels/test.tsv
        ["--head", "bogus"],
        ["--frac", "0"],
        ["--frac", "1.5"],
        ["--train-layers", "2"],  # hashing-64 has no transformer layers
        ["--head", "cosine"],  # nothing to train without --train-layers
    ],
)
def test_cli_bad_input_exits_2(extra: list[str], beir_dir: Path, tmp_path: Path) -> None:
    argv = [
        "train",
        str(beir_dir),
        "--model",
        "hashing-64",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "h"),
        *extra,
    ]
    assert _exit_code(argv) == 2
    assert not (tmp_path / "h").exists()


def test_config_refuses_nothing_to_train() -> None:
    with pytest.raises(InputError, match="no parameters"):
        TrainConfig(head="cosine")
    with pytest.raises(InputError, match="train_layers"):
        TrainConfig(train_layers=-1)


def test_without_validation_keeps_last_epoch_and_strict_json(beir_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(head="linear", out_dim=8, epochs=3, patience=1, model="hashing-64", val_frac=0.0)
    result = train(beir_dir, config, tmp_path / "h", encoder=load_encoder("hashing-64", cache=False))
    assert result.epochs_run == 3 and result.best_epoch == 3

    def no_nan(token: str) -> None:
        raise AssertionError(f"non-JSON constant {token}")

    cfg = json.loads((tmp_path / "h" / "config.json").read_text(), parse_constant=no_nan)
    assert cfg["metrics"]["val_ndcg@10"] is None


def _write_sts(root: Path) -> Path:
    """STS-B layout: pairs scored 0-5; "t0 ..." reappears as a sentence2 of another pair."""
    rows = [
        ("t0 a cat sits on the mat", "a cat is sitting on a mat", 4.8),
        ("t0 a cat sits on the mat", "stock markets fell sharply", 0.2),
        ("t1 a man plays guitar", "a man is playing a guitar", 4.2),
        ("t1 a man plays guitar", "a man plays a violin", 2.4),
        ("t2 the ocean is calm", "t0 a cat sits on the mat", 0.0),
        ("t3 two dogs run in snow", "two dogs are running through snow", 5.0),
        ("t4 a child reads a book", "a kid is reading", 3.6),
    ]
    root.mkdir(parents=True)
    lines = ["genre\tfile\tyear\tsid\tscore\tsentence1\tsentence2"]
    lines += [f"main\tx\t2012\t{i:04d}\t{g}\t{a}\t{b}" for i, (a, b, g) in enumerate(rows)]
    (root / "sts-train.tsv").write_text("\n".join(lines) + "\n")
    return root


def test_sts_pairs_as_training_queries(tmp_path: Path) -> None:
    root = _write_sts(tmp_path / "stsb")
    data = load_training_data(root, split="train", val_frac=0.0)
    assert data.info["format"] == "sts" and data.info["pairs"] == 7
    by_query = {ex.query: ex for ex in data.train}
    # Only sentences with a pair scored >= 4 are queries (t2 and t4 have none).
    assert set(by_query) == {"t0 a cat sits on the mat", "t1 a man plays guitar", "t3 two dogs run in snow"}
    cat = by_query["t0 a cat sits on the mat"]
    assert [data.docs[d] for d in cat.positives] == ["a cat is sitting on a mat"]
    assert [data.docs[d] for d in cat.judged_negatives] == ["stock markets fell sharply"]
    # The query's own text is in the corpus (t2's partner): graded 5, so never mined as a negative.
    own = next(d for d, t in data.docs.items() if t == cat.query)
    assert cat.relevance[own] == 5
    guitar = by_query["t1 a man plays guitar"]
    assert sorted(guitar.relevance.values()) == [2, 4] and not guitar.judged_negatives
    mined = mine_negatives(
        data.train, _embed([e.query for e in data.train]), _embed(list(data.docs.values())), list(data.docs)
    )
    assert all(own not in ex.negatives for ex in mined if ex.query == cat.query)
    with pytest.raises(InputError, match="neither a BEIR dataset folder"):
        load_training_data(tmp_path)


def test_cli_trains_on_sts(tmp_path: Path) -> None:
    root = _write_sts(tmp_path / "stsb")
    out = tmp_path / "sts-head"
    argv = [
        "train",
        str(root),
        "--head",
        "linear",
        "--out-dim",
        "8",
        "--epochs",
        "2",
        "--model",
        "hashing-64",
    ]
    assert main([*argv, "--val-frac", "0.34", "--out", str(out)]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["head"] == "linear" and load_head(out, in_dim=64).out_dim == 8
