"""``qrerank train DATA --head qbec --out HEAD_DIR``: train a head (and optionally the encoder's last layers)."""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from qrerank.cli._common import (
    add_runtime_arg,
    frac_float,
    non_negative_int,
    out_dir,
    positive_float,
    positive_int,
    write,
)
from qrerank.embed.models import DEFAULT_MODEL
from qrerank.heads.kinds import HEAD_KINDS, HEAD_NAMES, heads_help
from qrerank.train.pseudo import PSEUDO_QUERIES

if TYPE_CHECKING:
    from qrerank.embed.runtime import Runtime
    from qrerank.train.trainer import TrainConfig, TrainResult


def register(sub: argparse._SubParsersAction) -> None:
    """Adds ``qrerank train`` and its options to the subcommand parsers ``sub``."""
    p = sub.add_parser(
        "train",
        help=f"train a head ({'|'.join(HEAD_KINDS)}) on a BEIR or STS-B folder, or triples JSONL",
    )
    p.add_argument(
        "data",
        help="BEIR dataset dir (corpus.jsonl, queries.jsonl, qrels/), STS-B dir (sts-SPLIT.tsv) or {query,pos,neg} JSONL",
    )
    p.add_argument("--out", required=True, metavar="HEAD_DIR", help="directory to write the best head to")
    p.add_argument(
        "--head",
        choices=tuple(HEAD_NAMES),
        default="qbec",
        help=heads_help(),
    )
    p.add_argument("--out-dim", type=positive_int, default=256, help="output dim / qubits (default 256)")
    p.add_argument("--split", default="train", help="qrels split to train on (default train)")
    p.add_argument(
        "--pseudo-queries",
        type=positive_int,
        nargs="?",
        const=PSEUDO_QUERIES,
        default=0,
        metavar="N",
        help=f"label-free: DATA is a corpus (JSONL, BEIR or text folder); train on N sentences cut from "
        f"its passages, each with its passage minus the sentence as positive and BM25 negatives; no qrels "
        f"read (default N {PSEUDO_QUERIES})",
    )
    p.add_argument("--rel-level", type=int, default=1, help="qrels score counted as relevant (default 1)")
    p.add_argument("--frac", type=frac_float, default=1.0, help="fraction of training queries (default 1.0)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--epochs", type=positive_int, default=10, help="max epochs (default 10)")
    p.add_argument("--patience", type=positive_int, default=2, help="early-stopping patience (default 2)")
    p.add_argument(
        "--negatives", type=positive_int, default=7, help="hard negatives per positive (default 7)"
    )
    p.add_argument("--similarity", choices=("log", "linear"), default="log", help="log F or F (state heads)")
    p.add_argument(
        "--scale",
        type=positive_float,
        default=None,
        help="logit scale (default 20 for F and cosine, 1 for log F)",
    )
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--val-frac", type=float, default=0.1, help="share of queries held out (default 0.1)")
    p.add_argument(
        "--train-layers",
        type=non_negative_int,
        default=0,
        help="also fine-tune the encoder's last N transformer layers (default 0: frozen encoder)",
    )
    p.add_argument(
        "--encoder-lr", type=positive_float, default=2e-5, help="learning rate of the encoder layers"
    )
    p.add_argument("--val-depth", type=positive_int, default=100, help="cosine candidates per val query")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"encoder name or path (default {DEFAULT_MODEL})")
    add_runtime_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Runs ``qrerank train`` with the parsed ``args``; returns the exit code."""
    from qrerank.embed.runtime import parse_runtime
    from qrerank.errors import InputError
    from qrerank.train.trainer import train

    out_dir(args.out)  # refused now, not after training
    runtime = parse_runtime(args.runtime)
    if runtime.is_onnx and args.train_layers:
        raise InputError(
            f"--train-layers {args.train_layers} fine-tunes the encoder, which needs the torch runtime; "
            f"drop --runtime {runtime.value} (a frozen-encoder head, --train-layers 0, can use it)"
        )
    config = _config(args)
    command = _command(args, runtime)
    encoder = None
    if runtime.is_onnx:  # the trainer loads config.model on torch itself
        from qrerank.embed.models import load_encoder

        encoder = load_encoder(args.model, runtime=runtime)
    result = train(args.data, config, args.out, encoder=encoder, command=command, show_progress=True)
    _report(args, result)
    return 0


def _config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of the parsed ``args``."""
    from qrerank.train.trainer import TrainConfig

    return TrainConfig(
        head=args.head,
        out_dim=args.out_dim,
        split=args.split,
        rel_level=args.rel_level,
        frac=args.frac,
        seed=args.seed,
        epochs=args.epochs,
        patience=args.patience,
        negatives=args.negatives,
        similarity=args.similarity,
        scale=args.scale,
        lr=args.lr,
        batch_size=args.batch_size,
        val_frac=args.val_frac,
        train_layers=args.train_layers,
        encoder_lr=args.encoder_lr,
        val_depth=args.val_depth,
        model=args.model,
        pseudo_queries=args.pseudo_queries,
    )


def _command(args: argparse.Namespace, runtime: Runtime) -> str:
    """The command line that reproduces this training run, with every setting spelled out (for the card)."""
    return "qrerank train " + shlex.join(
        [args.data, "--head", args.head, "--out-dim", str(args.out_dim)]
        + (["--pseudo-queries", str(args.pseudo_queries)] if args.pseudo_queries else ["--split", args.split])
        + ["--rel-level", str(args.rel_level), "--frac", str(args.frac), "--seed", str(args.seed)]
        + ["--epochs", str(args.epochs), "--patience", str(args.patience), "--negatives", str(args.negatives)]
        + ["--similarity", args.similarity, "--lr", str(args.lr)]
        + (["--scale", str(args.scale)] if args.scale is not None else [])
        + ["--batch-size", str(args.batch_size), "--val-frac", str(args.val_frac), "--model", args.model]
        + ["--val-depth", str(args.val_depth)]
        + (
            ["--train-layers", str(args.train_layers), "--encoder-lr", str(args.encoder_lr)]
            if args.train_layers
            else []
        )
        + (["--runtime", runtime.value] if runtime.is_onnx else [])
        + ["--out", args.out]
    )


def _report(args: argparse.Namespace, result: TrainResult) -> None:
    """The lines printed after training: size, time, best validation nDCG@10 vs cosine, output."""
    write(
        f"trained {args.head} head ({result.trainable_parameters:,} params) in {result.train_seconds:.1f}s "
        f"(+{result.encode_seconds:.1f}s encoding): best val nDCG@10 {result.best_val_ndcg10:.4f} "
        f"(epoch {result.best_epoch}; cosine {result.cosine_val_ndcg10:.4f}) -> {args.out}"
    )
    if result.best_epoch == 0 and result.num_val_queries:
        write("note: no epoch beat the untrained head on validation; the saved head is the untrained one")
