"""Property-based fuzzing of the API from its own OpenAPI schema (schemathesis): never a 5xx.

Valid and invalid bodies (wrong types, missing fields, odd Unicode, huge numbers) are generated
for every operation and sent over HTTP to a real uvicorn on 127.0.0.1; a bounded number of
examples per operation keeps the run to a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from qrerank.embed.hashing import HashingEncoder  # noqa: E402
from qrerank.rerank.reranker import Reranker  # noqa: E402
from qrerank.service import Settings, create_app  # noqa: E402
from tests.service.helpers import live_server  # noqa: E402

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

# The schema does not depend on settings, so it is read from an app that is never started.
schema = schemathesis.openapi.from_dict(create_app(Settings(), Reranker(HashingEncoder(64))).openapi())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
    deterministic=True,
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory, corpus) -> Iterator[str]:
    from qrerank.index.directory import build_index

    index = tmp_path_factory.mktemp("fuzz") / "index"
    build_index(corpus, HashingEncoder(64), index, kind="exact")
    app = create_app(
        Settings(index=str(index), max_documents=50, max_doc_chars=500, max_body_bytes=64_000),
        Reranker(HashingEncoder(64)),
    )
    with live_server(app) as url:
        yield url


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_never_answers_5xx(case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)


def test_schema_covers_every_route() -> None:
    paths = schema.raw_schema["paths"]
    routes = {"/v1/rerank", "/v2/rerank", "/rerank", "/tei/rerank", "/search", "/embed", "/health"}
    assert routes <= set(paths)
    # Clients (and the conformance checks above) rely on every error status being documented.
    for path, operations in paths.items():
        if "post" in operations:
            documented = set(operations["post"]["responses"])
            assert {"200", "413", "422", "429", "500", "503"} <= documented, (path, documented)
