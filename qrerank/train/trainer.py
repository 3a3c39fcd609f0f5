"""Train a head on cached embeddings of a frozen encoder, with hard negatives and early stopping.

Every text (corpus documents and queries) is encoded once through the on-disk embedding cache;
the head then trains on tensors, which is what makes a run take seconds, not hours. Each epoch
ends with nDCG@10 (ir-measures) on held-out validation queries, reranking each query's top
``val_depth`` cosine candidates with the head; the best head is kept and training stops after
``patience`` epochs without improvement.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from qrerank._optional import require
from qrerank.core.angles import AngleHead
from qrerank.core.compression import QuantumCompressionHead
from qrerank.core.head import BlochHead, Head
from qrerank.core.linear import LinearHead
from qrerank.core.similarity import Form, similarity
from qrerank.embed.base import Encoder
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.errors import InputError
from qrerank.heads.io import save_head
from qrerank.train.data import Example, TrainingData, cosine_candidates, load_training_data, mine_negatives
from qrerank.train.losses import HardNegativeLoss

logger = logging.getLogger(__name__)

# CLI name -> head class; "none" is the projection-free Bloch encoding with a learnable tau.
TRAIN_HEADS: dict[str, type[Head]] = {
    "none": BlochHead,
    "linear": LinearHead,
    "qbec": QuantumCompressionHead,
    "angle": AngleHead,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Training arguments; recorded in the saved head's config.json and model card."""

    head: str = "qbec"
    out_dim: int = 256
    split: str = "train"
    frac: float = 1.0
    seed: int = 42
    epochs: int = 10
    negatives: int = 7
    similarity: Form = "log"
    scale: float | None = None
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    patience: int = 2
    val_frac: float = 0.1
    rel_level: int = 1
    mine_depth: int = 30
    val_depth: int = 100
    train_layers: int = 0
    model: str = DEFAULT_MODEL

    def logit_scale(self, kind: str) -> float:
        """``scale`` or its default: 20 for F and cosine (the paper, sentence-transformers), 1 for log F.

        log F sums per-qubit log-overlaps, so it is already O(n_qubits) in size; 20 * log F
        gives logit gaps in the hundreds and a saturated, step-like loss.
        """
        if self.scale is not None:
            return self.scale
        return 1.0 if kind == "state" and self.similarity == "log" else 20.0

    def __post_init__(self) -> None:
        if self.scale is not None and not self.scale > 0:
            raise InputError(f"scale must be positive, got {self.scale}")
        if self.head not in TRAIN_HEADS:
            raise InputError(f"unknown head {self.head!r}; choose one of {', '.join(TRAIN_HEADS)}")
        if not 0.0 < self.frac <= 1.0:
            raise InputError(f"frac must be in (0, 1], got {self.frac}")
        if self.similarity not in ("log", "linear"):
            raise InputError(f"unknown similarity {self.similarity!r}; choose 'log' or 'linear'")
        if self.train_layers > 0:
            raise InputError(
                "not implemented yet: --train-layers > 0 (fine-tuning the encoder's last layers); "
                "part 1 trains heads on frozen, cached embeddings only"
            )
        for name in ("out_dim", "epochs", "negatives", "batch_size", "patience", "mine_depth", "val_depth"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(slots=True, kw_only=True)
class TrainResult:
    """The best head, its validation nDCG@10, the cosine baseline on the same candidates, history."""

    head: Head
    best_val_ndcg10: float
    cosine_val_ndcg10: float
    initial_val_ndcg10: float
    best_epoch: int
    epochs_run: int
    train_seconds: float
    encode_seconds: float
    history: list[dict[str, float | None]] = field(default_factory=list)
    num_train_queries: int = 0
    num_val_queries: int = 0
    num_pairs: int = 0

    def metrics(self) -> dict[str, Any]:
        return {
            "val_ndcg@10": _or_none(self.best_val_ndcg10),
            "val_ndcg@10_cosine": _or_none(self.cosine_val_ndcg10),
            "val_ndcg@10_initial": _or_none(self.initial_val_ndcg10),
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "history": self.history,
        }


def _or_none(x: float) -> float | None:
    """NaN (no validation queries) as None, so config.json stays strict JSON."""
    return None if math.isnan(x) else x


def build_head(name: str, in_dim: int, out_dim: int) -> Head:
    """A fresh head by training name (``none`` -> Bloch, ``linear``, ``qbec``, ``angle``)."""
    if name not in TRAIN_HEADS:
        raise InputError(f"unknown head {name!r}; choose one of {', '.join(TRAIN_HEADS)}")
    if name == "none":
        return BlochHead(in_dim)
    return TRAIN_HEADS[name](in_dim, out_dim)


def _encode(encoder: Encoder, texts: list[str], show_progress: bool) -> torch.Tensor:
    if not texts:
        return torch.empty(0, encoder.dim)
    arr = encoder.encode(texts, batch_size=64, show_progress=show_progress)
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))


@torch.no_grad()
def ndcg10(
    head: Head | None,
    examples: list[Example],
    query_emb: torch.Tensor,
    doc_emb: torch.Tensor,
    doc_ids: list[str],
    candidates: torch.Tensor,
    chunk: int = 64,
) -> float:
    """Mean nDCG@10 (ir-measures) of reranking ``candidates [Q, k]`` with ``head`` (None: cosine)."""
    ir_measures = require("ir_measures", "train")
    if not examples:
        return float("nan")
    run: dict[str, dict[str, float]] = {}
    was_training = head.training if head is not None else False
    if head is not None:
        head.eval()
    for start in range(0, len(examples), chunk):
        q = query_emb[start : start + chunk]
        cand = candidates[start : start + chunk]
        d = doc_emb[cand]  # [c, k, dim]
        if head is None:
            scores = similarity(q.unsqueeze(1), d, "vector")
        else:
            # log F and F rank identically; log F has no underflow ties.
            scores = similarity(head(q).unsqueeze(1), head(d), head.kind, "log")
        for ex, row, srow in zip(
            examples[start : start + chunk], cand.tolist(), scores.tolist(), strict=True
        ):
            run[ex.query_id] = {doc_ids[j]: float(s) for j, s in zip(row, srow, strict=True)}
    if head is not None:
        head.train(was_training)
    qrels = {ex.query_id: dict(ex.relevance) for ex in examples}
    measure = ir_measures.nDCG @ 10
    return float(ir_measures.calc_aggregate([measure], qrels, run)[measure])


def train_head(
    data: TrainingData, encoder: Encoder, config: TrainConfig, *, show_progress: bool = False
) -> TrainResult:
    """Encode once, mine hard negatives, train ``config.head`` with AdamW and keep the best on validation."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)

    t0 = time.perf_counter()
    doc_ids = list(data.docs)
    doc_index = {d: i for i, d in enumerate(doc_ids)}
    doc_emb = _encode(encoder, [data.docs[d] for d in doc_ids], show_progress)
    train_q = _encode(encoder, [ex.query for ex in data.train], show_progress)
    val_q = _encode(encoder, [ex.query for ex in data.val], show_progress)
    encode_seconds = time.perf_counter() - t0

    train = mine_negatives(data.train, train_q, doc_emb, doc_ids, depth=config.mine_depth)
    val_cands = cosine_candidates(val_q, doc_emb, config.val_depth)
    pools = [torch.tensor([doc_index[d] for d in ex.negatives], dtype=torch.long) for ex in train]
    pairs = torch.tensor(
        [(i, doc_index[p]) for i, ex in enumerate(train) if len(pools[i]) for p in ex.positives],
        dtype=torch.long,
    )
    if len(pairs) == 0:
        raise InputError("no training pair has a negative: the corpus holds only positives")

    head = build_head(config.head, encoder.dim, config.out_dim)
    loss_fn = HardNegativeLoss(head, scale=config.logit_scale(head.kind), form=config.similarity)
    opt = torch.optim.AdamW(
        [p for p in head.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )

    def evaluate() -> float:
        return ndcg10(head, data.val, val_q, doc_emb, doc_ids, val_cands)

    cosine = ndcg10(None, data.val, val_q, doc_emb, doc_ids, val_cands)
    best = initial = evaluate()
    best_state = copy.deepcopy(head.state_dict())
    best_epoch, bad_epochs, epochs_run = 0, 0, 0
    history: list[dict[str, float | None]] = [{"epoch": 0, "loss": None, "val_ndcg@10": _or_none(initial)}]
    steps_per_epoch = math.ceil(len(pairs) / config.batch_size)
    t1 = time.perf_counter()
    bar = tqdm(total=config.epochs * steps_per_epoch, disable=not show_progress, desc=f"train {config.head}")
    bar.set_postfix(loss="-", val_ndcg10=f"{initial:.4f}")
    head.train()
    for epoch in range(1, config.epochs + 1):
        order = pairs[torch.randperm(len(pairs), generator=gen)]
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            negs = []
            for qi in batch[:, 0].tolist():
                pool = pools[qi]
                if len(pool) >= config.negatives:
                    pick = torch.randperm(len(pool), generator=gen)[: config.negatives]
                else:
                    pick = torch.randint(len(pool), (config.negatives,), generator=gen)
                negs.append(pool[pick])
            doc_idx = torch.cat([batch[:, 1:], torch.stack(negs)], dim=1)  # [B, 1 + N]
            loss = loss_fn(train_q[batch[:, 0]], doc_emb[doc_idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val_ndcg10=f"{best:.4f}")
        val = evaluate()
        epochs_run = epoch
        history.append({"epoch": epoch, "loss": total / len(pairs), "val_ndcg@10": _or_none(val)})
        bar.set_postfix(loss=f"{total / len(pairs):.4f}", val_ndcg10=f"{val:.4f}")
        logger.info("epoch %d: loss %.4f, val nDCG@10 %.4f", epoch, total / len(pairs), val)
        # Without validation queries every epoch is "best": train all epochs, keep the last.
        if not data.val or val > best + 1e-9:
            best, best_epoch, bad_epochs = val, epoch, 0
            best_state = copy.deepcopy(head.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= config.patience:
                break
    bar.close()
    head.load_state_dict(best_state)
    head.eval()
    return TrainResult(
        head=head,
        best_val_ndcg10=best,
        cosine_val_ndcg10=cosine,
        initial_val_ndcg10=initial,
        best_epoch=best_epoch,
        epochs_run=epochs_run,
        train_seconds=time.perf_counter() - t1,
        encode_seconds=encode_seconds,
        history=history,
        num_train_queries=len(train),
        num_val_queries=len(data.val),
        num_pairs=len(pairs),
    )


def model_card(result: TrainResult, config: TrainConfig, data: TrainingData, command: str | None) -> str:
    """README.md for a trained head: what it is, what it was trained on, how well it did."""
    head = result.head
    lines = [
        f"# qrerank head: {head.name} ({config.head})",
        "",
        f"A `{type(head).__name__}` (`kind={head.kind}`) trained with `qrerank train` on frozen "
        f"`{config.model}` embeddings (arXiv 2501.04591).",
        "",
        "| | |",
        "|---|---|",
        f"| head | `{head.name}`, {head.in_dim} -> {head.out_dim} |",
        f"| trainable parameters | {head.num_parameters():,} |",
        f"| encoder | `{config.model}` (frozen) |",
        f"| data | `{data.source}`, split `{config.split}`, rel level {config.rel_level} |",
        f"| train / val queries | {result.num_train_queries} / {result.num_val_queries} ({result.num_pairs} pairs) |",
        f"| frac / seed | {config.frac} / {config.seed} |",
        f"| loss | softmax CE, 1 positive + {config.negatives} hard negatives, logits {config.logit_scale(head.kind):g} * "
        f"{'cosine' if head.kind == 'vector' else ('log F' if config.similarity == 'log' else 'F')} |",
        f"| epochs | {result.epochs_run} run, best at {result.best_epoch} (max {config.epochs}, patience {config.patience}) |",
        f"| val nDCG@10 (top-{config.val_depth} cosine candidates) | {result.best_val_ndcg10:.4f} "
        f"(cosine {result.cosine_val_ndcg10:.4f}, untrained {result.initial_val_ndcg10:.4f}) |",
        f"| train seconds | {result.train_seconds:.1f} (+ {result.encode_seconds:.1f} encoding) |",
        "",
    ]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += ["Load it with `qrerank.heads.io.load_head(path)` or `qrerank rerank ... --head PATH`.", ""]
    return "\n".join(lines)


def train(
    src: str | os.PathLike[str],
    config: TrainConfig,
    out: str | os.PathLike[str],
    *,
    encoder: Encoder | None = None,
    command: str | None = None,
    show_progress: bool = False,
) -> TrainResult:
    """Load data from ``src``, train, and save the best head (+ config extras and model card) to ``out``."""
    data = load_training_data(
        src,
        split=config.split,
        rel_level=config.rel_level,
        frac=config.frac,
        val_frac=config.val_frac,
        seed=config.seed,
    )
    encoder = encoder if encoder is not None else load_encoder(config.model)
    result = train_head(data, encoder, config, show_progress=show_progress)
    extra = {
        "model": config.model,
        "encoder_dim": encoder.dim,
        "encoder_normalized": encoder.normalized,
        "training": {
            **asdict(config),
            "logit_scale": config.logit_scale(result.head.kind),
            "data": data.source,
            **data.info,
        },
        "metrics": result.metrics(),
        "train_seconds": result.train_seconds,
        "encode_seconds": result.encode_seconds,
        "command": command,
    }
    save_head(result.head, Path(out), extra=extra, card=model_card(result, config, data, command))
    return result
