"""Request and response bodies of the HTTP API (pydantic lives only here, at the edge).

Two rerank shapes are spoken:

* Cohere (``/v1/rerank``, ``/v2/rerank``, ``/rerank``): ``{query, documents, top_n?,
  return_documents?}`` -> ``{id, results: [{index, relevance_score, document?}], meta}``.
* Hugging Face text-embeddings-inference (``/tei/rerank``, and ``/rerank`` when the body has
  ``texts``): ``{query, texts, raw_scores?, return_text?, truncate?}`` -> ``[{index, score, text?}]``.

Both accept the extra fields ``method`` (cosine | fidelity | hybrid) and ``alpha``, and results
carry the two raw signals ``cosine`` and ``quantum``, with ``quantum_kind`` saying what
``quantum`` is (``log_fidelity`` of the states, or ``head_cosine`` for a vector head);
``log_fidelity`` repeats ``quantum`` for clients of the 0.1 API. Unknown fields (Cohere's
``rank_fields``, ``max_tokens_per_doc``, ...) are ignored.

``relevance_score`` (Cohere) and ``score`` (TEI, unless ``raw_scores``) are the ranking score
mapped monotonically to [0, 1]: cosine -> (1 + cos) / 2; fidelity -> the geometric-mean
per-qubit fidelity F^(1/n) = exp(log F / n); hybrid -> the min-max blend itself, which is
*relative to the request's documents*: each signal is rescaled to [0, 1] over them, so the best
document on both signals gets 1 and the worst 0 however relevant they are, and scores are not
comparable across requests (a signal that is constant over the documents, as with a single
document, contributes its absolute value instead of 0). For a threshold or a comparison across
requests use ``method: cosine`` or ``fidelity``, or the absolute ``cosine`` and ``quantum``
every result carries. ``raw_scores`` returns the unmapped ranking score (hybrid blend, cosine,
or log-fidelity).

Numbers must be finite JSON numbers of the right type: NaN, Infinity, numbers that overflow
to infinity (``1e400``), strings and booleans are refused with 422 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from qrerank.rerank.methods import Fusion, Method, RerankMethod, SearchMethod


def _unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it holds a lone surrogate)") from None
    return value


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _document(value: Any) -> str:
    text = value.get("text") if isinstance(value, dict) else value
    if not isinstance(text, str):
        raise ValueError("must be a string or an object with a string 'text' field")
    return _unicode(text)


Text = Annotated[str, AfterValidator(_unicode)]
Query = Annotated[str, AfterValidator(_unicode), AfterValidator(_non_blank)]
DocumentItem = Annotated[
    str,
    PlainValidator(_document),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                },
            ]
        }
    ),
]
# strict: JSON numbers only. Lax mode would read true as 1 and "0.5" as 0.5, hiding client bugs.
Alpha = Annotated[float | None, Field(ge=0.0, le=1.0, strict=True, description="hybrid weight of cosine")]
RELEVANCE = (
    "ranking score mapped to [0, 1], best first. cosine: (1 + cos) / 2; fidelity: exp(log F / n); "
    "hybrid: the min-max blend over this request's documents, relative to them (best 1, worst 0) "
    "and not comparable across requests; use `cosine` / `quantum` for absolute values"
)
# Only the rerank methods: a body naming another Method (bm25, first, ...) is a 422, not a 500.
MethodField = Annotated[
    RerankMethod | None, Field(description="ranking signal; default: the server's --method")
]
SearchMethodField = Annotated[
    SearchMethod | None,
    Field(
        description="ranking signal; default: the server's --method. lexical: BM25 top-k; fused: dense "
        "and BM25 top-k united and fused (needs an index built without --no-lexical)"
    ),
]
LEXICAL_RELEVANCE = (
    " lexical: bm25 / (1 + bm25); fused: rrf -> the RRF score over its maximum 2 / 61, convex -> the "
    "blend itself (relative to the candidates)"
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


Quantum = Annotated[
    float,
    Field(description="the quantum signal: log F of the states, or a vector head's projections' cosine"),
]
QuantumKind = Annotated[Literal["log_fidelity", "head_cosine"], Field(description="what `quantum` holds")]
LogFidelity = Annotated[
    float, Field(description="deprecated: the same value as `quantum` (kept for 0.1 clients)")
]


# --- Cohere -----------------------------------------------------------------------------------


class CohereRerankRequest(_Body):
    """Cohere's rerank request (v1 and v2)."""

    model: str | None = Field(default=None, description="accepted and ignored: the server has one model")
    query: Query
    documents: list[DocumentItem] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1, strict=True)
    return_documents: bool = False
    method: MethodField = None
    alpha: Alpha = None
    truncate: bool | None = Field(
        default=None, description="cut documents over the size limit (true) or refuse them with 413"
    )


class RerankDocument(_Out):
    """A reranked document's text, returned with ``return_documents``."""

    text: str


class CohereResult(_Out):
    """One Cohere rerank result: the document's index, its scores, its text if asked."""

    index: int
    relevance_score: float = Field(description=RELEVANCE)
    document: RerankDocument | None = None
    cosine: float
    quantum: Quantum
    quantum_kind: QuantumKind
    log_fidelity: LogFidelity


class ApiVersion(_Out):
    """The API version in a Cohere response's ``meta``."""

    version: str = "2"


class BilledUnits(_Out):
    """The billed units in a Cohere response's ``meta`` (always one search unit)."""

    search_units: int = 1


class CohereMeta(_Out):
    """A Cohere rerank response's ``meta``: API version, billed units, and the model, method and alpha."""

    api_version: ApiVersion = Field(default_factory=ApiVersion)
    billed_units: BilledUnits = Field(default_factory=BilledUnits)
    model: str
    method: Method
    alpha: float


class CohereRerankResponse(_Out):
    """A Cohere rerank response (v1 and v2): the results, best first, and ``meta``."""

    id: str
    results: list[CohereResult]
    meta: CohereMeta


# --- text-embeddings-inference ----------------------------------------------------------------


class TEIRerankRequest(_Body):
    """text-embeddings-inference's rerank request."""

    query: Query
    texts: list[Text] = Field(min_length=1)
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = None
    truncation_direction: Literal["Left", "Right", "left", "right"] = "Right"
    method: MethodField = None
    alpha: Alpha = None


class TEIRank(_Out):
    """One text-embeddings-inference rerank result: the text's index, its scores, its text if asked."""

    index: int
    score: float = Field(description=RELEVANCE + "; with raw_scores the unmapped ranking score")
    text: str | None = None
    cosine: float
    quantum: Quantum
    quantum_kind: QuantumKind
    log_fidelity: LogFidelity


# --- search and embed -------------------------------------------------------------------------


class SearchRequest(_Body):
    """A /search request: retrieve top-k candidates from the index, rerank, return top-n."""

    query: Query
    k: int = Field(
        default=100, ge=1, strict=True, description="candidates retrieved from the index by cosine"
    )
    top_n: int = Field(default=10, ge=1, strict=True, description="reranked results returned")
    method: SearchMethodField = None
    alpha: Alpha = None
    lexical_weight: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        strict=True,
        description="fused, convex: weight of min-max BM25 against the min-max dense score (default 0.3)",
    )
    fusion: Fusion | None = Field(
        default=None, description="fused: rrf (default) or convex (the default when lexical_weight is given)"
    )


class SearchHit(_Out):
    """One /search result: the stored document, its rank and its scores."""

    index: int = Field(description="row in the index")
    rank: int
    doc_id: str
    title: str
    text: str
    metadata: dict[str, Any]
    score: float
    relevance_score: float = Field(description=RELEVANCE + " (over the k candidates);" + LEXICAL_RELEVANCE)
    cosine: float
    quantum: Quantum
    quantum_kind: QuantumKind
    log_fidelity: LogFidelity
    bm25: float | None = Field(default=None, description="BM25 score (methods lexical and fused only)")


class SearchResponse(_Out):
    """A /search response: the model, the method and the results, best first."""

    model: str
    method: SearchMethod
    results: list[SearchHit]


class EmbedRequest(_Body):
    """An /embed request: texts to embed, optionally with their Bloch angles."""

    texts: list[Text] = Field(min_length=1)
    angles: bool = Field(default=False, description="also return Bloch polar angles theta in (0, pi)")
    tau: float | None = Field(
        default=None, ge=1e-6, le=1e6, strict=True, description="Bloch temperature; default 1/sqrt(d)"
    )
    truncate: bool | None = None


class Embedding(_Out):
    """One text's embedding (and Bloch angles if asked) in an /embed response."""

    index: int
    embedding: list[float]
    angles: list[float] | None = None


class EmbedResponse(_Out):
    """An /embed response: the model, dimension, tau and one embedding per text."""

    model: str
    dim: int
    tau: float | None = None
    data: list[Embedding]


# --- health and errors ------------------------------------------------------------------------


class IndexInfo(_Out):
    """The loaded index in a /health response: its directory name, size and model."""

    name: str = Field(description="the index directory's name (never its path: /health is public)")
    documents: int
    model: str


class Health(_Out):
    """A /health response: version, model, dimension, method, queue depth and the loaded index."""

    status: Literal["ok"] = "ok"
    version: str
    model: str
    dim: int
    method: Method
    queue_depth: int
    index: IndexInfo | None = None


class ErrorBody(_Out):
    """The JSON body of every error response: the message, its type and the field at fault, if any."""

    message: str = Field(description="what was wrong, naming the field")
    type: str
    field: str | None = None
