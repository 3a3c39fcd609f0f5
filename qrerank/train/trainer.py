"""Train a head, and optionally the encoder's last layers, with hard negatives and early stopping.

Every text (corpus documents and queries) is encoded once through the on-disk embedding cache;
with a frozen encoder the head then trains on tensors, which is what makes a run take seconds,
not hours. With ``train_layers = N > 0`` the last N transformer layers train too, on cached
outputs of the frozen layers below them (:mod:`qrerank.train.tuning`). Each epoch
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

from qrerank.core.head import Head
from qrerank.core.similarity import Form, similarity
from qrerank.embed.base import Encoder
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.embed.tuned import base_encoder
from qrerank.errors import InputError
from qrerank.heads.io import save_head
from qrerank.heads.kinds import head_kind
from qrerank.metrics import PRIMARY_METRIC, aggregate, per_query
from qrerank.train.data import Example, TrainingData, cosine_candidates, load_training_data, mine_negatives
from qrerank.train.losses import HardNegativeLoss
from qrerank.train.pseudo import load_pseudo_queries
from qrerank.train.tuning import LayerSplit

logger = logging.getLogger(__name__)


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
    encoder_lr: float = 2e-5
    model: str = DEFAULT_MODEL
    pseudo_queries: int = 0  # > 0: train on that many label-free pseudo-queries (train/pseudo.py)

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
        kind = head_kind(self.head).name  # InputError naming every accepted name
        if not 0.0 < self.frac <= 1.0:
            raise InputError(f"frac must be in (0, 1], got {self.frac}")
        if self.similarity not in ("log", "linear"):
            raise InputError(f"unknown similarity {self.similarity!r}; choose 'log' or 'linear'")
        if self.train_layers < 0:
            raise InputError(f"train_layers must be >= 0, got {self.train_layers}")
        if kind == "identity" and self.train_layers == 0:
            raise InputError(f"--head {self.head} has no parameters: train the encoder with --train-layers N")
        if not self.encoder_lr > 0:
            raise InputError(f"encoder_lr must be positive, got {self.encoder_lr}")
        if self.pseudo_queries < 0 or self.pseudo_queries == 1:
            raise InputError(f"pseudo_queries must be 0 (off) or >= 2, got {self.pseudo_queries}")
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
    encoder_state: dict[str, torch.Tensor] | None = None  # the fine-tuned layers (train_layers > 0)

    @property
    def encoder_parameters(self) -> int:
        """Fine-tuned encoder parameters (0 with a frozen encoder)."""
        return sum(t.numel() for t in (self.encoder_state or {}).values())

    @property
    def trainable_parameters(self) -> int:
        """Head parameters plus fine-tuned encoder parameters."""
        return self.head.num_parameters() + self.encoder_parameters

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
    """A fresh head of kind ``name``, a saved kind or a CLI alias (``none``, ``cosine``): heads.kinds."""
    return head_kind(name).build(in_dim, out_dim)


def layer_split(model: str, n: int, normalized: bool, device: str | None = None) -> LayerSplit:
    """The ``n``-layer :class:`LayerSplit` of sentence-transformers model ``model`` (uncached load)."""
    enc = base_encoder(model, normalized=normalized, device=device)
    return LayerSplit(enc.model, n, renormalize=enc._renormalize)


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
            scores = head.similarity(q.unsqueeze(1), d)
        for ex, row, srow in zip(
            examples[start : start + chunk], cand.tolist(), scores.tolist(), strict=True
        ):
            run[ex.query_id] = {doc_ids[j]: float(s) for j, s in zip(row, srow, strict=True)}
    if head is not None:
        head.train(was_training)
    qrels = {ex.query_id: dict(ex.relevance) for ex in examples}
    return aggregate(per_query(qrels, run, qrels, keys=(PRIMARY_METRIC,)))[PRIMARY_METRIC]


def _setup_tuner(tuner: LayerSplit | None, config: TrainConfig, encoder: Encoder) -> LayerSplit | None:
    """The layer split to train (reset to the base weights), or None with a frozen encoder."""
    if config.train_layers == 0:
        return None
    if tuner is None:
        tuner = layer_split(config.model, config.train_layers, encoder.normalized)
    elif tuner.n != config.train_layers:
        raise ValueError(f"tuner trains {tuner.n} layers, config asks for {config.train_layers}")
    tuner.reset()
    return tuner


class Trainer:
    """One :func:`train_head` run: the data encoded once, the head, its optimiser, the best state so far.

    Building one seeds torch, encodes every text, mines the hard negatives and makes the head
    and the AdamW optimiser; :meth:`run` then alternates :meth:`_epoch` and :meth:`_validate`
    until ``config.epochs`` or ``config.patience`` epochs without improvement.
    """

    def __init__(
        self,
        data: TrainingData,
        encoder: Encoder,
        config: TrainConfig,
        *,
        show_progress: bool = False,
        tuner: LayerSplit | None = None,
    ) -> None:
        torch.manual_seed(config.seed)
        self.gen = torch.Generator().manual_seed(config.seed)
        self.data, self.config, self.show_progress = data, config, show_progress
        self._encode_all(encoder)
        self.examples = mine_negatives(
            data.train, self.train_q, self.doc_emb, self.doc_ids, depth=config.mine_depth
        )
        self.val_cands = cosine_candidates(self.val_q, self.doc_emb, config.val_depth)
        self.pools, self.pairs = self._training_pairs()
        self.tuner = _setup_tuner(tuner, config, encoder)
        self.head = build_head(config.head, encoder.dim, config.out_dim)
        self.loss_fn = HardNegativeLoss(
            self.head, scale=config.logit_scale(self.head.kind), form=config.similarity
        )
        self.opt = self._optimizer()
        self.best = float("nan")
        self.best_epoch = 0
        self.best_state: dict[str, Any] = {}
        self.best_encoder: dict[str, torch.Tensor] | None = None

    def _encode_all(self, encoder: Encoder) -> None:
        """Documents, training and validation queries, each encoded once (through the cache)."""
        t0 = time.perf_counter()
        self.doc_ids = list(self.data.docs)
        self.doc_texts = [self.data.docs[d] for d in self.doc_ids]
        self.train_texts = [ex.query for ex in self.data.train]
        self.val_texts = [ex.query for ex in self.data.val]
        self.doc_emb = _encode(encoder, self.doc_texts, self.show_progress)
        self.train_q = _encode(encoder, self.train_texts, self.show_progress)
        self.val_q = _encode(encoder, self.val_texts, self.show_progress)
        self.encode_seconds = time.perf_counter() - t0

    def _training_pairs(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each query's negative pool (document rows), and ``[P, 2]`` (query, positive row) pairs."""
        doc_index = {d: i for i, d in enumerate(self.doc_ids)}
        pools = [torch.tensor([doc_index[d] for d in ex.negatives], dtype=torch.long) for ex in self.examples]
        pairs = torch.tensor(
            [(i, doc_index[p]) for i, ex in enumerate(self.examples) if len(pools[i]) for p in ex.positives],
            dtype=torch.long,
        )
        if len(pairs) == 0:
            raise InputError("no training pair has a negative: the corpus holds only positives")
        return pools, pairs

    def _optimizer(self) -> torch.optim.AdamW:
        """AdamW over the head's parameters (``lr``) and the tuned layers' (``encoder_lr``)."""
        groups: list[dict[str, Any]] = []
        head_params = [p for p in self.head.parameters() if p.requires_grad]
        if head_params:
            groups.append({"params": head_params, "lr": self.config.lr})
        if self.tuner is not None:
            groups.append({"params": list(self.tuner.parameters.values()), "lr": self.config.encoder_lr})
        return torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)

    def _embed_batch(self, qi: torch.Tensor, di: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``([B, d] queries, [B, 1 + N, d] docs)``: cached, or through the trained layers."""
        if self.tuner is None:
            return self.train_q[qi], self.doc_emb[di]
        uniq, inverse = torch.unique(di, return_inverse=True)
        docs = self.tuner.embed([self.doc_texts[j] for j in uniq.tolist()])
        return self.tuner.embed([self.train_texts[i] for i in qi.tolist()]), docs[inverse.to(docs.device)]

    def _validate(self) -> float:
        """Validation nDCG@10 of the head (NaN without validation queries)."""
        if self.tuner is None:
            return ndcg10(self.head, self.data.val, self.val_q, self.doc_emb, self.doc_ids, self.val_cands)
        if not self.data.val:
            return float("nan")
        # Only the validation candidates change with the encoder: re-embed just those rows.
        rows = torch.unique(self.val_cands)
        tuned = self.doc_emb.clone()
        tuned[rows] = self.tuner.embed_eval([self.doc_texts[j] for j in rows.tolist()]).cpu()
        device = self.tuner.device
        self.head.to("cpu")
        try:
            val_q = self.tuner.embed_eval(self.val_texts).cpu()
            return ndcg10(self.head, self.data.val, val_q, tuned, self.doc_ids, self.val_cands)
        finally:
            self.head.to(device)

    def _negatives(self, query_rows: list[int]) -> torch.Tensor:
        """``[B, N]`` negatives per query: drawn from its pool without replacement, or with if it is small."""
        n = self.config.negatives
        negs = []
        for qi in query_rows:
            pool = self.pools[qi]
            if len(pool) >= n:
                pick = torch.randperm(len(pool), generator=self.gen)[:n]
            else:
                pick = torch.randint(len(pool), (n,), generator=self.gen)
            negs.append(pool[pick])
        return torch.stack(negs)

    def _epoch(self, bar: tqdm[Any]) -> float:
        """One pass over the shuffled pairs; the summed loss (times batch size) of its steps."""
        order = self.pairs[torch.randperm(len(self.pairs), generator=self.gen)]
        total = 0.0
        for start in range(0, len(order), self.config.batch_size):
            batch = order[start : start + self.config.batch_size]
            doc_idx = torch.cat([batch[:, 1:], self._negatives(batch[:, 0].tolist())], dim=1)  # [B, 1 + N]
            loss = self.loss_fn(*self._embed_batch(batch[:, 0], doc_idx))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += float(loss.detach()) * len(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", val_ndcg10=f"{self.best:.4f}")
        return total

    def _keep_best(self, val: float, epoch: int) -> None:
        """Record ``val`` as the best score and copy the head (and tuned layers) as they are now."""
        self.best, self.best_epoch = val, epoch
        self.best_state = copy.deepcopy(self.head.state_dict())
        self.best_encoder = self.tuner.state() if self.tuner is not None else None

    def run(self) -> TrainResult:
        """Train with early stopping; the head ends on CPU in eval mode with its best weights."""
        config, tuner = self.config, self.tuner
        if tuner is not None:
            self.head.to(tuner.device)
        cosine = ndcg10(None, self.data.val, self.val_q, self.doc_emb, self.doc_ids, self.val_cands)
        initial = self._validate()
        self._keep_best(initial, 0)
        bad_epochs, epochs_run = 0, 0
        history: list[dict[str, float | None]] = [
            {"epoch": 0, "loss": None, "val_ndcg@10": _or_none(initial)}
        ]
        t1 = time.perf_counter()
        steps = config.epochs * math.ceil(len(self.pairs) / config.batch_size)
        bar = tqdm(total=steps, disable=not self.show_progress, desc=f"train {config.head}")
        bar.set_postfix(loss="-", val_ndcg10=f"{initial:.4f}")
        self.head.train()
        if tuner is not None:
            tuner.train()
        for epoch in range(1, config.epochs + 1):
            loss = self._epoch(bar) / len(self.pairs)
            val = self._validate()
            epochs_run = epoch
            history.append({"epoch": epoch, "loss": loss, "val_ndcg@10": _or_none(val)})
            bar.set_postfix(loss=f"{loss:.4f}", val_ndcg10=f"{val:.4f}")
            logger.info("epoch %d: loss %.4f, val nDCG@10 %.4f", epoch, loss, val)
            # Without validation queries every epoch is "best": train all epochs, keep the last.
            if not self.data.val or val > self.best + 1e-9:
                self._keep_best(val, epoch)
                bad_epochs = 0
            else:
                bad_epochs += 1
                if bad_epochs >= config.patience:
                    break
        bar.close()
        self.head.load_state_dict(self.best_state)
        self.head.cpu().eval()
        if tuner is not None and self.best_encoder is not None:
            tuner.load(self.best_encoder)
            tuner.train(False)
        return TrainResult(
            head=self.head,
            best_val_ndcg10=self.best,
            cosine_val_ndcg10=cosine,
            initial_val_ndcg10=initial,
            best_epoch=self.best_epoch,
            epochs_run=epochs_run,
            train_seconds=time.perf_counter() - t1,
            encode_seconds=self.encode_seconds,
            history=history,
            num_train_queries=len(self.examples),
            num_val_queries=len(self.data.val),
            num_pairs=len(self.pairs),
            encoder_state=self.best_encoder,
        )


def train_head(
    data: TrainingData,
    encoder: Encoder,
    config: TrainConfig,
    *,
    show_progress: bool = False,
    tuner: LayerSplit | None = None,
) -> TrainResult:
    """Encode once, mine hard negatives, train ``config.head`` with AdamW and keep the best on validation.

    With ``config.train_layers > 0`` the encoder's last layers train too: ``tuner`` (a
    :class:`LayerSplit` of ``config.model``; built when None) is reset to the base weights first,
    so one tuner, and its cache of frozen-layer outputs, can serve many runs. The steps are
    :class:`Trainer`'s.
    """
    return Trainer(data, encoder, config, show_progress=show_progress, tuner=tuner).run()


def model_card(result: TrainResult, config: TrainConfig, data: TrainingData, command: str | None) -> str:
    """README.md for a trained head: what it is, what it was trained on, how well it did."""
    head = result.head
    lines = [
        f"# qrerank head: {head.name} ({config.head})",
        "",
        f"A `{type(head).__name__}` (`kind={head.kind}`) trained with `qrerank train` on "
        + (
            f"`{config.model}` with its last {config.train_layers} transformer layer(s) fine-tuned"
            if config.train_layers
            else f"frozen `{config.model}` embeddings"
        )
        + " (arXiv 2501.04591).",
        "",
        "| | |",
        "|---|---|",
        f"| head | `{head.name}`, {head.in_dim} -> {head.out_dim} |",
        f"| trainable parameters | {head.num_parameters():,} in the head"
        + (f" + {result.encoder_parameters:,} in the encoder |" if config.train_layers else " |"),
        f"| encoder | `{config.model}` "
        + (
            f"(last {config.train_layers} layers fine-tuned, lr {config.encoder_lr:g}; weights in "
            "`encoder.safetensors`) |"
            if config.train_layers
            else "(frozen) |"
        ),
        (
            f"| data | `{data.source}`: {data.info['pseudo_queries']} pseudo-queries cut from the corpus "
            "(inverse cloze task; no queries or qrels read) |"
            if config.pseudo_queries
            else f"| data | `{data.source}`, split `{config.split}`, rel level {config.rel_level} |"
        ),
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
    load = "`qrerank.heads.load_head_bundle(path)`"
    if config.train_layers:
        load += " (the head and its fine-tuned encoder)"
    lines += [f"Load it with {load}, or use `qrerank rerank ... --head PATH`.", ""]
    return "\n".join(lines)


def load_data(src: str | os.PathLike[str], config: TrainConfig) -> TrainingData:
    """The training data of ``src``: labelled (qrels, STS-B, triples) or pseudo-queries."""
    if config.pseudo_queries:
        return load_pseudo_queries(
            src, n_queries=config.pseudo_queries, frac=config.frac, val_frac=config.val_frac, seed=config.seed
        )
    return load_training_data(
        src,
        split=config.split,
        rel_level=config.rel_level,
        frac=config.frac,
        val_frac=config.val_frac,
        seed=config.seed,
    )


def train(
    src: str | os.PathLike[str],
    config: TrainConfig,
    out: str | os.PathLike[str],
    *,
    encoder: Encoder | None = None,
    command: str | None = None,
    show_progress: bool = False,
    tuner: LayerSplit | None = None,
) -> TrainResult:
    """Load data from ``src``, train, and save the best head (+ config extras and model card) to ``out``.

    With ``config.pseudo_queries``, ``src`` is a corpus (JSONL, BEIR folder or text folder) and the
    queries are cut from it (:func:`~qrerank.train.pseudo.load_pseudo_queries`); no qrels are read.
    """
    data = load_data(src, config)
    encoder = encoder if encoder is not None else load_encoder(config.model)
    result = train_head(data, encoder, config, show_progress=show_progress, tuner=tuner)
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
        "trainable_parameters": result.trainable_parameters,
        "train_seconds": result.train_seconds,
        "encode_seconds": result.encode_seconds,
        "command": command,
    }
    encoder_info = (
        {"model": config.model, "normalized": encoder.normalized, "train_layers": config.train_layers}
        if result.encoder_state is not None
        else None
    )
    save_head(
        result.head,
        Path(out),
        extra=extra,
        card=model_card(result, config, data, command),
        encoder_state=result.encoder_state,
        encoder_info=encoder_info,
    )
    return result
