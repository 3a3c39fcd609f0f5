"""What the routes call: a Reranker fed by the micro-batcher, plus the optional index search.

The engine knows nothing of HTTP shapes. It enforces the size limits (raising
:class:`LimitError`, answered 413), encodes through :class:`MicroBatcher`, scores with the
library's :meth:`Reranker.score_embeddings` and ranks with :func:`ranked`, so a service ranking
is exactly the library's ranking.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qrerank.core.encoding import bloch_angles, default_tau
from qrerank.core.fusion import RRF_K
from qrerank.embed.base import Encoder
from qrerank.rerank.methods import (
    Fusion,
    Method,
    SearchMethod,
    parse_fusion,
    parse_method,
    parse_search_method,
)
from qrerank.rerank.reranker import Reranker, ranked
from qrerank.service.batcher import BatcherFactory, BatchHook, MicroBatcher, TextBatcher
from qrerank.service.config import LongDocs, Settings
from qrerank.types import Document, RankedDoc

log = logging.getLogger(__name__)


class LimitError(Exception):
    """A request over a size limit (HTTP 413); ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class NoIndexError(LookupError):
    """``/search`` without a loaded index (HTTP 404)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """A ranked document and its ranking score mapped to [0, 1]."""

    doc: RankedDoc
    relevance: float

    def signals(self) -> dict[str, Any]:
        """The raw signals every result carries (JSON-safe numbers)."""
        q = finite(self.doc.quantum)
        return {
            "cosine": finite(self.doc.cosine),
            "quantum": q,
            "quantum_kind": self.doc.quantum_kind,
            "log_fidelity": q,
        }


def finite(x: float, fallback: float = 0.0) -> float:
    """JSON has no NaN or infinity: map them to ``fallback`` / +-1e30."""
    if math.isnan(x):
        return fallback
    return max(min(x, 1e30), -1e30)


def load_index(path: str) -> Any:
    """The DocumentIndex at ``path``; IndexFormatError (one line) if it is missing or corrupt."""
    from qrerank.index.directory import DocumentIndex

    return DocumentIndex.load(path)


def load_reranker(
    settings: Settings, index_model: str | None = None, normalized: bool = True, runtime: str | None = None
) -> Reranker:
    """The Reranker the settings describe (model and runtime default to the index's)."""
    from qrerank.embed.models import DEFAULT_MODEL, load_encoder
    from qrerank.embed.runtime import parse_runtime
    from qrerank.heads.bundle import load_head_bundle

    name = settings.model or index_model or DEFAULT_MODEL
    rt = parse_runtime(runtime or settings.runtime)
    # No on-disk embedding cache: a server must not grow a file with every text it is sent.
    bundle = (
        load_head_bundle(settings.head, model=settings.model, device=settings.device, cache=False, runtime=rt)
        if settings.head
        else None
    )
    encoder = (bundle.encoder if bundle is not None else None) or load_encoder(
        name, device=settings.device, normalize=normalized, cache=False, runtime=rt
    )
    return Reranker(
        encoder,
        method=settings.method,
        alpha=settings.alpha,
        tau=settings.tau,
        head=bundle,
        batch_size=settings.encode_batch_size,
    )


def reranker_for(settings: Settings, index: Any = None) -> Reranker:
    """The Reranker to serve ``index`` (a DocumentIndex or None) with.

    The index's model and runtime by default; a runtime setting other than the index's is an
    InputError.
    """
    from qrerank.embed.runtime import runtime_for_index

    if index is None:
        return load_reranker(settings)
    runtime = runtime_for_index(index.runtime, settings.runtime, Path(index.path).name)
    return load_reranker(settings, index.model, index.normalized, runtime)


class _BatchedEncoder:
    """An Encoder for worker threads: ``encode`` waits for the event loop's micro-batcher.

    It lets the library's SearchPipeline run unchanged on a thread while its query encoding
    joins the batches of concurrent requests.
    """

    def __init__(self, inner: Encoder, batcher: TextBatcher, loop: asyncio.AbstractEventLoop, timeout: float):
        self.name, self.dim, self.normalized = inner.name, inner.dim, inner.normalized
        self._batcher, self._loop, self._timeout = batcher, loop, timeout

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False
    ) -> np.ndarray:
        future = asyncio.run_coroutine_threadsafe(self._batcher.encode(list(texts)), self._loop)
        try:
            return future.result(self._timeout)
        except TimeoutError:
            future.cancel()
            raise


class Engine:
    """Reranker + micro-batcher + (optional) SearchPipeline, with the service's limits."""

    def __init__(
        self,
        settings: Settings,
        reranker: Reranker | None = None,
        index: Any = None,
        batcher: BatcherFactory = MicroBatcher,
    ) -> None:
        self.settings = settings
        self._reranker = reranker
        self._index = index  # a DocumentIndex loaded (and so validated) by the caller, if any
        self._new_batcher = batcher  # MicroBatcher; Ray Serve replicas batch with serve.batch
        self._batcher: TextBatcher | None = None
        self.pipeline: Any = None  # SearchPipeline when an index is loaded
        self.index_info: dict[str, Any] | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self, on_batch: BatchHook | None = None) -> None:
        """Load the model and the index (on a thread) unless given, and start the batcher."""
        loop = asyncio.get_running_loop()
        index = self._index
        if index is None and self.settings.index:
            index = await asyncio.to_thread(load_index, self.settings.index)
        if self._reranker is None:
            self._reranker = await asyncio.to_thread(reranker_for, self.settings, index)
        rr = self._reranker
        self._batcher = self._new_batcher(
            self._encode_sync,
            max_batch=self.settings.max_batch,
            max_wait_ms=self.settings.max_wait_ms,
            max_queue=self.settings.max_queue,
            on_batch=on_batch,
        )
        self._batcher.start()
        if index is not None:
            from qrerank.rerank.pipeline import SearchPipeline

            bridge = _BatchedEncoder(rr.encoder, self._batcher, loop, self.settings.request_timeout_s)
            # Every setting of the served Reranker (backend and shots too), only the encoder swapped.
            self.pipeline = SearchPipeline(index, reranker=rr.with_encoder(bridge))
            # The directory's name only: /health is public and must not reveal the filesystem.
            self.index_info = {"name": Path(index.path).name, "documents": len(index), "model": index.model}
        where = f" from {index.path}" if index is not None else ""
        log.info(
            "engine ready: model %s (%d-d), index %s%s",
            rr.encoder.name,
            rr.encoder.dim,
            self.index_info,
            where,
        )

    async def stop(self) -> None:
        if self._batcher is not None:
            await self._batcher.stop()

    @property
    def reranker(self) -> Reranker:
        if self._reranker is None:
            raise RuntimeError("engine not started")
        return self._reranker

    @property
    def queue_depth(self) -> int:
        return self._batcher.depth if self._batcher is not None else 0

    def _encode_sync(self, texts: list[str]) -> np.ndarray:
        return self.reranker.embed(texts).numpy()

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._batcher is None:
            raise RuntimeError("engine not started")
        return await asyncio.wait_for(self._batcher.encode(texts), self.settings.request_timeout_s)

    # --- limits -------------------------------------------------------------------------------

    def fit(self, text: str, field: str, truncate: bool | None, left: bool = False) -> str:
        """``text`` within ``max_doc_chars``: cut (keeping the start, or the end if ``left``) or 413."""
        limit = self.settings.max_query_chars if field == "query" else self.settings.max_doc_chars
        if len(text) <= limit:
            return text
        if truncate is None:
            truncate = self.settings.long_docs is LongDocs.TRUNCATE
        if not truncate:
            raise LimitError(field, f"is {len(text)} characters long; the limit is {limit}")
        return text[-limit:] if left else text[:limit]

    def check_count(self, n: int, field: str, limit: int) -> None:
        if n > limit:
            raise LimitError(field, f"holds {n} items; the limit is {limit} per request")

    # --- operations ---------------------------------------------------------------------------

    def method(self, method: Method | str | None) -> Method:
        return parse_method(method) if method is not None else self.reranker.method

    def search_method(self, method: SearchMethod | Method | str | None) -> SearchMethod:
        return parse_search_method(method if method is not None else self.reranker.method)

    def alpha(self, alpha: float | None) -> float:
        return self.reranker.alpha if alpha is None else alpha

    async def rerank(
        self,
        query: str,
        texts: Sequence[str],
        *,
        top_n: int | None = None,
        method: Method | str | None = None,
        alpha: float | None = None,
        truncate: bool | None = None,
        left: bool = False,
    ) -> list[Hit]:
        """``texts`` ranked for ``query``, best first; ``Hit.doc.index`` is the input position."""
        self.check_count(len(texts), "documents", self.settings.max_documents)
        q = self.fit(query, "query", truncate, left)
        fitted = [self.fit(t, f"documents.{i}", truncate, left) for i, t in enumerate(texts)]
        emb = await self.encode([q, *fitted])
        m = self.method(method)
        # Scoring is torch work of O(docs x dim): on a worker thread, so the event loop keeps
        # accepting and parsing requests (and feeding the batcher) meanwhile.
        return await asyncio.to_thread(self._score, emb, list(texts), m, alpha, top_n)

    def _score(
        self, emb: np.ndarray, texts: list[str], method: Method, alpha: float | None, top_n: int | None
    ) -> list[Hit]:
        vectors = torch.from_numpy(emb)
        scores = self.reranker.score_embeddings(vectors[0], vectors[1:], method=method, alpha=alpha)
        docs = [Document(text=t, doc_id=str(i)) for i, t in enumerate(texts)]
        # Only a hybrid's relevance reads the spans; a cosine ranking never computes log F for all.
        spans = (
            (_span(scores.cosine.tolist()), _span(scores.quantum.tolist()))
            if method is Method.HYBRID
            else None
        )
        return self._hits(ranked(docs, scores, top_n), method, self.alpha(alpha), spans)

    async def search(
        self,
        query: str,
        *,
        k: int,
        top_n: int,
        method: SearchMethod | Method | str | None = None,
        alpha: float | None = None,
        lexical_weight: float | None = None,
        fusion: Fusion | str | None = None,
    ) -> list[Hit]:
        """Top ``top_n`` of the index's ``k`` candidates, reranked (or BM25 / fused, see SearchPipeline)."""
        if self.pipeline is None:
            raise NoIndexError("no index is loaded: start the server with --index INDEX_DIR")
        if k > self.settings.max_k:
            raise LimitError("k", f"is {k}; the limit is {self.settings.max_k}")
        q = self.fit(query, "query", None)
        sm = self.search_method(method)
        if sm in (SearchMethod.LEXICAL, SearchMethod.FUSED):
            hits = await asyncio.to_thread(
                self.pipeline.search, q, k=k, top_n=top_n, method=sm, alpha=alpha,
                lexical_weight=lexical_weight, fusion=fusion,
            )  # fmt: skip
            how = parse_fusion(fusion, lexical_weight) if sm is SearchMethod.FUSED else None
            return [Hit(h, _lexical_relevance(h.score, how)) for h in hits]
        m = self.method(sm.value)
        hits = await asyncio.to_thread(
            self.pipeline.search, q, k=k, top_n=top_n, method=m, alpha=alpha,
            lexical_weight=lexical_weight, fusion=fusion,
        )  # fmt: skip
        # Only with top_n >= k are all the candidates the blend was normalised over in ``hits``.
        spans = (_span([h.cosine for h in hits]), _span([h.quantum for h in hits])) if top_n >= k else None
        return self._hits(hits, m, self.alpha(alpha), spans)

    async def embed(
        self,
        texts: Sequence[str],
        *,
        tau: float | None = None,
        angles: bool = False,
        truncate: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, float]:
        """``([n, d] embeddings, [n, d] Bloch angles or None, tau used)``."""
        self.check_count(len(texts), "texts", self.settings.max_embed_texts)
        fitted = [self.fit(t, f"texts.{i}", truncate) for i, t in enumerate(texts)]
        emb = await self.encode(fitted)
        tau = tau or self.reranker.tau or default_tau(emb.shape[1])
        theta = await asyncio.to_thread(_angles, emb, tau) if angles else None
        return emb, theta, tau

    def _hits(
        self,
        docs: list[RankedDoc],
        method: Method,
        alpha: float,
        spans: tuple[float, float] | None,
    ) -> list[Hit]:
        """Ranked docs with their relevance in [0, 1] (see :mod:`qrerank.service.schemas`).

        A min-max hybrid blend rescales each signal over the request's candidates, so a signal
        that is constant over them (always so for one document) contributes 0, and a lone
        document would score 0.0 however well it matches. Given the spread of each signal over
        all the candidates (``spans``: cosine, quantum), a constant signal contributes its
        absolute value instead: the same amount for every document, so the order is unchanged
        and the relevance stays in [0, 1].
        """
        out = [self.relevance(d.score, method) for d in docs]
        if method is Method.HYBRID and self.reranker.normalize == "minmax" and spans and docs:
            extra = 0.0
            if not spans[0] > 0:
                extra += alpha * self.absolute(docs[0].cosine, Method.COSINE)
            if not spans[1] > 0:
                extra += (1.0 - alpha) * self.absolute(docs[0].quantum, Method.FIDELITY)
            out = [min(max(r + extra, 0.0), 1.0) for r in out]
        return [Hit(d, r) for d, r in zip(docs, out, strict=True)]

    def relevance(self, score: float, method: Method) -> float:
        """The ranking score mapped monotonically to [0, 1] (see :mod:`qrerank.service.schemas`)."""
        if method is Method.HYBRID and self.reranker.normalize == "minmax":
            return min(max(finite(score), 0.0), 1.0)
        return self.absolute(score, method)

    def absolute(self, score: float, method: Method) -> float:
        """A cosine, log-fidelity (``FIDELITY``) or unnormalised blend mapped to [0, 1].

        Cosine-scaled scores in [-1, 1] map to (1 + s) / 2; log-fidelity of n qubit states to
        the geometric-mean per-qubit fidelity exp(log F / n).
        """
        rr = self.reranker
        if method is Method.FIDELITY and (rr.head is None or rr.head.kind == "state"):
            qubits = rr.head.out_dim if rr.head is not None else rr.encoder.dim
            value = math.exp(max(score, -1e30) / qubits)
        else:  # cosine-scaled scores in [-1, 1] (a vector head's "quantum" signal is a cosine)
            value = (1.0 + score) / 2.0
        return min(max(finite(value), 0.0), 1.0)


def _lexical_relevance(score: float, fusion: Fusion | None) -> float:
    """A lexical (``fusion`` None) or fused ranking score mapped monotonically to [0, 1].

    BM25 s >= 0 -> s / (1 + s); RRF over two lists -> its fraction of the best possible
    2 / (k + 1); a convex blend is in [0, 1] already.
    """
    if fusion is None:
        value = score / (1.0 + score) if score > 0 else 0.0
    elif fusion is Fusion.RRF:
        value = score * (RRF_K + 1) / 2.0
    else:
        value = score
    return min(max(finite(value), 0.0), 1.0)


def _span(values: list[float]) -> float:
    """max - min (0.0 for no values), the spread min-max normalisation divides by."""
    return max(values) - min(values) if values else 0.0


def _angles(emb: np.ndarray, tau: float) -> np.ndarray:
    return bloch_angles(torch.from_numpy(emb), tau).numpy()
