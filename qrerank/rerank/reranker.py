"""The Reranker: a query and a list of documents in, the documents ranked out."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from qrerank.core.encoding import default_tau
from qrerank.core.fusion import Normalize
from qrerank.core.head import Head
from qrerank.embed.base import Encoder
from qrerank.embed.models import DEFAULT_MODEL, load_encoder
from qrerank.embed.runtime import Runtime
from qrerank.errors import InputError
from qrerank.rerank.methods import Method, parse_method
from qrerank.rerank.scoring import Scores, rank_order, score_candidates
from qrerank.types import Document, RankedDoc

if TYPE_CHECKING:
    from qrerank.heads.bundle import HeadBundle

DocLike = str | Mapping[str, Any] | Document


def as_document(doc: DocLike, position: int) -> Document:
    """str, ``{"text", "title"?, "_id"|"id"|"doc_id"?, ...}`` or Document -> Document."""
    if isinstance(doc, Document):
        return doc
    if isinstance(doc, str):
        return Document(text=doc, doc_id=str(position))
    if isinstance(doc, Mapping):
        text = doc.get("text")
        if not isinstance(text, str):
            raise InputError(f"document {position} has no string 'text' field")
        doc_id = doc.get("_id", doc.get("id", doc.get("doc_id", position)))
        title = doc.get("title") or ""
        meta = {k: v for k, v in doc.items() if k not in ("text", "title", "_id", "id", "doc_id")}
        return Document(text=text, title=str(title), doc_id=str(doc_id), metadata=meta)
    raise InputError(
        f"document {position} must be a string or an object with 'text', got {type(doc).__name__}"
    )


def ranked(docs: Sequence[Document], scores: Scores, top_n: int | None) -> list[RankedDoc]:
    """Sort by ``scores.score`` and wrap the first ``top_n`` as RankedDoc."""
    order = rank_order(scores.score)
    if top_n is not None:
        order = order[:top_n]
    quantum = scores.quantum_at(order).tolist()  # of the returned rows only (cosine ranking)
    return [
        RankedDoc(
            index=i,
            rank=r + 1,
            score=float(scores.score[i]),
            cosine=float(scores.cosine[i]),
            quantum=quantum[r],
            quantum_kind=scores.quantum_kind,
            text=docs[i].text,
            doc_id=docs[i].doc_id,
            title=docs[i].title,
            metadata=docs[i].metadata,
        )
        for r, i in enumerate(order.tolist())
    ]


def _head_bundle(
    head: HeadBundle | str | os.PathLike[str], encoder: Encoder | str | None, runtime: Runtime
) -> HeadBundle:
    """``head`` as a HeadBundle: a saved head is loaded with its fine-tuned encoder when it has one."""
    from qrerank.heads.bundle import HeadBundle, load_head_bundle

    if isinstance(head, HeadBundle):
        return head
    if encoder is None or isinstance(encoder, str):
        return load_head_bundle(head, model=encoder, runtime=runtime)
    # An Encoder object cannot be the saved head's fine-tuned encoder: do not load that one.
    return load_head_bundle(head, in_dim=encoder.dim, runtime=runtime, with_encoder=False)


def _bundle_encoder(bundle: HeadBundle, encoder: Encoder | str | None) -> Encoder | str | None:
    """The encoder to use with ``bundle``: its fine-tuned one if it has one, else ``encoder``."""
    if not bundle.tuned:
        return encoder
    if encoder is None or isinstance(encoder, str) or encoder is bundle.encoder:
        if bundle.encoder is not None:
            return bundle.encoder
        given = "a HeadBundle loaded without its encoder"
    else:
        given = f"the encoder {encoder.name}"
    raise InputError(
        f"head {bundle.path} was trained with fine-tuned encoder layers; pass a model name "
        f"(or head=load_head_bundle(path)) instead of {given}"
    )


class Reranker:
    """Rerank documents for a query with quantum-inspired similarity.

    Args:
        encoder: an Encoder or a model name for :func:`qrerank.load_encoder`; None = the
            default model, or the fine-tuned encoder a saved ``head`` was trained with.
        method: "cosine", "fidelity" (log-fidelity of Bloch states) or "hybrid" (blend).
        alpha: hybrid weight of cosine; 1 - alpha goes to the quantum score.
        tau: Bloch temperature; None = 1/sqrt(d).
        head: a trained Head, a :class:`~qrerank.heads.bundle.HeadBundle`, or the path of a
            saved head (``qrerank train``); a head with fine-tuned encoder layers brings its own
            encoder (``encoder`` may then only name its base model).
        backend: "closed-form" (default), or "qiskit"/"pennylane" to compute fidelity by
            circuit simulation (extras; small dims only).
        shots: shot count for simulator backends (None = exact statevector).
        runtime: encoder runtime when ``encoder`` is a name (torch, onnx, onnx-int8); a head
            with fine-tuned encoder layers runs on torch only.
        compile: score the closed form in one compiled pass (``qrerank.core.candidates``):
            ~4x faster scoring of 100 candidates after a one-off compile of seconds per process,
            for long-lived processes; off, the same formulas run eagerly.
    """

    def __init__(
        self,
        encoder: Encoder | str | None = None,
        *,
        method: Method | str = Method.HYBRID,
        alpha: float = 0.5,
        tau: float | None = None,
        head: Head | HeadBundle | str | os.PathLike[str] | None = None,
        normalize: Normalize = "minmax",
        backend: str = "closed-form",
        shots: int | None = None,
        batch_size: int = 32,
        runtime: str | None = None,
        compile: bool = False,
    ) -> None:
        from qrerank.embed.runtime import parse_runtime

        rt = parse_runtime(runtime)
        if head is not None and not isinstance(head, Head):
            bundle = _head_bundle(head, encoder, rt)
            encoder, head = _bundle_encoder(bundle, encoder), bundle.head
        if encoder is None:
            encoder = DEFAULT_MODEL
        self.encoder = load_encoder(encoder, runtime=rt) if isinstance(encoder, str) else encoder
        self.method = parse_method(method)
        if not 0.0 <= alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1], got {alpha}")
        if tau is not None and not 0.0 < tau < math.inf:  # also refuses NaN
            raise InputError(f"tau must be a positive finite number, got {tau}")
        self.alpha, self.tau, self.normalize = alpha, tau, normalize
        if head is not None and head.in_dim != self.encoder.dim:
            raise InputError(f"head expects {head.in_dim}-d embeddings, encoder gives {self.encoder.dim}-d")
        self.head = head
        self.backend, self.shots, self.batch_size = backend, shots, batch_size
        self.compile = compile

    def with_encoder(self, encoder: Encoder) -> Reranker:
        """This Reranker (method, alpha, tau, head, backend, shots, ...) on another encoder of the same dim.

        Every setting is kept, so a caller that only swaps the encoder (the service's batching
        bridge) cannot drop one.
        """
        if encoder.dim != self.encoder.dim:
            raise InputError(
                f"encoder gives {encoder.dim}-d embeddings, this Reranker's {self.encoder.dim}-d"
            )
        clone = copy.copy(self)
        clone.encoder = encoder
        return clone

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.encoder.encode(list(texts), batch_size=self.batch_size)))

    def score_embeddings(
        self,
        query: torch.Tensor,
        docs: torch.Tensor,
        *,
        method: Method | str | None = None,
        alpha: float | None = None,
        doc_angles: torch.Tensor | None = None,
        tau: float | None = None,
        log_fidelity: torch.Tensor | None = None,
    ) -> Scores:
        """Scores of ``[D, d]`` doc embeddings for a ``[d]`` query embedding (``tau`` overrides).

        ``log_fidelity`` (``[D]``, the closed form at this ``tau``, e.g. from an angle-space
        index's first stage) is used as is; a simulator backend computes its own instead (that
        is the backend's point). With a head it is an InputError: the head scores its own
        outputs, so a Bloch log F given for the embeddings would be silently unused.
        """
        if log_fidelity is not None and self.head is not None:
            raise InputError(
                "log_fidelity is the Bloch states' closed form: a Reranker with a head scores its own"
            )
        tau = self.tau if tau is None else tau
        quantum = log_fidelity if self.head is None and self.backend == "closed-form" else None
        if self.backend != "closed-form":
            if self.head is not None:
                raise InputError(
                    "simulator backends score the plain Bloch encoding; use backend='closed-form' with a head"
                )
            from qrerank.quantum.backends import score_log_fidelity

            bloch_tau = tau if tau is not None else default_tau(query.shape[-1])
            quantum = score_log_fidelity(query, docs, bloch_tau, self.backend, self.shots)
        return score_candidates(
            query,
            docs,
            method=method or self.method,
            alpha=self.alpha if alpha is None else alpha,
            tau=tau,
            head=self.head,
            doc_angles=doc_angles,
            normalize=self.normalize,
            quantum=quantum,
            compile=self.compile,
        )

    def rank(
        self,
        query: str,
        documents: Sequence[DocLike],
        *,
        top_n: int | None = None,
        method: Method | str | None = None,
        alpha: float | None = None,
    ) -> list[RankedDoc]:
        """Rank ``documents`` for ``query``, best first; ``index`` is the input position."""
        if not isinstance(query, str) or not query.strip():
            raise InputError("query must be a non-empty string")
        if top_n is not None and top_n < 1:
            raise InputError(f"top_n must be >= 1, got {top_n}")
        docs = [as_document(d, i) for i, d in enumerate(documents)]
        if not docs:
            return []
        emb = self.embed([query] + [d.content for d in docs])
        scores = self.score_embeddings(emb[0], emb[1:], method=method, alpha=alpha)
        return ranked(docs, scores, top_n)
