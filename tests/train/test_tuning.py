"""Fine-tuning the encoder's last layers (``--train-layers``) with the real packaged MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qrerank.cli import main
from qrerank.embed.models import load_encoder
from qrerank.embed.tuned import apply_tuned_state
from qrerank.errors import InputError
from qrerank.eval.datasets import load_dataset, read_run
from qrerank.heads.io import load_head, load_head_encoder
from qrerank.rerank.reranker import Reranker
from qrerank.train import TrainConfig, train
from qrerank.train.trainer import layer_split
from qrerank.train.tuning import num_layers

pytest.importorskip("sentence_transformers")
pytest.importorskip("ir_measures")
pytestmark = pytest.mark.slow

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["qubit fidelity", "bread yeast flour dough oven " * 6, "a medium length sentence about coral reefs"]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(MODEL, cache=False)


@pytest.mark.parametrize("n", [1, 3, 6])
def test_split_computes_the_full_model(encoder, n: int) -> None:
    split = layer_split(MODEL, n, normalized=True)
    got = split.embed_eval(TEXTS)
    want = torch.from_numpy(encoder.encode(TEXTS))
    assert torch.allclose(got, want, atol=1e-5)
    # Batched by length internally; rows still come back in the caller's order.
    assert torch.allclose(split.embed_eval(TEXTS, batch_size=2), want, atol=1e-5)
    assert split.cached_texts == len(TEXTS)
    # Only the last n layers train: their gradients exist, the rest stay frozen.
    split.train()
    split.embed(TEXTS).pow(2).sum().backward()
    assert split.parameters and all(p.grad is not None for p in split.parameters.values())
    frozen = [p for p in split.st_model.parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for p in frozen)


def test_bad_layer_count(encoder) -> None:
    assert num_layers(encoder.model) == 6
    with pytest.raises(InputError, match="between 1 and 6"):
        layer_split(MODEL, 7, normalized=True)


def test_tuned_state_refuses_foreign_weights(encoder) -> None:
    with pytest.raises(InputError, match="unknown tensors"):
        apply_tuned_state(encoder.model, {"nope.weight": torch.zeros(2)})
    key = next(iter(encoder.model.state_dict()))
    with pytest.raises(InputError, match="shape"):
        apply_tuned_state(encoder.model, {key: torch.zeros(1)})


@pytest.mark.parametrize("head", ["cosine", "qbec"])
def test_train_layers_loss_falls_and_head_reloads(head: str, beir_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        head=head, out_dim=32, epochs=2, train_layers=1, encoder_lr=1e-4, lr=3e-3, model=MODEL,
        val_frac=0.25, batch_size=8, negatives=3, val_depth=20, patience=5, seed=1,
    )  # fmt: skip
    out = tmp_path / "tuned"
    result = train(beir_dir, config, out)
    losses = [h["loss"] for h in result.history[1:]]
    assert losses[-1] < losses[0]
    assert result.encoder_state is not None and result.encoder_parameters > 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["encoder"]["model"] == MODEL and cfg["encoder"]["train_layers"] == 1
    assert (out / "encoder.safetensors").is_file()
    assert "last 1 transformer layer" in (out / "README.md").read_text()

    # The reloaded encoder holds the trained layers: it differs from the base model and
    # reproduces the trained split exactly; the reloaded head scores identically.
    tuned = load_head_encoder(out, cache=False)
    assert tuned is not None and "+tuned-" in tuned.name
    base = load_encoder(MODEL, cache=False).encode(TEXTS)
    again = tuned.encode(TEXTS)
    assert not np.allclose(again, base, atol=1e-4)
    split = layer_split(MODEL, 1, normalized=True)
    split.load(result.encoder_state)
    assert np.allclose(again, split.embed_eval(TEXTS).numpy(), atol=1e-5)
    loaded = load_head(out, in_dim=384)
    x = torch.from_numpy(again)
    with torch.no_grad():
        assert torch.equal(loaded(x), result.head(x))

    # A Reranker given the head path picks the fine-tuned encoder; the base encoder is refused.
    rr = Reranker(MODEL, head=out, method="fidelity" if head == "qbec" else "cosine")
    assert rr.encoder.name == tuned.name
    assert len(rr.rank("qubit", TEXTS)) == 3
    with pytest.raises(InputError, match="fine-tuned encoder"):
        Reranker(load_encoder(MODEL, cache=False), head=out)
    # No model named: the head's own; another model named: refused, not silently replaced.
    assert Reranker(head=out).encoder.name == tuned.name
    assert Reranker(f"sentence-transformers/{MODEL}", head=out).encoder.name == tuned.name
    with pytest.raises(InputError, match="not all-mpnet-base-v2"):
        Reranker("all-mpnet-base-v2", head=out)


def test_corrupt_encoder_weights_refused(beir_dir: Path, tmp_path: Path) -> None:
    config = TrainConfig(
        head="cosine", epochs=1, train_layers=1, model=MODEL, batch_size=16, negatives=2, val_depth=10,
    )  # fmt: skip
    out = tmp_path / "tuned"
    train(beir_dir, config, out)
    blob = bytearray((out / "encoder.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (out / "encoder.safetensors").write_bytes(bytes(blob))
    with pytest.raises(InputError, match="sha256"):
        load_head_encoder(out)


def test_cli_train_layers_then_eval_head(beir_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-tuned"
    argv = ["train", str(beir_dir), "--head", "cosine", "--train-layers", "1", "--epochs", "1",
            "--negatives", "2", "--val-depth", "10", "--encoder-lr", "1e-3", "--model", MODEL, "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert "--train-layers 1" in cfg["command"]
    res = tmp_path / "eval"
    assert main(["eval", str(beir_dir), "--split", "train", "--protocol", "full", "--methods",
                 f"cosine,head:{out}", "--model", MODEL, "--out", str(res), "--no-progress"]) == 0  # fmt: skip
    metrics = json.loads((res / "metrics.json").read_text())
    head_key = next(k for k in metrics if k.startswith("head"))
    assert 0.0 <= metrics[head_key]["nDCG@10"] <= 1.0 and metrics["cosine"]["nDCG@10"] > 0.0
    # The evaluator scored the head with its own fine-tuned encoder: recompute one query's scores.
    run = read_run(next((res / "runs").glob("head*.trec")))
    qid, ranked = next(iter(run.items()))
    ds = load_dataset(beir_dir, split="train")
    enc = load_head_encoder(out, cache=False)
    q = enc.encode([ds.queries[qid]])[0]
    d = enc.encode([ds.corpus[doc].content for doc, _ in ranked])
    assert np.allclose(d @ q, [score for _, score in ranked], atol=1e-5)
    base = load_encoder(MODEL, cache=False)
    base_scores = (
        base.encode([ds.corpus[doc].content for doc, _ in ranked]) @ base.encode([ds.queries[qid]])[0]
    )
    assert not np.allclose(base_scores, [score for _, score in ranked], atol=1e-3)
