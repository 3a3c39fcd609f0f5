"""Arguments and output formatting shared by the commands."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qrerank.errors import InputError
from qrerank.rerank.methods import METHODS
from qrerank.types import RankedDoc


def number(
    cast: Callable[[str], float],
    what: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses with ``cast`` and checks ``low <(=) x <= high``."""

    def parse(value: str) -> Any:
        try:
            x = cast(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
        too_low = low is not None and (x <= low if low_open else x < low)
        if too_low or (high is not None and x > high) or not math.isfinite(x):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
        return x

    return parse


positive_int = number(int, "a positive integer", low=1)
non_negative_int = number(int, "an integer >= 0", low=0)
positive_float = number(float, "a positive number", low=0.0, low_open=True)
unit_float = number(float, "a number in [0, 1]", low=0.0, high=1.0)
frac_float = number(float, "a number in (0, 1]", low=0.0, high=1.0, low_open=True)


def add_runtime_arg(p: argparse.ArgumentParser, default: str = "torch") -> None:
    """The ``--runtime`` argument (the encoder runtime).

    Parsed later by :func:`qrerank.embed.runtime.parse_runtime`, so an unknown name is the usual
    one-line error (exit 2) that lists the choices.
    """
    from qrerank.embed.runtime import RUNTIMES

    p.add_argument(
        "--runtime",
        default=None,
        metavar="|".join(RUNTIMES),
        help=f"encoder runtime (default {default}); onnx and onnx-int8 run on the CPU, need qrerank[onnx]",
    )


def add_scoring_args(
    p: argparse.ArgumentParser, default_method: str | None = "hybrid", methods: Sequence[str] = METHODS
) -> None:
    p.add_argument("--method", choices=methods, default=default_method, help="ranking signal")
    p.add_argument("--alpha", type=unit_float, default=0.5, help="hybrid weight of cosine (default 0.5)")
    p.add_argument("--tau", type=positive_float, default=None, help="Bloch temperature (default 1/sqrt(d))")
    p.add_argument("--head", default=None, metavar="HEAD_DIR", help="trained head from `qrerank train`")
    p.add_argument("--top-n", type=positive_int, default=10, help="results to print (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def write(text: str) -> None:
    sys.stdout.write(text + "\n")


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def print_hits(hits: Sequence[RankedDoc], as_json: bool, *, show_id: bool = False) -> None:
    if as_json:
        rows = [
            {
                "index": h.index,
                "score": h.score,
                "text": h.text,
                "doc_id": h.doc_id,
                "title": h.title,
                "cosine": h.cosine,
                "quantum": h.quantum,
                "quantum_kind": h.quantum_kind,
                "log_fidelity": h.quantum,  # the 0.1 name, kept for readers of this JSON
                **({"bm25": h.bm25} if h.bm25 is not None else {}),
            }
            for h in hits
        ]
        write(json.dumps(rows, ensure_ascii=False))
        return
    label = "doc_id" if show_id else "index"
    lexical = any(h.bm25 is not None for h in hits)  # a column only for the lexical methods
    bm25_head = f"  {'bm25':>7}" if lexical else ""
    write(f"{'rank':>4}  {label:>10}  {'score':>8}  {'cosine':>7}  {'log F':>8}{bm25_head}  text")
    for h in hits:
        key = clip(h.doc_id, 10) if show_id else str(h.index)
        bm25 = f"  {h.bm25 or 0.0:7.3f}" if lexical else ""
        write(
            f"{h.rank:>4}  {key:>10}  {h.score:8.4f}  {h.cosine:7.4f}  {h.quantum:8.3f}{bm25}  {clip(f'{h.title}: {h.text}' if h.title else h.text, 70)}"
        )


def require_text(value: str, what: str) -> str:
    """``value`` if it is non-blank text that can be written as UTF-8, else InputError."""
    if not value.strip():
        raise InputError(f"{what} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # undecodable argv bytes arrive as lone surrogates
        raise InputError(f"{what} is not valid UTF-8 text") from None
    return value


def out_dir(value: str, flag: str = "--out") -> Path:
    """``value`` as a Path, refused before any work if it or a parent is an existing non-directory."""
    path = Path(value)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            what = "is an existing file" if p == path else f"lies under {p}, which is a file"
            raise InputError(f"{flag} {value} {what}, not a directory")
    return path
