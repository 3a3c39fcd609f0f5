"""The methods ``qrerank eval`` compares, scored on the same per-query candidate lists.

Each method's formula is :mod:`qrerank.rerank.methods`' (its table names them all; the dispatch
:func:`~qrerank.rerank.methods.method_scores` is the one every scoring path uses). What eval
adds:

- BM25 statistics come from the dataset's whole corpus.jsonl (``bm25s``, Lucene variant,
  k1 = 0.9, b = 0.4 as Anserini; English stopwords, Snowball stemmer);
- ``convex`` and ``convex-fidelity`` take their BM25 weight from the tuning split (0.3 without
  one); ``fused-run:W`` sets the run's weight;
- ``first`` is the ``--run`` file's score of each candidate (``--protocol rerank``);
- ``head:PATH`` loads a head with ``qrerank.heads.bundle.load_head_bundle``; ``run:NAME`` is
  the dataset's ``runs/NAME.trec`` as is, an external anchor with its own candidates.

Dense signals are computed in float64 (see ``CandidateScorer``), once as ``[Q, N]`` matrices
over the union of all candidates with the batched core functions, then gathered per query, so
every method sees identical candidates and the sweeps over tau and alpha cost one fidelity
matrix per tau.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from qrerank.core.encoding import bloch_angles
from qrerank.core.fidelity import log_fidelity_angles_matrix
from qrerank.core.fusion import RRF_K, Normalize, reciprocal_rank_fusion
from qrerank.core.head import Head
from qrerank.core.similarity import cosine_matrix
from qrerank.errors import InputError
from qrerank.index.lexical import BM25_B, BM25_K1, BM25Scorer
from qrerank.rerank.methods import PLAIN_METHODS, Method, MethodSpec, hybrid_of, method_scores
from qrerank.rerank.scoring import top_order

__all__ = [
    "BM25_B",
    "BM25_K1",
    "CONVEX_WEIGHT",
    "RRF_K",
    "BM25Scorer",
    "CandidateScorer",
    "parse_methods",
    "reciprocal_rank_fusion",
]
CONVEX_WEIGHT = 0.3  # BM25 weight of convex / convex-fidelity without a tuning split


def parse_methods(text: str | Sequence[str]) -> list[MethodSpec]:
    """``"bm25,cosine,...,fused-run[:W],run:NAME,head:PATH"`` -> specs (order kept, duplicates dropped)."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text)]
    specs: list[MethodSpec] = []
    for item in filter(None, items):
        kind, _, arg = item.partition(":")
        if kind in ("run", "head"):
            if not arg:
                raise InputError(
                    f"method {item!r} needs a value: {kind}:{'NAME' if kind == 'run' else 'PATH'}"
                )
            spec = MethodSpec(kind=Method(kind), arg=arg)
        elif kind == Method.FUSED_RUN and arg:
            spec = MethodSpec(kind=Method.FUSED_RUN, arg=f"{_weight(arg, item):g}")
        elif item in PLAIN_METHODS:
            spec = MethodSpec(kind=Method(item))
        else:
            raise InputError(
                f"unknown method {item!r}; choose from {', '.join(PLAIN_METHODS)}, fused-run:W, run:NAME, "
                "head:PATH"
            )
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise InputError("no methods given")
    return specs


def _weight(text: str, item: str) -> float:
    try:
        w = float(text)
    except ValueError:
        w = float("nan")
    if not 0.0 <= w <= 1.0:
        raise InputError(f"method {item!r}: the weight after ':' must be a number in [0, 1]")
    return w


class CandidateScorer:
    """Scores of every method on each query's candidate list.

    Args:
        qids, queries: the evaluated query ids and their texts (same order as ``q_emb`` rows).
        candidates: qid -> candidate doc ids (the list every method ranks).
        doc_ids: ids of the rows of ``d_emb`` (must cover every candidate).
        q_emb, d_emb: ``[Q, d]`` and ``[N, d]`` embeddings; None when no dense method runs.
        bm25: a BM25Scorer whose collection covers every candidate, or None.
        run_scores: qid -> [(doc id, first-stage score)] of the run the candidates came from
            (``Dataset.run``), for first / rrf-run / fused-run; None without one.

    A head trained with its encoder's last layers (``--train-layers``) scores embeddings of its
    own encoder: register them with :meth:`set_head_embeddings` (same row order).
    """

    def __init__(
        self,
        *,
        qids: Sequence[str],
        queries: Mapping[str, str],
        candidates: Mapping[str, Sequence[str]],
        doc_ids: Sequence[str],
        q_emb: np.ndarray | None,
        d_emb: np.ndarray | None,
        bm25: BM25Scorer | None = None,
        rrf_k: int = RRF_K,
        run_scores: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    ) -> None:
        self.qids = list(qids)
        self.queries = queries
        self.candidates = {q: list(candidates.get(q, ())) for q in self.qids}
        row = {d: i for i, d in enumerate(doc_ids)}
        self._idx = {
            q: torch.tensor([row[d] for d in c], dtype=torch.long) for q, c in self.candidates.items()
        }
        # float64: core's per-qubit floor (1 - 1e-12) rounds to 1 in float32, so a saturated
        # qubit pair would give log F = -inf and NaN after min-max; in float64 it stays finite.
        self._q = torch.from_numpy(np.asarray(q_emb, dtype=np.float64)) if q_emb is not None else None
        self._d = torch.from_numpy(np.asarray(d_emb, dtype=np.float64)) if d_emb is not None else None
        self.bm25 = bm25
        self.rrf_k = rrf_k
        self._cos: torch.Tensor | None = None
        self._logf: dict[float, torch.Tensor] = {}
        self._head: dict[str, torch.Tensor] = {}
        self._head_emb: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._bm25: dict[str, torch.Tensor] = {}
        self.run_scores = {q: dict(r) for q, r in run_scores.items()} if run_scores is not None else None

    def set_head_embeddings(self, key: str, q_emb: np.ndarray, d_emb: np.ndarray) -> None:
        """Score head ``key`` on these ``[Q, d]`` / ``[N, d]`` rows instead of the shared ones."""
        self._head_emb[key] = (
            torch.from_numpy(np.asarray(q_emb, dtype=np.float64)),
            torch.from_numpy(np.asarray(d_emb, dtype=np.float64)),
        )
        self._head.pop(key, None)

    @property
    def dim(self) -> int:
        if self._q is None:
            raise InputError("dense methods need an encoder")
        return int(self._q.shape[1])

    def _dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._q is None or self._d is None:
            raise InputError("dense methods need an encoder")
        return self._q, self._d

    def cosine(self, i: int) -> torch.Tensor:
        if self._cos is None:
            q, d = self._dense()
            self._cos = cosine_matrix(q, d)
        return self._cos[i, self._idx[self.qids[i]]]

    def log_fidelity(self, i: int, tau: float) -> torch.Tensor:
        if tau not in self._logf:
            q, d = self._dense()
            self._logf[tau] = log_fidelity_angles_matrix(bloch_angles(q, tau), bloch_angles(d, tau))
        return self._logf[tau][i, self._idx[self.qids[i]]]

    def head_similarity(self, i: int, key: str, head: Head) -> torch.Tensor:
        if key not in self._head:
            q, d = self._head_emb[key] if key in self._head_emb else self._dense()
            with torch.no_grad():
                self._head[key] = head.similarity_matrix(q, d)
        return self._head[key][i, self._idx[self.qids[i]]]

    def bm25_scores(self, i: int) -> torch.Tensor:
        qid = self.qids[i]
        if self.bm25 is None:
            raise InputError("bm25 needs the corpus")
        if qid not in self._bm25:
            full = self.bm25.scores(self.queries[qid])
            rows = [self.bm25.row[d] for d in self.candidates[qid]]
            self._bm25[qid] = torch.from_numpy(full[rows])
        return self._bm25[qid]

    def first_scores(self, i: int) -> torch.Tensor:
        """The run's own score of each of query ``i``'s candidates (float64)."""
        qid = self.qids[i]
        if self.run_scores is None:
            raise InputError("first, rrf-run and fused-run need the run's scores: use --protocol rerank")
        run = self.run_scores.get(qid, {})
        missing = [d for d in self.candidates[qid] if d not in run]
        if missing:
            raise InputError(f"query {qid}: candidate {missing[0]!r} has no score in the run")
        return torch.tensor([run[d] for d in self.candidates[qid]], dtype=torch.float64)

    def scores(self, spec: MethodSpec, i: int, heads: Mapping[str, Head] | None = None) -> torch.Tensor:
        """``[c]`` scores of query ``i``'s candidates under ``spec``."""
        return method_scores(spec, _QuerySignals(self, i, heads or {}), rrf_k=self.rrf_k)

    def run(
        self, spec: MethodSpec, depth: int, heads: Mapping[str, Head] | None = None
    ) -> dict[str, dict[str, float]]:
        """``{qid: {doc_id: score}}`` holding each query's top ``depth`` candidates."""
        out: dict[str, dict[str, float]] = {}
        for i, qid in enumerate(self.qids):
            cands = self.candidates[qid]
            if not cands:
                out[qid] = {}
                continue
            s = self.scores(spec, i, heads)
            top = top_order(s, depth)
            out[qid] = dict(zip([cands[j] for j in top.tolist()], s[top].tolist(), strict=True))
        return out


class _QuerySignals:
    """:class:`~qrerank.rerank.methods.Signals` of one query of a CandidateScorer."""

    def __init__(self, scorer: CandidateScorer, i: int, heads: Mapping[str, Head]) -> None:
        self.scorer, self.i, self.heads = scorer, i, heads

    @property
    def n_qubits(self) -> int:
        return self.scorer.dim

    def cosine(self) -> torch.Tensor:
        return self.scorer.cosine(self.i)

    def quantum(self, tau: float | None) -> torch.Tensor:
        if tau is None:
            raise ValueError("method needs tau")
        return self.scorer.log_fidelity(self.i, tau)

    def hybrid(self, tau: float | None, alpha: float, normalize: Normalize) -> torch.Tensor:
        return hybrid_of(self, tau, alpha, normalize)

    def lexical(self) -> torch.Tensor:
        return self.scorer.bm25_scores(self.i)

    def first(self) -> torch.Tensor:
        return self.scorer.first_scores(self.i)

    def head(self, key: str) -> torch.Tensor:
        if key not in self.heads:
            raise InputError(f"head {key!r} is not loaded")
        return self.scorer.head_similarity(self.i, key, self.heads[key])
