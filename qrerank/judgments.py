"""Human judgments on disk: relevance grades (qrels) and graded similarity (STS-B pairs).

The readers that training (:mod:`qrerank.train`) and evaluation (:mod:`qrerank.eval`) share,
below both. Every reader raises :class:`~qrerank.errors.InputError` with the file and 1-based
line number of the first bad line.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from qrerank.errors import InputError

Qrels = dict[str, dict[str, int]]


def read_qrels(path: str | os.PathLike[str]) -> Qrels:
    """A qrels file -> ``{qid: {docid: grade}}``.

    BEIR qrels (``qid docid grade``, tab or space separated, optional header) or TREC qrels
    (``qid 0 docid grade``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no qrels file: {path}")
    qrels: Qrels = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if lineno == 1 and parts[0] in ("query-id", "query_id", "qid"):
                continue
            if len(parts) == 4:  # TREC: qid iteration docid grade
                parts = [parts[0], parts[2], parts[3]]
            if len(parts) != 3:
                raise InputError(
                    f"{path}:{lineno}: expected 'query-id corpus-id score', got {line.strip()!r}"
                )
            qid, docid, grade = parts
            try:
                qrels.setdefault(qid, {})[docid] = int(float(grade))
            except ValueError:
                raise InputError(f"{path}:{lineno}: relevance grade {grade!r} is not a number") from None
    if not qrels:
        raise InputError(f"{path} holds no judgements")
    return qrels


def read_sts(path: str | os.PathLike[str]) -> tuple[list[str], list[str], np.ndarray]:
    """``(sentences1, sentences2, gold scores)`` of an STS-B TSV file (header optional)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no STS file: {path}")
    s1: list[str] = []
    s2: list[str] = []
    gold: list[float] = []
    with path.open(encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not row or (lineno == 1 and row[0] == "genre"):
                continue
            if len(row) < 7:
                raise InputError(f"{path}:{lineno}: expected 7 tab-separated columns, got {len(row)}")
            try:
                gold.append(float(row[4]))
            except ValueError:
                raise InputError(f"{path}:{lineno}: score {row[4]!r} is not a number") from None
            s1.append(row[5])
            s2.append(row[6])
    if not gold:
        raise InputError(f"{path} holds no sentence pairs")
    return s1, s2, np.asarray(gold, dtype=np.float64)
