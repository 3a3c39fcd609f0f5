"""RankedDoc names its quantum signal for what it is (issue 13 item 4)."""

from __future__ import annotations

import json

import pytest
import torch

from qrerank import Reranker
from qrerank.core.head import BlochHead
from qrerank.core.linear import LinearHead
from qrerank.embed import HashingEncoder
from qrerank.errors import InputError

DOCS = ["cats purr on warm mats", "dogs bark at the mail", "quantum states on the Bloch sphere"]


def _rank(head: object | None) -> list:
    return Reranker(HashingEncoder(64), head=head, method="fidelity").rank("a purring cat", DOCS)


def test_plain_and_state_heads_carry_log_fidelity() -> None:
    for head in (None, BlochHead(64)):
        hits = _rank(head)
        assert {h.quantum_kind for h in hits} == {"log_fidelity"}
        assert all(h.quantum <= 1e-6 for h in hits)  # log F <= 0


def test_a_vector_head_carries_its_cosine_and_says_so() -> None:
    torch.manual_seed(0)
    head = LinearHead(64, 16)
    hits = _rank(head)
    assert {h.quantum_kind for h in hits} == {"head_cosine"}
    emb = torch.from_numpy(HashingEncoder(64).encode(["a purring cat", *DOCS]))
    want = torch.nn.functional.cosine_similarity(head(emb[:1]), head(emb[1:]), dim=-1)
    assert sorted(h.quantum for h in hits) == pytest.approx(sorted(want.tolist()), abs=1e-5)
    # a cosine can be positive, which no log-fidelity is: the old name was wrong here
    assert max(h.quantum for h in hits) > 0


def test_log_fidelity_is_a_deprecated_alias_and_json_keeps_it() -> None:
    torch.manual_seed(0)
    hit = _rank(LinearHead(64, 16))[0]
    with pytest.warns(DeprecationWarning, match="quantum"):
        assert hit.log_fidelity == hit.quantum
    row = json.loads(json.dumps(hit.to_dict()))
    assert row["quantum"] == row["log_fidelity"] == hit.quantum
    assert row["quantum_kind"] == "head_cosine"


def test_a_given_log_fidelity_with_a_head_is_refused_not_ignored() -> None:
    torch.manual_seed(0)
    rr = Reranker(HashingEncoder(64), head=LinearHead(64, 16), method="fidelity")
    emb = rr.embed(["q", *DOCS])
    with pytest.raises(InputError, match="head scores its own"):
        rr.score_embeddings(emb[0], emb[1:], log_fidelity=torch.zeros(len(DOCS)))
    plain = Reranker(HashingEncoder(64), method="fidelity")
    given = torch.tensor([-1.0, -3.0, -2.0])
    scores = plain.score_embeddings(emb[0], emb[1:], log_fidelity=given)  # used as is
    assert torch.equal(scores.quantum, given)
